import Foundation
import LeaderElection
import LockConformance
import Testing

@testable import FileLock

@Suite(.timeLimit(.minutes(1))) struct FileLockHeartbeatTests {
    @Test func heartbeatListingAndMonitor() async throws {
        try await withTemporaryDirectory { path in
            let lock = try FileLock(directory: path, name: "node-a", identity: "node-a")
            try await HeartbeatConformance.run(lock: lock, directory: FileLockDirectory(directory: path), name: "node-a", backend: "FileLock")
        }
    }

    @Test func directoryListsRecordsCorruptOnesAndGoneHolders() async throws {
        try await withTemporaryDirectory { path in
            let directory = try FileLockDirectory(directory: path)
            #expect(try await directory.list().isEmpty)
            let a = try FileLock(directory: path, name: "a", identity: "a")
            let v = try await a.create(LeaderElectionRecord(holderIdentity: "a", leaseDuration: .seconds(40)))
            var b: FileLock? = try FileLock(directory: path, name: "b", identity: "b")
            _ = try await b!.create(LeaderElectionRecord(holderIdentity: "b", leaseDuration: .seconds(40)))
            try FileLock(directory: path, name: "c", identity: "c").writeRaw(Array("garbage".utf8))
            b!.releaseLivenessForTesting()
            b = nil
            let listed = try await directory.list()
            #expect(listed.map(\.name) == ["a", "b", "c"])
            #expect(listed[0].version == v && listed[0].record?.holderIdentity == "a" && !listed[0].holderIsKnownGone)
            #expect(listed[1].holderIsKnownGone)
            #expect(listed[2].record == nil)
            // A member whose process is verifiably gone is expired at once.
            let monitor = try LeaseMonitor(directory: directory, clock: ManualClock())
            var transitions = monitor.transitions().makeAsyncIterator()
            var states: [String: LeaseTransition.State] = [:]
            for _ in 0..<3 { if let t = await transitions.next() { states[t.name] = t.state } }
            #expect(states == ["a": .alive, "b": .expired, "c": .alive])
            withExtendedLifetime(a) {}
        }
    }

    @Test func missingDirectoryIsNotFound() async throws {
        let directory = try FileLockDirectory(directory: "/nonexistent-\(UUID().uuidString)")
        await #expect { _ = try await directory.list() } throws: { ($0 as? LeaderElectionError)?.code == .notFound }
    }
}
