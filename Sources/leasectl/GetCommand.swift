import ArgumentParser
import Foundation
import LeaderElection
import Synchronization

/// `leasectl get`: show locks like `kubectl get leases`.
struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract: "Show locks: holder, age, transitions and estimated expiry.",
        discussion: """
            Each URL names one lock (file:///dir/name) or a directory of them (file:///dir/, or any path \
            that is a directory), listing every lock inside. Without URL, lists the current directory \
            (or, with -n or -A, Kubernetes Leases).

            etcd://HOST:PORT[,HOST:PORT...]/path/to/key names the lock at the etcd key /path/to/key; with a \
            trailing slash (etcd://HOST:PORT/leader-election/default/) it lists every key under that prefix, \
            named by their path below it. Connect with the --etcd-* options (TLS, user); the password comes \
            from $ETCD_PASSWORD or --etcd-password-file.

            kubernetes://NAMESPACE/NAME names the Lease NAME in NAMESPACE; kubernetes://NAMESPACE/ lists \
            every Lease in NAMESPACE; kubernetes:// (or kubernetes:///NAME) uses -n NAMESPACE, else the \
            kubeconfig context's namespace; with -A (or kubernetes://*/) it lists the Leases of all \
            namespaces, with a NAMESPACE column first. The API server and credentials come from \
            --kubeconfig (else in-cluster in a pod, else $KUBECONFIG, else ~/.kube/config) and --context. \
            Leases are read with one list request per URL, and followed with a watch under -w.

            Columns: NAME; HOLDER (<none> when free, <corrupt> when the record does not decode); AGE since \
            the holder acquired the lock (for a Lease without acquireTime, such as a kubelet's node \
            heartbeat in kube-node-lease, since the Lease was created); TRANSITIONS, the number of \
            hand-overs (the fencing token); and EXPIRES IN, an ESTIMATE of renewTime + leaseDuration - now \
            by this host's wall clock (the candidates themselves judge expiry on their own monotonic \
            clocks): "expired" when past, or when the backend verified that the holder is gone, and <none> \
            when the lock is free.

            Examples:
              leasectl get /run/locks/
              leasectl get -n kube-system kubernetes://
              leasectl get -A
              leasectl get kubernetes://kube-node-lease/ -o json
              leasectl get -w kubernetes://default/cron
            """
    )

    /// The `-o` formats.
    enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
        case table, json, yaml
    }

    @Argument(help: ArgumentHelp(
        "Locks or collections of locks. (default: the current directory; kubernetes:// with -n or -A)", valueName: "url"))
    var urls: [String] = []

    @Option(name: .shortAndLong, help: "Output format: table, json (client-go field names plus lock URL and version) or yaml.")
    var output: OutputFormat = .table

    @Flag(name: .shortAndLong, help: "After listing, print a lock again whenever it changes, until interrupted.")
    var watch = false

    @Flag(name: [.customShort("A"), .long], help: "List the Leases of every namespace (kubernetes:// URLs without a namespace).")
    var allNamespaces = false

    @OptionGroup(title: "etcd connection")
    var etcd: EtcdOptions

    @OptionGroup(title: "Kubernetes connection")
    var kubernetes: KubernetesOptions

    func validate() throws {
        guard allNamespaces else { return }
        if let namespace = kubernetes.namespace {
            throw ValidationError("--namespace \(namespace) and --all-namespaces exclude each other")
        }
        var anyKubernetes = urls.isEmpty
        for text in urls {
            guard let url = try? LockURL(parsing: text), url.scheme == KubernetesLockBackend.schemeName else { continue }
            anyKubernetes = true
            guard let address = try? KubernetesLeaseAddress(url) else { continue }
            if case .namespace(let namespace) = address.scope {
                throw ValidationError("--all-namespaces lists every namespace, but \(text) names namespace \(namespace); drop one of them")
            }
            if address.name != nil {
                throw ValidationError("a Lease cannot be retrieved by name across all namespaces: \(text); write kubernetes://NAMESPACE/NAME")
            }
        }
        if !anyKubernetes {
            throw ValidationError("--all-namespaces applies to kubernetes:// URLs (for example: leasectl get -A kubernetes://)")
        }
    }

    func run() async throws {
        // Library warnings (an insecure etcd or Kubernetes connection) go to standard error, never into the output.
        LogLevelArgument.warning.bootstrap()
        let registry = try LockRegistry.oneShot(etcd: etcd, kubernetes: kubernetes)
        let code = try await registry.using { registry in
            let targets = try resolveTargets(registry)
            let getter = LeaseGetter(targets: targets, format: output, registry: registry)
            if watch {
                let signals = ShutdownSignals()
                let code = await signals.run { await getter.watch() }
                withExtendedLifetime(signals) {}
                return code
            }
            return await getter.printOnce()
        }
        if code != 0 { throw ExitCode(code) }
    }

    /// The URLs to show: the arguments (or the current directory, or `kubernetes://` with -n or -A), with
    /// -A applied and each backend's defaults filled in (`kubernetes://` → `kubernetes://NAMESPACE/`).
    func resolveTargets(_ registry: LockRegistry) throws -> [LeaseGetter.Target] {
        let texts: [String]
        if !urls.isEmpty {
            texts = urls
        } else if allNamespaces || kubernetes.namespace != nil {
            texts = ["\(KubernetesLockBackend.schemeName)://"]
        } else {
            texts = [FileManager.default.currentDirectoryPath + "/"]
        }
        return try texts.map { text in
            var url = try LockURL(parsing: text)
            if allNamespaces, url.scheme == KubernetesLockBackend.schemeName, url.authority.isEmpty {
                url.authority = KubernetesLeaseAddress.allNamespacesAuthority
            }
            return LeaseGetter.Target(url: try registry.resolve(url))
        }
    }
}

