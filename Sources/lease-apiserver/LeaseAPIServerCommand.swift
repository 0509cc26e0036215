#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import Dispatch
import Etcd
import Foundation
import LeaseAPIServer
import Logging
import Synchronization

/// `lease-apiserver`: serves Leases, Events and Namespaces from etcd, as kube-apiserver does, for tests and
/// development.
@main
struct LeaseAPIServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lease-apiserver",
        abstract: "Serve the Kubernetes Lease, Event, Namespace, ServiceAccount and RBAC APIs from etcd, for tests and development.",
        discussion: """
            Prints one line, `lease-apiserver listening on <URL>`, once it listens; SIGTERM or SIGINT stops it \
            (exit status 0). An unreachable etcd is not a startup error: requests get 503 until etcd answers.

            Every static bearer token is cluster-admin (as a system:masters user is). ServiceAccounts, TokenRequest \
            (POST .../serviceaccounts/NAME/token), Roles and RoleBindings work as in kube: a ServiceAccount token gets \
            what its namespace's RoleBindings grant, else RBAC's 403; a request without a token is system:anonymous \
            and gets 403. Never expose it beyond a test machine (a warning is logged when --bind-address is not a loopback address). Pass \
            tokens in --token-file, not on the command line.

            It answers as kube-apiserver 1.26 by default: spec.preferredHolder and spec.strategy are unknown \
            fields. `--emulated-version 1.31 --feature-gates CoordinatedLeaderElection=true` stores them.
            """)

    @Option(help: ArgumentHelp("etcd endpoints, comma-separated (host:port, or http(s)://host:port).", valueName: "endpoints"))
    var etcdEndpoints = "127.0.0.1:2379"

    @Option(help: ArgumentHelp("CA certificate (PEM) to verify etcd's server certificate; implies TLS to etcd.", valueName: "path"))
    var etcdCafile: String?

    @Option(help: ArgumentHelp("Client certificate (PEM) for etcd, with --etcd-keyfile.", valueName: "path"))
    var etcdCertfile: String?

    @Option(help: ArgumentHelp("Private key (PEM) of --etcd-certfile.", valueName: "path"))
    var etcdKeyfile: String?

    @Option(help: ArgumentHelp("The etcd key prefix of every object.", valueName: "prefix"))
    var etcdPrefix = "/registry"

    @Option(help: ArgumentHelp("The address to listen on.", valueName: "address"))
    var bindAddress = "127.0.0.1"

    @Option(help: ArgumentHelp("The port to listen on; 0 picks a free port.", valueName: "port"))
    var port = 6443

    @Option(help: ArgumentHelp("Certificate chain (PEM) to serve HTTPS with, with --tls-private-key-file.", valueName: "path"))
    var tlsCertFile: String?

    @Option(help: ArgumentHelp("Private key (PEM) of --tls-cert-file.", valueName: "path"))
    var tlsPrivateKeyFile: String?

    /// Deprecated: a token on the command line is visible to every local user (`ps`, `/proc/<pid>/cmdline`)
    /// and kept in shell history. Kept for existing scripts; using it prints a warning.
    @Option(name: .customLong("token"), help: ArgumentHelp(
        "DEPRECATED (visible in the process list; use --token-file): a bearer token to accept (repeatable).", valueName: "token"))
    var tokens: [String] = []

    @Option(help: ArgumentHelp(
        "A file of bearer tokens to accept: one per line (kube's token CSV works too: the first field is the token).",
        valueName: "path"))
    var tokenFile: String?

    @Option(help: ArgumentHelp("trace, debug, info, notice, warning, error or critical (standard error).", valueName: "level"))
    var logLevel = "info"

    @Option(help: ArgumentHelp(
        "The Kubernetes version to answer as: 1.26 to 1.30 answer alike (spec.preferredHolder and spec.strategy are "
            + "unknown fields); 1.31 or later allows --feature-gates CoordinatedLeaderElection=true.",
        valueName: "major.minor"))
    var emulatedVersion = "1.26"

    @Option(help: ArgumentHelp(
        "Feature gates, comma-separated key=true|false. Only CoordinatedLeaderElection (needs --emulated-version 1.31 "
            + "or later) is known: when true, spec.preferredHolder and spec.strategy are stored and returned.",
        valueName: "key=value,..."))
    var featureGates = ""

    /// The generation `--emulated-version` and `--feature-gates` select.
    func generation() throws -> LeaseAPIServer.Generation {
        let parts = emulatedVersion.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0] == "1", let minor = Int(parts[1]), minor >= 26 else {
            throw ValidationError("--emulated-version must be 1.26 or later, as major.minor (got \(emulatedVersion))")
        }
        var coordinated = false
        for entry in featureGates.split(separator: ",") {
            let pair = entry.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2, let value = Bool(pair[1].lowercased()) else {
                throw ValidationError("--feature-gates: \(entry) is not key=true or key=false")
            }
            guard pair[0] == "CoordinatedLeaderElection" else {
                throw ValidationError("--feature-gates: unrecognized feature gate: \(pair[0])")
            }
            guard minor >= 31 else {
                throw ValidationError(
                    "--feature-gates: CoordinatedLeaderElection does not exist in \(emulatedVersion); pass --emulated-version 1.31")
            }
            coordinated = value
        }
        return coordinated ? .v1_31CoordinatedLeaderElection : .v1_26
    }

    func validate() throws {
        if (tlsCertFile == nil) != (tlsPrivateKeyFile == nil) {
            throw ValidationError("--tls-cert-file and --tls-private-key-file go together")
        }
        if (etcdCertfile == nil) != (etcdKeyfile == nil) {
            throw ValidationError("--etcd-certfile and --etcd-keyfile go together")
        }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        if tokens.contains(where: \.isEmpty) { throw ValidationError("--token must not be empty") }
        _ = try generation()
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "lease-apiserver")
        for warning in securityWarnings() {
            FileHandle.standardError.write(Data("lease-apiserver: warning: \(warning)\n".utf8))
        }

        // Signals first, so that one arriving during startup is not lost.
        let stop = StopSignal()

        let server: LeaseAPIServer
        let etcd: EtcdClient
        do {
            var tokens = Set(self.tokens)
            if let tokenFile { tokens.formUnion(try Self.readTokens(tokenFile)) }
            etcd = try EtcdClient(configuration: try etcdConfiguration(), logger: logger)
            var tls: LeaseAPIServer.Configuration.TLS?
            if let tlsCertFile, let tlsPrivateKeyFile {
                tls = .init(certificateChainFile: tlsCertFile, privateKeyFile: tlsPrivateKeyFile)
            }
            let configuration = LeaseAPIServer.Configuration(
                host: bindAddress, port: port, tls: tls, bearerTokens: tokens, etcdPrefix: etcdPrefix,
                generation: try generation())
            do {
                server = try await LeaseAPIServer.start(configuration: configuration, etcd: etcd, logger: logger)
            } catch {
                etcd.close()
                throw error
            }
        } catch {
            FileHandle.standardError.write(Data("lease-apiserver: \(error)\n".utf8))
            throw ExitCode(1)
        }

        // Written straight to the descriptor: nothing buffers the line a parent process waits for.
        FileHandle.standardOutput.write(Data("lease-apiserver listening on \(server.baseURL)\n".utf8))

        let signal = await stop.wait()
        logger.info("shutting down", metadata: ["process.signal": "\(signal)"])
        await server.shutdown()
        etcd.close()
    }

    /// What is insecure in these options: `--token` values, a non-loopback listening address.
    func securityWarnings() -> [String] {
        var warnings: [String] = []
        if !tokens.isEmpty {
            warnings.append("--token is deprecated: the token is visible to every local user in the process list and "
                + "kept in shell history; put tokens in a file and pass --token-file")
        }
        if !Self.isLoopback(bindAddress) {
            var warning = "listening on \(bindAddress), not a loopback address: lease-apiserver is for tests and development "
                + "and has little authorization (any static token may do everything)"
            if tokens.isEmpty && tokenFile == nil { warning += "; no token is configured, so anyone who can connect may do everything" }
            if tlsCertFile == nil { warning += "; without --tls-cert-file, tokens and objects cross the network unencrypted" }
            warnings.append(warning + "; do not expose it")
        }
        return warnings
    }

    /// `true` for `localhost`, `127.0.0.0/8` and `::1`.
    static func isLoopback(_ address: String) -> Bool {
        var name = address.lowercased()
        if name.hasPrefix("["), name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
        if name == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, name, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, name, &v6) == 1 {
            let bytes = withUnsafeBytes(of: v6) { Array($0) }
            return bytes[0..<15].allSatisfy { $0 == 0 } && bytes[15] == 1
        }
        return false
    }

    private func etcdConfiguration() throws -> EtcdClient.Configuration {
        var secure = etcdCafile != nil || etcdCertfile != nil
        var endpoints: [String] = []
        for raw in etcdEndpoints.split(separator: ",") {
            var endpoint = raw.trimmingCharacters(in: .whitespaces)
            if endpoint.hasPrefix("https://") {
                secure = true
                endpoint.removeFirst("https://".count)
            } else if endpoint.hasPrefix("http://") {
                endpoint.removeFirst("http://".count)
            }
            while endpoint.hasSuffix("/") { endpoint.removeLast() }
            if !endpoint.isEmpty { endpoints.append(endpoint) }
        }
        guard !endpoints.isEmpty else { throw ValidationError("--etcd-endpoints names no endpoint") }
        var tls: EtcdClient.Configuration.TLS?
        if secure {
            tls = EtcdClient.Configuration.TLS(
                caPEM: try etcdCafile.map(Self.read), certificatePEM: try etcdCertfile.map(Self.read),
                privateKeyPEM: try etcdKeyfile.map(Self.read))
        }
        return EtcdClient.Configuration(endpoints: endpoints, tls: tls)
    }

    private static func read(_ path: String) throws -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ValidationError("cannot read \(path): \(error.localizedDescription)")
        }
    }

    /// One token per line (the first comma-separated field, as in kube's `--token-auth-file`); blank lines
    /// and `#` comments are skipped.
    static func readTokens(_ path: String) throws -> Set<String> {
        let text = try read(path)
        var tokens = Set<String>()
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let token = trimmed.split(separator: ",", maxSplits: 1, omittingEmptySubsequences: false)[0]
                .trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
            if !token.isEmpty { tokens.insert(token) }
        }
        guard !tokens.isEmpty else { throw ValidationError("the token file \(path) holds no token") }
        return tokens
    }
}

