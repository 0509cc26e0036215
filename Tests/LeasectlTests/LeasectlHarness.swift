import Foundation
import Synchronization
import Testing
@testable import leasectl

/// Runs the built `leasectl` binary (it sits next to the test bundle, since this target depends on it).
enum LeasectlHarness {
    /// The path of the `leasectl` executable built with the tests.
    static let executable: String = {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var directory = URL(fileURLWithPath: me).deletingLastPathComponent()
        // On some platforms the test binary sits inside a bundle directory.
        for _ in 0..<4 where !FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent("leasectl").path) {
            directory.deleteLastPathComponent()
        }
        return directory.appendingPathComponent("leasectl").path
    }()

    /// What a finished `leasectl` run printed and how it exited.
    struct Output: Sendable, CustomStringConvertible {
        var status: ProcessExitStatus
        var stdout: String
        var stderr: String
        var description: String { "\(status)\n--- stdout\n\(stdout)--- stderr\n\(stderr)" }
    }

    /// Runs `leasectl arguments…` to completion, killing it after `timeout`.
    ///
    /// - Parameter environment: variables to set (or, with `nil` values, remove) for it.
    static func run(
        _ arguments: [String], environment: [String: String?] = [:], timeout: Duration = .seconds(30)
    ) async throws -> Output {
        var variables = ProcessInfo.processInfo.environment
        for (name, value) in environment { variables[name] = value }
        let process = try ChildProcess.spawn(
            [executable] + arguments, environment: variables, standardInput: .null, standardOutput: .pipe, standardError: .pipe)
        let stdout = collect(process.standardOutput!)
        let stderr = collect(process.standardError!)
        var status = await process.waitUntilExit(timeout: timeout)
        if status == nil {
            process.signal(SIGKILL)
            status = await process.waitUntilExit()
            Issue.record("leasectl \(arguments.joined(separator: " ")) did not finish within \(timeout)")
        }
        return Output(status: status!, stdout: await stdout.value, stderr: await stderr.value)
    }

    /// Reads `fd` to end of file on a thread of its own, then closes it.
    static func collect(_ fd: Int32) -> Task<String, Never> {
        let (stream, continuation) = AsyncStream.makeStream(of: String.self)
        Thread.detachNewThread {
            var text = ""
            LineReader.forEachLine(of: fd) { text += $0 + "\n" }
            close(fd)
            continuation.yield(text)
            continuation.finish()
        }
        return Task { await stream.first { _ in true } ?? "" }
    }

    /// A new empty directory under the temporary directory, removed by `cleanUp`.
    static func temporaryDirectory() throws -> String {
        var template = Array("/tmp/leasectl-tests.XXXXXX".utf8CString)
        guard let path = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw LeaseCtlError("mkdtemp failed")
        }
        return String(cString: path)
    }

    /// Removes a directory made by ``temporaryDirectory()``.
    static func cleanUp(_ directory: String) {
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Several `leasectl elect --events json` processes on one lock, their events, and the kills a test made.
final class CandidateGroup: Sendable {
    let lock: String
    let arguments: [String]
    let directory: String
    let hub = ElectionEventHub()
    private let processes = Mutex<[String: CandidateProcess]>([:])
    /// Kill times (`CLOCK_MONOTONIC`) by the fencing token of the term that was leading.
    private let killedTerms = Mutex<[Int: UInt64]>([:])

    init(lock: String, directory: String, arguments: [String]) {
        self.lock = lock
        self.directory = directory
        self.arguments = arguments
    }

    /// Starts a candidate (again) under `identity`.
    func start(_ identity: String, command: [String] = []) throws {
        let candidate = try CandidateProcess.start(
            executable: LeasectlHarness.executable, lock: lock, identity: identity,
            arguments: arguments + (command.isEmpty ? [] : ["--"] + command),
            hub: hub, logPath: "\(directory)/\(identity).log")
        processes.withLock { $0[identity] = candidate }
    }

    func process(_ identity: String) -> CandidateProcess? { processes.withLock { $0[identity] } }

    var identities: [String] { processes.withLock { $0.keys.sorted() } }

    /// The first event matching `predicate` after `after`, or a recorded test failure.
    func await(
        _ what: String, after: Int = 0, timeout: Duration = .seconds(20),
        where predicate: @escaping @Sendable (ElectionEventLine) -> Bool
    ) async throws -> ElectionEventLine {
        guard let entry = await hub.first(after: after, timeout: timeout, where: predicate) else {
            throw LeaseCtlError("timed out waiting for \(what); events:\n" + hub.entries.map { "\($0.line)" }.joined(separator: "\n") + "\n" + logs())
        }
        return entry.line
    }

    /// Waits until every candidate in `identities` has reported `leader` as leader (after `after`).
    func awaitObservers(of leader: String, identities: [String], after: Int) async throws {
        for identity in identities {
            _ = try await self.await("\(identity) to observe \(leader)", after: after) {
                $0.identity == identity && $0.event == "newLeader" && $0.leader == leader
            }
        }
    }

    /// One graceful hand-off: SIGTERMs `previous` (the leader), waits for another candidate to start leading and
    /// for `previous` to report stopping and exit, then restarts it as a follower and waits until it sees the new
    /// leader. Returns the new leader's event, `previous`'s stop event, its exit status and the hand-off time
    /// (signal → new leader's `startedLeading`, monotonic ns).
    func gracefulHandOff(from previous: ElectionEventLine, exitTimeout: Duration = .seconds(15)) async throws
        -> (leader: ElectionEventLine, stopped: ElectionEventLine, exit: ProcessExitStatus?, nanos: UInt64)
    {
        let mark = hub.count
        let signalledAt = Terminal.monotonicNanos()
        process(previous.identity)?.process.signal(SIGTERM)
        let leader = try await self.await("a hand-off from \(previous.identity)", after: mark) {
            $0.event == "startedLeading" && $0.identity != previous.identity
        }
        let stopped = try await self.await("\(previous.identity) to stop leading", after: mark) {
            $0.event == "stoppedLeading" && $0.identity == previous.identity
        }
        let exit = await process(previous.identity)?.process.waitUntilExit(timeout: exitTimeout)
        let restartMark = hub.count
        try start(previous.identity)
        try await awaitObservers(of: leader.identity, identities: [previous.identity], after: restartMark)
        return (leader, stopped, exit, leader.monotonicNanos - signalledAt)
    }

    /// SIGKILLs `identity`, which leads term `fencingToken`; returns the kill time.
    func kill(_ identity: String, leadingTerm fencingToken: Int) async -> UInt64 {
        let at = Terminal.monotonicNanos()
        killedTerms.withLock { $0[fencingToken] = at }
        process(identity)?.process.signal(SIGKILL)
        _ = await process(identity)?.process.waitUntilExit(timeout: .seconds(10))
        return at
    }

    var kills: [Int: UInt64] { killedTerms.withLock { $0 } }

    /// SIGTERMs every candidate and waits (bounded) for all to exit; SIGKILL for stragglers.
    func stopAll() async {
        let all = processes.withLock { state in
            defer { state = [:] }
            return Array(state.values)
        }
        for candidate in all { candidate.process.signal(SIGTERM) }
        for candidate in all {
            if await candidate.process.waitUntilExit(timeout: .seconds(15)) == nil {
                candidate.process.signal(SIGKILL)
                _ = await candidate.process.waitUntilExit()
            }
            await candidate.outputClosed.value
        }
    }

    /// The candidates' standard error logs, for failure messages.
    func logs() -> String {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".log") }) ?? []
        return files.sorted().map { file in
            "--- \(file)\n" + ((try? String(contentsOfFile: "\(directory)/\(file)", encoding: .utf8)) ?? "")
        }.joined()
    }
}

