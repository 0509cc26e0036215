/// An opaque version token identifying one stored state of a lock record.
///
/// Every write that changes the record produces a token never issued before for it; a write that stores
/// exactly what was stored may keep the token (as a kube-apiserver does). Tokens are compared for equality
/// only: they say *whether* the record changed, never *how much*. Backends choose the representation — a
/// generation counter (``InMemoryLock``, `FileLock`), an etcd `mod_revision`, or a Kubernetes
/// `metadata.resourceVersion` — and the elector treats them all alike.
public struct LockVersion: Hashable, Sendable, CustomStringConvertible {
    /// The backend's textual form of the version.
    public let rawValue: String

    /// Creates a version from a backend's textual token.
    public init(_ rawValue: String) { self.rawValue = rawValue }

    /// Creates a version from a numeric generation or revision.
    public init(_ generation: UInt64) { self.rawValue = String(generation) }

    public var description: String { rawValue }
}

/// A record as read from a lock, with the version token a compare-and-swap must present.
public struct VersionedRecord: Hashable, Sendable {
    /// The decoded record.
    public var record: LeaderElectionRecord
    /// The version of the stored record; pass it to ``ResourceLock/update(_:expecting:)``.
    public var version: LockVersion
    /// `true` when the backend has *verified* that the holder named in the record no longer runs
    /// (for example `FileLock` sees that the holder's kernel lock was released when its process died).
    ///
    /// The elector treats such a record like a released one: it may be acquired at once, without
    /// waiting for the lease to expire. Backends that cannot verify liveness leave it `false`.
    public var holderIsKnownGone: Bool

    /// Creates a versioned record.
    public init(record: LeaderElectionRecord, version: LockVersion, holderIsKnownGone: Bool = false) {
        self.record = record
        self.version = version
        self.holderIsKnownGone = holderIsKnownGone
    }
}
