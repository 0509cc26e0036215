import Logging
import Synchronization

/// An async etcd v3 client talking gRPC directly through the `CEtcdShim` C shim on gRPC core.
///
/// One client holds one gRPC channel (to one or several endpoints, with failover), one completion
/// queue and one poller thread; every call is non-blocking for Swift's cooperative pool, and cancelling
/// the calling task cancels the gRPC call.
///
/// ```swift
/// let etcd = try EtcdClient(configuration: .init(endpoints: ["127.0.0.1:2379"]))
/// defer { etcd.close() }
/// _ = try await etcd.put("greeting", "hello")
/// let kv = try await etcd.get("greeting")
/// ```
public final class EtcdClient: Sendable {
    /// Connection settings.
    public struct Configuration: Sendable {
        /// `host:port` of every member to use; the channel fails over between them.
        public var endpoints: [String]
        /// TLS settings, or `nil` for plaintext.
        public var tls: TLS?
        /// User and password for etcd's authentication, or `nil`. The client authenticates lazily and
        /// re-authenticates when the token expires.
        public var credentials: Credentials?
        /// The deadline of each unary call. Default 5 s.
        public var requestTimeout: Duration
        /// HTTP/2 keepalive ping interval (at least 5 s, etcd's minimum; `nil` disables). Default 10 s.
        public var keepaliveInterval: Duration?
        /// How long a keepalive ping may go unanswered before the connection is dropped. Default 5 s.
        public var keepaliveTimeout: Duration
        /// The largest message the client accepts. Default 4 MiB.
        public var maxReceiveBytes: Int
        /// Whether a unary call that times out (``EtcdError/Code/deadlineExceeded``) replaces the connection.
        /// Default `true`.
        ///
        /// gRPC keeps using a connection until HTTP/2 keepalive declares it dead — ``keepaliveInterval`` plus
        /// ``keepaliveTimeout``, 15 s by default and never less than about 6 s against etcd. A connection whose
        /// peer vanished without a FIN or RST (a half-open connection, kubernetes#125530) would cost an elector
        /// that long, more than a lease. With this on, the first call that times out on a connection makes the
        /// client open a new one for every later call; calls and streams still on the old connection end with
        /// ``EtcdError/Code/unavailable`` (watches and keepalives resume on the new one by themselves). Against a
        /// server that is merely slow or paused this costs one reconnect per timed-out call.
        public var reconnectAfterTimeout: Bool

        /// TLS material, as PEM text.
        public struct TLS: Sendable {
            /// The CA certificate(s) to trust; `nil` uses the system roots.
            public var caPEM: String?
            /// A client certificate chain for mutual TLS.
            public var certificatePEM: String?
            /// The client certificate's private key for mutual TLS.
            public var privateKeyPEM: String?
            /// The name to verify in the server certificate instead of the endpoint's host.
            public var serverName: String?
            /// Creates TLS settings.
            public init(caPEM: String? = nil, certificatePEM: String? = nil, privateKeyPEM: String? = nil, serverName: String? = nil) {
                self.caPEM = caPEM
                self.certificatePEM = certificatePEM
                self.privateKeyPEM = privateKeyPEM
                self.serverName = serverName
            }
        }

        /// etcd user credentials.
        public struct Credentials: Sendable {
            /// The user name.
            public var user: String
            /// The password.
            public var password: String
            /// Creates credentials.
            public init(user: String, password: String) {
                self.user = user
                self.password = password
            }
        }

        /// The endpoints this configuration reaches without TLS that are not loopback addresses (empty when
        /// ``tls`` is set). Over those, the password, the auth token and every key and value cross the
        /// network unencrypted; the client logs a warning when it is created with any.
        public var plaintextRemoteEndpoints: [String] {
            guard tls == nil else { return [] }
            return endpoints.filter { !isLoopbackHost(endpointHost($0)) }
        }

