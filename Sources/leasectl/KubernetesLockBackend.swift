import Kubernetes
import KubernetesLock
import LeaderElection
import Logging
import Synchronization

/// What a `kubernetes://` URL addresses: one Lease, every Lease of a namespace, or every Lease of the cluster.
///
/// - `kubernetes://NAMESPACE/NAME`: the Lease `NAME` in `NAMESPACE`.
/// - `kubernetes://NAMESPACE/` (or `kubernetes://NAMESPACE`): every Lease in `NAMESPACE`.
/// - `kubernetes:///NAME` and `kubernetes:///` (or just `kubernetes://`): the same in the default namespace,
///   `--namespace` or else the kubeconfig context's (the pod's own namespace in a cluster).
/// - `kubernetes://*/` (or `kubernetes://*`): every Lease in every namespace (what `get -A` lists).
///
/// The authority is a namespace, never a server: the API server, its CA and the credentials come from the
/// kubeconfig (see ``KubernetesOptions``).
struct KubernetesLeaseAddress: Hashable, Sendable {
    /// Where the Leases are.
    enum Scope: Hashable, Sendable {
        /// The default namespace: `--namespace`, else the kubeconfig context's.
        case defaultNamespace
        /// A namespace named in the URL.
        case namespace(String)
        /// Every namespace (`*`).
        case allNamespaces
    }

    var scope: Scope
    /// The Lease's name; `nil` for every Lease in ``scope``.
    var name: String?

    /// The authority standing for every namespace.
    static let allNamespacesAuthority = "*"

    /// Reads the address of a `kubernetes://` URL.
    ///
    /// - Throws: ``LeaseCtlError`` for a server or credentials in place of the namespace, an invalid namespace
    ///   or Lease name, a path of more than one component, or a named Lease across all namespaces.
    init(_ url: LockURL) throws {
        let authority = url.authority
        if authority.isEmpty {
            scope = .defaultNamespace
        } else if authority == Self.allNamespacesAuthority {
            scope = .allNamespaces
        } else if authority.contains(":") || authority.contains("@") || authority.contains("[") {
            throw LeaseCtlError("""
                \(url): a kubernetes:// URL names a namespace, not a server (kubernetes://NAMESPACE/NAME); \
                the API server and credentials come from --kubeconfig and --context
                """)
        } else if let problem = KubernetesNames.namespaceProblem(authority) {
            throw LeaseCtlError("\(url) does not name a namespace: \(problem)")
        } else {
            scope = .namespace(authority)
        }
        let components = url.path.split(separator: "/", omittingEmptySubsequences: true)
        switch components.count {
        case 0:
            name = nil
        case 1 where !url.isCollection:
            let lease = String(components[0])
            if let problem = KubernetesNames.leaseNameProblem(lease) {
                throw LeaseCtlError("\(url) does not name a Lease: \(problem)")
            }
            name = lease
        default:
            throw LeaseCtlError("\(url) does not name a Lease; expected kubernetes://NAMESPACE/NAME, kubernetes://NAMESPACE/ or kubernetes://*/")
        }
        if scope == .allNamespaces, name != nil {
            throw LeaseCtlError("\(url): a Lease cannot be named across all namespaces; write kubernetes://NAMESPACE/\(name!)")
        }
    }

    /// `true` when it stands for several Leases.
    var isCollection: Bool { name == nil }

    /// The URL of the Lease `name` in `namespace`.
    static func url(namespace: String, name: String) -> LockURL {
        LockURL(scheme: KubernetesLockBackend.schemeName, authority: namespace, path: "/" + name)
    }
}

/// The Kubernetes client of one `leasectl` process, created on first use from the connection settings and
/// shut down by ``shutdown()`` at exit.
final class KubernetesClientPool: Sendable {
    let settings: KubernetesConnectionSettings
    private let logger: Logger

    private enum State {
        case idle
        case ready(KubernetesConnectionSettings.Loaded, KubernetesClient)
        case failed(LeaseCtlError)
        case shutDown
    }
    private let state = Mutex<State>(.idle)
    /// The locks made on this client, asked for the ``KubernetesError`` behind their errors.
    private let locks = Mutex<[KubernetesLock]>([])

