import LeaderElection

/// The lock backends `leasectl` knows, by URL scheme.
///
/// ```swift
/// let registry = LockRegistry.standard(etcd: etcdSettings, kubernetes: kubernetesSettings)
/// let lock = try registry.makeLock(at: LockURL(parsing: "kubernetes://default/x"), identity: id)
/// …
/// await registry.shutdown()
/// ```
struct LockRegistry: Sendable {
    /// The backends built into this `leasectl` with default connection settings: `file`; `etcd` (plaintext —
    /// to any endpoint, as with `--etcd-plaintext` —, no authentication, 5 s request timeout); `kubernetes`
    /// (the default kubeconfig or the pod's service account, loaded on first use, 5 s request timeout). For
    /// validation and tests: commands connect through ``standard(etcd:kubernetes:)`` with their options, where
    /// plaintext to a non-loopback etcd needs `--etcd-plaintext`.
    static let standard = LockRegistry.standard(
        etcd: EtcdConnectionSettings(allowsRemotePlaintext: true), kubernetes: KubernetesConnectionSettings())

    /// The backends built into this `leasectl`, connecting to etcd and Kubernetes with `etcd` and
    /// `kubernetes`. Nothing connects until a lock of the scheme is used; call ``shutdown()`` at exit.
    /// The registry of a one-shot command (`get`, `release`, `handoff`): every etcd and Kubernetes call has a 5 s
    /// deadline unless the connection flags say otherwise.
    static func oneShot(etcd: EtcdOptions, kubernetes: KubernetesOptions) throws -> LockRegistry {
        LockRegistry.standard(etcd: try etcd.settings(defaultTimeout: .seconds(5)),
                              kubernetes: kubernetes.settings(defaultTimeout: .seconds(5)))
    }

    static func standard(etcd: EtcdConnectionSettings, kubernetes: KubernetesConnectionSettings) -> LockRegistry {
        LockRegistry([
            FileLockBackend(),
            EtcdLockBackend(pool: EtcdClientPool(settings: etcd)),
            KubernetesLockBackend(pool: KubernetesClientPool(settings: kubernetes)),
        ])
    }

    /// Schemes that are planned but not built in yet, named in errors so users know why they fail.
    static let plannedSchemes: [String] = []

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

    /// The backend for `url` when it reads collections in one request (see ``LeaseListingBackend``).
    func listingBackend(for url: LockURL) -> (any LeaseListingBackend)? {
        backends[url.scheme] as? any LeaseListingBackend
    }

    /// `url` with the backend's defaults filled in (see ``LockBackend/resolve(_:)``).
    func resolve(_ url: LockURL) throws -> LockURL {
        try backend(for: url).resolve(url)
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
    func shutdown() async {
        for backend in backends.values { await backend.shutdown() }
    }

    /// Runs `body` with this registry, then shuts it down, whether `body` throws or not.
    func using<T>(_ body: (LockRegistry) async throws -> T) async throws -> T {
        do {
            let result = try await body(self)
            await shutdown()
            return result
        } catch {
            await shutdown()
            throw error
        }
    }

    /// A short message for `error`, without backend hints.
    static func describe(_ error: any Error) -> String {
        if let error = error as? LeaderElectionError { return error.message }
        if let error = error as? LeaseCtlError { return error.message }
        return "\(error)"
    }
}
