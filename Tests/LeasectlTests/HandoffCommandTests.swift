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
                let started = try await group.handOffFromAToC(lockLabel: "file:\(directory)/leader")

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
