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
            that is a directory), listing every lock inside. Without URL, lists the current directory.

            etcd://HOST:PORT[,HOST:PORT...]/path/to/key names the lock at the etcd key /path/to/key; with a \
            trailing slash (etcd://HOST:PORT/leader-election/default/) it lists every key under that prefix, \
            named by their path below it. Connect with the --etcd-* options (TLS, user); the password comes \
            from $ETCD_PASSWORD or --etcd-password-file.

            Columns: NAME; HOLDER (<none> when free, <corrupt> when the record does not decode); AGE since \
            the holder acquired the lock; TRANSITIONS, the number of hand-overs (the fencing token); and \
            EXPIRES IN, an ESTIMATE of renewTime + leaseDuration - now by this host's wall clock (the \
            candidates themselves judge expiry on their own monotonic clocks): "expired" when past, or when \
            the backend verified that the holder is gone, and <none> when the lock is free.
            """
    )

    /// The `-o` formats.
    enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
        case table, json, yaml
    }

    @Argument(help: ArgumentHelp("Locks or collections of locks. (default: the current directory)", valueName: "url"))
    var urls: [String] = []

    @Option(name: .shortAndLong, help: "Output format: table, json (client-go field names plus lock URL and version) or yaml.")
    var output: OutputFormat = .table

    @Flag(name: .shortAndLong, help: "After listing, print a lock again whenever it changes, until interrupted.")
    var watch = false

    @OptionGroup(title: "etcd connection")
    var etcd: EtcdOptions

    func run() async throws {
        let registry = LockRegistry.standard(etcd: try etcd.settings(defaultTimeout: .seconds(5)))
        defer { registry.close() }
        let targets = try resolveTargets(registry)
        let getter = LeaseGetter(targets: targets, format: output, registry: registry)
        if watch {
            let signals = ShutdownSignals()
            await signals.run { await getter.watch() }
            withExtendedLifetime(signals) {}
            return
        }
        let code = await getter.printOnce()
        if code != 0 { throw ExitCode(code) }
    }

    private func resolveTargets(_ registry: LockRegistry) throws -> [LeaseGetter.Target] {
        let texts = urls.isEmpty ? [FileManager.default.currentDirectoryPath + "/"] : urls
        return try texts.map { text in
            let url = try LockURL(parsing: text)
            _ = try registry.backend(for: url)
            return LeaseGetter.Target(url: url)
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
    private let readerIdentity = "leasectl-get_\(UUID().uuidString.lowercased())"

    init(targets: [Target], format: GetCommand.OutputFormat, registry: LockRegistry = .standard) {
        self.targets = targets
        self.format = format
        self.registry = registry
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

    /// Every lock the targets stand for, opened for reading. Problems are reported on stderr. `single` is
    /// `true` when the output names a single lock (print an object, not a list).
    private func openLocks() async -> (locks: [(Found, any ResourceLock)], failed: Bool, single: Bool) {
        var result: [(Found, any ResourceLock)] = []
        var failed = false
        var single = false
        var seen = Set<LockURL>()
        for target in targets {
            do {
                let urls = try await registry.locks(at: target.url)
                if urls.isEmpty {
                    Terminal.err("No locks found in \(target.url.asCollection).")
                }
                single = targets.count == 1 && !target.url.isCollection && urls == [target.url]
                for url in urls where seen.insert(url).inserted {
                    do {
                        let found = Found(url: url, name: Self.displayName(of: url, in: target.url))
                        result.append((found, try registry.makeLock(at: url, identity: readerIdentity)))
                    } catch {
                        Terminal.err("Error: \(url): \(registry.describe(error, for: url))")
                        failed = true
                    }
                }
            } catch {
                Terminal.err("Error: \(target.url): \(registry.describe(error, for: target.url))")
                failed = true
            }
        }
        return (result, failed, single)
    }

    private func read(_ found: Found, _ lock: any ResourceLock) async -> LeaseSnapshot {
        let registry = self.registry
        return await LeaseSnapshot.read(lock, url: found.url, name: found.name) { registry.describe($0, for: found.url) }
    }

    /// Prints every lock once. Returns the exit status: 1 if a lock was missing or could not be read.
    func printOnce() async -> Int32 {
        let (locks, openFailed, isSingleLock) = await openLocks()
        var snapshots: [LeaseSnapshot] = []
        for (found, lock) in locks { snapshots.append(await read(found, lock)) }
        var failed = openFailed
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
                for line in TextTable.render(header: LeaseSnapshot.columns, rows: snapshots.map(\.cells)) { Terminal.out(line) }
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

    /// Prints every lock, then each lock again whenever it changes, until cancelled. Wakes on the locks'
    /// change feeds where they have one, and polls every second (also to find new locks in directories).
    func watch() async {
        var table: TextTable?
        var printed: [LockURL: String] = [:]
        var opened: [LockURL: (Found, any ResourceLock)] = [:]
        var order: [LockURL] = []
        var reported: Set<String> = []
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        var feeds: [Task<Void, Never>] = []
        // Poll every second when some lock has no change feed, or to find new locks in a collection.
        var needsPolling = false
        for target in targets where !needsPolling {
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
        defer {
            ticker.cancel()
            for feed in feeds { feed.cancel() }
        }
        func report(_ message: String) {
            if reported.insert(message).inserted { Terminal.err(message) }
        }
        wake.yield()
        for await _ in wakeups {
            if Task.isCancelled { break }
            for target in targets {
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
            for url in order {
                let (found, lock) = opened[url]!
                snapshots.append(await read(found, lock))
            }
            if table == nil, format == .table, !snapshots.isEmpty {
                let layout = TextTable(header: LeaseSnapshot.columns, rows: snapshots.map(\.cells))
                Terminal.out(layout.line(LeaseSnapshot.columns))
                table = layout
            }
            for snapshot in snapshots where printed[snapshot.url] != snapshot.fingerprint {
                printed[snapshot.url] = snapshot.fingerprint
                switch format {
                case .table: Terminal.out(table!.line(snapshot.cells))
                case .json: Terminal.out(snapshot.structured.json())
                case .yaml: Terminal.writeAll("---\n" + snapshot.structured.yaml(), to: STDOUT_FILENO)
                }
            }
        }
    }
}
