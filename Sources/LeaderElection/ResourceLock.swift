/// A store for one leader-election record with compare-and-swap writes: the only thing
/// ``LeaderElector`` needs from a backend.
///
/// Shaped after client-go's `resourcelock.Interface`, with the version token made explicit so the
/// optimistic concurrency is visible in the types.
///
/// # Implementation requirements
///
/// Every implementation must guarantee the following. The `LockConformance` product checks exactly
/// these rules; run its suite against your lock (see `LockConformanceSuite`).
///
/// - ``get()`` returns `nil` when no record is stored, and otherwise the record with every field
///   intact (timestamps at microsecond precision, empty holder, `strategy`, `preferredHolder`) and the
///   version of the stored data.
/// - ``create(_:)`` stores a record only if none exists and throws
///   ``LeaderElectionError/Code/alreadyExists`` otherwise.
/// - ``update(_:expecting:)`` is an atomic compare-and-swap: it stores the record only if the stored
///   version equals `expecting`, and throws ``LeaderElectionError/Code/conflict`` otherwise (also when the
///   record presented equals the stored one). Of N concurrent updates presenting the same version, each
///   writing a record that differs from the stored one, exactly one succeeds.
/// - A write that changes the record yields a new version: one different from every version returned
///   before for this record. An identical write (an update storing exactly the record already stored) may
///   return either the same version or a new one — a kube-apiserver answers a PUT that changes nothing
///   with the same `resourceVersion` and no watch event, while etcd and `FileLock` issue a new one. Either
///   way ``get()`` afterwards returns the record with the version the update returned. Callers that need
///   others to see a write (the elector's renewals) must therefore change the record; ``LeaderElector``
///   does, by writing a strictly later `renewTime` every time.
/// - Undecodable stored data makes ``get()`` throw ``LeaderElectionError/Code/corruptRecord`` carrying the
///   data's version in ``LeaderElectionError/version``, and ``update(_:expecting:)`` with that version
///   replaces it. Nothing else is ever lost or half-written.
/// - Failures are ``LeaderElectionError``s with the matching code. Methods honour task cancellation by
///   throwing `CancellationError` (a write that has already been committed is reported as a success, never
///   as cancelled) and never block a thread of Swift's cooperative pool.
/// - ``changes()``, when not `nil`, yields after every change of the stored record made by anyone,
///   possibly coalesced; it may yield spuriously. An identical write is not a change and need not be
///   reported.
/// - ``recordChanges()``, when not `nil`, follows the same rule, and may say what changed: a
///   ``LockChange/stored(_:)`` carries exactly a record and version that were stored (never one that was not),
///   so a follower can skip re-reading; ``LockChange/unknown`` means "read to find out". The default maps
///   ``changes()`` to ``LockChange/unknown``.
///
/// What a lock does **not** guarantee: anything about time. Expiry is decided by the elector on its
/// own monotonic clock, never from record timestamps.
public protocol ResourceLock: Sendable, CustomStringConvertible {
    /// The identity this lock writes as holder; unique per candidate process.
    var identity: String { get }

    /// Reads the current record and its version, or `nil` when none is stored.
    func get() async throws -> VersionedRecord?

    /// Stores `record` when no record exists.
    /// - Returns: the version of the new record.
    /// - Throws: ``LeaderElectionError/Code/alreadyExists`` when a record is already stored.
    func create(_ record: LeaderElectionRecord) async throws -> LockVersion

    /// Replaces the record if, and only if, its stored version is `version` (compare-and-swap).
    /// - Returns: the version now stored: a new one when the record changed; for a record identical to the
    ///   stored one, either `version` or a new one.
    /// - Throws: ``LeaderElectionError/Code/conflict`` when the stored version differs,
    ///   ``LeaderElectionError/Code/notFound`` when no record is stored.
    func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion

    /// Records an event about this lock (such as a Kubernetes `Event`). Optional; the default does nothing.
    ///
    /// Best-effort and off the critical path: ``LeaderElector`` does not wait for the "became leader" event before
    /// it starts the work and the renewer. An implementation that talks to a remote store should queue the event
    /// and return promptly (as `KubernetesLock` does, with a bounded queue).
    func recordEvent(_ event: LockEvent) async

    /// A feed that yields whenever the stored record may have changed, or `nil` if the backend cannot
    /// watch. Each call starts a new subscription; it ends when the consumer stops iterating.
    func changes() -> AsyncStream<Void>?

    /// Like ``changes()``, but each element says what changed when the backend's notification carries it
    /// (the record and its version, or a deletion), so followers need not re-read after every renewal.
    /// Optional; the default reports every ``changes()`` element as ``LockChange/unknown``.
    func recordChanges() -> AsyncStream<LockChange>?
}

/// What a ``ResourceLock/recordChanges()`` feed reports.
public enum LockChange: Hashable, Sendable {
    /// The record now stored, with its version (exactly as ``ResourceLock/get()`` would have returned it).
    case stored(VersionedRecord)
    /// The record was deleted.
    case deleted
    /// Something may have changed (including a corrupt record, or a feed that just (re)connected): read it.
    case unknown
}

extension ResourceLock {
    public func recordEvent(_ event: LockEvent) async {}
    public func changes() -> AsyncStream<Void>? { nil }
    public func recordChanges() -> AsyncStream<LockChange>? {
        guard let changes = changes() else { return nil }
        return mapToUnknown(changes)
    }
}

/// `changes` as a `LockChange.unknown` feed (the default `recordChanges()`).
func mapToUnknown(_ changes: AsyncStream<Void>) -> AsyncStream<LockChange> {
    let (stream, continuation) = AsyncStream.makeStream(of: LockChange.self, bufferingPolicy: .bufferingNewest(1))
    let task = Task {
        for await _ in changes { continuation.yield(.unknown) }
        continuation.finish()
    }
    continuation.onTermination = { _ in task.cancel() }
    return stream
}

/// An event about a lock, in client-go's wording (`"<identity> became leader"`).
public struct LockEvent: Hashable, Sendable, CustomStringConvertible {
    /// What happened.
    public struct Kind: Hashable, Sendable {
        private let raw: String
        /// This identity acquired the lock.
        public static let becameLeader = Kind(raw: "became leader")
        /// This identity stopped leading.
        public static let stoppedLeading = Kind(raw: "stopped leading")
    }

    /// What happened.
    public var kind: Kind
    /// The identity it happened to.
    public var identity: String
    /// The event reason, `LeaderElection` as in client-go.
    public var reason: String { "LeaderElection" }
    /// `"<identity> became leader"` or `"<identity> stopped leading"`.
    public var message: String { kind == .becameLeader ? "\(identity) became leader" : "\(identity) stopped leading" }

    /// Creates an event.
    public init(kind: Kind, identity: String) {
        self.kind = kind
        self.identity = identity
    }

    public var description: String { message }
}
