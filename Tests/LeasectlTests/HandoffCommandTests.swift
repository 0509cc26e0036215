import FileLock
import Foundation
import LeaderElection
import Testing
@testable import leasectl

extension ProcessTests {
    /// `leasectl handoff` against three running `leasectl elect` processes.
    @Suite struct HandoffCommandTests {
        @Test(.timeLimit(.minutes(1)))
        func handoffMovesLeadershipToTheNamedCandidate() async throws {
            let directory = try LeasectlHarness.temporaryDirectory()
            defer { LeasectlHarness.cleanUp(directory) }
            let url = "file://\(directory)/leader"
            let group = CandidateGroup(lock: url, directory: directory, arguments: ["--retry-period", "200ms"])
            do {
                try group.start("a")
                let started = try await group.await("a to lead") { $0.event == "startedLeading" }
                try group.start("b")
                try group.start("c")
                try await group.awaitObservers(of: "a", identities: ["b", "c"], after: 0)

                let mark = group.hub.count
                let handoff = try await LeasectlHarness.run(["handoff", "--wait", "--timeout", "20s", url, "--to", "c"])
                #expect(handoff.status == .exited(0), "\(handoff)")
                #expect(handoff.stdout.hasPrefix("requested hand-off of lock file:\(directory)/leader from a to c\nc leads lock"), "\(handoff)")

                let stopped = try await group.await("a to hand off", after: mark) { $0.event == "stoppedLeading" && $0.identity == "a" }
                #expect(stopped.reason == "handedOff")
                let next = try await group.await("c to lead", after: mark) { $0.event == "startedLeading" }
                #expect(next.identity == "c" && next.fencingToken == started.fencingToken! + 1)
                await group.stopAll()

                let record = try #require(try await FileLock(directory: directory, name: "leader", identity: "reader").get())
                #expect(record.record.preferredHolder == nil)
                #expect(record.record.leaseTransitions == started.fencingToken! + 1)
            } catch {
                await group.stopAll()
                throw error
            }
        }

        @Test func handoffOfAMissingLockFailsClearly() async throws {
            let directory = try LeasectlHarness.temporaryDirectory()
            defer { LeasectlHarness.cleanUp(directory) }
            let result = try await LeasectlHarness.run(["handoff", "file://\(directory)/nothing", "--to", "x"])
            #expect(result.status == .exited(1), "\(result)")
            #expect(result.stderr.contains("no leader-election record"), "\(result)")
        }
    }
}
