#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Etcd
import EtcdLock
import LeaderElection
import Logging
import Synchronization

/// How `leasectl` connects to etcd, from the `--etcd-*` options (see ``EtcdOptions``).
struct EtcdConnectionSettings: Sendable {
    /// TLS material, or `nil` for plaintext.
    var tls: EtcdClient.Configuration.TLS?
    /// User and password, or `nil` without authentication.
    var credentials: EtcdClient.Configuration.Credentials?
    /// The deadline of each request, connecting included.
    var requestTimeout: Duration = .seconds(5)
    /// `--etcd-plaintext`: whether endpoints other than loopback addresses may be reached without TLS.
    var allowsRemotePlaintext = false
}

/// The etcd clients of one `leasectl` process: one per endpoint set, created on first use and closed
/// together by ``closeAll()`` at exit.
final class EtcdClientPool: Sendable {
    let settings: EtcdConnectionSettings
    private let logger: Logger
    private let clients = Mutex<[String: EtcdClient]>([:])

    /// - Parameter logger: the clients' logger; it receives their warnings (plaintext to a remote endpoint).
    init(settings: EtcdConnectionSettings, logger: Logger = Logger(label: "leasectl.etcd")) {
        self.settings = settings
        self.logger = logger
    }

    /// The client for `endpoints` (the same client for the same set, in any order).
    ///
    /// - Throws: ``LeaseCtlError`` when the client cannot be created (unusable TLS material), or when it
    ///   would reach an endpoint other than a loopback address without TLS and `--etcd-plaintext` was not given.
    func client(for endpoints: [String]) throws -> EtcdClient {
        let key = Set(endpoints).sorted().joined(separator: ",")
        return try clients.withLock { clients in
            if let existing = clients[key] { return existing }
            let configuration = EtcdClient.Configuration(
                endpoints: endpoints, tls: settings.tls, credentials: settings.credentials,
                requestTimeout: settings.requestTimeout)
            let remote = configuration.plaintextRemoteEndpoints
            if !remote.isEmpty && !settings.allowsRemotePlaintext {
                throw LeaseCtlError(
                    "refusing to connect to etcd at \(remote.joined(separator: ",")) without TLS: it is not a loopback address, so "
                        + "\(settings.credentials == nil ? "" : "the password and ")every record would cross the network unencrypted. "
                        + "Pass --etcd-cacert (TLS), or --etcd-plaintext to accept an unencrypted connection")
            }
            let client: EtcdClient
            do {
                client = try EtcdClient(configuration: configuration, logger: logger)
            } catch let error as EtcdError {
                throw LeaseCtlError("cannot set up an etcd client for \(endpoints.joined(separator: ",")): \(error.message)")
            }
            clients[key] = client
            return client
        }
    }

    /// Closes every client (cancelling calls still in flight).
    func closeAll() {
        let all = clients.withLock { clients in
            defer { clients = [:] }
            return Array(clients.values)
        }
        for client in all { client.close() }
    }
}

/// The `etcd` scheme: `etcd://host:port[,host:port…]/path/to/key` is the ``EtcdLock`` stored at the etcd key
/// `/path/to/key` on that cluster; `etcd://host:port/path/to/` (trailing slash) stands for every key under
/// the prefix `/path/to/` (for `leasectl get`). Several endpoints, separated by commas, are one cluster
/// (the client fails over between them). The port defaults to 2379.
struct EtcdLockBackend: LockBackend {
    let pool: EtcdClientPool

    var scheme: String { "etcd" }
    var example: String { "etcd://127.0.0.1:2379/leader-election/default/NAME" }

    func makeLock(at url: LockURL, identity: String, createDirectory: Bool) throws -> any ResourceLock {
        let configuration = try Self.configuration(for: url)
        let client = try pool.client(for: Self.endpoints(of: url))
        return try EtcdLock(client: client, configuration: configuration, identity: identity)
    }

    func locks(at url: LockURL) async throws -> [LockURL] {
        guard url.isCollection else { return [url] }
        let client = try pool.client(for: Self.endpoints(of: url))
        let kvs: [EtcdKeyValue]
        do {
            kvs = try await client.get(prefix: url.path)
        } catch let error as EtcdError where error.code == .cancelled {
            throw CancellationError()
        }
        // Keys that are not UTF-8, or that no lock URL can name (an empty component: `/a//b`, `/a/`),
        // are not locks leasectl can open: leave them out.
        return kvs.compactMap { kv -> LockURL? in
            guard let key = String(validating: kv.key, as: UTF8.self) else { return nil }
            let lock = LockURL(scheme: scheme, authority: url.authority, path: key)
            return (try? Self.configuration(for: lock)) == nil ? nil : lock
        }.sorted { $0.path < $1.path }
    }

