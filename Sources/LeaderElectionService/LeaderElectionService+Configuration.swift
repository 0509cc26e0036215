import LeaderElection

extension LeaderElectionService {
    /// What the service does when this candidate loses its lease while leading.
    public struct LostLeadershipBehavior: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable { case recampaign, endGroup }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// Stop the work (it is cancelled at once and awaited), then campaign again; the work restarts
        /// with a new ``LeadershipTerm`` when this candidate is elected again.
        public static let recampaign = LostLeadershipBehavior(.recampaign)
        /// Stop the work, then throw ``LeaderElectionServiceError/Code/leadershipLost`` from
        /// ``LeaderElectionService/run()`` so that the `ServiceGroup` ends (with its default
        /// `failureTerminationBehavior`), as client-go's `RunOrDie` users and controller-runtime do ("leader
        /// election lost"). The default: a restarted process starts from a clean state.
        public static let endGroup = LostLeadershipBehavior(.endGroup)

        public var description: String { base.rawValue }
    }

    /// The kind of store a lock lives in, named as kube's `--leader-elect-resource-lock` values.
    public struct LockBackend: Hashable, Sendable, CustomStringConvertible {
        /// The flag value: `leases`, `etcd` or `file`.
        public let rawValue: String
        private init(_ rawValue: String) { self.rawValue = rawValue }

        /// A `coordination.k8s.io/v1` Lease (kube's only remaining lock type).
        public static let leases = LockBackend("leases")
        /// A key in etcd v3.
        public static let etcd = LockBackend("etcd")
        /// A file on this host (`flock(2)`), for electing among processes of one machine.
        public static let file = LockBackend("file")

        /// Every supported backend.
        public static let allCases: [LockBackend] = [.leases, .etcd, .file]

        /// The backend with this flag value, or `nil`.
        public init?(rawValue: String) {
            guard let known = Self.allCases.first(where: { $0.rawValue == rawValue }) else { return nil }
            self = known
        }

        public var description: String { rawValue }
    }

    /// Manager-style options, mirroring controller-runtime's `manager.Options` (`LeaderElection`,
    /// `LeaderElectionID`, `LeaderElectionNamespace`, `LeaseDuration`, `RenewDeadline`, `RetryPeriod`,
    /// `LeaderElectionReleaseOnCancel`, `LeaderElectionLabels`, `LeaderElectionResourceLock`).
    ///
    /// Timing defaults are client-go's (15 s / 10 s / 2 s) and are validated with client-go's rules when
    /// the service runs. ``LeaderElectionOptions`` produces one from kube's `--leader-elect*` flags.
    public struct Configuration: Sendable {
        // MARK: Election

        /// Whether to elect at all (`LeaderElection`). When `false` the work runs at once, without a lock,
        /// and receives no term. Default `true`.
        public var enabled: Bool
        /// The name of the lock (`LeaderElectionID`): the Lease, key or file name, also used as the
        /// `name` of logs and metrics.
        public var id: String
        /// Where the lock lives (`LeaderElectionNamespace`): a Kubernetes namespace, an etcd key segment.
        /// Default `kube-system` (kube's `--leader-elect-resource-namespace`).
        public var namespace: String
        /// The store (`LeaderElectionResourceLock`); informs a lock factory. Default ``LockBackend/leases``.
        public var resourceLock: LockBackend
        /// A lock URL (`file:///var/run/app/lock`, `etcd://host:2379/prefix/ns/name`,
        /// `kubernetes://ns/name`) for a lock factory that accepts one. When set it is authoritative: ``id``,
        /// ``namespace`` and ``resourceLock`` have been derived from it.
        public var lockURL: String?
        /// Labels for the lock object where the backend has them (`LeaderElectionLabels`).
        public var labels: [String: String]

        // MARK: Timing

        /// How long followers wait before taking over a lease that is not renewed. Default 15 s.
        public var leaseDuration: Duration
        /// How long the leader keeps retrying to renew before it gives up. Default 10 s.
        public var renewDeadline: Duration
        /// The interval between renewals and between a follower's attempts. Default 2 s.
        public var retryPeriod: Duration

        // MARK: Shutdown and loss

        /// Release the lease when the service shuts down (`LeaderElectionReleaseOnCancel`), so a follower
        /// takes over at once instead of after ``leaseDuration``. Default `true` — unlike
        /// controller-runtime, which defaults to `false` because it cannot know that the guarded code has
        /// stopped: this service releases only *after* the work has been cancelled and has returned, and
        /// leaves the lease to expire if it does not return within ``drainTimeout``.
        public var releaseOnCancel: Bool
        /// How long a shutdown waits for the work to return while still renewing; `nil` means
        /// ``renewDeadline``. When it passes, the lease is left to expire rather than released.
        public var drainTimeout: Duration?
        /// What to do when leadership is lost while leading. Default ``LostLeadershipBehavior/endGroup``.
        public var onLostLeadership: LostLeadershipBehavior

        /// Creates a configuration; every parameter but `id` has client-go's / controller-runtime's default.
        public init(
            id: String,
            enabled: Bool = true,
            namespace: String = "kube-system",
            resourceLock: LockBackend = .leases,
            lockURL: String? = nil,
            labels: [String: String] = [:],
            leaseDuration: Duration = .seconds(15),
            renewDeadline: Duration = .seconds(10),
            retryPeriod: Duration = .seconds(2),
            releaseOnCancel: Bool = true,
            drainTimeout: Duration? = nil,
            onLostLeadership: LostLeadershipBehavior = .endGroup
        ) {
            self.id = id
            self.enabled = enabled
            self.namespace = namespace
            self.resourceLock = resourceLock
            self.lockURL = lockURL
            self.labels = labels
            self.leaseDuration = leaseDuration
            self.renewDeadline = renewDeadline
            self.retryPeriod = retryPeriod
            self.releaseOnCancel = releaseOnCancel
            self.drainTimeout = drainTimeout
            self.onLostLeadership = onLostLeadership
        }

        /// The core elector's configuration: ``id`` as its name, the timing, release and drain settings.
        public var electionConfiguration: LeaderElectionConfiguration {
            LeaderElectionConfiguration(
                name: id,
                leaseDuration: leaseDuration,
                renewDeadline: renewDeadline,
                retryPeriod: retryPeriod,
                releaseOnCancel: releaseOnCancel,
                drainTimeout: drainTimeout)
        }
    }
}