extension CandidateGroup {
    /// A targeted hand-off: starts `a` (awaited as leader), then `b` and `c` (awaited as its observers), runs
    /// `leasectl handoff --wait --timeout 20s LOCK --to c` (plus `arguments`) and checks that it exits 0 naming the
    /// lock as `lockLabel` and reporting c leading, that `a` stops with `handedOff` and that `c` leads with the next
    /// fencing token; then stops every candidate. Returns `a`'s `startedLeading` event.
    func handOffFromAToC(lockLabel: String, arguments: [String] = []) async throws -> ElectionEventLine {
        try start("a")
        let started = try await self.await("a to lead") { $0.event == "startedLeading" }
        try start("b")
        try start("c")
        try await awaitObservers(of: "a", identities: ["b", "c"], after: 0)

        let mark = hub.count
        let handoff = try await LeasectlHarness.run(["handoff", "--wait", "--timeout", "20s", lock, "--to", "c"] + arguments)
        #expect(handoff.status == .exited(0), "\(handoff)")
        #expect(handoff.stdout.hasPrefix("requested hand-off of lock \(lockLabel) from a to c\nc leads lock"), "\(handoff)")

        let stopped = try await self.await("a to hand off", after: mark) { $0.event == "stoppedLeading" && $0.identity == "a" }
        #expect(stopped.reason == "handedOff")
        let next = try await self.await("c to lead", after: mark) { $0.event == "startedLeading" }
        #expect(next.identity == "c" && next.fencingToken == started.fencingToken! + 1)
        await stopAll()
        return started
    }
}