    func describe(_ error: any Error, for url: LockURL) -> String {
        let endpoints = (try? Self.endpoints(of: url)) ?? [url.authority]
        let unreachable: Bool
        let unauthorized: Bool
        var message: String
        switch error {
        case let error as EtcdError:
            unreachable = error.code == .unavailable || error.code == .deadlineExceeded
            unauthorized = error.code == .unauthenticated || error.code == .permissionDenied
                || (error.code == .invalidArgument && Self.isAuthenticationMessage(error.message))
            message = error.message
        case let error as LeaderElectionError:
            unreachable = error.code == .unavailable || error.code == .timeout
            unauthorized = error.code == .unauthorized
                || (error.code == .invalidConfiguration && Self.isAuthenticationMessage(error.message))
            message = error.message
            // EtcdLock prefixes its messages with the lock's description, which the caller prints already.
            let description = "etcd://\(endpoints.joined(separator: ","))\(url.path): "
            if message.hasPrefix(description) { message.removeFirst(description.count) }
            // … and quotes the client's error: keep its message.
            if message.hasPrefix("EtcdError("), let end = message.range(of: "): ") {
                message = String(message[end.upperBound...])
            }
            if unauthorized, message.hasPrefix("etcd rejected the request: ") {
                message.removeFirst("etcd rejected the request: ".count)
            }
        default:
            return LockRegistry.describe(error)
        }
        let settings = pool.settings
        let at = endpoints.joined(separator: ",")
        if unauthorized {
            let hint = settings.credentials == nil
                ? "etcd requires authentication: pass --etcd-user, with the password in $\(EtcdOptions.passwordVariable) or --etcd-password-file"
                : "check --etcd-user, its password, and the user's permissions on the key"
            return "etcd at \(at) refused the request: \(message) (\(hint))"
        }
        if unreachable {
            let hint = settings.tls == nil
                ? "is etcd running there? If it serves TLS (https), pass --etcd-cacert"
                : "is etcd running there, serving TLS? Check that --etcd-cacert signed its certificate and, "
                    + "if it requires client certificates, pass --etcd-cert and --etcd-key"
            return "cannot reach etcd at \(at): \(message) (\(hint))"
        }
        return message
    }

    func shutdown() async { pool.closeAll() }

    /// `true` for etcd's messages about missing or wrong credentials, which it sends as INVALID_ARGUMENT.
    private static func isAuthenticationMessage(_ message: String) -> Bool {
        ["authentication failed", "user name is empty", "user name not found", "invalid auth token"].contains { message.contains($0) }
    }

    // MARK: URL mapping

    /// The endpoints of `url`'s authority: `host:port` separated by commas, duplicates removed, port 2379
    /// when omitted, IPv6 addresses in brackets.
    ///
    /// - Throws: ``LeaseCtlError`` for an empty authority, user information, or a malformed endpoint.
    static func endpoints(of url: LockURL) throws -> [String] {
        guard !url.authority.isEmpty else {
            throw LeaseCtlError("etcd URL \(url) names no endpoint; expected etcd://HOST:PORT[,HOST:PORT…]/path/to/key")
        }
        guard !url.authority.contains("@") else {
            throw LeaseCtlError("etcd URLs carry no credentials (\(url)): pass --etcd-user, with the password in ETCD_PASSWORD or --etcd-password-file")
        }
        var endpoints: [String] = []
        for part in url.authority.split(separator: ",", omittingEmptySubsequences: false) {
            let endpoint = try normalizeEndpoint(String(part), in: url)
            if !endpoints.contains(endpoint) { endpoints.append(endpoint) }
        }
        // Several endpoints may be host names: the client resolves them once into an address list.
        return endpoints
    }

    private static func normalizeEndpoint(_ text: String, in url: LockURL) throws -> String {
        let endpoint = text.trimmingCharacters(in: .whitespaces)
        func malformed(_ why: String) -> LeaseCtlError {
            LeaseCtlError("malformed etcd endpoint \"\(endpoint)\" in \(url): \(why); expected HOST:PORT")
        }
        guard !endpoint.isEmpty else { throw malformed("empty") }
        let host: Substring
        let port: Substring?
        if endpoint.hasPrefix("[") {
            guard let close = endpoint.firstIndex(of: "]") else { throw malformed("unclosed [") }
            host = endpoint[...close]
            let rest = endpoint[endpoint.index(after: close)...]
            if rest.isEmpty {
                port = nil
            } else {
                guard rest.hasPrefix(":") else { throw malformed("expected :PORT after ]") }
                port = rest.dropFirst()
            }
        } else {
            let parts = endpoint.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { throw malformed("IPv6 addresses go in brackets, [::1]:2379") }
            host = parts[0]
            port = parts.count == 2 ? parts[1] : nil
        }
        guard host.count > (host.hasPrefix("[") ? 2 : 0) else { throw malformed("no host") }
        guard let port else { return "\(host):2379" }
        guard let number = Int(port), (1...65535).contains(number), port.allSatisfy(\.isASCII) else {
            throw malformed("the port must be a number from 1 to 65535")
        }
        return "\(host):\(number)"
    }

    /// The ``EtcdLock`` configuration whose key is exactly `url`'s path: the last component is the name,
    /// the one before the namespace, the rest the key prefix (`/leader-election/default/app` →
    /// prefix `/leader-election`, namespace `default`, name `app`; `/x/app` → namespace `x`; `/app` → name only).
    ///
    /// - Throws: ``LeaseCtlError`` when `url` names a prefix (trailing slash) or a key with an empty component.
    static func configuration(for url: LockURL) throws -> EtcdLock.Configuration {
        guard !url.isCollection else {
            throw LeaseCtlError("\(url) names a key prefix (trailing slash); name a lock under it, such as \(url.appending("NAME"))")
        }
        let components = url.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        guard url.path.hasPrefix("/"), !components.isEmpty, components.allSatisfy({ !$0.isEmpty }) else {
            throw LeaseCtlError("\(url) does not name an etcd key leasectl can address; expected etcd://HOST:PORT/path/to/key")
        }
        let name = String(components.last!)
        let namespace = components.count >= 2 ? String(components[components.endIndex - 2]) : ""
        let keyPrefix = components.count >= 3 ? "/" + components.dropLast(2).joined(separator: "/") : ""
        let configuration = EtcdLock.Configuration(name: name, namespace: namespace, keyPrefix: keyPrefix)
        guard configuration.key == url.path else {
            throw LeaseCtlError("\(url) does not name an etcd key leasectl can address (maps to \(configuration.key))")
        }
        return configuration
    }
}
