#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization

/// TLS material for a test etcd: a CA, a server certificate, a client certificate, and an unrelated CA.
///
/// ``generate(in:clientCertAuth:)`` makes everything with `openssl` (P-256 keys, valid for ten years):
///
/// | file | what |
/// |---|---|
/// | ``caFile`` | the CA that signed the server and client certificates |
/// | ``serverCertFile`` / ``serverKeyFile`` | `CN=localhost`, SAN `IP:127.0.0.1`, `DNS:localhost`; EKU serverAuth + clientAuth |
/// | ``clientCertFile`` / ``clientKeyFile`` | `CN=etcd-testing-client`, EKU clientAuth, signed by ``caFile`` (for mTLS) |
/// | ``wrongCAFile`` | a second, unrelated CA: a client that trusts only it must fail the handshake |
/// | ``untrustedClientCertFile`` / ``untrustedClientKeyFile`` | a client certificate signed by the wrong CA: a server with ``clientCertAuth`` must reject it |
///
/// Keys are PKCS #8 PEM (`BEGIN PRIVATE KEY`). Pass the value to ``EtcdServer/start(name:tls:extraArguments:startTimeout:)``
/// or ``EtcdCluster/start(members:name:tls:heartbeatInterval:electionTimeout:extraArguments:startTimeout:)``; the servers then listen on
/// `https://127.0.0.1:PORT` (peers stay plain HTTP on loopback).
///
/// When generated into a temporary directory (the default), the directory is removed when the last copy of
/// this value is gone — servers keep a copy, so it outlives them.
public struct EtcdTLS: Sendable {
    /// The directory holding the files.
    public var directory: String
    /// The CA certificate (PEM) that signed the server and client certificates.
    public var caFile: String
    /// The server certificate (PEM).
    public var serverCertFile: String
    /// The server's private key (PEM, PKCS #8).
    public var serverKeyFile: String
    /// A client certificate (PEM) signed by ``caFile``.
    public var clientCertFile: String
    /// The client certificate's private key (PEM, PKCS #8).
    public var clientKeyFile: String
    /// A CA certificate (PEM) unrelated to everything else: trusting it instead of ``caFile`` must fail.
    public var wrongCAFile: String
    /// A client certificate (PEM) signed by the wrong CA: a server with ``clientCertAuth`` rejects it.
    public var untrustedClientCertFile: String
    /// The untrusted client certificate's private key (PEM, PKCS #8).
    public var untrustedClientKeyFile: String
    /// Mutual TLS: when `true`, etcd starts with `--client-cert-auth --trusted-ca-file <caFile>`, so clients must
    /// present a certificate signed by ``caFile``.
    public var clientCertAuth: Bool

    /// Removes a generated temporary directory when the last copy of this value goes away.
    private let cleanup: DirectoryRemover?

    /// One set of material per test process, generated on first use on a thread of its own — the `openssl`
    /// runs must not block Swift's cooperative pool, which the other tests of the process share — and removed
    /// when the process exits. Use it wherever the certificates' identity does not matter.
    public static func shared() async throws -> EtcdTLS {
        try await sharedTLS.value
    }

    /// Generates a CA, a server and a client certificate, and an unrelated CA with its own client certificate.
    ///
    /// - Parameters:
    ///   - directory: where to write the files (created if missing, never removed by us); `nil` makes a
    ///     temporary directory that is removed once no copy of the result remains.
    ///   - clientCertAuth: the initial value of ``clientCertAuth`` (mutual TLS).
    /// - Throws: ``EtcdTestingError`` when `openssl` is missing (with how to install it) or fails.
    public static func generate(in directory: String? = nil, clientCertAuth: Bool = false) throws -> EtcdTLS {
        let openssl = try requireOpenSSL()
        let path: String
        let cleanup: DirectoryRemover?
        if let directory {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw EtcdTestingError("cannot create \(directory): \(error)")
            }
            path = directory
            cleanup = nil
        } else {
            path = try makeTemporaryDirectory(label: "tls")
            cleanup = DirectoryRemover(path: path)
        }
        try writeCertificates(openssl: openssl, in: path)   // on failure, `cleanup` removes our directory
        return EtcdTLS(
            directory: path,
            caFile: path + "/ca.crt",
            serverCertFile: path + "/server.crt",
            serverKeyFile: path + "/server.key",
            clientCertFile: path + "/client.crt",
            clientKeyFile: path + "/client.key",
            wrongCAFile: path + "/wrong-ca.crt",
            untrustedClientCertFile: path + "/untrusted-client.crt",
            untrustedClientKeyFile: path + "/untrusted-client.key",
            clientCertAuth: clientCertAuth,
            cleanup: cleanup)
    }

    /// The `etcdctl` flags for a client that trusts ``caFile`` and presents the client certificate:
    /// `--cacert <ca> --cert <client cert> --key <client key>`.
    public var etcdctlFlags: [String] {
        ["--cacert", caFile, "--cert", clientCertFile, "--key", clientKeyFile]
    }

    /// The `etcd` flags that serve clients over TLS with these files.
    var serverFlags: [String] {
        var flags = ["--cert-file", serverCertFile, "--key-file", serverKeyFile]
        if clientCertAuth { flags += ["--client-cert-auth", "--trusted-ca-file", caFile] }
        return flags
    }
}