/// Waits for `SIGTERM` or `SIGINT` (their default action is ignored; Dispatch sources receive them). A second
/// signal exits at once.
final class StopSignal: Sendable {
    private struct State {
        var received: Int32?
        var waiter: CheckedContinuation<Int32, Never>?
    }
    private final class Shared: Sendable {
        let state = Mutex(State())
    }
    private final class SourceBox: @unchecked Sendable {
        // Written only in init; kept alive here so the handlers stay installed.
        var sources: [any DispatchSourceSignal] = []
    }
    private let shared = Shared()
    private let box = SourceBox()

    init() {
        let queue = DispatchQueue(label: "lease-apiserver.signals")
        let shared = self.shared
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            source.setEventHandler {
                let (first, waiter) = shared.state.withLock { state -> (Bool, CheckedContinuation<Int32, Never>?) in
                    if state.received != nil { return (false, nil) }
                    state.received = sig
                    defer { state.waiter = nil }
                    return (true, state.waiter)
                }
                if first {
                    waiter?.resume(returning: sig)
                } else {
                    _exit(128 + sig)
                }
            }
            source.resume()
            box.sources.append(source)
        }
    }

    /// Returns the first signal, once it arrives.
    func wait() async -> Int32 {
        await withCheckedContinuation { continuation in
            let now = shared.state.withLock { state -> Int32? in
                if let received = state.received { return received }
                state.waiter = continuation
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }
}
