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
/// ## Kubernetes versions and hand-off
///
/// Every Kubernetes version with `coordination.k8s.io/v1` (1.14 and later) is supported. Election needs only
/// the fields every version stores. The hand-off fields (`strategy`, `preferredHolder`, written by
/// ``requestHandoff(on:to:maxAttempts:)`` and kept by a release) are carried where the server keeps them:
///
/// - **Kubernetes 1.31+ with the `CoordinatedLeaderElection` feature gate**: in `spec.strategy` and
///   `spec.preferredHolder`, as client-go and the kube-controller-manager read them.
/// - **Every other version** (1.30 and earlier, and 1.31+ without the gate, which is off by default): the
///   server does not know those fields and drops them from every write (answering `200` with a
///   `Warning: 299 - "unknown field \"spec.preferredHolder\""` header, and the same `resourceVersion` when
///   nothing else changed). There they are carried in two Lease annotations, which every server keeps:
///   ``preferredHolderAnnotation`` (`leader-election.swift-server.dev/preferred-holder`) and
///   ``strategyAnnotation`` (`leader-election.swift-server.dev/strategy`), with ``handoffTermAnnotation``
///   (`leader-election.swift-server.dev/handoff-term`) naming the `leaseTransitions` they were written in.
///
/// The lock finds out from the server's own answer, never from a version number. Until it knows, a write
/// that carries the hand-off fields puts them in the spec **and** in the annotations, so that nothing is lost
/// even for a moment on a server that drops them. If the answer comes back without the spec fields (or with
/// an `unknown field` warning for them), the lock remembers that this server drops them and writes only the
/// annotations from then on (should the answer lack the annotations too, it re-writes the record by
/// compare-and-swap on the version the server returned); if the answer keeps them, it writes only the spec
/// fields from then on and removes the annotations. Reads (``get()``, ``recordChanges()``, and
/// `KubernetesLock.record(_:)` for listings) take each field from the spec, or from its annotation when
/// the spec has none and the Lease is still in the term the annotations name. Every write removes the
/// annotations of fields it leaves unset, so a cleared hand-off stays cleared. Candidates that know nothing of
/// the annotations (client-go, other libraries) contend for the Lease as usual and keep the annotations when
/// they renew (client-go PUTs the object it read); they merely do not see a hand-off request, and when one of
/// them takes the Lease over (a new term), the annotated hand-off no longer applies.
///
/// - ``create(_:)`` is a POST (409 `AlreadyExists` → ``LeaderElectionError/Code/alreadyExists``).
/// - ``update(_:expecting:)`` is one PUT carrying `resourceVersion` = the expected version and the Lease's
///   `uid` as a precondition, built from the Lease this lock last read (client-go PUTs its cached object
///   the same way), so a renewal is one round trip. The `uid` keeps the PUT from re-creating a Lease that
///   was deleted meanwhile (the API server creates objects on PUT otherwise). Only when this lock has not
///   read the Lease at that version does it read it first. Labels, annotations and owner references other
///   than the lock's own are written back as read.
/// - ``changes()`` and ``recordChanges()`` list and watch the Lease (resuming after a dropped stream,
///   relisting after 410 Gone); a follower reading ``recordChanges()`` makes no request while the leader renews.
/// - ``recordEvent(_:)`` queues a `v1` Event like client-go's recorder (type `Normal`, reason
///   `LeaderElection`, involvedObject = the Lease) on the client's background sender
///   (``KubernetesClient/events``) and returns at once. Events are asynchronous, bounded (new ones are
///   dropped, with a debug log, while ``KubernetesClient/eventQueueCapacity`` Events wait) and best-effort: a hung,
///   slow or forbidden events endpoint delays neither taking over nor renewing. Shutting the client down
///   gives queued Events one request timeout to be sent.
///
/// Lease durations must be whole seconds of at least 1 s (the field is `leaseDurationSeconds`); other
/// durations are rejected with ``LeaderElectionError/Code/invalidConfiguration`` — see
/// ``validate(_:)``.
///
/// A Lease whose spec names a holder but has no positive `leaseDurationSeconds` cannot be honoured; ``get()``
/// reports it as ``LeaderElectionError/Code/corruptRecord`` with its resourceVersion, and the elector may
/// replace it by compare-and-swap. A Lease with no holder is a free lock whatever else it says.
///
/// Errors are ``LeaderElectionError``s; the ``KubernetesError`` behind one (its HTTP status, or how far the
/// connection got) is available from ``kubernetesError(behind:)``.
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
    /// Where this lock writes `strategy` and `preferredHolder`, as learnt from the server's answers.
    private let carrier = Mutex(HandoffCarrier.spec(confirmed: false))
    /// The Kubernetes errors behind the last few errors thrown, for ``kubernetesError(behind:)``.
    private let causes = Mutex<[(LeaderElectionError, KubernetesError)]>([])

    /// The annotation carrying `preferredHolder` on servers that drop `spec.preferredHolder` (all but 1.31+ with
    /// the `CoordinatedLeaderElection` feature gate).
    public static let preferredHolderAnnotation = "leader-election.swift-server.dev/preferred-holder"
    /// The annotation carrying `strategy` on servers that drop `spec.strategy`.
    public static let strategyAnnotation = "leader-election.swift-server.dev/strategy"
    /// The annotation naming the term (`spec.leaseTransitions`) the annotated hand-off was written in. Readers
    /// take the hand-off annotations only while the Lease is still in that term, so that a candidate that
    /// knows nothing of them (client-go) and takes the Lease over leaves no stale hand-off behind.
    public static let handoffTermAnnotation = "leader-election.swift-server.dev/handoff-term"

    /// Where the hand-off fields go.
    enum HandoffCarrier: Equatable {
        /// In the spec. Until the server has `confirmed` that it keeps them (by returning them), in the
        /// annotations as well, so that a write to a server that drops them loses nothing even for a moment.
        case spec(confirmed: Bool)
        /// Only in the annotations: the server dropped the spec fields.
        case annotations
    }

    /// Whether this lock has learnt that the server drops `spec.preferredHolder`/`spec.strategy` and carries
    /// them in annotations instead (see the type's documentation).
    public var carriesHandoffInAnnotations: Bool { carrier.withLock { $0 } == .annotations }

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
        let spec = try Self.spec(record)
        let carrier = self.carrier.withLock { $0 }
        var lease = Lease(metadata: ObjectMeta(name: configuration.name, namespace: configuration.namespace))
        prepare(&lease, spec: spec, carrier: carrier)
        let created = try await mapErrors { try await self.client.createLeaseReportingWarnings(lease, namespace: self.configuration.namespace) }
        return try await settle(created, sent: lease, spec: spec, carrier: carrier)
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
        let carrier = self.carrier.withLock { $0 }
        prepare(&lease, spec: spec, carrier: carrier)
        lease.metadata.resourceVersion = version.rawValue
        let replaced = try await replace(lease)
        return try await settle(replaced, sent: lease, spec: spec, carrier: carrier)
    }

    /// One PUT of `lease`, mapping a failed uid precondition to notFound or conflict.
    private func replace(_ lease: Lease) async throws -> KubernetesResponse<Lease> {
        do {
            return try await mapErrors { try await self.client.replaceLeaseReportingWarnings(lease, namespace: self.configuration.namespace) }
        } catch let error as LeaderElectionError where error.code == .conflict && error.message.contains("Precondition failed") {
            // The uid precondition failed: the Lease was deleted (or deleted and re-created) meanwhile. Find
            // out which, so that a missing Lease is reported as notFound, as the contract requires.
            guard let current = try await get() else {
                throw LeaderElectionError.notFound("\(description) was deleted")
            }
            throw LeaderElectionError.conflict(error.message, current: current.version)
        }
    }

    /// Checks the server's answer to a write of `spec` (sent as `sent`, with the hand-off fields where `carrier`
    /// put them). When the answer shows the server dropped `spec.strategy`/`spec.preferredHolder`, this lock
    /// carries them in annotations from then on; if the answer lacks those annotations too, it re-writes the
    /// record so by compare-and-swap on the returned version, so that the hand-off is never lost.
    /// - Returns: the version of the Lease as finally stored.
    private func settle(
        _ answer: KubernetesResponse<Lease>, sent: Lease, spec: LeaseSpec, carrier: HandoffCarrier
    ) async throws -> LockVersion {
        let stored = answer.object
        guard case .spec(let confirmed) = carrier, spec.strategy != nil || spec.preferredHolder != nil else {
            cached.withLock { $0 = stored }
            return try version(of: stored)
        }
        let warned = Set(answer.warnings.compactMap(\.unknownField))
        let dropped = (spec.preferredHolder != nil && (stored.spec?.preferredHolder != spec.preferredHolder || warned.contains("spec.preferredHolder")))
            || (spec.strategy != nil && (stored.spec?.strategy != spec.strategy || warned.contains("spec.strategy")))
        guard dropped else {
            if !confirmed { self.carrier.withLock { $0 = .spec(confirmed: true) } }
            cached.withLock { $0 = stored }
            return try version(of: stored)
        }
        self.carrier.withLock { $0 = .annotations }
        logger.info(
            "the API server dropped spec.strategy/spec.preferredHolder (Kubernetes before 1.31, or without the CoordinatedLeaderElection feature gate); carrying them in annotations",
            metadata: [
                "lock.annotations": "\(Self.preferredHolderAnnotation), \(Self.strategyAnnotation), \(Self.handoffTermAnnotation)",
                "k8s.warnings": "\(answer.warnings.map(\.text).joined(separator: "; "))",
            ])
        var again = stored
        prepare(&again, spec: spec, carrier: .annotations)
        if again.metadata.annotations == stored.metadata.annotations {
            // The same write carried the annotations: nothing was lost.
            cached.withLock { $0 = stored }
            return try version(of: stored)
        }
        // Re-issue the write with the annotations, on the version the server returned (the same one when the
        // dropped fields were all that changed).
        let rewritten = try await replace(again)
        cached.withLock { $0 = rewritten.object }
        return try version(of: rewritten.object)
    }

    /// Writes `spec` into `lease` with the hand-off fields where `carrier` says (the annotations name the term
    /// they belong to), removes the annotations of fields left unset (or confirmed kept in the spec), and
    /// merges the configured labels and owner references.
    private func prepare(_ lease: inout Lease, spec: LeaseSpec, carrier: HandoffCarrier) {
        var written = spec
        let annotate: Bool
        switch carrier {
        case .annotations:
            annotate = true
            written.preferredHolder = nil
            written.strategy = nil
        case .spec(let confirmed):
            annotate = !confirmed
        }
        var annotations = lease.metadata.annotations ?? [:]
        if annotate && (spec.preferredHolder != nil || spec.strategy != nil) {
            annotations[Self.preferredHolderAnnotation] = spec.preferredHolder
            annotations[Self.strategyAnnotation] = spec.strategy
            annotations[Self.handoffTermAnnotation] = String(spec.leaseTransitions ?? 0)
        } else {
            annotations[Self.preferredHolderAnnotation] = nil
            annotations[Self.strategyAnnotation] = nil
            annotations[Self.handoffTermAnnotation] = nil
        }
        if annotations != (lease.metadata.annotations ?? [:]) {
            lease.metadata.annotations = annotations.isEmpty ? nil : annotations
        }
        lease.spec = written
        mergeLabels(into: &lease)
    }

    /// Queues the Event on the client's background sender and returns at once (see the type's documentation).
    public func recordEvent(_ event: LockEvent) async {
        guard configuration.recordsEvents, let lease = cached.withLock({ $0 }) else { return }
        client.enqueueLeaderElectionEvent(lease: lease, message: event.message, component: configuration.eventComponent, instance: identity)
    }

    /// The ``KubernetesError`` behind `error`, when this lock threw it (of its last few errors) because of one:
    /// the HTTP status and message the API server answered, or how far the connection got.
    public func kubernetesError(behind error: LeaderElectionError) -> KubernetesError? {
        causes.withLock { causes in causes.last { $0.0 == error }?.1 }
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

    /// The record `lease` holds, or `nil` when its spec names a holder without a positive duration:
    /// `KubernetesLock.record(_:)` of its spec, with `strategy` and `preferredHolder` taken from
    /// ``strategyAnnotation`` and ``preferredHolderAnnotation`` where the spec has none (servers that drop the
    /// spec fields), while ``handoffTermAnnotation`` names the Lease's current `leaseTransitions`.
    public static func record(_ lease: Lease) -> LeaderElectionRecord? {
        guard var record = record(lease.spec) else { return nil }
        let annotations = lease.metadata.annotations ?? [:]
        // A hand-off annotated in an earlier term was left behind by a writer that does not know the
        // annotations (it took the Lease over): it no longer applies.
        guard annotations[handoffTermAnnotation] == String(record.leaseTransitions) else { return record }
        if record.preferredHolder?.isEmpty ?? true, let preferred = annotations[preferredHolderAnnotation], !preferred.isEmpty {
            record.preferredHolder = preferred
        }
        if record.strategy?.isEmpty ?? true, let strategy = annotations[strategyAnnotation], !strategy.isEmpty {
            record.strategy = strategy
        }
        return record
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
        guard let record = Self.record(lease) else {
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
            let mapped = mapped(error)
            causes.withLock { causes in
                causes.append((mapped, error))
                if causes.count > 8 { causes.removeFirst(causes.count - 8) }
            }
            throw mapped
        }
    }

    /// The ``LeaderElectionError`` for `error`: a status the API server answered is named with its HTTP code
    /// ("the API server answered HTTP 500: …"), a transport failure keeps the client's plain description.
    private func mapped(_ error: KubernetesError) -> LeaderElectionError {
        switch error.code {
        case .notFound: return LeaderElectionError.notFound("\(description): \(error.message)")
        case .alreadyExists: return LeaderElectionError.alreadyExists("\(description): \(error.message)")
        case .conflict: return LeaderElectionError.conflict("\(description): \(error.message)")
        case .unauthorized, .forbidden: return LeaderElectionError.unauthorized("\(description): \(error.message)")
        case .invalid, .badRequest, .invalidConfiguration:
            return LeaderElectionError.invalidConfiguration("\(description): the API server rejected the request: \(error.message)")
        case .timeout: return LeaderElectionError.timeout("\(description): \(error.message)")
        default:
            if let status = error.httpStatus {
                return LeaderElectionError.unavailable("\(description): the API server answered HTTP \(status): \(error.message)")
            }
            return LeaderElectionError.unavailable("\(description): \(error.message)")
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