/// Removes a directory on `deinit`.
private final class DirectoryRemover: Sendable {
    let path: String
    init(path: String) { self.path = path }
    deinit { removeDirectory(path) }
}

private let opensslConfiguration = """
    [req]
    distinguished_name = dn
    prompt = no

    [dn]
    CN = etcd-testing

    [ca_ext]
    basicConstraints = critical, CA:TRUE
    keyUsage = critical, keyCertSign, cRLSign
    subjectKeyIdentifier = hash

    [server_ext]
    basicConstraints = critical, CA:FALSE
    keyUsage = critical, digitalSignature, keyEncipherment
    extendedKeyUsage = serverAuth, clientAuth
    subjectAltName = IP:127.0.0.1, DNS:localhost
    subjectKeyIdentifier = hash
    authorityKeyIdentifier = keyid

    [client_ext]
    basicConstraints = critical, CA:FALSE
    keyUsage = critical, digitalSignature, keyEncipherment
    extendedKeyUsage = clientAuth
    subjectKeyIdentifier = hash
    authorityKeyIdentifier = keyid

    """

private func writeCertificates(openssl: String, in directory: String) throws(EtcdTestingError) {
    let config = directory + "/openssl.cnf"
    do {
        try opensslConfiguration.write(toFile: config, atomically: true, encoding: .utf8)
    } catch {
        throw EtcdTestingError("cannot write \(config): \(error)")
    }
    defer { unlink(config) }
    let keyOptions = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    func run(_ arguments: [String]) throws(EtcdTestingError) {
        let result = try runCommandBlocking(openssl, arguments, timeout: .seconds(30))
        guard result.succeeded else { throw EtcdTestingError("generating test certificates failed: \(result)") }
    }
    func makeCA(_ name: String, commonName: String) throws(EtcdTestingError) {
        try run(["req", "-x509", "-config", config, "-extensions", "ca_ext"] + keyOptions + [
            "-keyout", "\(directory)/\(name).key", "-out", "\(directory)/\(name).crt",
            "-days", "3650", "-subj", "/CN=\(commonName)",
        ])
    }
    func makeLeaf(_ name: String, commonName: String, extensions: String, ca: String) throws(EtcdTestingError) {
        let request = "\(directory)/\(name).csr"
        defer { unlink(request) }
        try run(["req", "-new", "-config", config] + keyOptions + [
            "-keyout", "\(directory)/\(name).key", "-out", request, "-subj", "/CN=\(commonName)",
        ])
        try run([
            "x509", "-req", "-in", request, "-CA", "\(directory)/\(ca).crt", "-CAkey", "\(directory)/\(ca).key",
            "-set_serial", String(UInt64.random(in: 1...UInt64(Int64.max))), "-days", "3650",
            "-extfile", config, "-extensions", extensions, "-out", "\(directory)/\(name).crt",
        ])
    }

    try makeCA("ca", commonName: "etcd-testing CA")
    try makeLeaf("server", commonName: "localhost", extensions: "server_ext", ca: "ca")
    try makeLeaf("client", commonName: "etcd-testing-client", extensions: "client_ext", ca: "ca")
    try makeCA("wrong-ca", commonName: "etcd-testing unrelated CA")
    try makeLeaf("untrusted-client", commonName: "etcd-testing-untrusted-client", extensions: "client_ext", ca: "wrong-ca")
    // ca.key and wrong-ca.key stay, for tests that want to sign more certificates.
}

private let sharedTLS = Task<EtcdTLS, any Error> {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            continuation.resume(with: Result {
                let directory = temporaryDirectory() + "/etcdtesting-shared-\(getpid())-\(UInt32.random(in: 0...UInt32.max))/tls"
                sharedTLSDirectory.withLock { $0 = directory }
                atexit {
                    if let directory = sharedTLSDirectory.withLock({ $0 }) {
                        try? FileManager.default.removeItem(atPath: (directory as NSString).deletingLastPathComponent)
                    }
                }
                return try EtcdTLS.generate(in: directory)
            })
        }
    }
}
private let sharedTLSDirectory = Mutex<String?>(nil)
