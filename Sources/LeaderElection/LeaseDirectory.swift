/// One lease found by a ``LeaseDirectory``.
public struct ListedLease: Hashable, Sendable, CustomStringConvertible {
    /// The lease's name inside the collection: a file name, the key below an etcd prefix, a Lease name.
    public var name: String
    /// The decoded record, or `nil` when the stored data does not decode.
    public var record: LeaderElectionRecord?
    /// The version of the stored data (changes with every write).
    public var version: LockVersion
    /// `true` when the backend verified that the holder no longer runs (see ``VersionedRecord/holderIsKnownGone``).
    public var holderIsKnownGone: Bool

    /// Creates a listed lease.
    public init(name: String, record: LeaderElectionRecord?, version: LockVersion, holderIsKnownGone: Bool = false) {
        self.name = name
        self.record = record
        self.version = version
        self.holderIsKnownGone = holderIsKnownGone
    }

    public var description: String { "\(name)@\(version) holder=\(record?.holderIdentity ?? "<corrupt>")" }
}

/// A collection of leases that can be listed: a directory of lock files, the keys under an etcd prefix,
/// the Leases of a Kubernetes namespace. What a ``LeaseMonitor`` watches.
///
/// # Implementation requirements
/// - ``list()`` returns every lease in the collection once, sorted by name, each with the version of its
///   stored data; undecodable data is listed with a `nil` record (never thrown), so one bad entry does not
///   hide the others. Failures reaching the store are ``LeaderElectionError``s.
/// - ``changes()``, when not `nil`, yields after any lease in the collection is created, written or
///   deleted (possibly coalesced or spurious), like ``ResourceLock/changes()``.
/// - Neither blocks a thread of Swift's cooperative pool; both honour cancellation.
public protocol LeaseDirectory: Sendable, CustomStringConvertible {
    /// Every lease in the collection now, sorted by name.
    func list() async throws -> [ListedLease]

    /// A feed that yields whenever a lease in the collection may have changed, or `nil` when the backend
    /// cannot watch the collection. Each call starts a new subscription.
    func changes() -> AsyncStream<Void>?
}

extension LeaseDirectory {
    public func changes() -> AsyncStream<Void>? { nil }
}
