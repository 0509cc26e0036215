import Kubernetes
import LeaderElection
import Logging
import Synchronization

/// A ``ResourceLock`` over a `coordination.k8s.io/v1` Lease: client-go's `LeaseLock`, so a Swift service
/// and a Go service (or anything else using client-go's record) can contend for one Lease safely.
///
/// The record maps to the Lease spec exactly as client-go maps it (`LeaderElectionRecordToLeaseSpec`):
/// `holderIdentity` is always written (also `""` on release), `leaseDurationSeconds` is an int32 of whole
/// seconds, `acquireTime`/`renewTime` are MicroTimes (`2006-01-02T15:04:05.000000Z`), `leaseTransitions`
/// is an int32, and `strategy`/`preferredHolder` are written only when set. The version token is the
/// Lease's `metadata.resourceVersion`.
///
/// - ``create(_:)`` is a POST (409 `AlreadyExists` → ``LeaderElectionError/Code/alreadyExists``).
/// - ``update(_:expecting:)`` is one PUT carrying `resourceVersion` = the expected version and the Lease's
///   `uid` as a precondition, built from the Lease this lock last read (client-go PUTs its cached object
///   the same way), so a renewal is one round trip. The `uid` keeps the PUT from re-creating a Lease that
///   was deleted meanwhile (the API server creates objects on PUT otherwise). Only when this lock has not
///   read the Lease at that version does it read it first.
/// - ``changes()`` lists and watches the Lease (resuming after a dropped stream, relisting after 410 Gone).
/// - ``recordEvent(_:)`` creates a `v1` Event like client-go's recorder (type `Normal`, reason
///   `LeaderElection`, involvedObject = the Lease). Failures to record are logged, never thrown.
///
/// Lease durations must be whole seconds of at least 1 s (the field is `leaseDurationSeconds`); other
/// durations are rejected with ``LeaderElectionError/Code/invalidConfiguration`` — see
/// ``validate(_:)``.
///
/// A Lease whose spec names a holder but has no positive `leaseDurationSeconds` cannot be honoured; ``get()``
/// reports it as ``LeaderElectionError/Code/corruptRecord`` with its resourceVersion, and the elector may
/// replace it by compare-and-swap. A Lease with no holder is a free lock whatever else it says.
public final class KubernetesLock: ResourceLock {
    /// Where the lock lives and what it adds to the Lease.
    public struct Configuration: Sendable {
        /// The Lease's namespace. Default `default`.
        public var namespace: String
        /// The Lease's name.
        public var name: String
        /// Labels merged onto the Lease on every write (client-go's `NewWithLabels`).
        public var labels: [String: String]
        /// Whether ``recordEvent(_:)`` creates Events. Default `true`.
        public var recordsEvents: Bool
        /// The `source.component` / `reportingComponent` of Events. Default `swift-leader-election`.
        public var eventComponent: String
        /// Owner references added to the Lease's `metadata.ownerReferences` on every write where missing
        /// (matched by `uid`), as the kubelet points its node lease at its `Node` so that the Lease is
        /// garbage-collected with it. References already on the Lease are kept. Default none.
        public var ownerReferences: [OwnerReference]

        /// Creates a configuration.
        public init(
            name: String,
            namespace: String = "default",
            labels: [String: String] = [:],
            recordsEvents: Bool = true,
            eventComponent: String = "swift-leader-election",
            ownerReferences: [OwnerReference] = []
        ) {
            self.name = name
            self.namespace = namespace
            self.labels = labels
            self.recordsEvents = recordsEvents
            self.eventComponent = eventComponent
            self.ownerReferences = ownerReferences
        }
    }

    /// The identity this lock writes as holder.
    public let identity: String
    /// Where the lock lives.
    public let configuration: Configuration
    private let client: KubernetesClient
    private let logger: Logger
    /// The Lease as last read or written by this lock (client-go's `ll.lease`).
    private let cached = Mutex<Lease?>(nil)

    /// Creates a lock on `namespace/name` writing as `identity`.
    /// - Throws: ``LeaderElectionError/Code/invalidConfiguration`` for an empty identity or name.
    public init(client: KubernetesClient, configuration: Configuration, identity: String, logger: Logger = Logger(label: "leader-election.kubernetes")) throws {
        guard !identity.isEmpty else { throw LeaderElectionError.invalidConfiguration("KubernetesLock: identity must not be empty") }
        guard !configuration.name.isEmpty, !configuration.namespace.isEmpty else {
            throw LeaderElectionError.invalidConfiguration("KubernetesLock: namespace and name must not be empty")
        }
        self.client = client
        self.configuration = configuration
        self.identity = identity
        var logger = logger
        logger[metadataKey: "lock.namespace"] = .string(configuration.namespace)
        logger[metadataKey: "lock.name"] = .string(configuration.name)
        self.logger = logger
    }