    init(settings: KubernetesConnectionSettings, logger: Logger = Logger(label: "leasectl.kubernetes")) {
        self.settings = settings
        self.logger = logger
    }

    /// The client, created (and the configuration loaded) on the first call.
    ///
    /// - Throws: ``LeaseCtlError`` when the configuration cannot be loaded or used (the same error on every call).
    func client() throws -> KubernetesClient {
        try connection().client
    }

    /// The default namespace of `kubernetes:///NAME` URLs: `--namespace`, else the context's (loading the
    /// configuration).
    func defaultNamespace() throws -> String {
        if let namespace = settings.namespace { return namespace }
        return try connection().loaded.configuration.namespace
    }

    /// The configuration in use, once loaded; for messages.
    var loaded: KubernetesConnectionSettings.Loaded? {
        state.withLock { state in
            if case .ready(let loaded, _) = state { return loaded }
            return nil
        }
    }

    private func connection() throws -> (loaded: KubernetesConnectionSettings.Loaded, client: KubernetesClient) {
        try state.withLock { state in
            switch state {
            case .ready(let loaded, let client):
                return (loaded, client)
            case .failed(let error):
                throw error
            case .shutDown:
                throw LeaseCtlError("the Kubernetes client has been shut down")
            case .idle:
                do {
                    let loaded = try settings.load()
                    let client: KubernetesClient
                    do {
                        client = try KubernetesClient(configuration: loaded.configuration, logger: logger)
                    } catch let error as KubernetesError {
                        throw LeaseCtlError("cannot set up a Kubernetes client from \(loaded.source): \(error.message)")
                    }
                    state = .ready(loaded, client)
                    return (loaded, client)
                } catch let error as LeaseCtlError {
                    state = .failed(error)
                    throw error
                }
            }
        }
    }

    /// Remembers `lock` (made on this pool's client) for ``kubernetesError(behind:)``.
    func register(_ lock: KubernetesLock) {
        locks.withLock { $0.append(lock) }
    }

    /// The ``KubernetesError`` behind `error`, when one of this pool's locks threw it.
    func kubernetesError(behind error: LeaderElectionError) -> KubernetesError? {
        for lock in locks.withLock({ $0 }).reversed() {
            if let cause = lock.kubernetesError(behind: error) { return cause }
        }
        return nil
    }

    /// Shuts the client down (failing requests still in flight). Later calls to ``client()`` throw.
    func shutdown() async {
        let client = state.withLock { state -> KubernetesClient? in
            defer { state = .shutDown }
            if case .ready(_, let client) = state { return client }
            return nil
        }
        try? await client?.shutdown()
    }
}

/// The `kubernetes` scheme: a `coordination.k8s.io/v1` Lease through ``KubernetesLock``, client-go's
/// `LeaseLock` record, so `leasectl` candidates contend with Go controllers on the same Lease. See
/// ``KubernetesLeaseAddress`` for the URL forms; ``KubernetesOptions`` for the connection.
///
/// `leasectl get` reads Kubernetes Leases with one list (or get) request per URL and follows them with an
/// informer (list, then watch) under `-w` (``LeaseListingBackend``).
struct KubernetesLockBackend: LeaseListingBackend {
    static let schemeName = "kubernetes"
    /// The component named in the Events `elect` records.
    static let eventComponent = "leasectl"

    let pool: KubernetesClientPool

    var scheme: String { Self.schemeName }
    var example: String { "kubernetes://NAMESPACE/NAME" }

    func resolve(_ url: LockURL) throws -> LockURL {
        let address = try KubernetesLeaseAddress(url)
        let namespace = try namespace(of: address, in: url)
        return LockURL(
            scheme: scheme, authority: namespace ?? KubernetesLeaseAddress.allNamespacesAuthority, path: "/" + (address.name ?? ""))
    }

    /// The namespace `address` (of `url`) stands for: the default one (loading the configuration) when it
    /// names none; `nil` for all namespaces.
    ///
    /// - Throws: ``LeaseCtlError`` when the URL names a namespace other than `--namespace`, or the
    ///   configuration cannot be loaded.
    private func namespace(of address: KubernetesLeaseAddress, in url: LockURL) throws -> String? {
        switch address.scope {
        case .defaultNamespace:
            return try pool.defaultNamespace()
        case .namespace(let namespace):
            if let requested = pool.settings.namespace, requested != namespace {
                throw LeaseCtlError("\(url) names namespace \(namespace), but --namespace says \(requested); drop one of them")
            }
            return namespace
        case .allNamespaces:
            return nil
        }
    }

