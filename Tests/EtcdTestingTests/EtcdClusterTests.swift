#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

@testable import EtcdTesting

@Suite("EtcdCluster: a real 3-member etcd cluster")
struct EtcdClusterTests {
    @Test("elects a leader; killing it elects another; the old leader rejoins after restart")
    func leaderFailover() async throws {
        try await EtcdCluster.withCluster(members: 3) { cluster in
            #expect(cluster.members.map(\.name) == ["etcd1", "etcd2", "etcd3"])
            #expect(Set(cluster.endpoints).count == 3)
            #expect(cluster.endpoints.allSatisfy { $0.hasPrefix("127.0.0.1:") })
            let memberList = try await cluster.etcdctl(["member", "list"])
            #expect(memberList.split(separator: "\n").count == 3)

            try await cluster.etcdctl(["put", "before", "failover"])
            let first = try await cluster.leader()
            let firstStatus = try await cluster.members[first].status()
            #expect(firstStatus.isLeader)

            let started = ContinuousClock.now
            await cluster.members[first].kill()
            let second = try await cluster.leader()
            let electionTime = ContinuousClock.now - started
            #expect(second != first)
            #expect(electionTime < .seconds(15), "a new leader must be elected (short raft timings: ~1 s), took \(electionTime)")
            let secondStatus = try await cluster.members[second].status()
            #expect(secondStatus.raftTerm > firstStatus.raftTerm)

            // The survivors keep the data and accept writes.
            #expect(try await value(of: "before", in: cluster.members[second]) == "failover")
            try await cluster.members[second].etcdctl(["put", "during", "outage"])

            // The old leader restarts on its ports, catches up, and follows the new leader.
            try await cluster.members[first].restart()
            #expect(try await value(of: "during", in: cluster.members[first]) == "outage")
            let rejoined = try await cluster.members[first].status()
            #expect(!rejoined.isLeader || rejoined.raftTerm > secondStatus.raftTerm)
            _ = try await cluster.leader()
        }
    }

    @Test("a paused leader is replaced; without a quorum there is no leader")
    func pausedLeaderAndQuorumLoss() async throws {
        let cluster = try await EtcdCluster.start(members: 3)
        do {
            let first = try await cluster.leader()
            cluster.members[first].pause()
            let second = try await cluster.leader()
            #expect(second != first)
            cluster.members[first].resume()

            // Two of three down: no quorum, no leader.
            let others = cluster.members.indices.filter { $0 != second }
            for index in others { await cluster.members[index].kill() }
            await #expect(throws: EtcdTestingError.self) { try await cluster.leader(timeout: .seconds(2)) }

            // One back (waiting only for it to answer, since health needs the quorum it restores).
            try await cluster.members[others[0]].restart(waitUntilHealthy: false)
            _ = try await cluster.leader()
        } catch {
            await cluster.stop()
            throw error
        }
        let pids = cluster.members.map(\.pid)
        let directories = cluster.members.map(\.directory)
        await cluster.stop()
        #expect(pids.allSatisfy { !processExists($0) })
        #expect(directories.allSatisfy { !pathExists($0) })
    }
}
