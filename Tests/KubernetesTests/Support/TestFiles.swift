import Synchronization
import Foundation
import NIOSSL
import Testing

/// A temporary directory, removed by ``remove()``.
struct TemporaryDirectory: Sendable {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "k8s-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// `path/name`.
    func file(_ name: String) -> String { path + "/" + name }

    /// Writes `text` to `path/name` and returns the full path.
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let full = file(name)
        try FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true
        )
        try Data(text.utf8).write(to: URL(fileURLWithPath: full), options: .atomic)
        return full
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Runs `body` with a fresh temporary directory and removes it afterwards.
func withTemporaryDirectory<T>(_ body: (TemporaryDirectory) async throws -> T) async throws -> T {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    return try await body(directory)
}

/// Test PKI made with the `openssl` CLI: a CA, a server certificate for `127.0.0.1` and `localhost`, a
/// server certificate only for the name `kube.test` (to test `tls-server-name`), a client certificate, and an
/// unrelated CA that trusts none of them.
struct TestPKI: Sendable {
    /// One set per test process, generated once on a thread of its own (never on Swift's cooperative pool,
    /// which the `openssl` runs would block) into a directory removed when the process exits.
    static func shared() async throws -> TestPKI { try await sharedPKI.value }

    /// Copies the PEM files into `directory/pki` (for kubeconfigs naming them by relative path).
    func install(in directory: TemporaryDirectory) throws {
        for (name, text) in [("ca.crt", caPEM), ("other-ca.crt", otherCAPEM), ("server.crt", serverCertificatePEM),
                             ("server.key", serverKeyPEM), ("client.crt", clientCertificatePEM), ("client.key", clientKeyPEM)] {
            try directory.write("pki/" + name, text)
        }
    }

    let caPEM: String
    let serverCertificatePEM: String
    let serverKeyPEM: String
    let namedServerCertificatePEM: String
    let namedServerKeyPEM: String
    let clientCertificatePEM: String
    let clientKeyPEM: String
    let otherCAPEM: String
    /// Paths of the files, for kubeconfig tests.
    let caPath: String
    let clientCertificatePath: String
    let clientKeyPath: String

    /// Generates the material into `directory/pki`.
    init(in directory: TemporaryDirectory) throws {
        let dir = directory.file("pki")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func run(_ arguments: [String]) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["openssl"] + arguments
            process.currentDirectoryURL = URL(fileURLWithPath: dir)
            let errors = Pipe()
            process.standardError = errors
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let output = errors.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw PKIError(message: "openssl \(arguments.joined(separator: " ")) failed: \(String(decoding: output, as: UTF8.self))")
            }
        }
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for ca in ["ca", "other-ca"] {
            try run(["req", "-x509"] + ec + [
                "-keyout", "\(ca).key", "-out", "\(ca).crt", "-days", "2", "-subj", "/CN=test-\(ca)",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ])
        }
        func leaf(_ name: String, subject: String, extensions: String) throws {
            try Data(extensions.utf8).write(to: URL(fileURLWithPath: dir + "/\(name).ext"))
            try run(["req"] + ec + ["-keyout", "\(name).key", "-out", "\(name).csr", "-subj", subject])
            try run([
                "x509", "-req", "-in", "\(name).csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "\(name).crt", "-days", "2", "-extfile", "\(name).ext",
            ])
        }
        try leaf("server", subject: "/CN=localhost", extensions: """
            subjectAltName=IP:127.0.0.1,DNS:localhost
            basicConstraints=critical,CA:FALSE
            keyUsage=critical,digitalSignature,keyEncipherment
            extendedKeyUsage=serverAuth

            """)
        try leaf("named-server", subject: "/CN=kube.test", extensions: """
            subjectAltName=DNS:kube.test
            basicConstraints=critical,CA:FALSE
            keyUsage=critical,digitalSignature,keyEncipherment
            extendedKeyUsage=serverAuth

            """)
        try leaf("client", subject: "/CN=test-client/O=system:masters", extensions: """
            basicConstraints=critical,CA:FALSE
            keyUsage=critical,digitalSignature,keyEncipherment
            extendedKeyUsage=clientAuth

            """)
        func read(_ name: String) throws -> String { try String(contentsOfFile: dir + "/" + name, encoding: .utf8) }
        caPEM = try read("ca.crt")
        otherCAPEM = try read("other-ca.crt")
        serverCertificatePEM = try read("server.crt")
        serverKeyPEM = try read("server.key")
        namedServerCertificatePEM = try read("named-server.crt")
        namedServerKeyPEM = try read("named-server.key")
        clientCertificatePEM = try read("client.crt")
        clientKeyPEM = try read("client.key")
        caPath = dir + "/ca.crt"
        clientCertificatePath = dir + "/client.crt"
        clientKeyPath = dir + "/client.key"
    }

    /// A server configuration presenting the server certificate; with `requireClientCertificate`, the
    /// handshake fails unless the client presents a certificate signed by the CA.
    /// With `namedOnly`, the certificate is valid only for `kube.test`, not for `127.0.0.1`.
    func serverTLS(requireClientCertificate: Bool = false, namedOnly: Bool = false) throws -> TLSConfiguration {
        let certificatePEM = namedOnly ? namedServerCertificatePEM : serverCertificatePEM
        let keyPEM = namedOnly ? namedServerKeyPEM : serverKeyPEM
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)).map { NIOSSLCertificateSource.certificate($0) }
        let key = NIOSSLPrivateKeySource.privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
        if requireClientCertificate {
            let roots = NIOSSLTrustRoots.certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)))
            var configuration = TLSConfiguration.makeServerConfigurationWithMTLS(certificateChain: chain, privateKey: key, trustRoots: roots)
            configuration.certificateVerification = .noHostnameVerification
            return configuration
        }
        return TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: key)
    }

    /// The client certificate as NIOSSL parses it, to compare with what the server saw.
    func clientCertificate() throws -> NIOSSLCertificate {
        try NIOSSLCertificate(bytes: Array(clientCertificatePEM.utf8), format: .pem)
    }
}

struct PKIError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

private let sharedPKI = Task<TestPKI, any Error> {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            continuation.resume(with: Result {
                let directory = try TemporaryDirectory()
                sharedPKIDirectory.withLock { $0 = directory.path }
                atexit {
                    if let path = sharedPKIDirectory.withLock({ $0 }) { try? FileManager.default.removeItem(atPath: path) }
                }
                return try TestPKI(in: directory)
            })
        }
    }
}
private let sharedPKIDirectory = Mutex<String?>(nil)
