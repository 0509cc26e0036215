import FileLock
import Foundation
import LeaderElection
import Testing
@testable import leasectl

extension ProcessTests {
    /// `leasectl release` against a running leader.
    @Suite struct ReleaseCommandTests {
        @Test(.timeLimit(.minutes(1)))
        func forcedReleaseOfAHeldLockNamesTheHolderAndFreesIt() async throws {
            let directory = try LeasectlHarness.temporaryDirectory()
            defer { LeasectlHarness.cleanUp(directory) }
            let url = "file://\(directory)/leader"
            let group = CandidateGroup(lock: url, directory: directory, arguments: ["--retry-period", "500ms"])
            do {
                try group.start("holder")
                let started = try await group.await("holder to lead") { $0.event == "startedLeading" }

                let refused = try await LeasectlHarness.run(["release", url])
                #expect(refused.status == .exited(1), "a live lease needs --force: \(refused)")
                #expect(refused.stderr.contains("--force"))

                let mark = group.hub.count
                let released = try await LeasectlHarness.run(["release", "--force", url])
                #expect(released.status == .exited(0), "\(released)")
                #expect(released.stdout == "released lock file:\(directory)/leader (was held by holder, transitions \(started.fencingToken!))\n")
                // The holder notices at its next renewal: its term ends as lost and it campaigns again.
                let lost = try await group.await("the holder to notice", after: mark) { $0.event == "stoppedLeading" }
                #expect(lost.reason == "lost")
                let again = try await group.await("the holder to lead again", after: mark) { $0.event == "startedLeading" }
                #expect(again.fencingToken == started.fencingToken! + 1)
                await group.stopAll()

                let record = try #require(try await FileLock(directory: directory, name: "leader", identity: "reader").get())
                #expect(record.record.holderIdentity == "")
                let free = try await LeasectlHarness.run(["release", url])
                #expect(free.status == .exited(0))
                #expect(free.stdout.contains("is already free (transitions \(again.fencingToken!))"), "\(free)")
            } catch {
                await group.stopAll()
                throw error
            }
        }
    }
}