        /// Creates a configuration.
        public init(
            endpoints: [String],
            tls: TLS? = nil,
            credentials: Credentials? = nil,
            requestTimeout: Duration = .seconds(5),
            keepaliveInterval: Duration? = .seconds(10),
            keepaliveTimeout: Duration = .seconds(5),
            maxReceiveBytes: Int = 4 << 20,
            reconnectAfterTimeout: Bool = true
        ) {
            self.endpoints = endpoints
            self.tls = tls
            self.credentials = credentials
            self.requestTimeout = requestTimeout
            self.keepaliveInterval = keepaliveInterval
            self.keepaliveTimeout = keepaliveTimeout
            self.maxReceiveBytes = maxReceiveBytes
            self.reconnectAfterTimeout = reconnectAfterTimeout
        }
    }

    /// The configuration the client was created with.
    public let configuration: Configuration
    private let shimOptions: ShimOptions
    /// The connection in use; replaced after a timeout (``Configuration/reconnectAfterTimeout``).
    private let connection: Mutex<(transport: ShimTransport, replacements: Int, closed: Bool)>
    /// The transport new calls and streams use.
    var transport: ShimTransport { connection.withLock { $0.transport } }
    /// How many times the connection was replaced after a timeout.
    public var connectionReplacements: Int { connection.withLock { $0.replacements } }
    private let token = Mutex<String?>(nil)
    private let logger: Logger

    /// Connects (lazily: the first call establishes the connection).
    ///
    /// A configuration without ``Configuration/tls`` is plaintext. That is normal on loopback (tests, a
    /// local etcd); to any other endpoint (``Configuration/plaintextRemoteEndpoints``) the client logs a
    /// warning on `logger` when it is created. There is no way to skip verifying a TLS server's certificate.
    /// The password and auth tokens are never logged, at any level.
    ///
    /// - Throws: ``EtcdError`` with ``EtcdError/Code/invalidArgument`` for an empty endpoint list or
    ///   unusable TLS material.
    public init(configuration: Configuration, logger: Logger = Logger(label: "etcd", factory: { _ in SwiftLogNoOpLogHandler() })) throws {
        guard !configuration.endpoints.isEmpty else {
            throw EtcdError(code: .invalidArgument, message: "no etcd endpoints configured")
        }
        for endpoint in configuration.endpoints where endpoint.isEmpty || endpoint.contains(",") || endpoint.contains("/") {
            throw EtcdError(code: .invalidArgument, message: "invalid etcd endpoint \"\(endpoint)\": expected host:port")
        }
        self.configuration = configuration
        self.logger = logger
        let remote = configuration.plaintextRemoteEndpoints
        if !remote.isEmpty {
            logger.warning(
                "etcd client without TLS to a non-loopback endpoint: \(configuration.credentials == nil ? "" : "the password, auth tokens, ")keys and values cross the network unencrypted; configure TLS",
                metadata: ["etcd.endpoints": "\(remote.joined(separator: ","))"])
        }
        var options = ShimOptions(target: try Self.target(for: configuration.endpoints))
        if let tls = configuration.tls {
            options.useTLS = true
            options.rootPEM = tls.caPEM
            options.certChainPEM = tls.certificatePEM
            options.privateKeyPEM = tls.privateKeyPEM
            options.serverNameOverride = tls.serverName
        }
        if let keepalive = configuration.keepaliveInterval {
            options.keepaliveTimeMilliseconds = Int32(clamping: max(5_000, keepalive.milliseconds))
        }
        options.keepaliveTimeoutMilliseconds = Int32(clamping: configuration.keepaliveTimeout.milliseconds)
        options.maxReceiveBytes = Int32(clamping: configuration.maxReceiveBytes)
        shimOptions = options
        connection = Mutex((try ShimTransport(options), 0, false))
    }

