#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EtcdTesting
import Foundation
import Synchronization

/// One fault as injected: when, on whom, and when leadership was back.
struct FaultRecord: Codable, Sendable {
    var step: Int
    var kind: FaultKind
    /// Monotonic nanoseconds: injection, end of the fault condition, first fenced action showing recovery.
    var inject: Int64
    var clear: Int64
    var recovered: Int64?
    var victim: String?
    var victimToken: Int?
    var detail: String
}

/// One fenced action line.
struct ActionLine: Codable, Sendable {
    var token: Int
    var mono: Int64
    var identity: String
    var seq: Int
}

/// One event line of a candidate.
struct EventLine: Codable, Sendable {
    var event: String
    var identity: String
    var pid: Int32
    var mono: Int64
    var token: Int?
    var reason: String?
    var leader: String?
}

/// What the harness knows while running, from the tails of the action and event logs.
final class LiveState: Sendable {
    struct State {
        var lastAction: ActionLine?
        var terms = Set<String>()
        var termActions: [String: Int] = [:]
        var termFirst: [String: Int64] = [:]
        var maxToken = -1
        var ready = Set<String>()
        var leading: [String: Int] = [:]
        var checkFailed = 0
        var badLines = 0
    }
    let state = Mutex(State())

    func apply(actions: [String], events: [String]) {
        let decoder = JSONDecoder()
        var parsedActions: [ActionLine] = []
        var parsedEvents: [EventLine] = []
        var bad = 0
        for line in actions {
            if let action = try? decoder.decode(ActionLine.self, from: Data(line.utf8)) { parsedActions.append(action) } else { bad += 1 }
        }
        for line in events {
            if let event = try? decoder.decode(EventLine.self, from: Data(line.utf8)) { parsedEvents.append(event) }
        }
        state.withLock { state in
            state.badLines += bad
            for action in parsedActions {
                if state.lastAction == nil || action.mono >= state.lastAction!.mono { state.lastAction = action }
                let key = "\(action.identity)#\(action.token)"
                state.terms.insert(key)
                state.termActions[key, default: 0] += 1
                state.termFirst[key] = min(state.termFirst[key] ?? action.mono, action.mono)
                state.maxToken = max(state.maxToken, action.token)
            }
            for event in parsedEvents {
                switch event.event {
                case "ready": state.ready.insert(event.identity)
                case "startedLeading": state.leading[event.identity] = event.token
                case "stoppedLeading": state.leading[event.identity] = nil
                case "checkFailed": state.checkFailed += 1
                default: break
                }
            }
        }
    }

    var snapshot: State { state.withLock { $0 } }
}

/// A candidate slot: its proxies and its current process.
final class Slot {
    let index: Int
    let proxyIDs: [Int]
    let proxyPorts: [UInt16]
    var child: Child?
    var identity = ""
    var generation = 0
    var skew: [String] = []
    init(index: Int, proxyIDs: [Int], proxyPorts: [UInt16]) {
        self.index = index
        self.proxyIDs = proxyIDs
        self.proxyPorts = proxyPorts
    }
}

/// Runs one backend: candidates, proxies, the fault schedule; then hands the logs to the checker.
final class BackendRun {
    let backend: BackendKind
    let profile: Profile
    let seed: UInt64
    let timing: Timing
    let candidateCount: Int
    let workDirectory: String
    let fixture: BackendFixture
    let hub: FaultProxy
    let live = LiveState()
    let interrupted: @Sendable () -> Bool
    private(set) var slots: [Slot] = []
    private(set) var faults: [FaultRecord] = []
    private(set) var notes: [String] = []
    private(set) var spawnedIdentities = Set<String>()
    private var schedule: Schedule
    private var tailTask: Task<Void, Never>?
    private let selfPath = selfExecutable()
    var failoverTargetOverride: Int?
    var timeLimitOverride: Duration?

    var actionsPath: String { workDirectory + "/actions.log" }
    var eventsPath: String { workDirectory + "/events.log" }
    var candidatesLog: String { workDirectory + "/candidates.log" }

    init(backend: BackendKind, profile: Profile, seed: UInt64, candidates: Int, workDirectory: String, fixture: BackendFixture,
         only: Set<FaultKind>? = nil, interrupted: @escaping @Sendable () -> Bool) throws {
        self.backend = backend
        self.profile = profile
        self.seed = seed
        self.timing = Timing.forBackend(backend)
        self.candidateCount = candidates
        self.workDirectory = workDirectory
        self.fixture = fixture
        self.hub = try FaultProxy()
        self.interrupted = interrupted
        self.schedule = Schedule(seed: seed, backend: backend, profile: profile, only: only)
        for path in [actionsPath, eventsPath, candidatesLog] { _ = FileManager.default.createFile(atPath: path, contents: nil) }
    }

