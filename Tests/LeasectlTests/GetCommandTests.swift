import FileLock
import Foundation
import LeaderElection
import Testing
@testable import leasectl

extension ProcessTests {
    /// `leasectl get` on locks written by the test.
    @Suite struct GetCommandTests {
        @Test func tableAndJSONIncludingACorruptRecord() async throws {
            let directory = try LeasectlHarness.temporaryDirectory()
            defer { LeasectlHarness.cleanUp(directory) }
            let now = MicroTime.now()
            // "held" is written by its holder, whose liveness lock stays taken while `alice` lives.
            let alice = try FileLock(directory: directory, name: "held", identity: "alice")
            _ = try await alice.create(LeaderElectionRecord(
                holderIdentity: "alice", leaseDuration: .seconds(60), acquireTime: now.advanced(by: .seconds(-190)),
                renewTime: now, leaseTransitions: 3))
            let writer = try FileLock(directory: directory, name: "free", identity: "writer")
            _ = try await writer.create(LeaderElectionRecord(
                holderIdentity: "", leaseDuration: .seconds(1), acquireTime: now, renewTime: now, leaseTransitions: 5))
            try FileLock(directory: directory, name: "broken", identity: "writer").writeRaw(Array("{not json".utf8))

            let table = try await LeasectlHarness.run(["get", "file://\(directory)/"])
            #expect(table.status == .exited(0), "\(table)")
            let rows = table.stdout.split(separator: "\n").map { $0.split(separator: "   ").map { $0.trimmingCharacters(in: .whitespaces) } }
            #expect(rows.first == ["NAME", "HOLDER", "AGE", "TRANSITIONS", "EXPIRES IN"], "\(table)")
            #expect(rows.count == 4)
            #expect(rows.contains(["broken", "<corrupt>", "<unknown>", "<unknown>", "<unknown>"]), "\(table)")
            #expect(rows.contains(["free", "<none>", "0s", "5", "<none>"]), "\(table)")
            let held = try #require(rows.first { $0.first == "held" }, "\(table)")
            #expect(held[1] == "alice")
            #expect(held[2] == "3m")
            #expect(held[3] == "3")
            #expect(held[4].hasSuffix("s") && held[4] != "expired", "about a minute left: \(held[4])")

            let json = try await LeasectlHarness.run(["get", directory, "-o", "json"])
            #expect(json.status == .exited(0), "\(json)")
            let list = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            let items = try #require(list["items"] as? [[String: Any]])
            #expect(items.map { $0["name"] as? String } == ["broken", "free", "held"])
            #expect(items[0]["corrupt"] as? Bool == true)
            #expect((items[0]["version"] as? String)?.isEmpty == false)
            #expect(items[2]["holderIdentity"] as? String == "alice")
            #expect(items[2]["leaderTransitions"] as? Int == 3)
            #expect(items[2]["leaseDurationSeconds"] as? Int == 60)
            #expect(items[2]["lock"] as? String == "file://\(directory)/held")
            #expect(items[2]["acquireTime"] as? String == now.advanced(by: .seconds(-190)).rfc3339)
            #expect(items[2]["holderIsKnownGone"] as? Bool == false)

            let single = try await LeasectlHarness.run(["get", "file://\(directory)/free", "-o", "json"])
            let object = try #require(try JSONSerialization.jsonObject(with: Data(single.stdout.utf8)) as? [String: Any], "\(single)")
            #expect(object["holderIdentity"] as? String == "")
            #expect(object["leaderTransitions"] as? Int == 5)

            let yaml = try await LeasectlHarness.run(["get", "file://\(directory)/held", "-o", "yaml"])
            #expect(yaml.stdout.contains("holderIdentity: alice\n"), "\(yaml)")
            #expect(yaml.stdout.contains("leaderTransitions: 3\n"))

            let missing = try await LeasectlHarness.run(["get", "file://\(directory)/nothing"])
            #expect(missing.status == .exited(1))
            #expect(missing.stderr.contains("not found"))
            withExtendedLifetime(alice) {}
        }

        @Test(.timeLimit(.minutes(1)))
        func watchPrintsARowWhenTheLockChanges() async throws {
            let directory = try LeasectlHarness.temporaryDirectory()
            defer { LeasectlHarness.cleanUp(directory) }
            let lock = try FileLock(directory: directory, name: "w", identity: "writer")
            let first = try await lock.create(LeaderElectionRecord(holderIdentity: "", leaseDuration: .seconds(1), leaseTransitions: 1))
            let watcher = try ChildProcess.spawn(
                [LeasectlHarness.executable, "get", "-w", "file://\(directory)/w"],
                standardInput: .null, standardOutput: .pipe, standardError: .null)
            let (lines, continuation) = AsyncStream.makeStream(of: String.self)
            let fd = watcher.standardOutput!
            Thread.detachNewThread {
                LineReader.forEachLine(of: fd) { continuation.yield($0) }
                close(fd)
                continuation.finish()
            }
            var iterator = lines.makeAsyncIterator()
            #expect(await iterator.next()?.hasPrefix("NAME") == true)
            #expect(await iterator.next()?.contains("<none>") == true)
            _ = try await lock.update(LeaderElectionRecord(holderIdentity: "someone", leaseDuration: .seconds(30), leaseTransitions: 2), expecting: first)
            let changed = await iterator.next()
            #expect(changed?.contains("someone") == true, "\(changed ?? "EOF")")
            watcher.signal(SIGINT)
            #expect(await watcher.waitUntilExit(timeout: .seconds(10)) == .exited(0))
        }
    }
}
