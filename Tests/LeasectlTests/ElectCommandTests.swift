import FileLock
import Foundation
import LeaderElection
import Testing
@testable import leasectl

extension ProcessTests {
    /// `leasectl elect -- COMMAND`: the command runs only while leading and stops with leadership.
    @Suite struct ElectCommandTests {
        /// A command that logs its start (identity and fencing token) and the SIGTERM it receives.
        static func loggingCommand(_ log: String) -> [String] {
            ["sh", "-c", """
                trap 'echo "$LEASECTL_IDENTITY $LEASECTL_FENCING_TOKEN term" >> \(log); exit 0' TERM
                echo "$LEASECTL_IDENTITY $LEASECTL_FENCING_TOKEN start" >> \(log)
                sleep 100 & wait
                """]
        }

        static func lines(_ path: String) -> [String] {
            ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }

        @Test(.timeLimit(.minutes(1)))
        func commandRunsOnlyWhileLeadingAndIsTerminatedWithLeadership() async throws {
            let directory = try LeasectlHarness.temporaryDirectory()
            defer { LeasectlHarness.cleanUp(directory) }
            let log = "\(directory)/commands.log"
            let group = CandidateGroup(lock: "file://\(directory)/job", directory: directory, arguments: ["--grace-period", "5s"])
            do {
                try group.start("A", command: Self.loggingCommand(log))
                let first = try await group.await("A to lead") { $0.event == "startedLeading" }
                #expect(first.identity == "A")
                try group.start("B", command: Self.loggingCommand(log))
                try await group.awaitObservers(of: "A", identities: ["B"], after: 0)
                // B's command must not run while A leads: only A's start line exists.
                try await Self.awaitLines(log, count: 1)
                #expect(Self.lines(log) == ["A \(first.fencingToken!) start"])

                let mark = group.hub.count
                group.process("A")?.process.signal(SIGTERM)
                let second = try await group.await("B to take over", after: mark) { $0.event == "startedLeading" && $0.identity == "B" }
                let stopped = try await group.await("A to stop", after: mark) { $0.event == "stoppedLeading" && $0.identity == "A" }
                #expect(stopped.reason == "released")
                #expect(try #require(stopped.workStoppedMonotonicNanos) < second.monotonicNanos)
                #expect(await group.process("A")?.process.waitUntilExit(timeout: .seconds(15)) == .exited(0))
                try await Self.awaitLines(log, count: 3)
                #expect(Self.lines(log) == [
                    "A \(first.fencingToken!) start",
                    "A \(first.fencingToken!) term",
                    "B \(second.fencingToken!) start",
                ], "A's command got SIGTERM and ended before B's started")
                await group.stopAll()
                #expect(Self.lines(log).last == "B \(second.fencingToken!) term")
            } catch {
                await group.stopAll()
                throw error
            }
        }

        /// Polls the log a command appends to (it is a file, not an event stream), bounded.
        static func awaitLines(_ path: String, count: Int) async throws {
            for _ in 0..<500 {
                if lines(path).count >= count { return }
                try await Task.sleep(for: .milliseconds(20))
            }
            Issue.record("\(path) has \(lines(path)) after 10 s, expected \(count) lines")
        }

        @Test func exitWithCommandPropagatesTheStatusAndReleases() async throws {
            let directory = try LeasectlHarness.temporaryDirectory()
            defer { LeasectlHarness.cleanUp(directory) }
            let output = try await LeasectlHarness.run([
                "elect", "--lock", "file://\(directory)/once", "--identity", "runner", "--exit-with-command",
                "--", "sh", "-c", "test \"$LEASECTL_FENCING_TOKEN\" = 0 && test \"$LEASECTL_IDENTITY\" = runner && exit 7",
            ])
            #expect(output.status == .exited(7), "\(output)")
            let record = try #require(try await FileLock(directory: directory, name: "once", identity: "reader").get())
            #expect(record.record.holderIdentity == "", "the lease was released before exiting")
            #expect(record.record.leaseTransitions == 0)
        }

        @Test func commandIgnoringSIGTERMIsKilledAfterTheGracePeriod() async throws {
            let directory = try LeasectlHarness.temporaryDirectory()
            defer { LeasectlHarness.cleanUp(directory) }
            let group = CandidateGroup(lock: "file://\(directory)/stubborn", directory: directory, arguments: ["--grace-period", "1s"])
            try group.start("S", command: ["sh", "-c", "trap '' TERM; echo ready > \(directory)/ready; sleep 100"])
            _ = try await group.await("S to lead") { $0.event == "startedLeading" }
            try await Self.awaitLines("\(directory)/ready", count: 1)
            let signalled = ContinuousClock.now
            group.process("S")?.process.signal(SIGTERM)
            let exit = await group.process("S")?.process.waitUntilExit(timeout: .seconds(15))
            let elapsed = ContinuousClock.now - signalled
            #expect(exit == .exited(0))
            #expect(elapsed >= .seconds(1), "SIGKILL came only after the grace period")
            #expect(elapsed < .seconds(10))
            let stopped = try await group.await("S to stop") { $0.event == "stoppedLeading" }
            #expect(stopped.reason == "released")
            await group.stopAll()
        }

        @Test func invalidTimingIsAValidationError() async throws {
            let output = try await LeasectlHarness.run(["elect", "--lock", "file:///tmp/x", "--lease-duration", "5s"])
            #expect(output.status == .exited(64), "\(output)")
            #expect(output.stderr.contains("leaseDuration must be greater than renewDeadline"))
            let unknown = try await LeasectlHarness.run(["elect", "--lock", "nosuch://x/y"])
            #expect(unknown.status == .exited(1))
            #expect(unknown.stderr.contains("known schemes: etcd (etcd://"), "\(unknown)")
            #expect(unknown.stderr.contains("file (file:///var/run/locks/NAME)"), "\(unknown)")
        }
    }
}
