import Kubernetes
import LeaderElection
import Logging

/// The Leases of one namespace (optionally label-selected) as a ``LeaseDirectory``: the collection a
/// ``LeaseMonitor`` watches when members keep ``HeartbeatLease``s as Leases — the kubelet's node leases in
/// `kube-node-lease` are exactly this.
///
/// ```swift
/// let nodes = KubernetesLeaseDirectory(client: client, namespace: "kube-node-lease")
/// let monitor = try LeaseMonitor(directory: nodes, configuration: .init(gracePeriod: .seconds(40)))
/// ```
///
/// ``list()`` is one list request; each Lease is named by `metadata.name` and versioned by its
/// `resourceVersion`, decoded as ``KubernetesLock`` decodes it (a Lease naming a holder without a positive
/// `leaseDurationSeconds` is listed with a `nil` record). ``changes()`` is an informer (list, then watch,
/// resuming and relisting by itself) on the same namespace and selector.
public struct KubernetesLeaseDirectory: LeaseDirectory {
    /// The client used for every call.
    public let client: KubernetesClient
    /// The namespace listed.
    public let namespace: String
    /// A label selector such as `app=web`, or `nil` for every Lease.
    public let labelSelector: String?
    private let logger: Logger

    /// Lists the Leases in `namespace` matching `labelSelector`.
    public init(client: KubernetesClient, namespace: String, labelSelector: String? = nil, logger: Logger = Logger(label: "leader-election.kubernetes")) {
        self.client = client
        self.namespace = namespace
        self.labelSelector = labelSelector
        var logger = logger
        logger[metadataKey: "lease_directory.namespace"] = .string(namespace)
        self.logger = logger
    }

    /// `leases/<namespace>/` (with `?labelSelector=` when set).
    public var description: String { "leases/\(namespace)/" + (labelSelector.map { "?labelSelector=\($0)" } ?? "") }

    /// Every matching Lease, sorted by name.
    /// - Throws: ``LeaderElectionError/Code/unauthorized`` (401, 403), `unavailable` for other failures.
    public func list() async throws -> [ListedLease] {
        let list: LeaseList
        do {
            list = try await client.listLeases(namespace: namespace, labelSelector: labelSelector)
        } catch let error as KubernetesError {
            switch error.code {
            case .unauthorized, .forbidden: throw LeaderElectionError.unauthorized("\(description): \(error.message)")
            case .timeout: throw LeaderElectionError.timeout("\(description): \(error.message)")
            default: throw LeaderElectionError.unavailable("\(description): \(error)")
            }
        }
        return list.items.compactMap { lease -> ListedLease? in
            guard let name = lease.metadata.name, let version = lease.metadata.resourceVersion else { return nil }
            return ListedLease(name: name, record: KubernetesLock.record(lease), version: LockVersion(version))
        }.sorted { $0.name < $1.name }
    }

    public func changes() -> AsyncStream<Void>? {
        coalescedSignals(client.informLeases(namespace: namespace, labelSelector: labelSelector), logger: logger)
    }
}
