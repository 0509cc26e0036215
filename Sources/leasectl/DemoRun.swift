import Foundation
import LeaderElection
import Synchronization

/// One run of `leasectl demo`: its directories, candidate processes, steps and report.
final class DemoRun: Sendable {
    /// A step that did not complete.
    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// A measured step, for the summary.
    struct Step: Sendable {
        var name: String
        var from: String
        var to: String
        var nanos: UInt64
        var note: String
    }

    static let leaseDuration = Duration.seconds(4)
    static let timing = ["--lease-duration", "4s", "--renew-deadline", "3s", "--retry-period", "500ms"]

    let executable = Terminal.executablePath()
    let lockDirectory: String
    let lockURL: String
    let logDirectory: String
    /// The temporary directory removed at the end.
    let temporaryRoot: String
    let keepsLockDirectory: Bool
    let candidateCount: Int
    let stepTimeout: Duration
    let hub = ElectionEventHub()
    private let running = Mutex<[String: CandidateProcess]>([:])
    private let kills = Mutex<[String: UInt64]>([:])

    /// Creates the directories (a temporary one, plus `lockDirectory` if given and missing).
    init(lockDirectory: String?, candidates: Int, stepTimeout: Duration) throws {
        var base = NSTemporaryDirectory()
        while base.count > 1 && base.hasSuffix("/") { base.removeLast() }
        var template = Array((base + "/leasectl-demo.XXXXXX").utf8CString)
        guard let root = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw LeaseCtlError("cannot create a temporary directory: \(String(cString: strerror(errno)))")
        }
        temporaryRoot = String(cString: root)
        let locks = lockDirectory.map { try? LockURL(parsing: $0).path } ?? (temporaryRoot + "/locks")
        guard let locks else { throw LeaseCtlError("invalid --dir \(lockDirectory ?? "")") }
        self.lockDirectory = locks
        keepsLockDirectory = lockDirectory != nil
        logDirectory = temporaryRoot + "/logs"
        try FileManager.default.createDirectory(atPath: locks, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
        lockURL = LockURL(scheme: "file", path: locks).appending("demo").description
        candidateCount = candidates
        self.stepTimeout = stepTimeout
    }

    /// Runs the steps, then always stops every candidate and removes the temporary directory.
    /// - Returns: `true` when every step succeeded.
    func run() async -> Bool {
        let outcome: Result<[Step], any Error>
        do {
            outcome = .success(try await steps())
        } catch {
            outcome = .failure(error)
        }
        // Clean up even when cancelled by a signal.
        await Task { await self.cleanUp() }.value
        switch outcome {
        case .success(let steps):
            printSummary(steps)
            if keepsLockDirectory { say("the lock stays in \(lockDirectory): try `leasectl get \(lockDirectory)/`") }
            return true
        case .failure(let error):
            Terminal.err("demo failed: \(error is CancellationError ? "interrupted" : "\(error)")")
            return false
        }
    }

    // MARK: - Steps

