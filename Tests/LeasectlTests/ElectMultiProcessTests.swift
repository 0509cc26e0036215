import FileLock
import Foundation
import LeaderElection
import Testing
@testable import leasectl

extension ProcessTests {
    /// Three `leasectl elect` processes on one `FileLock`: exclusive leadership, crash and graceful takeover.
    @Suite struct ElectMultiProcessTests {
        @Test(.timeLimit(.minutes(2)))
        func oneLeaderAtATimeThroughCrashesAndHandOffs() async throws {
            let directory = try LeasectlHarness.temporaryDirectory()
            defer { LeasectlHarness.cleanUp(directory) }
            // client-go's default timing: a takeover that waited for the lease would take ≥ 15 s.
            let leaseSeconds: UInt64 = 15
            let group = CandidateGroup(
                lock: "file://\(directory)/election", directory: directory,
                arguments: ["--lease-duration", "\(leaseSeconds)s", "--renew-deadline", "10s", "--retry-period", "2s"])
            let names = ["c1", "c2", "c3"]
            do {
                for name in names { try group.start(name) }
                var leader = try await group.await("a first leader") { $0.event == "startedLeading" }
                try await group.awaitObservers(of: leader.identity, identities: names, after: 0)

                // Crash takeovers: SIGKILL the leader, measure until another candidate leads, restart the victim.
                var crashTakeovers: [UInt64] = []
                for _ in 0..<5 {
                    let victim = leader
                    let mark = group.hub.count
                    let killedAt = await group.kill(victim.identity, leadingTerm: try #require(victim.fencingToken))
                    leader = try await group.await("a takeover after killing \(victim.identity)", after: mark) {
                        $0.event == "startedLeading" && $0.identity != victim.identity
                    }
                    let takeover = leader.monotonicNanos - killedAt
                    crashTakeovers.append(takeover)
                    #expect(takeover < leaseSeconds * 1_000_000_000, "takeover after SIGKILL must not wait for the lease to expire")
                    #expect(try #require(leader.fencingToken) > victim.fencingToken!)
                    let restartMark = group.hub.count
                    try group.start(victim.identity)
                    try await group.awaitObservers(of: leader.identity, identities: [victim.identity], after: restartMark)
                }

                // Graceful hand-off: SIGTERM the leader, which releases the lease and exits 0.
                var handOffs: [UInt64] = []
                for _ in 0..<2 {
                    let previous = leader
                    let handOff = try await group.gracefulHandOff(from: previous)
                    leader = handOff.leader
                    handOffs.append(handOff.nanos)
                    #expect(handOff.stopped.reason == "released")
                    #expect(handOff.stopped.fencingToken == previous.fencingToken)
                    #expect(handOff.exit == .exited(0))
                }

                await group.stopAll()
                try Self.expectExclusiveLeadership(group.hub.entries.map(\.line), kills: group.kills)

                let sorted = crashTakeovers.sorted()
                print("crash takeover ms: min \(Self.ms(sorted.first!)) median \(Self.ms(sorted[sorted.count / 2])) max \(Self.ms(sorted.last!)) (n=\(sorted.count), leaseDuration \(leaseSeconds)s, retryPeriod 2s; all: \(crashTakeovers.map(Self.ms).joined(separator: ", ")))")
                print("graceful hand-off ms: \(handOffs.map(Self.ms).joined(separator: ", "))")
            } catch {
                await group.stopAll()
                throw error
            }
        }

        static func ms(_ nanos: UInt64) -> String { String(format: "%.1f", Double(nanos) / 1e6) }

        /// Every term must start after the previous one ended: after its work stopped (as reported with its
        /// `stoppedLeading`) or after its process was SIGKILLed.
        static func expectExclusiveLeadership(_ lines: [ElectionEventLine], kills: [Int: UInt64], minimumTerms: Int = 8) throws {
            struct Term { var identity: String; var token: Int; var start: UInt64; var end: UInt64? }
            var terms: [Int: Term] = [:]
            for line in lines where line.event == "startedLeading" {
                let token = try #require(line.fencingToken)
                #expect(terms[token] == nil, "fencing token \(token) was handed out twice")
                terms[token] = Term(identity: line.identity, token: token, start: line.monotonicNanos, end: kills[token])
            }
            for line in lines where line.event == "stoppedLeading" {
                let token = try #require(line.fencingToken)
                try #require(terms[token]?.identity == line.identity, "stoppedLeading for a term that did not start: \(line)")
                terms[token]!.end = line.workStoppedMonotonicNanos ?? line.monotonicNanos
            }
            let ordered = terms.values.sorted { $0.start < $1.start }
            #expect(ordered.map(\.token) == ordered.map(\.token).sorted(), "fencing tokens increase with time")
            for (previous, next) in zip(ordered, ordered.dropFirst()) {
                let end = try #require(previous.end, "term \(previous.token) of \(previous.identity) never ended, yet \(next.identity) started")
                #expect(end < next.start, "\(next.identity) (token \(next.token)) started while \(previous.identity) (token \(previous.token)) still led")
            }
            #expect(ordered.count >= minimumTerms)
        }
    }
}