    func log(_ message: String) {
        FileHandle.standardError.write(Data("[\(backend.rawValue)] \(message)\n".utf8))
    }

    // MARK: Setup and teardown

    func setUp() async throws {
        let upstreams = fixture.upstreamPorts
        for index in 0..<candidateCount {
            var ids: [Int] = []
            var ports: [UInt16] = []
            for (member, upstream) in upstreams.enumerated() {
                let id = index * 16 + member
                ports.append(try hub.addProxy(id: id, upstream: upstream))
                ids.append(id)
            }
            slots.append(Slot(index: index, proxyIDs: ids, proxyPorts: ports))
        }
        let actions = LineTailer(path: actionsPath)
        let events = LineTailer(path: eventsPath)
        let live = self.live
        let box = TailerBox(actions: actions, events: events)
        tailTask = Task.detached {
            while !Task.isCancelled {
                live.apply(actions: box.actions.readLines(), events: box.events.readLines())
                try? await Task.sleep(for: .milliseconds(3))
            }
        }
        for slot in slots { try await spawn(slot) }
        try await waitReady(timeout: .seconds(30))
        guard await waitForLeader(timeout: .seconds(30)) != nil else { throw ChaosError("no first leader within 30 s") }
    }

    /// Stops the candidates gracefully (the last leader releases), then everything else.
    func tearDown() async {
        hub.clearAll()
        for slot in slots { slot.child?.resume() }
        await withTaskGroup(of: Void.self) { group in
            for slot in slots {
                if let child = slot.child { group.addTask { await child.terminate(grace: .seconds(5)) } }
            }
        }
        try? await Task.sleep(for: .milliseconds(50))
        tailTask?.cancel()
        await tailTask?.value
        live.apply(actions: [], events: [])
    }

    func shutdownProxies() { hub.shutdown() }

    private func spawn(_ slot: Slot, skew: [String] = []) async throws {
        slot.generation += 1
        slot.identity = "s\(slot.index)g\(slot.generation)"
        spawnedIdentities.insert(slot.identity)
        slot.skew = skew
        var arguments = [
            "candidate", "--backend", fixture.lockURL(slot: slot.index, proxyPorts: slot.proxyPorts),
            "--identity", slot.identity, "--log", actionsPath,
            "--lease", formatMillis(timing.leaseMillis), "--renew", formatMillis(timing.renewMillis),
            "--retry", formatMillis(timing.retryMillis), "--action-interval", formatMillis(timing.actionMillis),
        ]
        arguments += try fixture.candidateArguments(slot: slot.index, proxyPorts: slot.proxyPorts)
        arguments += skew
        slot.child = try await Child.spawn(name: slot.identity, executable: selfPath, arguments: arguments, stdout: eventsPath, stderr: candidatesLog)
    }

    private func formatMillis(_ ms: Int) -> String { "\(ms)ms" }

    /// Respawns every slot whose process has exited, then waits until all are ready.
    private func ensureAllRunning(timeout: Duration, ready: Int? = nil) async throws {
        for slot in slots where slot.child?.exited ?? true {
            try await spawn(slot)
        }
        try await waitReady(timeout: timeout, count: ready)
    }

    /// Waits until `count` slots (default: all) run a candidate that is ready.
    private func waitReady(timeout: Duration, count: Int? = nil) async throws {
        let deadline = monoNow() + timeout.nanos
        let needed = count ?? slots.count
        while true {
            let ready = live.snapshot.ready
            if slots.filter({ ready.contains($0.identity) && !($0.child?.exited ?? true) }).count >= needed { return }
            for slot in slots where slot.child?.exited ?? true && !ready.contains(slot.identity) {
                throw ChaosError("candidate \(slot.identity) exited before it was ready (\(slot.child?.exitDescription ?? "not started")); see \(candidatesLog)")
            }
            if monoNow() > deadline { throw ChaosError("candidates not ready within \(timeout)") }
            try await Task.sleep(for: .milliseconds(3))
        }
    }

    // MARK: Observing leadership

    /// A leader is a fault target once it has performed this many fenced actions in its term.
    static let minimumTermActions = 5