    private func steps() async throws -> [Step] {
        let lease = formatDuration(Self.leaseDuration)
        say("\(candidateCount) candidate processes campaign for \(lockURL)")
        say("(lease \(lease), renew deadline 3s, retry 500ms; times measured on CLOCK_MONOTONIC)")
        say("")

        // 1. Election.
        let started = Terminal.monotonicNanos()
        for k in 1...candidateCount { try start("candidate-\(k)") }
        let first = try await awaitEvent("a leader to be elected", after: 0) { $0.event == "startedLeading" }
        let firstLeader = first.identity
        let election = first.monotonicNanos &- started
        say("1. election: \(firstLeader) became leader (fencing token \(first.fencingToken ?? -1)) \(Self.millis(election)) after the candidates were started")
        try await awaitObservers(of: firstLeader)

        // 2. Graceful hand-off.
        var mark = hub.count
        let termAt = Terminal.monotonicNanos()
        process(firstLeader)?.process.signal(SIGTERM)
        say("2. graceful hand-off: SIGTERM to \(firstLeader)")
        let second = try await awaitEvent("another candidate to take over from \(firstLeader)", after: mark) {
            $0.event == "startedLeading" && $0.identity != firstLeader
        }
        let stopped = try await awaitEvent("\(firstLeader) to report that it stopped leading", after: mark) {
            $0.event == "stoppedLeading" && $0.identity == firstLeader
        }
        guard let exit = await process(firstLeader)?.process.waitUntilExit(timeout: stepTimeout) else {
            throw Failure("\(firstLeader) did not exit within \(formatDuration(stepTimeout)) of SIGTERM")
        }
        let handoff = second.monotonicNanos &- termAt
        say("   \(firstLeader) stopped leading (\(stopped.reason ?? "?")) and exited (\(exit)); \(second.identity) became leader (fencing token \(second.fencingToken ?? -1)) \(Self.millis(handoff)) after the signal")
        guard exit == .exited(0) else { throw Failure("\(firstLeader) exited with \(exit) after SIGTERM, expected exit status 0") }
        forget(firstLeader)
        mark = hub.count
        try start(firstLeader)
        try await awaitObservers(of: second.identity, only: [firstLeader], after: mark)
        say("   restarted \(firstLeader) as a follower")

        // 3. Crash.
        let secondLeader = second.identity
        mark = hub.count
        let killAt = Terminal.monotonicNanos()
        kills.withLock { $0[secondLeader] = killAt }
        process(secondLeader)?.process.signal(SIGKILL)
        say("3. crash: SIGKILL to \(secondLeader) (no release, no goodbye)")
        let third = try await awaitEvent("another candidate to take over from the killed \(secondLeader)", after: mark) {
            $0.event == "startedLeading" && $0.identity != secondLeader
        }
        _ = await process(secondLeader)?.process.waitUntilExit(timeout: stepTimeout)
        forget(secondLeader)
        let crash = third.monotonicNanos &- killAt
        let leaseNanos = UInt64(Self.leaseDuration.components.seconds) * 1_000_000_000
        let share = Self.percent(crash, of: leaseNanos)
        say("   \(third.identity) became leader (fencing token \(third.fencingToken ?? -1)) \(Self.millis(crash)) after the kill: \(share) of the \(lease) lease duration")
        if crash < leaseNanos / 2 {
            say("   the kernel released the dead leader's flock, so the followers saw it was gone and did not wait for the lease to expire")
        } else {
            say("   the takeover waited for the lease to expire: the backend could not tell that the holder was dead")
        }

        // Safety check: no two leaderships overlapped.
        let overlaps = LeadershipTimeline(entries: hub.entries.map(\.line), kills: kills.withLock { $0 }).overlaps
        guard overlaps.isEmpty else { throw Failure("leaderships overlapped: \(overlaps.joined(separator: "; "))") }
        let tokens = [first, second, third].compactMap(\.fencingToken)
        guard tokens == tokens.sorted(), Set(tokens).count == tokens.count else {
            throw Failure("fencing tokens did not increase: \(tokens)")
        }
        return [
            Step(name: "election", from: "-", to: firstLeader, nanos: election, note: "first startedLeading after start"),
            Step(name: "graceful hand-off", from: firstLeader, to: secondLeader, nanos: handoff, note: "SIGTERM; lease released"),
            Step(name: "crash takeover", from: secondLeader, to: third.identity, nanos: crash,
                 note: "SIGKILL; \(share) of the \(lease) lease"),
        ]
    }

    private func printSummary(_ steps: [Step]) {
        say("")
        let rows = steps.map { [$0.name, $0.from, $0.to, Self.millis($0.nanos), $0.note] }
        for line in TextTable.render(header: ["STEP", "FROM", "TO", "TAKEOVER", "NOTE"], rows: rows) { say(line) }
        let terms = hub.entries.filter { $0.line.event == "startedLeading" }.count
        say("")
        say("leaderships never overlapped (\(terms) terms checked); fencing tokens increased at every hand-over")
    }

    // MARK: - Candidates

    private func start(_ identity: String) throws {
        let candidate = try CandidateProcess.start(
            executable: executable, lock: lockURL, identity: identity, arguments: Self.timing,
            hub: hub, logPath: "\(logDirectory)/\(identity).log")
        running.withLock { $0[identity] = candidate }
    }

    private func process(_ identity: String) -> CandidateProcess? {
        running.withLock { $0[identity] }
    }

    private func forget(_ identity: String) {
        _ = running.withLock { $0.removeValue(forKey: identity) }
    }