    func makeLock(at url: LockURL, identity: String, createDirectory: Bool) throws -> any ResourceLock {
        let address = try KubernetesLeaseAddress(url)
        guard let name = address.name else {
            let example = address.scope == .allNamespaces ? "kubernetes://NAMESPACE/NAME" : "\(url.asCollection)NAME"
            throw LeaseCtlError("\(url) stands for several Leases; name one, such as \(example)")
        }
        let namespace = try namespace(of: address, in: url)!
        let lock = try KubernetesLock(
            client: try pool.client(),
            configuration: .init(name: name, namespace: namespace, eventComponent: Self.eventComponent),
            identity: identity)
        pool.register(lock)
        return KubernetesURLLock(base: lock, url: KubernetesLeaseAddress.url(namespace: namespace, name: name))
    }

    func locks(at url: LockURL) async throws -> [LockURL] {
        try await snapshots(at: url).map(\.url)
    }

    func validate(_ configuration: LeaderElectionConfiguration, for url: LockURL) throws {
        do {
            try KubernetesLock.validate(configuration)
        } catch let error as LeaderElectionError {
            throw LeaseCtlError("--lease-duration \(formatDuration(configuration.leaseDuration)) cannot be used with \(url): \(error.message)")
        }
    }

    func shutdown() async { await pool.shutdown() }

    // MARK: Listing

    func snapshots(at url: LockURL) async throws -> [LeaseSnapshot] {
        let address = try KubernetesLeaseAddress(url)
        let client = try pool.client()
        let namespace = try namespace(of: address, in: url)
        if let name = address.name, let namespace {
            do {
                let lease = try await client.getLease(namespace: namespace, name: name)
                return [LeaseSnapshot(lease: lease, readAt: .now())]
            } catch let error as KubernetesError where error.code == .notFound {
                return [LeaseSnapshot(url: KubernetesLeaseAddress.url(namespace: namespace, name: name), name: name, state: .missing, readAt: .now(), namespace: namespace)]
            }
        }
        let list = try await client.listLeases(namespace: namespace)
        let now = MicroTime.now()
        return list.items.map { LeaseSnapshot(lease: $0, readAt: now) }.sorted(by: Self.inOrder)
    }