/// Reads and prints the locks for `leasectl get`.
struct LeaseGetter: Sendable {
    /// One command-line argument: a lock, or a collection expanded on every read.
    struct Target: Sendable {
        var url: LockURL
    }

    /// A lock a target stands for, and the name it is shown under.
    struct Found: Sendable {
        var url: LockURL
        var name: String
    }

    let targets: [Target]
    let format: GetCommand.OutputFormat
    let registry: LockRegistry
    /// Whether the table has kubectl's NAMESPACE column: when a target lists every namespace (`-A`), or
    /// the targets are Leases of several namespaces.
    let showsNamespace: Bool
    private let readerIdentity = "leasectl-get_\(UUID().uuidString.lowercased())"

    init(targets: [Target], format: GetCommand.OutputFormat, registry: LockRegistry = .standard) {
        self.targets = targets
        self.format = format
        self.registry = registry
        let kubernetes = targets.map(\.url).filter { $0.scheme == KubernetesLockBackend.schemeName }
        showsNamespace = kubernetes.contains { $0.authority == KubernetesLeaseAddress.allNamespacesAuthority }
            || Set(kubernetes.map(\.authority)).count > 1
    }

    /// The name to show for `url`, found by expanding `target`: its path below the collection (just the
    /// lock's name for a directory; `namespace/name` for an etcd prefix two levels up), else its last component.
    static func displayName(of url: LockURL, in target: LockURL) -> String {
        let base = target.asCollection.path
        if url != target, url.path.count > base.count, url.path.hasPrefix(base) {
            return String(url.path.dropFirst(base.count))
        }
        return url.lastPathComponent
    }

    private var columns: [String] { LeaseSnapshot.columns(showingNamespace: showsNamespace) }

    private func cells(_ snapshot: LeaseSnapshot) -> [String] { snapshot.cells(showingNamespace: showsNamespace) }