    /// Waits until every running candidate (or those in `only`) has reported `leader` as leader, so that
    /// the next step measures a takeover and not a process start.
    private func awaitObservers(of leader: String, only: Set<String>? = nil, after: Int = 0) async throws {
        let identities = only ?? Set(running.withLock { Array($0.keys) })
        for identity in identities.sorted() {
            _ = try await awaitEvent("\(identity) to observe \(leader) as leader", after: after) {
                $0.identity == identity && $0.event == "newLeader" && $0.leader == leader
            }
        }
    }

    private func awaitEvent(
        _ what: String, after: Int, where predicate: @escaping @Sendable (ElectionEventLine) -> Bool
    ) async throws -> ElectionEventLine {
        if let entry = await hub.first(after: after, timeout: stepTimeout, where: predicate) { return entry.line }
        try Task.checkCancellation()
        throw Failure("timed out after \(formatDuration(stepTimeout)) waiting for \(what)")
    }

    /// SIGKILLs every candidate, for an immediate exit.
    func killAllNow() {
        for candidate in running.withLock({ Array($0.values) }) { candidate.process.signal(SIGKILL) }
    }

    private func cleanUp() async {
        let candidates = running.withLock { state in
            defer { state = [:] }
            return Array(state.values)
        }
        for candidate in candidates { candidate.process.signal(SIGTERM) }
        for candidate in candidates {
            if await candidate.process.waitUntilExit(timeout: .seconds(5)) == nil {
                candidate.process.signal(SIGKILL)
                _ = await candidate.process.waitUntilExit()
            }
            await candidate.outputClosed.value
        }
        try? FileManager.default.removeItem(atPath: temporaryRoot)
    }

    private func say(_ line: String) { Terminal.out(line) }

    /// `0.2%`, `37%`.
    static func percent(_ part: UInt64, of whole: UInt64) -> String {
        let value = Double(part) / Double(whole) * 100
        return value < 10 ? String(format: "%.1f%%", value) : String(format: "%.0f%%", value)
    }

    /// `12.3 ms` below 100 ms, `812 ms` below 10 s, `12.3 s` above.
    static func millis(_ nanos: UInt64) -> String {
        let ms = Double(nanos) / 1e6
        if ms < 100 { return String(format: "%.1f ms", ms) }
        if ms < 10_000 { return String(format: "%.0f ms", ms) }
        return String(format: "%.1f s", ms / 1000)
    }
}

/// Checks, from the events of several candidates, that no two leaderships overlapped on the host's
/// monotonic clock.
///
/// A leadership runs from `startedLeading` to the moment its work stopped (`stoppedLeading`'s
/// `workStoppedMonotonicNanos`, else the line's own time), or to the kill of a candidate that was killed
/// while leading. A leadership that has not ended lasts to the end of the record.
struct LeadershipTimeline: Sendable {
    /// One term.
    struct Term: Sendable {
        var identity: String
        var fencingToken: Int
        var start: UInt64
        var end: UInt64
    }

    let terms: [Term]

    init(entries: [ElectionEventLine], kills: [String: UInt64]) {
        var open: [String: (token: Int, start: UInt64)] = [:]
        var terms: [Term] = []
        let ordered = entries.filter { $0.event != "newLeader" }.sorted { $0.monotonicNanos < $1.monotonicNanos }
        for line in ordered {
            if line.event == "startedLeading" {
                if let previous = open[line.identity] {
                    // Restarted after a kill: the previous process's term ended at the kill.
                    let end = kills[line.identity].map { min($0, line.monotonicNanos) } ?? line.monotonicNanos
                    terms.append(Term(identity: line.identity, fencingToken: previous.token, start: previous.start, end: end))
                }
                open[line.identity] = (line.fencingToken ?? -1, line.monotonicNanos)
            } else if line.event == "stoppedLeading", let started = open.removeValue(forKey: line.identity) {
                terms.append(Term(identity: line.identity, fencingToken: started.token, start: started.start, end: line.leadershipEndNanos))
            }
        }
        for (identity, started) in open {
            terms.append(Term(identity: identity, fencingToken: started.token, start: started.start, end: kills[identity] ?? .max))
        }
        self.terms = terms.sorted { $0.start < $1.start }
    }

    /// Descriptions of every pair of overlapping terms; empty when leadership was exclusive.
    var overlaps: [String] {
        var found: [String] = []
        for (i, a) in terms.enumerated() {
            for b in terms[(i + 1)...] where b.start < a.end {
                found.append("\(b.identity) (token \(b.fencingToken)) started while \(a.identity) (token \(a.fencingToken)) still led")
            }
        }
        return found
    }
}
