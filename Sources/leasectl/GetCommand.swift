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

    @Argument(help: ArgumentHelp("Locks or directories of locks. (default: the current directory)", valueName: "url"))
    var urls: [String] = []

    @Option(name: .shortAndLong, help: "Output format: table, json (client-go field names plus lock URL and version) or yaml.")
    var output: OutputFormat = .table

    @Flag(name: .shortAndLong, help: "After listing, print a lock again whenever it changes, until interrupted.")
    var watch = false

    func run() async throws {
        let targets = try resolveTargets()
        let getter = LeaseGetter(targets: targets, format: output)
        if watch {
            let signals = ShutdownSignals()
            await signals.run { await getter.watch() }
            withExtendedLifetime(signals) {}
            return
        }
        let code = await getter.printOnce()
        if code != 0 { throw ExitCode(code) }
    }

    private func resolveTargets() throws -> [LeaseGetter.Target] {
        let texts = urls.isEmpty ? [FileManager.default.currentDirectoryPath + "/"] : urls
        return try texts.map { text in
            let url = try LockURL(parsing: text)
            _ = try LockRegistry.standard.backend(for: url)
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

    let targets: [Target]
    let format: GetCommand.OutputFormat
    let registry = LockRegistry.standard
    private let readerIdentity = "leasectl-get_\(UUID().uuidString.lowercased())"

    init(targets: [Target], format: GetCommand.OutputFormat) {
        self.targets = targets
        self.format = format
    }

    /// `true` when the output names a single lock (print an object, not a list).
    private var isSingleLock: Bool {
        targets.count == 1 && !targets[0].url.isCollection && (try? registry.locks(at: targets[0].url)) == [targets[0].url]
    }

    /// Every lock the targets stand for, opened for reading. Problems are reported on stderr.
    private func openLocks() -> (locks: [(LockURL, any ResourceLock)], failed: Bool) {
        var result: [(LockURL, any ResourceLock)] = []
        var failed = false
        var seen = Set<LockURL>()
        for target in targets {
            do {
                let urls = try registry.locks(at: target.url)
                if try urls.isEmpty && !isExplicitLock(target.url) {
                    Terminal.err("No locks found in \(target.url.asCollection).")
                }
                for url in urls where seen.insert(url).inserted {
                    do {
                        result.append((url, try registry.makeLock(at: url, identity: readerIdentity)))
                    } catch {
                        Terminal.err("Error: \(url): \(Self.describe(error))")
                        failed = true
                    }
                }
            } catch {
                Terminal.err("Error: \(target.url): \(Self.describe(error))")
                failed = true
            }
        }
        return (result, failed)
    }

    private func isExplicitLock(_ url: LockURL) throws -> Bool {
        try registry.locks(at: url) == [url]
    }

    private func readAll(_ locks: [(LockURL, any ResourceLock)]) async -> [LeaseSnapshot] {
        var snapshots: [LeaseSnapshot] = []
        for (url, lock) in locks { snapshots.append(await LeaseSnapshot.read(lock, url: url)) }
        return snapshots
    }

    /// Prints every lock once. Returns the exit status: 1 if a lock was missing or could not be read.
    func printOnce() async -> Int32 {
        let (locks, openFailed) = openLocks()
        var snapshots = await readAll(locks)
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
        var opened: [LockURL: any ResourceLock] = [:]
        var order: [LockURL] = []
        var reported: Set<String> = []
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        var feeds: [Task<Void, Never>] = []
        // Poll every second when some lock has no change feed, or to find new locks in a collection.
        let polls = Mutex(targets.contains { $0.url.isCollection || (try? registry.locks(at: $0.url)) != [$0.url] })
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
                do { urls = try registry.locks(at: target.url) } catch {
                    report("Error: \(target.url): \(Self.describe(error))")
                    continue
                }
                for url in urls where opened[url] == nil {
                    do {
                        let lock = try registry.makeLock(at: url, identity: readerIdentity)
                        opened[url] = lock
                        order.append(url)
                        if let changes = lock.changes() {
                            feeds.append(Task {
                                for await _ in changes { wake.yield() }
                            })
                        } else {
                            polls.withLock { $0 = true }
                        }
                    } catch {
                        report("Error: \(url): \(Self.describe(error))")
                    }
                }
            }
            var snapshots: [LeaseSnapshot] = []
            for url in order {
                snapshots.append(await LeaseSnapshot.read(opened[url]!, url: url))
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

    /// A short message for `error`.
    static func describe(_ error: any Error) -> String {
        if let error = error as? LeaderElectionError { return error.message }
        return "\(error)"
    }
}