    /// What `target` stands for, read now: with one request from a ``LeaseListingBackend``, else by
    /// opening and reading each lock. Problems with single locks are reported on stderr (`failed`).
    private func read(_ target: Target, failed: inout Bool) async throws -> [LeaseSnapshot] {
        if let backend = registry.listingBackend(for: target.url) {
            return try await backend.snapshots(at: target.url)
        }
        var snapshots: [LeaseSnapshot] = []
        for url in try await registry.locks(at: target.url) {
            do {
                let found = Found(url: url, name: Self.displayName(of: url, in: target.url))
                snapshots.append(await read(found, try registry.makeLock(at: url, identity: readerIdentity)))
            } catch {
                Terminal.err("Error: \(url): \(registry.describe(error, for: url))")
                failed = true
            }
        }
        return snapshots
    }

    /// What the watches of ``LeaseListingBackend`` targets saw, by target index.
    private final class Followed: Sendable {
        /// The latest snapshots of each target.
        let latest = Mutex<[Int: [LeaseSnapshot]]>([:])
        /// The error message of each target whose watch ended.
        let ended = Mutex<[Int: String]>([:])
    }

    private func read(_ found: Found, _ lock: any ResourceLock) async -> LeaseSnapshot {
        let registry = self.registry
        return await LeaseSnapshot.read(lock, url: found.url, name: found.name) { registry.describe($0, for: found.url) }
    }

    /// Prints every lock once. Returns the exit status: 1 if a lock was missing or could not be read.
    func printOnce() async -> Int32 {
        var snapshots: [LeaseSnapshot] = []
        var failed = false
        var seen = Set<LockURL>()
        for target in targets {
            do {
                let read = try await read(target, failed: &failed)
                if read.isEmpty {
                    Terminal.err("No locks found in \(target.url.asCollection).")
                }
                for snapshot in read where seen.insert(snapshot.url).inserted { snapshots.append(snapshot) }
            } catch {
                Terminal.err("Error: \(target.url): \(registry.describe(error, for: target.url))")
                failed = true
            }
        }
        // One lock named explicitly is printed as an object, not a list.
        let isSingleLock = targets.count == 1 && !targets[0].url.isCollection && snapshots.count == 1
            && (registry.listingBackend(for: targets[0].url) != nil || snapshots[0].url == targets[0].url)
        // A lock named explicitly that has no record is an error, as `kubectl get lease x` is.
        snapshots.removeAll { snapshot in
            guard case .missing = snapshot.state else { return false }
            Terminal.err("Error: lock \(snapshot.url) not found")
            failed = true
            return true
        }
        for snapshot in snapshots {
            if case .failed(let message) = snapshot.state {
                Terminal.err("Error: \(snapshot.url): \(message)")
                failed = true
            }
        }
        switch format {
        case .table:
            if !snapshots.isEmpty {
                for line in TextTable.render(header: columns, rows: snapshots.map(cells)) { Terminal.out(line) }
            }
        case .json, .yaml:
            let value: StructuredValue = isSingleLock && snapshots.count == 1
                ? snapshots[0].structured
                : .object([("items", .array(snapshots.map(\.structured)))])
            if format == .json {
                Terminal.out(value.json(pretty: true))
            } else {
                Terminal.writeAll(value.yaml(), to: STDOUT_FILENO)
            }
        }
        return failed ? 1 : 0
    }

