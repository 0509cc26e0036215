import Foundation
import LeaderElection
import Testing

@testable import FileLock

@Suite(.timeLimit(.minutes(1))) struct FileLockHeartbeatTests {
    @Test func heartbeatListingAndMonitor() async throws {
        try await withTemporaryDirectory { path in
            let lock = try FileLock(directory: path, name: "node-a", identity: "node-a")
            try await heartbeatScenario(lock: lock, directory: FileLockDirectory(directory: path), name: "node-a")
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

/// The heartbeat scenario every backend runs: a heartbeat creates and renews `name` (driven by a manual
/// clock), the directory lists it, and a monitor on its own manual clock sees it alive → expired (once the
/// heartbeat stops) → alive (once it restarts).
func heartbeatScenario(lock: any ResourceLock, directory: any LeaseDirectory, name: String) async throws {
    let clock = ManualClock()
    let heartbeat = try HeartbeatLease(lock: lock, configuration: .init(leaseDuration: .seconds(40)), clock: clock)
    var beats = heartbeat.events().makeAsyncIterator()
    var running = Task { await heartbeat.run() }
    defer { running.cancel() }

    guard case .renewed(true, let v1, let created)? = await beats.next() else { throw ScenarioFailure("expected a create") }
    #expect(created.holderIdentity == lock.identity && created.leaseDuration == .seconds(40))
    #expect(try await lock.get()?.version == v1)
    #expect(await clock.waitForSleepers(atLeast: 1))
    #expect(clock.nextDeadline == ManualClock.Instant(offset: .seconds(10)))
    clock.advance(by: .seconds(10))
    guard case .renewed(false, let v2, let renewed)? = await beats.next() else { throw ScenarioFailure("expected a renewal") }
    #expect(v2 != v1)
    #expect(renewed.acquireTime == created.acquireTime)
    let stored = try #require(try await lock.get())
    #expect(stored.version == v2 && stored.record.holderIdentity == lock.identity)

    // Listing.
    let listed = try await directory.list()
    #expect(listed.map(\.name) == [name])
    #expect(listed.first?.version == v2 && listed.first?.record?.holderIdentity == lock.identity)

    // The monitor, on its own clock.
    let monitorClock = ManualClock()
    let monitor = try LeaseMonitor(
        directory: directory, configuration: .init(pollInterval: .seconds(5), gracePeriod: .seconds(40)), clock: monitorClock)
    var transitions = monitor.transitions().makeAsyncIterator()
    let first = try #require(await transitions.next())
    #expect(first.name == name && first.state == .alive)

    running.cancel()
    await running.value
    #expect(await monitorClock.waitForSleepers(atLeast: 1))
    monitorClock.advance(by: .seconds(41))
    let expired = try #require(await transitions.next())
    #expect(expired.name == name && expired.state == .expired)
    #expect(expired.unchangedFor >= .seconds(40))

    running = Task { await heartbeat.run() }
    guard case .renewed(false, _, _)? = await beats.next() else { throw ScenarioFailure("expected a renewal after restart") }
    #expect(await monitorClock.waitForSleepers(atLeast: 1))
    monitorClock.advance(by: .seconds(5))   // a poll, unless the change feed woke the monitor already
    let alive = try #require(await transitions.next())
    #expect(alive.name == name && alive.state == .alive)
}

struct ScenarioFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
