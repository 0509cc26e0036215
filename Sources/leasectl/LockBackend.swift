import LeaderElection

/// A lock backend that `leasectl` can address by URL scheme (`file` and `etcd` now; `kubernetes`
/// later). Register implementations in ``LockRegistry``.
protocol LockBackend: Sendable {
    /// The URL scheme this backend serves, such as `file`.
    var scheme: String { get }

    /// An example URL for help texts and errors, such as `file:///var/run/locks/NAME`.
    var example: String { get }

    /// Opens the lock at `url` for a candidate writing as `identity`.
    ///
    /// - Parameter createDirectory: create missing parent containers (directories) if the backend has any.
    /// - Throws: ``LeaseCtlError`` when `url` does not name a single lock, or the backend's own error.
    func makeLock(at url: LockURL, identity: String, createDirectory: Bool) throws -> any ResourceLock

    /// The locks `url` stands for: itself when it names one lock, every lock inside when it names a
    /// collection (for `file`: a trailing slash or an existing directory; for `etcd`: a trailing slash,
    /// a key prefix), sorted by name. May need I/O (listing a directory, or a key range over the network).
    func locks(at url: LockURL) async throws -> [LockURL]

    /// A message for `error`, thrown by this backend or one of its locks for `url`, that an operator can
    /// act on (with hints where the backend knows likely causes).
    func describe(_ error: any Error, for url: LockURL) -> String

    /// Releases what the backend holds for the process (network connections). Called once at exit.
    func close()
}

extension LockBackend {
    func describe(_ error: any Error, for url: LockURL) -> String { LockRegistry.describe(error) }
    func close() {}
}