    /// The slot acting as leader now (a fenced action within the last few action intervals) and its token.
    private func currentLeader() -> (Slot, Int)? {
        let snapshot = live.snapshot
        guard let last = snapshot.lastAction else { return nil }
        let recent = max(Int64(100_000_000), timing.action.nanos * 10)
        guard monoNow() - last.mono < recent else { return nil }
        guard let slot = slots.first(where: { $0.identity == last.identity }), let child = slot.child,
              !child.exited, !child.isStopped, snapshot.leading[last.identity] == last.token,
              snapshot.termActions["\(last.identity)#\(last.token)", default: 0] >= Self.minimumTermActions else { return nil }
        return (slot, last.token)
    }

    private func waitForLeader(timeout: Duration) async -> (Slot, Int)? {
        let deadline = monoNow() + timeout.nanos
        while monoNow() < deadline {
            if let leader = currentLeader() { return leader }
            try? await Task.sleep(for: .milliseconds(3))
        }
        return nil
    }

    /// Waits for a fenced action satisfying `condition`; returns its timestamp.
    private func waitForAction(timeout: Duration, _ condition: (ActionLine) -> Bool) async -> Int64? {
        let deadline = monoNow() + timeout.nanos
        while monoNow() < deadline {
            if let last = live.snapshot.lastAction, condition(last) { return last.mono }
            try? await Task.sleep(for: .milliseconds(3))
        }
        return nil
    }

    private func waitNewTerm(after token: Int, since: Int64, timeout: Duration) async -> Int64? {
        await waitForAction(timeout: timeout) { $0.token > token && $0.mono > since }
    }

    private func waitAnyAction(since: Int64, timeout: Duration) async -> Int64? {
        await waitForAction(timeout: timeout) { $0.mono > since }
    }

    var failovers: Int { max(0, live.snapshot.terms.count - 1) }

    // MARK: The fault loop

    func runFaults() async throws {
        let start = monoNow()
        let target = failoverTargetOverride ?? profile.failoverTarget(backend)
        let limit = (timeLimitOverride ?? profile.timeLimit(backend)).nanos
        var step = 0
        var stuck = 0
        var induced = 0
        var lastReport = start
        while !interrupted() {
            if monoNow() - start > limit {
                notes.append("time limit reached after \(step) faults (\(induced) induced failovers of \(target); \(schedule.specialsLeft) special faults not run)")
                break
            }
            guard let kind = schedule.next(failoverTargetReached: induced >= target) else { break }
            step += 1
            let faultStart = monoNow()
            let record = try await inject(kind, step: step)
            faults.append(record)
            // Terms that began while the fault lasted, as the checker counts them.
            if let recovered = record.recovered {
                induced += live.state.withLock { state in
                    state.termFirst.values.filter { $0 > record.inject && $0 <= recovered }.count
                }
            }
            if monoNow() - faultStart > 8_000_000_000 {
                log("step \(step) \(kind.rawValue) took \((monoNow() - faultStart) / 1_000_000) ms: \(record.detail)")
            }
            if record.recovered == nil { log("step \(step) \(kind.rawValue): no recovery observed (\(record.detail))") }
            // Settle: every slot running (respawned ones may still be starting), at least one follower
            // ready besides the leader, a leader acting.
            try await ensureAllRunning(timeout: .seconds(30), ready: min(candidateCount, 2))
            if await waitForLeader(timeout: .seconds(30)) == nil {
                stuck += 1
                notes.append("step \(step) (\(kind.rawValue)): no leader within 30 s after the fault")
                if stuck >= 3 { throw ChaosError("no leader for 3 consecutive faults; giving up") }
            } else {
                stuck = 0
            }
            if monoNow() - lastReport > 15_000_000_000 {
                lastReport = monoNow()
                log("\(step) faults, \(induced) induced failovers, \(Int((monoNow() - start) / 1_000_000_000)) s")
            }
        }
        log("done: \(step) faults, \(induced) induced failovers in \(Int((monoNow() - start) / 1_000_000_000)) s")
    }

    private func recoveryTimeout() -> Duration { timing.lease * 10 + .seconds(20) }