    /// Prints every lock, then each lock again whenever it changes, until cancelled. Targets of a
    /// ``LeaseListingBackend`` are followed by its watch (an informer for Kubernetes); other locks wake the
    /// loop through their change feeds where they have one, and are polled every second otherwise (also to
    /// find new locks in directories).
    ///
    /// Returns 1 when every target's watch ended with an error (such as rejected credentials), else 0 once
    /// cancelled.
    func watch() async -> Int32 {
        var table: TextTable?
        var printed: [LockURL: String] = [:]
        var opened: [LockURL: (Found, any ResourceLock)] = [:]
        var order: [LockURL] = []
        var reported: Set<String> = []
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        var feeds: [Task<Void, Never>] = []
        defer { for feed in feeds { feed.cancel() } }
        func report(_ message: String) {
            if reported.insert(message).inserted { Terminal.err(message) }
        }

        // Targets followed by their backend's watch: the latest list of each, and whether it ended.
        let listed = targets.indices.filter { registry.listingBackend(for: targets[$0].url) != nil }
        let followed = Followed()
        for index in listed {
            let url = targets[index].url
            let backend = registry.listingBackend(for: url)!
            let registry = self.registry
            // Read once first, so that an unreachable server is reported while the watch keeps retrying.
            do {
                let snapshots = try await backend.snapshots(at: url)
                followed.latest.withLock { $0[index] = snapshots }
            } catch {
                if Task.isCancelled { return 0 }
                report("Error: \(url): \(registry.describe(error, for: url))")
            }
            let stream = backend.watchSnapshots(at: url)
            feeds.append(Task {
                do {
                    for try await snapshots in stream {
                        followed.latest.withLock { $0[index] = snapshots }
                        wake.yield()
                    }
                } catch {
                    if !Task.isCancelled {
                        followed.ended.withLock { $0[index] = "Error: \(url): \(registry.describe(error, for: url))" }
                    }
                }
                wake.yield()
            })
        }

        // Poll every second when some lock has no change feed, or to find new locks in a collection.
        var needsPolling = false
        for (index, target) in targets.enumerated() where !needsPolling && !listed.contains(index) {
            if target.url.isCollection {
                needsPolling = true
            } else {
                needsPolling = (try? await registry.locks(at: target.url)) != [target.url]
            }
        }
        let polls = Mutex(needsPolling)
        let ticker = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                if polls.withLock({ $0 }) { wake.yield() }
            }
        }
        defer { ticker.cancel() }
        wake.yield()
        for await _ in wakeups {
            if Task.isCancelled { break }
            for (index, target) in targets.enumerated() where !listed.contains(index) {
                let urls: [LockURL]
                do { urls = try await registry.locks(at: target.url) } catch {
                    if Task.isCancelled { break }
                    report("Error: \(target.url): \(registry.describe(error, for: target.url))")
                    continue
                }
                for url in urls where opened[url] == nil {
                    do {
                        let lock = try registry.makeLock(at: url, identity: readerIdentity)
                        opened[url] = (Found(url: url, name: Self.displayName(of: url, in: target.url)), lock)
                        order.append(url)
                        if let changes = lock.changes() {
                            feeds.append(Task {
                                for await _ in changes { wake.yield() }
                            })
                        } else {
                            polls.withLock { $0 = true }
                        }
                    } catch {
                        report("Error: \(url): \(registry.describe(error, for: url))")
                    }
                }
            }
            var snapshots: [LeaseSnapshot] = []
            var seen = Set<LockURL>()
            for index in targets.indices {
                if listed.contains(index) {
                    for snapshot in followed.latest.withLock({ $0[index] ?? [] }) where seen.insert(snapshot.url).inserted {
                        snapshots.append(snapshot)
                    }
                }
            }
            for url in order where seen.insert(url).inserted {
                let (found, lock) = opened[url]!
                snapshots.append(await read(found, lock))
            }
            if table == nil, format == .table, !snapshots.isEmpty {
                let layout = TextTable(header: columns, rows: snapshots.map(cells))
                Terminal.out(layout.line(columns))
                table = layout
            }
            for snapshot in snapshots where printed[snapshot.url] != snapshot.fingerprint {
                printed[snapshot.url] = snapshot.fingerprint
                switch format {
                case .table: Terminal.out(table!.line(cells(snapshot)))
                case .json: Terminal.out(snapshot.structured.json())
                case .yaml: Terminal.writeAll("---\n" + snapshot.structured.yaml(), to: STDOUT_FILENO)
                }
            }
            let endings = followed.ended.withLock { $0 }
            for index in endings.keys.sorted() { report(endings[index]!) }
            if !listed.isEmpty, listed.count == targets.count, endings.count == listed.count {
                return 1   // nothing left to follow
            }
        }
        return 0
    }
}