    /// The executor of this client's poller thread.
    ///
    /// Run a latency-sensitive sequence of calls with `withTaskExecutorPreference(client.executor) { … }`:
    /// after each reply the task then continues on the thread that received it, saving one thread
    /// wake-up per round trip. Keep such code short and never block in it — it runs on the thread that
    /// processes every reply of this client. Jobs enqueued from other threads go to the global executor.
    public var executor: any TaskExecutor { transport.executor }

    /// The gRPC target for `endpoints`: one endpoint as is (gRPC resolves host names itself); several as an
    /// `ipv4:`/`ipv6:` address list with pick-first failover, resolving host names once, here.
    static func target(for endpoints: [String]) throws -> String {
        if endpoints.count == 1 { return endpoints[0] }
        var v4: [String] = []
        var v6: [String] = []
        for endpoint in endpoints {
            guard let colon = endpoint.lastIndex(of: ":"), let port = UInt16(endpoint[endpoint.index(after: colon)...]) else {
                throw EtcdError(code: .invalidArgument, message: "invalid etcd endpoint \"\(endpoint)\": expected host:port")
            }
            let host = String(endpoint[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") {
                v6.append("\(host):\(port)")
            } else if isIPv4Literal(host) {
                v4.append("\(host):\(port)")
            } else {
                let addresses = resolve(host)
                guard !addresses.v4.isEmpty || !addresses.v6.isEmpty else {
                    throw EtcdError(code: .unavailable, message: "cannot resolve etcd endpoint host \"\(host)\"")
                }
                v4 += addresses.v4.map { "\($0):\(port)" }
                v6 += addresses.v6.map { "[\($0)]:\(port)" }
            }
        }
        // gRPC's address-list targets take one family; prefer IPv4 when both are present.
        if !v4.isEmpty { return "ipv4:" + v4.joined(separator: ",") }
        return "ipv6:" + v6.joined(separator: ",")
    }

    /// Cancels every call in flight and releases the connection. Idempotent.
    public func close() {
        connection.withLock { c -> ShimTransport in
            c.closed = true
            return c.transport
        }.close()
    }

    /// One unary call on the current connection; a timeout replaces that connection (when configured).
    private func unary(_ method: String, _ request: [UInt8], token: String?, timeout: Duration) async throws -> [UInt8] {
        let transport = self.transport
        do {
            return try await transport.unary(method, request, token: token, timeout: timeout)
        } catch let error as EtcdError where error.code == .deadlineExceeded && configuration.reconnectAfterTimeout {
            replaceConnection(timedOut: transport, method: method)
            throw error
        }
    }

    /// Swaps in a new connection unless `old` was already replaced (many calls time out together on a dead
    /// connection: one replacement) or the client is closed.
    private func replaceConnection(timedOut old: ShimTransport, method: String) {
        let replaced = connection.withLock { c -> Bool in
            guard !c.closed, c.transport === old, let fresh = try? ShimTransport(shimOptions) else { return false }
            c.transport = fresh
            c.replacements += 1
            return true
        }
        guard replaced else { return }
        logger.warning("etcd call timed out; replacing the connection (it may be dead without the kernel knowing)",
                       metadata: ["etcd.method": "\(method)", "etcd.endpoints": "\(configuration.endpoints.joined(separator: ","))"])
        old.retire()
    }

    // MARK: - Calls

    /// Runs a unary call, authenticating first (and once more after an expired token) when credentials are set.
    func call(_ method: String, _ request: [UInt8], timeout: Duration? = nil) async throws -> [UInt8] {
        let timeout = timeout ?? configuration.requestTimeout
        guard let credentials = configuration.credentials else {
            return try await unary(method, request, token: nil, timeout: timeout)
        }
        var current = token.withLock { $0 }
        if current == nil { current = try await authenticate(credentials) }
        do {
            return try await unary(method, request, token: current, timeout: timeout)
        } catch let error as EtcdError where error.code == .unauthenticated {
            logger.debug("etcd token rejected; re-authenticating", metadata: ["etcd.error": "\(error.message)"])
            let fresh = try await authenticate(credentials)
            return try await unary(method, request, token: fresh, timeout: timeout)
        }
    }

    /// The token to send on a new stream (authenticating first when needed).
    func streamToken() async throws -> String? {
        guard let credentials = configuration.credentials else { return nil }
        if let current = token.withLock({ $0 }) { return current }
        return try await authenticate(credentials)
    }

    /// The auth token in use, if any (for tests that check it is never logged).
    var cachedToken: String? { token.withLock { $0 } }

    /// Forgets the current token (after a stream reported it invalid).
    func invalidateToken() { token.withLock { $0 = nil } }

    private func authenticate(_ credentials: Configuration.Credentials) async throws -> String {
        let fresh = try await authenticate(user: credentials.user, password: credentials.password)
        token.withLock { $0 = fresh }
        logger.debug("etcd authenticated", metadata: ["etcd.user": "\(credentials.user)"])
        return fresh
    }

    /// Authenticates and returns a token (the client does this itself when configured with credentials).
    public func authenticate(user: String, password: String) async throws -> String {
        let bytes = try await unary("/etcdserverpb.Auth/Authenticate", EtcdCodec.authenticate(user: user, password: password),
                                              token: nil, timeout: configuration.requestTimeout)
        return try EtcdCodec.decodeAuthenticate(bytes)
    }

    // MARK: - KV

    /// Reads `key`, or every key in `[key, rangeEnd)` when `rangeEnd` is non-empty.
    public func range(_ key: [UInt8], rangeEnd: [UInt8] = [], limit: Int64 = 0, revision: Int64 = 0, serializable: Bool = false) async throws -> EtcdRangeResponse {
        try EtcdCodec.decodeRange(await call("/etcdserverpb.KV/Range",
            EtcdCodec.range(key: key, rangeEnd: rangeEnd, limit: limit, revision: revision, serializable: serializable)))
    }

    /// Reads one key; `nil` when it does not exist.
    public func get(_ key: String) async throws -> EtcdKeyValue? {
        try await range(Array(key.utf8)).kvs.first
    }

    /// Reads every key starting with `prefix`.
    public func get(prefix: String) async throws -> [EtcdKeyValue] {
        let p = Array(prefix.utf8)
        return try await range(p, rangeEnd: etcdPrefixEnd(p)).kvs
    }

    /// Writes `value` at `key`, attached to `lease` when non-zero. Returns the response header (its
    /// `revision` is the write's mod revision).
    @discardableResult
    public func put(_ key: [UInt8], _ value: [UInt8], lease: Int64 = 0) async throws -> EtcdResponseHeader {
        try EtcdCodec.decodePut(await call("/etcdserverpb.KV/Put", EtcdCodec.put(key: key, value: value, lease: lease)))
    }

    /// Writes a UTF-8 value at a UTF-8 key.
    @discardableResult
    public func put(_ key: String, _ value: String, lease: Int64 = 0) async throws -> EtcdResponseHeader {
        try await put(Array(key.utf8), Array(value.utf8), lease: lease)
    }

    /// Deletes `key` (or `[key, rangeEnd)`); returns how many keys were deleted.
    @discardableResult
    public func delete(_ key: [UInt8], rangeEnd: [UInt8] = []) async throws -> Int64 {
        try EtcdCodec.decodeDelete(await call("/etcdserverpb.KV/DeleteRange", EtcdCodec.deleteRange(key: key, rangeEnd: rangeEnd))).1
    }

    /// Runs a transaction: if every comparison holds, the `success` operations, else the `failure` ones —
    /// atomically, in one round trip.
    public func txn(_ compares: [EtcdCompare], success: [EtcdOperation], failure: [EtcdOperation] = []) async throws -> EtcdTxnResponse {
        try EtcdCodec.decodeTxn(await call("/etcdserverpb.KV/Txn", EtcdCodec.txn(compares: compares, success: success, failure: failure)))
    }

    // MARK: - Leases

    /// Grants a lease of `ttl` seconds (the server may raise it to its minimum).
    public func grantLease(ttl: Int64, id: Int64 = 0) async throws -> EtcdLease {
        let (lease, error) = try EtcdCodec.decodeLeaseGrant(await call("/etcdserverpb.Lease/LeaseGrant", EtcdCodec.leaseGrant(ttl: ttl, id: id)))
        if !error.isEmpty { throw EtcdError(code: .other, message: "lease grant failed: \(error)") }
        return lease
    }

    /// Revokes a lease, deleting every key attached to it.
    /// - Throws: ``EtcdError/Code/notFound`` when the lease does not exist (any more).
    public func revokeLease(_ id: Int64) async throws {
        try EtcdCodec.decodeLeaseRevoke(await call("/etcdserverpb.Lease/LeaseRevoke", EtcdCodec.leaseRevoke(id: id)))
    }

    /// The remaining and granted TTL of a lease in seconds; remaining is -1 when the lease does not exist.
    public func timeToLive(_ id: Int64) async throws -> (ttl: Int64, grantedTTL: Int64) {
        try EtcdCodec.decodeLeaseTimeToLive(await call("/etcdserverpb.Lease/LeaseTimeToLive", EtcdCodec.leaseTimeToLive(id: id)))
    }

    // MARK: - Maintenance

    /// The status of the member the channel is connected to.
    public func status() async throws -> EtcdStatus {
        try EtcdCodec.decodeStatus(await call("/etcdserverpb.Maintenance/Status", EtcdCodec.status()))
    }
}

// MARK: - Redaction

extension EtcdClient.Configuration: CustomStringConvertible, CustomReflectable {
    /// The endpoints, TLS and authentication in use — never the password or the private key.
    public var description: String {
        var parts = ["endpoints: \(endpoints.joined(separator: ","))", tls.map { "\($0)" } ?? "plaintext"]
        if let credentials { parts.append("\(credentials)") }
        parts.append("request timeout: \(requestTimeout)")
        return "EtcdClient.Configuration(\(parts.joined(separator: ", ")))"
    }