    private func inject(_ kind: FaultKind, step: Int) async throws -> FaultRecord {
        let lease = timing.lease
        let renew = timing.renew
        func record(_ inject: Int64, _ clear: Int64, _ recovered: Int64?, victim: Slot? = nil, token: Int? = nil, _ detail: String) -> FaultRecord {
            FaultRecord(step: step, kind: kind, inject: inject, clear: clear, recovered: recovered, victim: victim?.identity, victimToken: token, detail: detail)
        }
        switch kind {
        case .sigkillLeader, .sigtermHandoff, .resignHandoff, .sigstopLeader:
            guard let (slot, token) = await waitForLeader(timeout: .seconds(30)), let child = slot.child else {
                let now = monoNow()
                return record(now, now, nil, "no leader to target")
            }
            let inject = monoNow()
            var detail = ""
            switch kind {
            case .sigkillLeader:
                await child.kill()
                try await spawn(slot)
            case .sigtermHandoff:
                child.signal(SIGTERM)
                if !(await child.wait(timeout: .seconds(5))) {
                    detail = "did not exit within 5 s of SIGTERM; killed"
                    notes.append("step \(step): \(slot.identity) did not exit within 5 s of SIGTERM")
                    await child.kill()
                }
                try await spawn(slot)
            case .resignHandoff:
                child.signal(SIGUSR1)
            default:
                let pause = lease.scaled(schedule.between(1.3, 2.5))
                child.stop()
                try? await Task.sleep(for: pause)
                child.resume()
                detail = "stopped \(formatMillisD(pause))"
            }
            let clear = monoNow()
            let recovered = await waitNewTerm(after: token, since: inject, timeout: recoveryTimeout())
            return record(inject, clear, recovered, victim: slot, token: token, detail)

        case .wallClockSkew:
            return try await wallClockSkew(step: step)

        case .backendKill, .backendPause, .storeKill, .storePause, .killRaftLeader, .killClientMember, .pauseRaftLeader:
            let factor = schedule.between(0.2, 2.0)
            let span = lease.scaled(factor)
            var detail = ""
            var inject = monoNow()
            switch kind {
            case .backendKill:
                inject = monoNow()
                if backend == .kubernetes { try await fixture.killAPIServer(downtime: span) } else { try await fixture.killEtcd(downtime: span) }
                detail = "down \(formatMillisD(span)) before restart"
            case .storeKill:
                inject = monoNow()
                try await fixture.killEtcd(downtime: span)
                detail = "etcd down \(formatMillisD(span)) before restart"
            case .backendPause:
                let pause = lease.scaled(schedule.between(0.5, 2.5))
                inject = monoNow()
                if backend == .kubernetes { await fixture.pauseAPIServer(for: pause) } else { await fixture.pauseEtcd(for: pause) }
                detail = "stopped \(formatMillisD(pause))"
            case .storePause:
                let pause = lease.scaled(schedule.between(0.5, 2.5))
                inject = monoNow()
                await fixture.pauseEtcd(for: pause)
                detail = "etcd stopped \(formatMillisD(pause))"
            case .killRaftLeader:
                let member = try await fixture.raftLeader()
                inject = monoNow()
                try await fixture.killMember(member, downtime: span)
                detail = "member \(member + 1) down \(formatMillisD(span))"
            case .killClientMember:
                let member = clientMember()
                inject = monoNow()
                try await fixture.killMember(member, downtime: span)
                detail = "member \(member + 1) (the leader's) down \(formatMillisD(span))"
            case .pauseRaftLeader:
                let member = try await fixture.raftLeader()
                let pause = lease.scaled(schedule.between(0.5, 2.5))
                inject = monoNow()
                await fixture.pauseMember(member, for: pause)
                detail = "member \(member + 1) stopped \(formatMillisD(pause))"
            default:
                break
            }
            let clear = monoNow()
            let recovered = await waitAnyAction(since: clear, timeout: recoveryTimeout())
            return record(inject, clear, recovered, detail)

        case .proxyLatency, .proxyStall, .proxyHalfOpen:
            guard let (slot, token) = await waitForLeader(timeout: .seconds(30)) else {
                let now = monoNow()
                return record(now, now, nil, "no leader to target")
            }
            let everyone = kind != .proxyHalfOpen && schedule.chance(0.3)
            let proxies = everyone ? slots.flatMap(\.proxyIDs) : slot.proxyIDs
            let target = everyone ? "all candidates" : "leader \(slot.identity)"
            let inject = monoNow()
            var detail = ""
            let clear: Int64
            let recovered: Int64?
            switch kind {
            case .proxyLatency:
                let latency = renew.scaled(schedule.between(0.2, 1.5))
                let hold = lease * 3
                hub.setLatency(latency.nanos, proxies: proxies)
                try? await Task.sleep(for: hold)
                hub.setLatency(0, proxies: proxies)
                clear = monoNow()
                detail = "\(formatMillisD(latency)) each way for \(formatMillisD(hold)), \(target)"
                recovered = await waitAnyAction(since: clear, timeout: recoveryTimeout())
            case .proxyStall:
                let stall = renew.scaled(schedule.between(1.2, 3.0))
                hub.stall(until: inject + stall.nanos, proxies: proxies)
                try? await Task.sleep(for: stall)
                clear = monoNow()
                detail = "stalled \(formatMillisD(stall)), \(target)"
                recovered = await waitAnyAction(since: clear, timeout: recoveryTimeout())
            default:
                hub.blackholeExisting(proxies: proxies)
                clear = inject
                detail = "half-open: \(target)'s connections black-holed"
                // Leadership must be back after the old leader's guarantee ran out (a new term, or the same
                // leader renewing over a new connection).
                recovered = await waitAnyAction(since: inject + renew.nanos, timeout: recoveryTimeout())
            }
            return record(inject, clear, recovered, victim: slot, token: token, detail)
        }
    }