    /// `leases/<namespace>/<name>`.
    public var description: String { "leases/\(configuration.namespace)/\(configuration.name)" }

    /// Checks that an elector configuration can be stored in a Lease: the lease duration must be whole
    /// seconds and at least 1 s.
    /// - Throws: ``LeaderElectionError/Code/invalidConfiguration`` naming the value.
    public static func validate(_ configuration: LeaderElectionConfiguration) throws {
        _ = try leaseDurationSeconds(configuration.leaseDuration)
    }

    // MARK: ResourceLock

    public func get() async throws -> VersionedRecord? {
        let lease: Lease
        do {
            lease = try await mapErrors { try await self.client.getLease(namespace: self.configuration.namespace, name: self.configuration.name) }
        } catch let error as LeaderElectionError where error.code == .notFound {
            cached.withLock { $0 = nil }
            return nil
        }
        cached.withLock { $0 = lease }
        return try versionedRecord(lease)
    }

    public func create(_ record: LeaderElectionRecord) async throws -> LockVersion {
        var lease = Lease(metadata: ObjectMeta(name: configuration.name, namespace: configuration.namespace))
        lease.spec = try Self.spec(record)
        mergeLabels(into: &lease)
        let created = try await mapErrors { try await self.client.createLease(lease, namespace: self.configuration.namespace) }
        cached.withLock { $0 = created }
        return try version(of: created)
    }

    public func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion {
        let spec = try Self.spec(record)
        var lease: Lease
        if let base = cached.withLock({ $0 }), base.metadata.resourceVersion == version.rawValue, base.metadata.uid != nil {
            lease = base
        } else {
            // Not read at this version by this lock: read it (never on the elector's fast path).
            let currentVersion: LockVersion
            do {
                guard let current = try await get() else { throw LeaderElectionError.notFound("\(description) does not exist") }
                currentVersion = current.version
            } catch let error as LeaderElectionError where error.code == .corruptRecord && error.version != nil {
                currentVersion = error.version!   // an unusable Lease may be replaced by compare-and-swap too
            }
            guard currentVersion == version else {
                throw LeaderElectionError.conflict("\(description) is at resourceVersion \(currentVersion), not \(version)", current: currentVersion)
            }
            guard let base = cached.withLock({ $0 }) else { throw LeaderElectionError.notFound("\(description) does not exist") }
            lease = base
        }
        lease.spec = spec
        lease.metadata.resourceVersion = version.rawValue
        mergeLabels(into: &lease)
        do {
            let replaced = try await mapErrors { try await self.client.replaceLease(lease, namespace: self.configuration.namespace) }
            cached.withLock { $0 = replaced }
            return try self.version(of: replaced)
        } catch let error as LeaderElectionError where error.code == .conflict && error.message.contains("Precondition failed") {
            // The uid precondition failed: the Lease was deleted (or deleted and re-created) meanwhile. Find
            // out which, so that a missing Lease is reported as notFound, as the contract requires.
            guard let current = try await get() else {
                throw LeaderElectionError.notFound("\(description) was deleted")
            }
            throw LeaderElectionError.conflict(error.message, current: current.version)
        }
    }

    public func recordEvent(_ event: LockEvent) async {
        guard configuration.recordsEvents, let lease = cached.withLock({ $0 }) else { return }
        do {
            try await client.recordLeaderElectionEvent(
                lease: lease, message: event.message, component: configuration.eventComponent, instance: identity)
        } catch {
            logger.debug("could not record event", metadata: ["event.message": .string(event.message), "error": .string("\(error)")])
        }
    }

    public func changes() -> AsyncStream<Void>? {
        coalescedSignals(client.informLeases(namespace: configuration.namespace, name: configuration.name), logger: logger)
    }

