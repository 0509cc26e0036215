import Etcd
import EtcdLock
import EtcdTesting
import Foundation
import LeaderElection
import Synchronization
import Testing

/// Leadership intervals of in-process candidates, ordered by a global sequence (happens-before) and
/// stamped on the monotonic clock.
private final class Ledger: Sendable {
    struct Interval: Sendable {
        var identity: String
        var token: Int
        var start: ContinuousClock.Instant
        var startSeq: Int
        var end: ContinuousClock.Instant?
        var endSeq: Int?
    }
    private let state = Mutex<(seq: Int, intervals: [Interval])>((0, []))

    func begin(_ identity: String, _ token: Int) -> Int {
        state.withLock { s in
            s.seq += 1
            s.intervals.append(Interval(identity: identity, token: token, start: .now, startSeq: s.seq))
            return s.intervals.count - 1
        }
    }

    func end(_ index: Int) {
        state.withLock { s in
            s.seq += 1
            s.intervals[index].end = .now
            s.intervals[index].endSeq = s.seq
        }
    }

    var intervals: [Interval] { state.withLock { $0.intervals } }
    var current: Interval? { intervals.last { $0.end == nil } }

    /// No two intervals overlap and tokens strictly increase.
    func verify() throws {
        let sorted = intervals.sorted { $0.startSeq < $1.startSeq }
        for (a, b) in zip(sorted, sorted.dropFirst()) {
            guard let endSeq = a.endSeq, endSeq < b.startSeq else {
                throw TestError("\(b.identity) (token \(b.token)) started while \(a.identity) (token \(a.token)) still led")
            }
            guard b.token > a.token else { throw TestError("token did not increase: \(a.token) then \(b.token)") }
        }
    }
}

private struct TestError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

private let fastConfiguration = LeaderElectionConfiguration(
    name: "etcd-faults", leaseDuration: .seconds(3), renewDeadline: .seconds(2), retryPeriod: .milliseconds(400))

private func startCandidates(_ count: Int, endpoints: [String], name: String, ledger: Ledger, requestTimeout: Duration = .milliseconds(900)) throws -> (tasks: [Task<Void, Never>], clients: [EtcdClient]) {
    var tasks: [Task<Void, Never>] = []
    var clients: [EtcdClient] = []
    for i in 0..<count {
        let client = try EtcdClient(configuration: .init(endpoints: endpoints, requestTimeout: requestTimeout))
        clients.append(client)
        let lock = try EtcdLock(client: client, configuration: .init(name: name, namespace: "faults"), identity: "c\(i)")
        let elector = try LeaderElector(lock: lock, configuration: fastConfiguration)
        tasks.append(Task {
            _ = try? await elector.run { term in
                let index = ledger.begin("c\(i)", term.fencingToken)
                await withTaskCancellationHandler {
                    try? await Task.sleep(for: .seconds(3600))
                } onCancel: {
                    ledger.end(index)
                }
            }
        })
    }
    return (tasks, clients)
}

private func waitForLeader(_ ledger: Ledger, timeout: Duration = .seconds(30)) async throws -> Ledger.Interval {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if let current = ledger.current { return current }
        try await Task.sleep(for: .milliseconds(5))
    }
    throw TestError("no leader within \(timeout)")
}

@Suite(.serialized) struct EtcdElectionFaultTests {
    @Test func etcdPausedLongerThanRenewDeadlineStopsTheLeaderBeforeTheLeaseCouldExpire() async throws {
        let server = try await EtcdServer.start(name: "pause")
        defer { Task { await server.stop() } }
        let ledger = Ledger()
        let name = "pause-\(UUID().uuidString)"
        let (tasks, clients) = try startCandidates(3, endpoints: [server.endpoint], name: name, ledger: ledger)
        defer { tasks.forEach { $0.cancel() }; clients.forEach { $0.close() } }
        let leader = try await waitForLeader(ledger)
        // Steady state: wait (bounded) until the leader has renewed three times, as seen in the key's version.
        let key = "/leader-election/faults/\(name)"
        let firstVersion = try await clients[0].get(key)?.version ?? 0
        let steadyLimit = ContinuousClock.now + .seconds(20)
        while (try await clients[0].get(key)?.version ?? 0) < firstVersion + 3, ContinuousClock.now < steadyLimit {
            try await Task.sleep(for: .milliseconds(5))
        }
        let paused = ContinuousClock.now
        server.pause()
        // The leader's work must be cancelled by its renew deadline, i.e. before anyone could take over.
        let deadline = ContinuousClock.now + .seconds(20)
        while ledger.intervals.first(where: { $0.startSeq == leader.startSeq })?.end == nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        let stoppedAt = try #require(ledger.intervals.first { $0.startSeq == leader.startSeq }?.end)
        let stoppedAfter = stoppedAt - paused
        print("etcd SIGSTOP: leader work cancelled \(stoppedAfter) after the pause (renewDeadline 2 s, leaseDuration 3 s)")
        #expect(stoppedAfter < fastConfiguration.leaseDuration, "work must stop before the lease could expire elsewhere")
        // Keep etcd stopped for longer than the renew deadline (the fault under test), then let it go.
        let pauseEnd = paused + fastConfiguration.renewDeadline + .milliseconds(500)
        if ContinuousClock.now < pauseEnd { try await Task.sleep(until: pauseEnd) }
        server.resume()
        let next = try await waitForLeader(ledger)
        print("etcd SIGCONT: \(next.identity) leads with token \(next.token)")
        try await Task.sleep(for: .seconds(2))      // an observation window in which an overlap would show
        try ledger.verify()
        #expect(ledger.intervals.filter { $0.end == nil }.count == 1)
    }

    @Test func threeMemberClusterLosingTheConnectedMemberAndTheRaftLeader() async throws {
        try await EtcdCluster.withCluster(members: 3) { cluster in
            let ledger = Ledger()
            let (tasks, clients) = try startCandidates(3, endpoints: cluster.endpoints, name: "cluster-\(UUID().uuidString)", ledger: ledger)
            defer { tasks.forEach { $0.cancel() }; clients.forEach { $0.close() } }
            _ = try await waitForLeader(ledger)
            // 1. SIGKILL the member the clients are connected to (pick_first: the first endpoint).
            var gaps: [Duration] = []
            for round in 0..<2 {
                let victim = round == 0 ? 0 : try await cluster.leader()
                let before = ContinuousClock.now
                await cluster.members[victim].kill()
                // Exactly one leader again (the same or a new one) within the lease duration.
                try await Task.sleep(for: fastConfiguration.leaseDuration + fastConfiguration.retryPeriod * 3)
                let current = try await waitForLeader(ledger)
                // Leaderless time caused by the fault: from the end of every term that ended after the kill
                // to the start of the next term (zero when the leader kept its lease through the fault).
                let sorted = ledger.intervals.sorted { $0.startSeq < $1.startSeq }
                var gap = Duration.zero
                for (a, b) in zip(sorted, sorted.dropFirst()) where (a.end ?? before) > before {
                    gap = max(gap, b.start - a.end!)
                }
                gaps.append(gap)
                print("cluster round \(round): killed member \(victim) (\(round == 0 ? "connected" : "raft leader")); leader now \(current.identity), token \(current.token); leaderless \(gap)")
                #expect(gap <= fastConfiguration.leaseDuration, "recovery must take less than the lease duration")
                try ledger.verify()
                try await cluster.members[victim].restart()
            }
            #expect(ledger.intervals.filter { $0.end == nil }.count == 1)
            try ledger.verify()
        }
    }
}
