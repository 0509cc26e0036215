/// The state of a leader-election lock, field for field the `spec` of a Kubernetes
/// `coordination.k8s.io/v1` Lease and client-go's `resourcelock.LeaderElectionRecord`.
///
/// An empty ``holderIdentity`` means nobody holds the lock: any candidate may take it at once.
/// Releasing writes such a record.
public struct LeaderElectionRecord: Hashable, Sendable {
    /// The identity of the current holder, or `""` when the lock is free.
    public var holderIdentity: String
    /// How long candidates wait, after observing the last change of the record, before they may take
    /// it over. Followers use the duration written by the holder, not their own configuration.
    public var leaseDuration: Duration
    /// When the current holder acquired the lock (wall clock, informational).
    public var acquireTime: MicroTime?
    /// When the current holder last renewed the lock (wall clock, informational).
    public var renewTime: MicroTime?
    /// How many times the lock changed hands. ``LeaderElector`` increments it on every new term, so it
    /// doubles as the fencing token.
    public var leaseTransitions: Int
    /// The coordinated-election strategy (`OldestEmulationVersion` on Kubernetes), if any.
    public var strategy: String?
    /// A candidate the holder is asked to hand over to (Kubernetes' coordinated election), if any.
    public var preferredHolder: String?

    /// Creates a record.
    public init(
        holderIdentity: String,
        leaseDuration: Duration,
        acquireTime: MicroTime? = nil,
        renewTime: MicroTime? = nil,
        leaseTransitions: Int = 0,
        strategy: String? = nil,
        preferredHolder: String? = nil
    ) {
        self.holderIdentity = holderIdentity
        self.leaseDuration = leaseDuration
        self.acquireTime = acquireTime
        self.renewTime = renewTime
        self.leaseTransitions = leaseTransitions
        self.strategy = strategy
        self.preferredHolder = preferredHolder
    }

    /// `true` when nobody holds the lock.
    public var isReleased: Bool { holderIdentity.isEmpty }
}