    /// The informer on the Lease, reporting each modified Lease's record and `resourceVersion` (no re-read
    /// needed), deletions, and ``LockChange/unknown`` after every (re)list or for a Lease that does not map.
    public func recordChanges() -> AsyncStream<LockChange>? {
        let (stream, continuation) = AsyncStream.makeStream(of: LockChange.self, bufferingPolicy: .bufferingNewest(1))
        let notifications = client.informLeases(namespace: configuration.namespace, name: configuration.name)
        let logger = self.logger
        let task = Task {
            do {
                for try await notification in notifications {
                    switch notification {
                    case .snapshot:
                        continuation.yield(.unknown)
                    case .event(.deleted):
                        continuation.yield(.deleted)
                    case .event(.added(let lease)), .event(.modified(let lease)):
                        if let read = try? versionedRecord(lease) { continuation.yield(.stored(read)) } else { continuation.yield(.unknown) }
                    case .event:
                        continuation.yield(.unknown)
                    }
                }
            } catch {
                logger.debug("lease watch ended", metadata: ["error": .string("\(error)")])
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    // MARK: Mapping (client-go's LeaderElectionRecordToLeaseSpec and LeaseSpecToLeaderElectionRecord)

    /// The Lease spec for `record`, as client-go writes it.
    /// - Throws: ``LeaderElectionError/Code/invalidConfiguration`` when the duration is not whole seconds ≥ 1 s
    ///   or `leaseTransitions` does not fit an int32.
    public static func spec(_ record: LeaderElectionRecord) throws -> LeaseSpec {
        guard let transitions = Int32(exactly: record.leaseTransitions), transitions >= 0 else {
            throw LeaderElectionError.invalidConfiguration("leaseTransitions \(record.leaseTransitions) does not fit a Lease's int32 leaseTransitions")
        }
        return LeaseSpec(
            holderIdentity: record.holderIdentity,
            leaseDurationSeconds: try leaseDurationSeconds(record.leaseDuration),
            acquireTime: record.acquireTime,
            renewTime: record.renewTime,
            leaseTransitions: transitions,
            strategy: record.strategy.flatMap { $0.isEmpty ? nil : $0 },
            preferredHolder: record.preferredHolder.flatMap { $0.isEmpty ? nil : $0 })
    }

    /// The record stored in `spec`, or `nil` when the spec names a holder without a positive duration.
    public static func record(_ spec: LeaseSpec?) -> LeaderElectionRecord? {
        let holder = spec?.holderIdentity ?? ""
        let seconds = spec?.leaseDurationSeconds ?? 0
        if !holder.isEmpty && seconds <= 0 { return nil }
        return LeaderElectionRecord(
            holderIdentity: holder,
            leaseDuration: .seconds(Int64(max(seconds, 0))),
            acquireTime: spec?.acquireTime,
            renewTime: spec?.renewTime,
            leaseTransitions: Int(spec?.leaseTransitions ?? 0),
            strategy: spec?.strategy,
            preferredHolder: spec?.preferredHolder)
    }

    private static func leaseDurationSeconds(_ duration: Duration) throws -> Int32 {
        let (seconds, attoseconds) = duration.components
        guard attoseconds == 0, seconds >= 1, let value = Int32(exactly: seconds) else {
            throw LeaderElectionError.invalidConfiguration(
                "a Kubernetes Lease stores leaseDurationSeconds as whole seconds ≥ 1; \(duration) cannot be stored")
        }
        return value
    }

    private func versionedRecord(_ lease: Lease) throws -> VersionedRecord {
        let version = try version(of: lease)
        guard let record = Self.record(lease.spec) else {
            throw LeaderElectionError.corruptRecord(
                "\(description) names holder \(lease.spec?.holderIdentity ?? "") without a positive leaseDurationSeconds",
                version: version)
        }
        return VersionedRecord(record: record, version: version)
    }

    private func version(of lease: Lease) throws -> LockVersion {
        guard let rv = lease.metadata.resourceVersion, !rv.isEmpty else {
            throw LeaderElectionError.unavailable("\(description): the API server returned a Lease without metadata.resourceVersion")
        }
        return LockVersion(rv)
    }

    /// Merges the configured labels and owner references into `lease` (called before every write).
    private func mergeLabels(into lease: inout Lease) {
        if !configuration.labels.isEmpty {
            lease.metadata.labels = (lease.metadata.labels ?? [:]).merging(configuration.labels) { _, ours in ours }
        }
        let present = Set((lease.metadata.ownerReferences ?? []).map(\.uid))
        let missing = configuration.ownerReferences.filter { !present.contains($0.uid) }
        if !missing.isEmpty { lease.metadata.ownerReferences = (lease.metadata.ownerReferences ?? []) + missing }
    }

    private func mapErrors<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as KubernetesError {
            switch error.code {
            case .notFound: throw LeaderElectionError.notFound("\(description): \(error.message)")
            case .alreadyExists: throw LeaderElectionError.alreadyExists("\(description): \(error.message)")
            case .conflict: throw LeaderElectionError.conflict("\(description): \(error.message)")
            case .unauthorized, .forbidden: throw LeaderElectionError.unauthorized("\(description): \(error.message)")
            case .invalid, .badRequest, .invalidConfiguration:
                throw LeaderElectionError.invalidConfiguration("\(description): the API server rejected the request: \(error.message)")
            case .timeout: throw LeaderElectionError.timeout("\(description): \(error.message)")
            default: throw LeaderElectionError.unavailable("\(description): \(error)")
            }
        }
    }
}

/// One `Void` per informer notification, the newest kept when the reader is behind; ends when the informer ends
/// (logged at debug level), and cancelling the reader stops the informer.
func coalescedSignals(_ notifications: AsyncThrowingStream<LeaseNotification, any Error>, logger: Logger) -> AsyncStream<Void> {
    let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    let task = Task {
        do {
            for try await _ in notifications { continuation.yield() }
        } catch {
            logger.debug("lease watch ended", metadata: ["error": .string("\(error)")])
        }
        continuation.finish()
    }
    continuation.onTermination = { _ in task.cancel() }
    return stream
}