    func watchSnapshots(at url: LockURL) -> AsyncThrowingStream<[LeaseSnapshot], any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: [LeaseSnapshot].self, bufferingPolicy: .bufferingNewest(1))
        let backend = self
        let task = Task {
            do {
                let address = try KubernetesLeaseAddress(url)
                let client = try backend.pool.client()
                let namespace = try backend.namespace(of: address, in: url)
                var current: [LockURL: LeaseSnapshot] = [:]
                func missing(_ snapshot: LeaseSnapshot) -> LeaseSnapshot {
                    var gone = snapshot
                    gone.state = .missing
                    gone.readAt = .now()
                    return gone
                }
                for try await notification in client.informLeases(namespace: namespace, name: address.name) {
                    let now = MicroTime.now()
                    switch notification {
                    case .snapshot(let leases, _):
                        var next: [LockURL: LeaseSnapshot] = [:]
                        for lease in leases {
                            let snapshot = LeaseSnapshot(lease: lease, readAt: now)
                            next[snapshot.url] = snapshot
                        }
                        // Deleted while the watch was down.
                        for (url, snapshot) in current where next[url] == nil { next[url] = missing(snapshot) }
                        current = next
                    case .event(.added(let lease)), .event(.modified(let lease)):
                        let snapshot = LeaseSnapshot(lease: lease, readAt: now)
                        current[snapshot.url] = snapshot
                    case .event(.deleted(let lease)):
                        let snapshot = LeaseSnapshot(lease: lease, readAt: now)
                        current[snapshot.url] = missing(snapshot)
                    case .event:
                        continue
                    }
                    if current.isEmpty, let name = address.name, let namespace {
                        let url = KubernetesLeaseAddress.url(namespace: namespace, name: name)
                        current[url] = LeaseSnapshot(url: url, name: name, state: .missing, readAt: now, namespace: namespace)
                    }
                    continuation.yield(current.values.sorted(by: Self.inOrder))
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    /// kubectl's order: by namespace, then by name.
    private static func inOrder(_ a: LeaseSnapshot, _ b: LeaseSnapshot) -> Bool {
        (a.namespace ?? "", a.name) < (b.namespace ?? "", b.name)
    }

    // MARK: Errors

    /// What went wrong talking to the API server, by the hint it calls for.
    enum Failure: Equatable, Sendable {
        /// Nothing answered: refused, reset or closed before any response, DNS, connect timeout.
        case unreachable
        /// The TLS handshake failed.
        case tls
        /// The server started answering, then the connection broke off.
        case incompleteResponse
        /// No complete response within the request timeout.
        case timeout
        /// HTTP 401.
        case unauthorized
        /// HTTP 403.
        case forbidden
        /// The server answered with another HTTP status (a 500, a 429, …).
        case status(Int)
        /// The client configuration cannot be used.
        case configuration
        /// Anything else (the message says it).
        case other
    }

    /// The kind of `error` and its message without the parts the caller prints already (the Lease, the
    /// request line, the client's error type). A ``LeaderElectionError`` is classified by the
    /// ``KubernetesError`` behind it when `cause` finds one.
    static func classify(_ error: any Error, cause: (LeaderElectionError) -> KubernetesError? = { _ in nil }) -> (failure: Failure, message: String)? {
        switch error {
        case let error as KubernetesError:
            return (failure(of: error), trimmed(error.message))
        case let error as LeaderElectionError:
            if let underlying = cause(error) { return (failure(of: underlying), trimmed(underlying.message)) }
            let message = trimmed(error.message)
            switch error.code {
            case .unavailable: return (isTLS(message) ? .tls : .unreachable, message)
            case .timeout: return (.timeout, message)
            // KubernetesLock reports 401 and 403 alike; the API server's 403 messages say "forbidden".
            case .unauthorized: return (message.lowercased().contains("forbidden") ? .forbidden : .unauthorized, message)
            default: return (.other, message)
            }
        default:
            return nil
        }
    }

    /// The kind of a ``KubernetesError``, from its typed fields: the HTTP status the server answered, else how
    /// far the connection got.
    static func failure(of error: KubernetesError) -> Failure {
        if let status = error.httpStatus {
            switch status {
            case 401: return .unauthorized
            case 403: return .forbidden
            default: return .status(status)
            }
        }
        switch error.connection {
        case .unreachable?: return .unreachable
        case .tlsHandshake?: return .tls
        case .incompleteResponse?: return .incompleteResponse
        case .noResponseInTime?: return .timeout
        case .clientShutDown?: return .other
        case nil: break
        }
        // An error made without the client's transport details (by hand, or by an older client).
        switch error.code {
        case .timeout: return .timeout
        case .unauthorized: return .unauthorized
        case .forbidden: return .forbidden
        case .invalidConfiguration: return .configuration
        case .unavailable: return isTLS(error.message) ? .tls : .unreachable
        default: return .other
        }
    }

    func describe(_ error: any Error, for url: LockURL) -> String {
        let pool = self.pool
        guard let (failure, message) = Self.classify(error, cause: { pool.kubernetesError(behind: $0) }) else { return LockRegistry.describe(error) }
        let loaded = pool.loaded
        let server = loaded.map { "the Kubernetes API server at \($0.configuration.server)" } ?? "the Kubernetes API server"
        let source = loaded?.source ?? "the kubeconfig"
        let namespace = (try? KubernetesLeaseAddress(url)).flatMap { address -> String? in
            switch address.scope {
            case .namespace(let namespace): namespace
            case .defaultNamespace: loaded?.configuration.namespace
            case .allNamespaces: nil
            }
        }
        switch failure {
        case .unreachable:
            let hint = loaded?.isInCluster == true
                ? "is the API server reachable from this pod?"
                : "is the API server running there? Check --kubeconfig and --context (using \(source)); "
                    + "if it serves TLS, the kubeconfig's certificate-authority must have signed its certificate"
            return "cannot reach \(server): \(message) (\(hint))"
        case .tls:
            return "cannot reach \(server) over TLS: \(message) (check that the certificate-authority of \(source) signed the server's certificate, for the host name in the server URL or tls-server-name)"
        case .incompleteResponse:
            return "\(server) broke off its answer: \(message) (a proxy or load balancer in between, or an overloaded server, may have closed the connection)"
        case .timeout:
            return "\(server) did not answer in time: \(message) (is it overloaded, or unreachable behind a firewall? --request-timeout sets the deadline)"
        case .unauthorized:
            return "\(server) rejected the credentials (HTTP 401): \(message) (the token or client certificate from \(source) is missing, wrong or expired; refresh it, or pick another user with --context or --kubeconfig)"
        case .forbidden:
            let scope = namespace.map { "in namespace \($0)" } ?? "in all namespaces (a ClusterRole)"
            return "\(server) forbids the request (HTTP 403): \(message) (RBAC: the user from \(source) needs get, create and update on leases.coordination.k8s.io \(scope), list and watch for leasectl get, and create on events)"
        case .status(let status) where (500...599).contains(status):
            return "\(server) answered HTTP \(status): \(message) (the API server, or its etcd, failed this request; it is retried)"
        case .status(let status):
            return "\(server) answered HTTP \(status): \(message)"
        case .configuration:
            return "cannot use the Kubernetes client configuration (\(source)): \(message)"
        case .other:
            return message
        }
    }

    private static func isTLS(_ message: String) -> Bool {
        message.contains("TLS") || message.contains("SSL") || message.contains("certificate")
    }

    /// `message` without `leases/NS/NAME: `, `KubernetesError(code, HTTP n): ` and `VERB /path (watch): `
    /// prefixes.
    static func trimmed(_ message: String) -> String {
        var text = Substring(message)
        if text.hasPrefix("leases/"), let colon = text.range(of: ": ") { text = text[colon.upperBound...] }
        if text.hasPrefix("KubernetesError("), let end = text.range(of: "): ") { text = text[end.upperBound...] }
        for verb in ["GET /", "POST /", "PUT /", "DELETE /", "PATCH /"] where text.hasPrefix(verb) {
            if let colon = text.range(of: ": ") { text = text[colon.upperBound...] }
            break
        }
        return String(text)
    }
}

extension LeaseSnapshot {
    /// The snapshot of a Lease as the API server returned it: its record as ``KubernetesLock`` reads it
    /// (corrupt when it names a holder without a positive `leaseDurationSeconds`), its namespace and its
    /// creation time (AGE when the Lease has no `acquireTime`, as node heartbeat leases do).
    init(lease: Lease, readAt: MicroTime) {
        let namespace = lease.metadata.namespace ?? ""
        let name = lease.metadata.name ?? ""
        let version = LockVersion(lease.metadata.resourceVersion ?? "")
        let state: State
        if let record = KubernetesLock.record(lease) {
            state = .record(VersionedRecord(record: record, version: version))
        } else {
            state = .corrupt(
                message: "the Lease names holder \(lease.spec?.holderIdentity ?? "") without a positive leaseDurationSeconds",
                version: version)
        }
        self.init(
            url: KubernetesLeaseAddress.url(namespace: namespace, name: name), name: name, state: state, readAt: readAt,
            namespace: namespace, created: lease.metadata.creationTimestamp.flatMap { MicroTime(rfc3339: $0) })
    }
}

/// A ``KubernetesLock`` that calls itself by its URL (`kubernetes://NAMESPACE/NAME`) in `leasectl`'s messages.
struct KubernetesURLLock: ResourceLock {
    let base: KubernetesLock
    let url: LockURL

    var identity: String { base.identity }
    var description: String { url.description }

    func get() async throws -> VersionedRecord? { try await base.get() }
    func create(_ record: LeaderElectionRecord) async throws -> LockVersion { try await base.create(record) }
    func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion {
        try await base.update(record, expecting: version)
    }
    func recordEvent(_ event: LockEvent) async { await base.recordEvent(event) }
    func changes() -> AsyncStream<Void>? { base.changes() }
    /// The Lease's informer with each renewal's record (followers need not re-read): without it, the
    /// protocol's default would turn every notification into a read.
    func recordChanges() -> AsyncStream<LockChange>? { base.recordChanges() }
}
