import LeaderElection

/// The lock backends `leasectl` knows, by URL scheme.
///
/// ```swift
/// let registry = LockRegistry.standard(etcd: settings)
/// defer { registry.close() }
/// let lock = try registry.makeLock(at: LockURL(parsing: "etcd://127.0.0.1:2379/leader-election/default/x"), identity: id)
/// ```
struct LockRegistry: Sendable {
    /// The backends built into this `leasectl`: `file`, and `etcd` with default connection settings
    /// (plaintext, no authentication, 5 s request timeout). Commands use ``standard(etcd:)`` instead.
    static let standard = LockRegistry.standard(etcd: EtcdConnectionSettings())

    /// The backends built into this `leasectl`, connecting to etcd with `settings`. Call ``close()`` at exit.
    static func standard(etcd settings: EtcdConnectionSettings) -> LockRegistry {
        LockRegistry([FileLockBackend(), EtcdLockBackend(pool: EtcdClientPool(settings: settings))])
    }

    /// Schemes that are planned but not built in yet, named in errors so users know why they fail.
    static let plannedSchemes = ["kubernetes"]

    private let backends: [String: any LockBackend]

    /// A registry serving `backends`; a later backend for the same scheme replaces an earlier one.
    init(_ backends: [any LockBackend]) {
        var byScheme: [String: any LockBackend] = [:]
        for backend in backends { byScheme[backend.scheme.lowercased()] = backend }
        self.backends = byScheme
    }

    /// The registered schemes, sorted.
    var schemes: [String] { backends.keys.sorted() }

    /// The backend for `url`'s scheme.
    ///
    /// - Throws: ``LeaseCtlError`` naming the known schemes when none is registered for it.
    func backend(for url: LockURL) throws -> any LockBackend {
        if let backend = backends[url.scheme] { return backend }
        let known = schemes.map { "\($0) (\(backends[$0]!.example))" }.joined(separator: ", ")
        if Self.plannedSchemes.contains(url.scheme) {
            throw LeaseCtlError("the \(url.scheme) lock backend is not available in this build of leasectl (\(url)); known schemes: \(known)")
        }
        throw LeaseCtlError("unknown lock scheme \"\(url.scheme)\" in \(url); known schemes: \(known)")
    }

    /// Opens the single lock `url` names, writing as `identity`.
    func makeLock(at url: LockURL, identity: String, createDirectory: Bool = false) throws -> any ResourceLock {
        try backend(for: url).makeLock(at: url, identity: identity, createDirectory: createDirectory)
    }

    /// Parses `text` and opens the single lock it names.
    func makeLock(_ text: String, identity: String, createDirectory: Bool = false) throws -> any ResourceLock {
        try makeLock(at: LockURL(parsing: text), identity: identity, createDirectory: createDirectory)
    }

    /// The locks `url` stands for (one, or every lock of a collection).
    func locks(at url: LockURL) async throws -> [LockURL] {
        try await backend(for: url).locks(at: url)
    }

    /// A message for `error` from the backend of `url` or one of its locks, with the backend's hints.
    func describe(_ error: any Error, for url: LockURL) -> String {
        guard let backend = backends[url.scheme] else { return Self.describe(error) }
        return backend.describe(error, for: url)
    }

    /// Closes every backend's connections. Call once, when the command is done with its locks.
    func close() {
        for backend in backends.values { backend.close() }
    }

    /// A short message for `error`, without backend hints.
    static func describe(_ error: any Error) -> String {
        if let error = error as? LeaderElectionError { return error.message }
        if let error = error as? LeaseCtlError { return error.message }
        return "\(error)"
    }
}
