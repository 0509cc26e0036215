import LeaderElection

/// A `coordination.k8s.io/v1` Lease: the object client-go's `LeaseLock`, the kubelet's node heartbeat and
/// our `KubernetesLock` store their state in.
public struct Lease: Hashable, Sendable, Codable {
    /// `coordination.k8s.io/v1`.
    public static let apiVersion = "coordination.k8s.io/v1"
    /// `Lease`.
    public static let kind = "Lease"

    /// Always ``Lease/apiVersion`` when written by this client; may be absent in list items.
    public var apiVersion: String?
    /// Always ``Lease/kind`` when written by this client; may be absent in list items.
    public var kind: String?
    /// Standard object metadata.
    public var metadata: ObjectMeta
    /// The lease state; every field optional, as in the API.
    public var spec: LeaseSpec?

    /// Creates a Lease.
    public init(metadata: ObjectMeta, spec: LeaseSpec? = nil) {
        self.apiVersion = Lease.apiVersion
        self.kind = Lease.kind
        self.metadata = metadata
        self.spec = spec
    }
}

/// `LeaseSpec`: the fields of a Lease, all optional as in the API.
///
/// Times are `MicroTime`s, written as `2006-01-02T15:04:05.000000Z` (UTC, six fractional digits), and read
/// in any RFC 3339 form (other writers, such as the Python client, send `+00:00` offsets).
public struct LeaseSpec: Hashable, Sendable, Codable {
    /// The current holder; `""` or absent means free.
    public var holderIdentity: String?
    /// How long, in whole seconds, candidates wait after observing the last change before taking over.
    public var leaseDurationSeconds: Int32?
    /// When the current holder acquired the lease.
    public var acquireTime: MicroTime?
    /// When the current holder last renewed the lease.
    public var renewTime: MicroTime?
    /// How many times the lease changed hands.
    public var leaseTransitions: Int32?
    /// Coordinated-election strategy (`OldestEmulationVersion`).
    public var strategy: String?
    /// The candidate the holder is asked to hand over to; only valid with ``strategy``.
    public var preferredHolder: String?

    /// Creates a spec.
    public init(
        holderIdentity: String? = nil,
        leaseDurationSeconds: Int32? = nil,
        acquireTime: MicroTime? = nil,
        renewTime: MicroTime? = nil,
        leaseTransitions: Int32? = nil,
        strategy: String? = nil,
        preferredHolder: String? = nil
    ) {
        self.holderIdentity = holderIdentity
        self.leaseDurationSeconds = leaseDurationSeconds
        self.acquireTime = acquireTime
        self.renewTime = renewTime
        self.leaseTransitions = leaseTransitions
        self.strategy = strategy
        self.preferredHolder = preferredHolder
    }

    private enum CodingKeys: String, CodingKey {
        case holderIdentity, leaseDurationSeconds, acquireTime, renewTime, leaseTransitions, strategy, preferredHolder
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        holderIdentity = try c.decodeIfPresent(String.self, forKey: .holderIdentity)
        leaseDurationSeconds = try c.decodeIfPresent(Int32.self, forKey: .leaseDurationSeconds)
        acquireTime = try Self.decodeTime(c, .acquireTime)
        renewTime = try Self.decodeTime(c, .renewTime)
        leaseTransitions = try c.decodeIfPresent(Int32.self, forKey: .leaseTransitions)
        strategy = try c.decodeIfPresent(String.self, forKey: .strategy)
        preferredHolder = try c.decodeIfPresent(String.self, forKey: .preferredHolder)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(holderIdentity, forKey: .holderIdentity)
        try c.encodeIfPresent(leaseDurationSeconds, forKey: .leaseDurationSeconds)
        try c.encodeIfPresent(acquireTime?.rfc3339, forKey: .acquireTime)
        try c.encodeIfPresent(renewTime?.rfc3339, forKey: .renewTime)
        try c.encodeIfPresent(leaseTransitions, forKey: .leaseTransitions)
        try c.encodeIfPresent(strategy, forKey: .strategy)
        try c.encodeIfPresent(preferredHolder, forKey: .preferredHolder)
    }

    private static func decodeTime(_ c: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) throws -> MicroTime? {
        guard let text = try c.decodeIfPresent(String.self, forKey: key) else { return nil }
        guard let time = MicroTime(rfc3339: text) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "\(key.stringValue) is not an RFC 3339 time: \(text)")
        }
        return time
    }
}

/// A list of objects (`LeaseList`, `EventList`, …).
public struct KubernetesList<Item: Codable & Sendable & Hashable>: Hashable, Sendable, Codable {
    /// The list kind, such as `LeaseList`.
    public var kind: String?
    /// The API version, such as `coordination.k8s.io/v1`.
    public var apiVersion: String?
    /// List metadata: the resourceVersion to watch from, paging.
    public var metadata: ListMeta
    /// The items (each without its own `kind`/`apiVersion`, as the server sends them).
    public var items: [Item]

    /// Creates a list.
    public init(kind: String?, apiVersion: String?, metadata: ListMeta, items: [Item]) {
        self.kind = kind
        self.apiVersion = apiVersion
        self.metadata = metadata
        self.items = items
    }

    private enum CodingKeys: String, CodingKey { case kind, apiVersion, metadata, items }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kind = try c.decodeIfPresent(String.self, forKey: .kind)
        apiVersion = try c.decodeIfPresent(String.self, forKey: .apiVersion)
        metadata = try c.decodeIfPresent(ListMeta.self, forKey: .metadata) ?? ListMeta()
        items = try c.decodeIfPresent([Item].self, forKey: .items) ?? []
    }
}

/// `LeaseList`.
public typealias LeaseList = KubernetesList<Lease>
