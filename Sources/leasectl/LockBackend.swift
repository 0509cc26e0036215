import LeaderElection

/// A lock backend that `leasectl` can address by URL scheme (`file` now; `etcd` and `kubernetes`
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
    /// collection (for `file`: a trailing slash or an existing directory), sorted by name.
    func locks(at url: LockURL) throws -> [LockURL]
}
