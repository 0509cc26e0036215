import LeaderElection

/// The lock backends `leasectl` knows, by URL scheme.
///
/// ```swift
/// let lock = try LockRegistry.standard.makeLock(at: LockURL(parsing: "file:///run/locks/x"), identity: id)
/// ```
struct LockRegistry: Sendable {
    /// The backends built into this `leasectl`.
    static let standard = LockRegistry([FileLockBackend()])

    /// Schemes that are planned but not built in yet, named in errors so users know why they fail.
    static let plannedSchemes = ["etcd", "kubernetes"]

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
    func locks(at url: LockURL) throws -> [LockURL] {
        try backend(for: url).locks(at: url)
    }
}
