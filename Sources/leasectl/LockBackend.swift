import LeaderElection

/// A lock backend that `leasectl` can address by URL scheme (`file`, `etcd` and `kubernetes`). Register
/// implementations in ``LockRegistry``.
protocol LockBackend: Sendable {
    /// The URL scheme this backend serves, such as `file`.
    var scheme: String { get }

    /// An example URL for help texts and errors, such as `file:///var/run/locks/NAME`.
    var example: String { get }

    /// `url` with any defaults filled in, as it is shown (for `kubernetes:///NAME`, the default namespace).
    /// May load the backend's client configuration. The default returns `url`.
    ///
    /// - Throws: ``LeaseCtlError`` when `url` does not address anything this backend knows.
    func resolve(_ url: LockURL) throws -> LockURL

    /// Opens the lock at `url` for a candidate writing as `identity`.
    ///
    /// - Parameter createDirectory: create missing parent containers (directories) if the backend has any.
    /// - Throws: ``LeaseCtlError`` when `url` does not name a single lock, or the backend's own error.
    func makeLock(at url: LockURL, identity: String, createDirectory: Bool) throws -> any ResourceLock

    /// The locks `url` stands for: itself when it names one lock, every lock inside when it names a
    /// collection (for `file`: a trailing slash or an existing directory; for `etcd`: a trailing slash,
    /// a key prefix; for `kubernetes`: a namespace, or `*` for all), sorted by name. May need I/O (listing
    /// a directory, a key range or Leases over the network).
    func locks(at url: LockURL) async throws -> [LockURL]

    /// Checks, before anything is contacted, that the lock at `url` can store what `configuration` asks
    /// for (a Kubernetes Lease holds whole seconds only). The default accepts every configuration.
    ///
    /// - Throws: ``LeaseCtlError`` naming the option at fault.
    func validate(_ configuration: LeaderElectionConfiguration, for url: LockURL) throws

    /// A message for `error`, thrown by this backend or one of its locks for `url`, that an operator can
    /// act on (with hints where the backend knows likely causes).
    func describe(_ error: any Error, for url: LockURL) -> String

    /// Releases what the backend holds for the process (network connections). Called once at exit.
    func shutdown() async
}

extension LockBackend {
    func resolve(_ url: LockURL) throws -> LockURL { url }
    func validate(_ configuration: LeaderElectionConfiguration, for url: LockURL) throws {}
    func describe(_ error: any Error, for url: LockURL) -> String { LockRegistry.describe(error) }
    func shutdown() async {}
}

/// A backend that reads a whole collection of locks with one request and follows it with a watch, instead
/// of opening and reading each lock (`kubernetes`: a list of Leases, then an informer). `leasectl get` uses
/// it where a backend offers it.
protocol LeaseListingBackend: LockBackend {
    /// What the locks `url` stands for hold now, sorted; for a single lock that does not exist, one
    /// snapshot in state ``LeaseSnapshot/State/missing``.
    func snapshots(at url: LockURL) async throws -> [LeaseSnapshot]

    /// The locks `url` stands for, then all of them again after every change, until the stream is dropped.
    /// Locks deleted meanwhile stay in the list in state ``LeaseSnapshot/State/missing``. Finishes with an
    /// error the backend does not retry (such as rejected credentials).
    func watchSnapshots(at url: LockURL) -> AsyncThrowingStream<[LeaseSnapshot], any Error>
}