extension CandidateGroup {
    /// The multi-process election every backend must survive: starts `names`, checks that exactly one leads and
    /// all see it; then `handOffs` graceful hand-offs (SIGTERM: the leader stops its work, releases, and a
    /// follower woken by the change feed takes over at once) and `crashes` takeovers (SIGKILL: the others
    /// wait for the lease to expire), each with the next fencing token; stops everyone and checks that
    /// leadership was exclusive throughout. Returns the hand-off and takeover times (monotonic ns) and the last
    /// leader's `startedLeading` event.
    func handOffsAndCrashes(
        names: [String], lease: Duration, retry: Duration, handOffs: Int = 2, crashes: Int = 2
    ) async throws -> (handOffs: [UInt64], takeovers: [UInt64], lastLeader: ElectionEventLine) {
        for name in names { try start(name) }
        var leader = try await self.await("a first leader") { $0.event == "startedLeading" }
        try await awaitObservers(of: leader.identity, identities: names, after: 0)
        let started = hub.entries.map(\.line).filter { $0.event == "startedLeading" }
        #expect(started.count == 1, "exactly one leader: \(started)")

        var handOffTimes: [UInt64] = []
        for _ in 0..<handOffs {
            let previous = leader
            let handOff = try await gracefulHandOff(from: previous, exitTimeout: .seconds(10))
            leader = handOff.leader
            handOffTimes.append(handOff.nanos)
            #expect(handOff.stopped.reason == "released")
            #expect(try #require(leader.fencingToken) == previous.fencingToken! + 1)
            #expect(handOff.exit == .exited(0))
        }

        var takeovers: [UInt64] = []
        for _ in 0..<crashes {
            let victim = leader
            let mark = hub.count
            let killedAt = await kill(victim.identity, leadingTerm: try #require(victim.fencingToken))
            leader = try await self.await("a takeover after killing \(victim.identity)", after: mark, timeout: .seconds(15)) {
                $0.event == "startedLeading" && $0.identity != victim.identity
            }
            let takeover = leader.monotonicNanos - killedAt
            takeovers.append(takeover)
            // The victim renewed at most a retry period before it died; followers count the lease from when
            // they saw that renewal.
            #expect(Duration.nanoseconds(takeover) >= lease - retry - .milliseconds(100), "a takeover must wait for the lease to expire")
            #expect(Duration.nanoseconds(takeover) < lease + .seconds(3))
            #expect(try #require(leader.fencingToken) == victim.fencingToken! + 1)
            let restartMark = hub.count
            try start(victim.identity)
            try await awaitObservers(of: leader.identity, identities: [victim.identity], after: restartMark)
        }

        await stopAll()
        try ProcessTests.ElectMultiProcessTests.expectExclusiveLeadership(hub.entries.map(\.line), kills: kills, minimumTerms: 1 + handOffs + crashes)
        return (handOffTimes, takeovers, leader)
    }
}
