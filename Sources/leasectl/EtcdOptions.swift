#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import LeaderElectionService
import Etcd
import Foundation

/// The `--etcd-*` options of `elect`, `get` and `release`: how to connect to etcd for `etcd://` locks.
///
/// The password is never a command-line value (it would show in `ps` and shell history): it comes from
/// the `ETCD_PASSWORD` environment variable or from `--etcd-password-file`.
///
/// Without `--etcd-cacert`, `--etcd-cert` and `--etcd-key` the connection is plaintext. That is accepted
/// silently for loopback endpoints only; any other endpoint needs `--etcd-plaintext`, and then the etcd
/// client's warning is printed on standard error.
struct EtcdOptions: ParsableArguments {
    /// The environment variable holding the password of `--etcd-user`.
    static let passwordVariable = "ETCD_PASSWORD"

    @Option(help: ArgumentHelp("CA certificate (PEM) to verify etcd's server certificate; implies TLS.", valueName: "path"))
    var etcdCacert: String?

    @Option(help: ArgumentHelp("Client certificate (PEM) for mutual TLS, with --etcd-key; implies TLS.", valueName: "path"))
    var etcdCert: String?

    @Option(help: ArgumentHelp("Private key (PEM) of --etcd-cert.", valueName: "path"))
    var etcdKey: String?

    @Option(help: ArgumentHelp(
        "etcd user to authenticate as; the password comes from $\(passwordVariable) or --etcd-password-file.",
        valueName: "name"))
    var etcdUser: String?

    @Option(help: ArgumentHelp("File holding the password of --etcd-user (a trailing newline is ignored).", valueName: "path"))
    var etcdPasswordFile: String?

    @Flag(help: ArgumentHelp(
        "Connect to etcd endpoints other than loopback addresses without TLS (the password and every record cross the network unencrypted; a warning is printed)."))
    var etcdPlaintext = false

    @Option(help: ArgumentHelp(
        "Deadline of each etcd request, connecting included. (default: max(1s, renew-deadline/2) for elect, 5s otherwise)",
        valueName: "duration"))
    var etcdDialTimeout: GoDuration?

    init() {}

    func validate() throws {
        if etcdPlaintext && (etcdCacert != nil || etcdCert != nil || etcdKey != nil) {
            throw ValidationError("--etcd-plaintext contradicts --etcd-cacert, --etcd-cert and --etcd-key (which use TLS)")
        }
        if (etcdCert == nil) != (etcdKey == nil) {
            throw ValidationError("--etcd-cert and --etcd-key go together (mutual TLS needs the certificate and its key)")
        }
        if let etcdUser {
            if etcdUser.isEmpty { throw ValidationError("--etcd-user must not be empty") }
            if etcdUser.contains(":") {
                throw ValidationError("--etcd-user takes a user name only; pass the password in $\(Self.passwordVariable) or --etcd-password-file, never on the command line")
            }
        } else if etcdPasswordFile != nil {
            throw ValidationError("--etcd-password-file needs --etcd-user")
        }
        if let etcdDialTimeout, etcdDialTimeout.duration <= .zero {
            throw ValidationError("--etcd-dial-timeout must be positive")
        }
    }

    /// The connection settings these options describe, reading the PEM and password files now.
    ///
    /// - Parameters:
    ///   - defaultTimeout: the request timeout when `--etcd-dial-timeout` is not given.
    ///   - environment: where `ETCD_PASSWORD` is looked up.
    /// - Throws: ``LeaseCtlError`` naming the option and file when a file cannot be read or holds no PEM
    ///   data, or when `--etcd-user` has no password.
    func settings(
        defaultTimeout: Duration, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> EtcdConnectionSettings {
        var settings = EtcdConnectionSettings(requestTimeout: etcdDialTimeout?.duration ?? defaultTimeout)
        settings.allowsRemotePlaintext = etcdPlaintext
        if etcdCacert != nil || etcdCert != nil || etcdKey != nil {
            settings.tls = EtcdClient.Configuration.TLS(
                caPEM: try etcdCacert.map { try Self.readPEM($0, option: "--etcd-cacert") },
                certificatePEM: try etcdCert.map { try Self.readPEM($0, option: "--etcd-cert") },
                privateKeyPEM: try etcdKey.map { try Self.readPEM($0, option: "--etcd-key") })
        }
        if let etcdUser {
            let password: String
            if let etcdPasswordFile {
                password = Self.chompingOneNewline(try Self.readFile(etcdPasswordFile, option: "--etcd-password-file"))
            } else if let fromEnvironment = environment[Self.passwordVariable] {
                password = fromEnvironment
            } else {
                throw LeaseCtlError("--etcd-user \(etcdUser) needs a password: set $\(Self.passwordVariable) or pass --etcd-password-file")
            }
            settings.credentials = .init(user: etcdUser, password: password)
        }
        return settings
    }

    /// The request timeout of `elect` when `--etcd-dial-timeout` is not given: client-go's (and
    /// controller-runtime's) rule, half the renew deadline but at least a second, so that a renewal can be
    /// retried within the renew deadline.
    static func electTimeout(renewDeadline: Duration) -> Duration {
        max(.seconds(1), renewDeadline / 2)
    }

    private static func readPEM(_ path: String, option: String) throws -> String {
        let text = try readFile(path, option: option)
        guard text.contains("-----BEGIN ") else {
            throw LeaseCtlError("\(option) \(path) holds no PEM data (expected a -----BEGIN ...----- block)")
        }
        return text
    }

    /// Reads a small text file, with the system's reason when that fails.
    static func readFile(_ path: String, option: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw LeaseCtlError("cannot read \(option) \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else {
                throw LeaseCtlError("cannot read \(option) \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += buffer[0..<n]
            guard bytes.count <= 1 << 20 else { throw LeaseCtlError("\(option) \(path) is larger than 1 MiB") }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw LeaseCtlError("\(option) \(path) is not a text file")
        }
        return text
    }

    private static func chompingOneNewline(_ text: String) -> String {
        // "\r\n" is one Character in Swift.
        text.last == "\n" || text.last == "\r\n" ? String(text.dropLast()) : text
    }
}
