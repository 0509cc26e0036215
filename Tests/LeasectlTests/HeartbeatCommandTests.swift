import Foundation
import LeaderElection
import Testing
@testable import leasectl

extension ProcessTests {
    /// `leasectl heartbeat` as a child process, and `leasectl get` showing its lease.
    @Suite(.timeLimit(.minutes(1))) struct HeartbeatCommandTests {
        @Test func keepsAFileHeartbeatUntilSIGTERMThenGetShowsIt() async throws {
            let directory = try LeasectlHarness.temporaryDirectory()
            defer { LeasectlHarness.cleanUp(directory) }
            let url = "file://\(directory)/members/node-a"
            let process = try ChildProcess.spawn(
                [LeasectlHarness.executable, "heartbeat", url, "--lease-duration", "4s", "--renew-interval", "100ms",
                 "--events", "json", "--create-directory"],
                standardInput: .null, standardOutput: .pipe, standardError: .pipe)
            let stderr = LeasectlHarness.collect(process.standardError!)
            let fd = process.standardOutput!
            let (lines, continuation) = AsyncStream.makeStream(of: String.self)
            Thread.detachNewThread {
                LineReader.forEachLine(of: fd) { continuation.yield($0) }
                close(fd)
                continuation.finish()
            }
            var events: [[String: Any]] = []
            for await line in lines {
                let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
                events.append(object)
                if events.count == 3 { process.signal(SIGTERM) }
            }
            let status = await process.waitUntilExit(timeout: .seconds(20))
            let log = await stderr.value
            #expect(status == .exited(0), "\(log)")
            #expect(events.count >= 3, "\(log)")
            #expect(events.first?["event"] as? String == "created")
            #expect(events.dropFirst().allSatisfy { $0["event"] as? String == "renewed" }, "\(events)")
            #expect(events.allSatisfy { $0["identity"] as? String == "node-a" && $0["lock"] as? String == url })
            #expect(Set(events.compactMap { $0["version"] as? String }).count == events.count)
            #expect(log.contains("stopping"), "\(log)")

            // The lease stays (like a kubelet's); `get` on the directory lists it.
            let get = try await LeasectlHarness.run(["get", "file://\(directory)/members/", "-o", "json"])
            #expect(get.status == .exited(0), "\(get)")
            let list = try #require(try JSONSerialization.jsonObject(with: Data(get.stdout.utf8)) as? [String: Any], "\(get)")
            let items = try #require(list["items"] as? [[String: Any]])
            #expect(items.map { $0["name"] as? String } == ["node-a"])
            #expect(items.first?["holderIdentity"] as? String == "node-a")
            #expect(items.first?["leaseDurationSeconds"] as? Int == 4)
        }

        @Test func rejectsARenewIntervalNotShorterThanTheLease() async throws {
            let run = try await LeasectlHarness.run(["heartbeat", "file:///tmp/x/y", "--lease-duration", "2s", "--renew-interval", "2s"])
            #expect(run.status == .exited(64), "\(run)")
            #expect(run.stderr.contains("renewInterval"), "\(run)")
        }

        @Test func wholeSecondsOnKubernetes() async throws {
            let run = try await LeasectlHarness.run(["heartbeat", "kubernetes://default/node-a", "--lease-duration", "1500ms"])
            #expect(run.status == .exited(64), "\(run)")
        }
    }
}
