import Etcd
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// The part of the Kubernetes API that lease clients use — Leases, Events (core and `events.k8s.io`),
/// Namespaces, ServiceAccounts with TokenRequest, Roles and RoleBindings — served over
/// HTTP(S) from etcd, answering as kube-apiserver does.
///
/// Built for tests and development: a real endpoint for `KubernetesLock`, client-go-style lease clients and
/// `kubectl`, without a cluster. Objects are stored in etcd exactly where
/// kube-apiserver keeps them (`<prefix>/leases/<namespace>/<name>`, `<prefix>/events/<namespace>/<name>`,
/// `<prefix>/namespaces/<name>`), as JSON without `metadata.resourceVersion`; every read reports the key's
/// etcd `mod_revision` as the resourceVersion, and a list reports the revision it was read at.
///
/// ```swift
/// let etcd = try EtcdClient(configuration: .init(endpoints: ["127.0.0.1:2379"]))
/// let server = try await LeaseAPIServer.start(
///     configuration: .init(tls: .init(certificateChainFile: "server.crt", privateKeyFile: "server.key"),
///                          bearerTokens: ["secret"]),
///     etcd: etcd, logger: logger)
/// print(server.baseURL)            // https://127.0.0.1:PORT
/// …
/// await server.shutdown()          // the etcd client stays open: it is the caller's
/// ```
///
/// ## Routes
///
/// | path | methods |
/// |---|---|
/// | `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases` | GET (list, `?watch=true`), POST, DELETE (collection) |
/// | `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}` | GET, PUT (creates a missing lease), PATCH, DELETE |
/// | `/apis/coordination.k8s.io/v1/leases` | GET (cluster-wide list, `?watch=true`) |
/// | `/api/v1/namespaces/{ns}/events` | GET (list, `?watch=true`), POST (`metadata.generateName` supported), DELETE (collection) |
/// | `/api/v1/namespaces/{ns}/events/{name}` | GET, PUT, PATCH, DELETE |
/// | `/api/v1/events` | GET (cluster-wide list, `?watch=true`) |
/// | `/apis/events.k8s.io/v1/namespaces/{ns}/events[/{name}]` | as core events: the same Events, converted (`regarding`, `note`, `reportingController`, `deprecated*`) |
/// | `/api/v1/namespaces` | GET (list, `?watch=true`), POST |
/// | `/api/v1/namespaces/{name}` | GET, DELETE (also deletes the namespace's leases, events, ServiceAccounts, Roles and RoleBindings) |
/// | `/api/v1/namespaces/{ns}/serviceaccounts[/{name}]` | as events (DELETE answers the deleted ServiceAccount) |
/// | `/api/v1/namespaces/{ns}/serviceaccounts/{name}/token` | POST: a TokenRequest (`spec.expirationSeconds`, at least 600, default 3600) |
/// | `/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles[/{name}]`, `…/rolebindings[/{name}]` | as events |
/// | `/healthz`, `/livez` | GET: `ok` |
/// | `/readyz` | GET: `ok` when etcd answers, else 500 |
/// | `/version`, `/api`, `/apis`, `/api/v1`, `/apis/coordination.k8s.io`, `/apis/coordination.k8s.io/v1` | GET: version and discovery documents |
///
/// Lists take `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, comma = AND),
/// `fieldSelector` (`metadata.name`, `metadata.namespace`; events also `involvedObject.*`, `reason`, `type`,
/// `source`, `reportingComponent`; namespaces `status.phase`), `limit`, `continue`, `resourceVersion` and
/// `resourceVersionMatch`. Watches take `resourceVersion` (absent or `0`: an `ADDED` event for every current
/// object first), `timeoutSeconds`, `allowWatchBookmarks` and the same selectors, and stream one
/// `{"type":…,"object":…}` JSON line per event; a compacted resourceVersion ends the stream with an `ERROR`
/// event carrying a 410 `Expired` Status.
///
/// ## As kube-apiserver v1.26 answers
///
/// `FidelityTests` replays recorded exchanges with a real kube-apiserver v1.26.1 and checks these:
///
/// - **Decoding** as Go does: a MicroTime takes exactly six fractional digits, an int32 only integers in
///   range (`15.0` is an error), string fields only strings, each with Go's error text; JSON `null` and a
///   body without `metadata` decode as empty; JSON (with any charset) or YAML bodies, anything else 415.
/// - **`fieldValidation`** (Warn by default: one `Warning: 299` header per unknown or duplicated field, in
///   body order, the last duplicate winning; `Strict`: 400; `Ignore`: silent; anything else: 422). Under
///   ``Generation/v1_26`` `spec.preferredHolder` and `spec.strategy` are such unknown fields, dropped and
///   never stored; under ``Generation/v1_31CoordinatedLeaderElection`` they are stored and validated.
/// - **`managedFields`** for `Update` operations: the manager is `fieldManager` or the User-Agent up to its
///   first `/`; it owns the fields it changed. **A no-op update is not a write**: the stored object comes
///   back with the same resourceVersion and no watch event.
/// - **Namespaces are enforced** (`NamespaceLifecycle`): creating in a missing namespace is 404
///   `namespaces "x" not found`. `default`, `kube-system`, `kube-public` and `kube-node-lease` exist from the
///   start; `default`, `kube-system` and `kube-public` cannot be deleted (403).
/// - **DELETE** with `DeleteOptions` (preconditions, `propagationPolicy` `Foreground`/`Orphan` marking the
///   object with a finalizer and `deletionTimestamp` until a PUT removes the finalizers, `dryRun=All`), and
///   DELETE on a collection answering the list of deleted objects.
/// - **Lists** by resourceVersion: `Exact`, or a resourceVersion with `limit`, read etcd at that revision
///   (410 when compacted); `NotOlderThan`, `0` or none read the newest state (`0` ignores `limit`); a
///   resourceVersion from the future waits 3 s (on ``Configuration/clock``), then 504; an expired continue token is 410 offering an
///   inconsistent token that continues at the newest revision.
/// - **Watches** end at `timeoutSeconds` and send a `BOOKMARK` 2 s before it when `allowWatchBookmarks` is set (both
///   on ``Configuration/clock``); `DELETED`
///   carries the object's last state at the deletion's revision. A watch from a revision etcd has compacted
///   is replayed from the changes kept since start (kube's watch cache); older than those, it gets one
///   `ERROR` line with a 410 `Expired` Status.
/// - **Content negotiation**: `Accept` `as=Table` (Leases: Name, Holder, Age, as `kubectl get leases`
///   shows; `includeObject`), `as=PartialObjectMetadata(List)`, `application/yaml`; anything else 406.
///   HEAD and OPTIONS are 405.
/// - **Authentication**: a wrong bearer token is 401; no token (or an empty one) is `system:anonymous`,
///   which may read `/healthz`, `/livez`, `/readyz` and `/version` and gets RBAC's 403 everywhere else. A
///   TokenRequest token authenticates as `system:serviceaccount:{ns}:{name}` (groups `system:serviceaccounts`,
///   `system:serviceaccounts:{ns}`, `system:authenticated`) while its ServiceAccount exists with the uid it was
///   issued for; a successful authentication is reused for 10 s, as kube's token cache does, so a deleted
///   ServiceAccount's token keeps working up to 10 s (on ``Configuration/clock``).
/// - **Authorization (RBAC)**: the configured static tokens are cluster-admin (as `system:masters`). A
///   ServiceAccount may GET discovery and health paths, and otherwise only what a Role bound to it in the
///   request's namespace grants: rules match `apiGroups`, `resources` (`resource/subresource`, `*`,
///   `*/subresource`), `verbs` (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
///   `deletecollection`, `*`) and `resourceNames`; subjects are ServiceAccounts (namespace defaulting to the
///   binding's), Users and Groups. Anything else is RBAC's 403 (`leases.coordination.k8s.io "x" is forbidden:
///   User "system:serviceaccount:ns:sa" cannot get resource "leases" in API group "coordination.k8s.io" in
///   the namespace "ns"`).
/// - **Events** through both APIs, from one store (`<prefix>/events/<ns>/<name>`, core `v1` JSON, as kube keeps
///   them): an Event written through one API reads through the other with its fields converted
///   (`regarding` ↔ `involvedObject`, `note` ↔ `message`, `reportingController` ↔ `reportingComponent`,
///   `deprecatedSource`/`deprecatedFirstTimestamp`/`deprecatedLastTimestamp`/`deprecatedCount` ↔
///   `source`/`firstTimestamp`/`lastTimestamp`/`count`); `action`, `related` and `series` are kept.
/// - **Validation**: names, labels, annotations, the Lease spec rules, core/v1 Event rules (the namespace
///   of `involvedObject`; with `eventTime`, the reporting fields, `action` and `reason`), `events.k8s.io/v1`
///   rules (`eventTime`, the reporting fields, `action`, `reason`, `type` Normal or Warning, the deprecated
///   fields unset, a series of at least 2, every field but the series immutable), `metadata.uid`
///   immutability, the namespace in the body; `creationTimestamp`, `generation` and the deletion fields sent on an update keep
///   their stored values.
///
/// Errors are `meta/v1 Status` objects with kube-apiserver's codes, reasons and messages; etcd failures
/// become 503 `ServiceUnavailable` (etcd unreachable) or 500 `InternalError` (anything else, including a
/// stored value that cannot be decoded), and the server keeps serving.
///
/// ## Deviations from kube-apiserver
///
/// Each one that the recordings show is a named exception in `FidelityTests` (scenario, steps, reason):
///
/// - **Authorization (stricter than kube or absent by choice)**: there are no ClusterRoles or
///   ClusterRoleBindings (a RoleBinding to a ClusterRole grants nothing), and no default grants beyond
///   discovery. Writing a Role needs `escalate` on roles and writing a RoleBinding `bind` on roles, even when
///   the writer already holds every permission it grants (kube's escalation check allows that). `roleRef` is
///   not checked for immutability on update. Without tokens configured, authentication and authorization are
///   off.
/// - **Tokens** are opaque (`<id>.<secret>`), not signed JWTs: the server keeps a record of each in etcd
///   (`<prefix>/serviceaccounttokens/<id>`, on an etcd lease that ends a minute after the token expires), so
///   every server on the same etcd accepts them. `audiences` and `boundObjectRef` are echoed, not enforced.
/// - **Watches**: the history that stands in for kube's watch cache (the last 10 000 changes since start,
///   replayed to a watch from a compacted revision) serves only watches, not lists; there is no default
///   watch timeout (kube closes watches after 30–60 minutes) and no bookmark without `timeoutSeconds`.
/// - **Events**: no one-hour TTL. Through `events.k8s.io/v1`, field selectors take only `metadata.name` and
///   `metadata.namespace`, and an update must pass the create rules too (`eventTime` required, the deprecated
///   fields unset) besides kube's immutability rules, so updating a core-style Event through it is refused.
/// - **No protobuf** (recording 14, steps 2–3): an `Accept` of only protobuf is 406; a protobuf body is 415.
/// - **PATCH**: strategic merge patch merges as a JSON merge patch does (the types served have no lists with
///   merge keys); server-side apply (`application/apply-patch+yaml`) is 415. A Table is produced for Leases
///   only; other resources answer their JSON. YAML bodies are read as block mappings of scalars only.
/// - **Namespace deletion is immediate**: the namespace, its leases and its events are removed in one etcd
///   transaction; the response is the namespace in phase `Terminating` (as kube answers), but it is gone at
///   once instead of after the namespace controller's finalization.
public final class LeaseAPIServer: Sendable {
    /// The kube-apiserver generation the server answers as. The Lease API differs between them in the
    /// gated `spec.preferredHolder` and `spec.strategy` fields.
    public enum Generation: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// Kubernetes 1.26 (and every version up to 1.30, and 1.31+ without the `CoordinatedLeaderElection`
        /// feature gate): `spec.preferredHolder` and `spec.strategy` are unknown fields, dropped on every write
        /// with a `Warning: 299` header (400 under `fieldValidation=Strict`).
        case v1_26 = "1.26"
        /// Kubernetes 1.31+ with the `CoordinatedLeaderElection` feature gate on: `spec.preferredHolder` and
        /// `spec.strategy` are stored and returned.
        case v1_31CoordinatedLeaderElection = "1.31+CoordinatedLeaderElection"