    /// The member the leader's client talks to: the one with the most open connections from its slot.
    private func clientMember() -> Int {
        let connections = hub.activeConnections()
        guard let (slot, _) = currentLeader() else { return 0 }
        var best = fixture.firstMember(slot: slot.index)
        var most = 0
        for (member, id) in slot.proxyIDs.enumerated() where (connections[id] ?? 0) > most {
            most = connections[id] ?? 0
            best = member
        }
        return best
    }

    /// Restart a follower with a skewed wall clock, hand it leadership, and let it lead for 3 leases while
    /// the others watch (a follower that compared the record's timestamps with its own clock would take over
    /// early against a clock 1 h behind, or never against one 1 h ahead).
    private func wallClockSkew(step: Int) async throws -> FaultRecord {
        let lease = timing.lease
        let variants: [(String, [String])] = [
            ("offset +1h", ["--wall-clock-offset", "1h"]),
            ("offset -1h", ["--wall-clock-offset=-1h"]),
            ("jump +1h", ["--wall-clock-jump-after", "", "--wall-clock-jump", "1h"]),
            ("jump -1h", ["--wall-clock-jump-after", "", "--wall-clock-jump=-1h"]),
        ]
        var (name, arguments) = schedule.pick(variants)
        if arguments.contains("") {
            let after = Duration.milliseconds(Int(schedule.between(500, 3000)))
            arguments = arguments.map { $0.isEmpty ? formatMillisD(after) : $0 }
            name += " after \(formatMillisD(after))"
        }
        let inject = monoNow()
        guard let (leader, _) = await waitForLeader(timeout: .seconds(30)),
              let follower = slots.first(where: { $0 !== leader && !($0.child?.exited ?? true) && live.snapshot.ready.contains($0.identity) }) else {
            return FaultRecord(step: step, kind: .wallClockSkew, inject: inject, clear: inject, recovered: nil, detail: "no leader/follower")
        }
        await follower.child?.terminate(grace: .seconds(5))
        try await spawn(follower, skew: arguments)
        try await waitReady(timeout: .seconds(30))
        var led = false
        for _ in 0..<8 {
            guard let (current, token) = await waitForLeader(timeout: .seconds(30)) else { break }
            if current === follower { led = true; break }
            let since = monoNow()
            current.child?.signal(SIGUSR1)
            _ = await waitNewTerm(after: token, since: since, timeout: recoveryTimeout())
            try await ensureAllRunning(timeout: .seconds(30))
        }
        if led { try? await Task.sleep(for: lease * 3) }
        let clear = monoNow()
        let recovered = await waitAnyAction(since: clear, timeout: recoveryTimeout())
        return FaultRecord(step: step, kind: .wallClockSkew, inject: inject, clear: clear, recovered: recovered,
                           victim: follower.identity, victimToken: nil,
                           detail: "\(follower.identity): wall clock \(name)\(led ? ", led for 3 leases" : ", did not win leadership")")
    }
}

final class TailerBox: @unchecked Sendable {
    let actions: LineTailer
    let events: LineTailer
    init(actions: LineTailer, events: LineTailer) {
        self.actions = actions
        self.events = events
    }
}

func formatMillisD(_ d: Duration) -> String { "\(d.nanos / 1_000_000)ms" }