    /// The fields, with ``Credentials`` and ``TLS`` redacted (for `dump` and debuggers).
    public var customMirror: Mirror {
        Mirror(self, children: [
            "endpoints": endpoints, "tls": tls as Any, "credentials": credentials as Any, "requestTimeout": requestTimeout,
            "keepaliveInterval": keepaliveInterval as Any, "keepaliveTimeout": keepaliveTimeout, "maxReceiveBytes": maxReceiveBytes,
            "reconnectAfterTimeout": reconnectAfterTimeout,
        ], displayStyle: .struct)
    }
}

extension EtcdClient.Configuration.TLS: CustomStringConvertible, CustomReflectable {
    /// What TLS material is set — never the private key.
    public var description: String {
        var parts = [caPEM == nil ? "system CAs" : "custom CA"]
        if certificatePEM != nil { parts.append("client certificate") }
        if privateKeyPEM != nil { parts.append("client key (redacted)") }
        if let serverName { parts.append("server name: \(serverName)") }
        return "TLS(\(parts.joined(separator: ", ")))"
    }

    /// The fields, the private key redacted.
    public var customMirror: Mirror {
        Mirror(self, children: [
            "caPEM": caPEM as Any, "certificatePEM": certificatePEM as Any,
            "privateKeyPEM": privateKeyPEM == nil ? "nil" : "<redacted>", "serverName": serverName as Any,
        ], displayStyle: .struct)
    }
}

extension EtcdClient.Configuration.Credentials: CustomStringConvertible, CustomReflectable {
    /// The user name — never the password.
    public var description: String { "user \(user) (password redacted)" }

    /// The user name, the password redacted.
    public var customMirror: Mirror {
        Mirror(self, children: ["user": user, "password": "<redacted>"], displayStyle: .struct)
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (s, a) = components
        return s * 1000 + a / 1_000_000_000_000_000
    }
}