        public var description: String { rawValue }
    }

    /// How the server listens and authenticates, and where it keeps objects in etcd.
    public struct Configuration: Sendable {
        /// The address to bind. Default `127.0.0.1`.
        public var host: String
        /// The port to bind; `0` picks a free port (read it from ``LeaseAPIServer/port``). Default `0`.
        public var port: Int
        /// Serve HTTPS with this certificate, or plain HTTP when `nil`. Default `nil`.
        public var tls: TLS?
        /// The bearer tokens accepted in `Authorization: Bearer <token>`; empty disables authentication.
        public var bearerTokens: Set<String>
        /// The etcd key prefix (kube-apiserver's `--etcd-prefix`). Default `/registry`.
        public var etcdPrefix: String
        /// Which kube-apiserver generation to answer as. Default ``Generation/v1_26``.
        public var generation: Generation
        /// The clock on which time decides what the server answers: it times a watch's `timeoutSeconds` and the
        /// `BOOKMARK` sent 2 s before it, the 3 s wait for a resourceVersion from the future before the 504
        /// `Too large resource version`, and the age of cached ServiceAccount-token authentications (kube
        /// reuses a successful one for 10 s, so a deleted ServiceAccount's token keeps working that long).
        /// Retry pauses while etcd is unreachable are not on it: they change when an answer comes, never which.
        /// Default `ContinuousClock()`; inject a `ManualClock` in tests so that no outcome depends on how fast
        /// the machine runs.
        public var clock: any Clock<Duration>

        /// The server certificate, as PEM files.
        public struct TLS: Sendable, Hashable {
            /// The certificate chain (leaf first), PEM.
            public var certificateChainFile: String
            /// The leaf certificate's private key, PEM.
            public var privateKeyFile: String

            /// Creates TLS settings.
            public init(certificateChainFile: String, privateKeyFile: String) {
                self.certificateChainFile = certificateChainFile
                self.privateKeyFile = privateKeyFile
            }
        }

        /// Creates a configuration.
        public init(
            host: String = "127.0.0.1",
            port: Int = 0,
            tls: TLS? = nil,
            bearerTokens: Set<String> = [],
            etcdPrefix: String = "/registry",
            generation: Generation = .v1_26,
            clock: any Clock<Duration> = ContinuousClock()
        ) {
            self.clock = clock
            self.host = host
            self.port = port
            self.tls = tls
            self.bearerTokens = bearerTokens
            self.etcdPrefix = etcdPrefix
            self.generation = generation
        }
    }

    /// The port the server listens on.
    public let port: Int
    /// `https://HOST:PORT` (or `http://…` without TLS); IPv6 hosts in brackets.
    public let baseURL: String
    /// The configuration the server was started with.
    public let configuration: Configuration

    private let serverChannel: any Channel
    private let connections: ConnectionRegistry
    private let runTask: Mutex<Task<Void, Never>?>
    private let backgroundTasks: Mutex<[Task<Void, Never>]>
    private let api: APIHandler
    private let logger: Logger

    /// How many watch streams are open right now.
    public var activeWatchCount: Int { api.watches.count }

    /// How many requests the server has answered since it started, by HTTP method (`GET`, `POST`, `PUT`,
    /// `DELETE`, …), with watch requests counted as `WATCH`. Benchmarks use it to count store round trips.
    public var requestCounts: [String: Int] { api.requestCounts.withLock { $0 } }

    /// ``requestCounts`` for the requests whose path names `namespace` (`…/namespaces/<namespace>/…`), so that a
    /// test can count its own requests while others use the same server.
    public func requestCounts(inNamespace namespace: String) -> [String: Int] {
        api.namespaceRequestCounts.withLock { $0[namespace] ?? [:] }
    }

    private init(
        port: Int, baseURL: String, configuration: Configuration, serverChannel: any Channel,
        connections: ConnectionRegistry, api: APIHandler, logger: Logger
    ) {
        self.port = port
        self.baseURL = baseURL
        self.configuration = configuration
        self.serverChannel = serverChannel
        self.connections = connections
        self.api = api
        self.logger = logger
        self.runTask = Mutex(nil)
        self.backgroundTasks = Mutex([])
    }

    /// Starts listening and returns once the listening socket is bound.
    ///
    /// etcd is not contacted here: while it is unreachable, requests get 503 `ServiceUnavailable`.
    ///
    /// - Parameters:
    ///   - configuration: where to listen, TLS, tokens, etcd prefix.
    ///   - etcd: the etcd client to store objects with; the server never closes it.
    ///   - logger: where requests (debug; 5xx at info) and lifecycle events are logged; discarded by default.
    /// - Throws: ``LeaseAPIServerError`` when the TLS files cannot be loaded or the address cannot be bound.
    public static func start(
        configuration: Configuration,
        etcd: EtcdClient,
        logger: Logger = Logger(label: "lease-apiserver", factory: { _ in SwiftLogNoOpLogHandler() })
    ) async throws -> LeaseAPIServer {
        let sslContext: NIOSSLContext?
        if let tls = configuration.tls {
            sslContext = try makeSSLContext(tls)
        } else {
            sslContext = nil
        }
        var prefix = configuration.etcdPrefix
        while prefix.hasSuffix("/") { prefix.removeLast() }
        let api = APIHandler(
            store: Store(etcd: etcd, prefix: prefix), tokens: configuration.bearerTokens,
            generation: configuration.generation, clock: configuration.clock, logger: logger)
        let connections = ConnectionRegistry()

        let serverChannel: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
        do {
            serverChannel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .bind(host: configuration.host, port: configuration.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let sslContext {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                        }
                        // Without pipelining assistance: it stops reading while a response is in flight, so a
                        // client leaving a watch (a TLS close_notify) would go unnoticed. Requests are served
                        // strictly one after the other by the connection's task anyway.
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                            withPipeliningAssistance: false, withErrorHandling: true)
                        return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(
                            wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw LeaseAPIServerError("cannot listen on \(configuration.host):\(configuration.port): \(error)")
        }
        guard let port = serverChannel.channel.localAddress?.port else {
            try? await serverChannel.channel.close()
            throw LeaseAPIServerError("cannot determine the port bound on \(configuration.host)")
        }
        let scheme = sslContext == nil ? "http" : "https"
        let host = configuration.host.contains(":") ? "[\(configuration.host)]" : configuration.host
        let baseURL = "\(scheme)://\(host):\(port)"
        let server = LeaseAPIServer(
            port: port, baseURL: baseURL, configuration: configuration, serverChannel: serverChannel.channel,
            connections: connections, api: api, logger: logger)

        let connectionLogger = logger
        let task = Task {
            await withDiscardingTaskGroup { group in
                do {
                    try await serverChannel.executeThenClose { inbound in
                        for try await connection in inbound {
                            group.addTask {
                                await HTTPConnection(
                                    channel: connection, api: api, registry: connections, logger: connectionLogger
                                ).run()
                            }
                        }
                    }
                } catch {
                    connectionLogger.debug("listener stopped", metadata: ["error.message": "\(error)"])
                }
            }
        }
        server.runTask.withLock { $0 = task }
        let historyLogger = logger
        server.backgroundTasks.withLock {
            $0.append(Task {
                // The watch cache starts after the bootstrap writes, as kube-apiserver's does.
                guard let bootstrapped = await api.ensureSystemNamespaces() else { return }
                await api.history.record(store: api.store, after: bootstrapped, logger: historyLogger)
            })
        }
        logger.info("lease-apiserver listening", metadata: ["http.url": "\(baseURL)", "etcd.prefix": "\(prefix)"])
        return server
    }

    /// Stops listening, closes every connection (ending open watch streams) and waits until every request
    /// handler has finished. The etcd client is left open. Idempotent.
    public func shutdown() async {
        connections.beginShutdown()
        try? await serverChannel.close()
        connections.closeAll()
        let task = runTask.withLock { $0 }
        // Requests still waiting for etcd are cancelled rather than awaited.
        task?.cancel()
        let tasks = backgroundTasks.withLock { tasks in
            defer { tasks = [] }
            return tasks
        }
        for task in tasks { task.cancel() }
        await task?.value
        for task in tasks { await task.value }
        logger.info("lease-apiserver stopped", metadata: ["http.url": "\(baseURL)"])
    }

    private static func makeSSLContext(_ tls: Configuration.TLS) throws -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(tls.certificateChainFile)
        } catch {
            throw LeaseAPIServerError("cannot load the TLS certificate chain \(tls.certificateChainFile): \(error)")
        }
        guard !chain.isEmpty else {
            throw LeaseAPIServerError("the TLS certificate file \(tls.certificateChainFile) holds no certificate")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: tls.privateKeyFile, format: .pem)
        } catch {
            throw LeaseAPIServerError("cannot load the TLS private key \(tls.privateKeyFile): \(error)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.applicationProtocols = ["http/1.1"]
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw LeaseAPIServerError(
                "cannot use the TLS certificate \(tls.certificateChainFile) with the key \(tls.privateKeyFile): \(error)")
        }
    }
}

/// An error starting ``LeaseAPIServer``: unusable TLS files, an address that cannot be bound.
public struct LeaseAPIServerError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public var message: String

    /// Creates an error.
    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
