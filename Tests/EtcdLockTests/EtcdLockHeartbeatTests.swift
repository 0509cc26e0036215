import Etcd
import EtcdLock
import EtcdTesting
import Foundation
import LeaderElection
import Testing

@Suite(.timeLimit(.minutes(2))) struct EtcdLockHeartbeatTests {
    @Test func heartbeatListingAndMonitor() async throws {
        try await SharedEtcdServer.withServer { server in
            let client = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
            defer { client.close() }
            let namespace = "members-\(UUID().uuidString)"
            let lock = try EtcdLock(client: client, configuration: .init(name: "node-a", namespace: namespace), identity: "node-a")
            try await heartbeatScenario(lock: lock, directory: EtcdLockDirectory(client: client, namespace: namespace), name: "node-a")
        }
    }

    @Test func directoryListsKeysUnderThePrefixOnly() async throws {
        try await SharedEtcdServer.withServer { server in
            let client = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
            defer { client.close() }
            let namespace = "list-\(UUID().uuidString)"
            let directory = EtcdLockDirectory(client: client, namespace: namespace)
            #expect(directory.prefix == "/leader-election/\(namespace)/")
            #expect(try await directory.list().isEmpty)
            for name in ["b", "a"] {
                _ = try await EtcdLock(client: client, configuration: .init(name: name, namespace: namespace), identity: name)
                    .create(LeaderElectionRecord(holderIdentity: name, leaseDuration: .seconds(40)))
            }
            try await EtcdLock(client: client, configuration: .init(name: "c", namespace: namespace), identity: "c").writeRaw(Array("x".utf8))
            _ = try await EtcdLock(client: client, configuration: .init(name: "a", namespace: namespace + "-other"), identity: "a")
                .create(LeaderElectionRecord(holderIdentity: "a", leaseDuration: .seconds(40)))
            let listed = try await directory.list()
            #expect(listed.map(\.name) == ["a", "b", "c"])
            #expect(listed[0].record?.holderIdentity == "a" && listed[2].record == nil)
            let a = try #require(try await EtcdLock(client: client, configuration: .init(name: "a", namespace: namespace), identity: "a").get())
            #expect(listed[0].version == a.version)
            // The change feed yields on a write under the prefix.
            let feed = try #require(directory.changes())
            var changes = feed.makeAsyncIterator()
            _ = await changes.next()   // established
            _ = try await EtcdLock(client: client, configuration: .init(name: "d", namespace: namespace), identity: "d")
                .create(LeaderElectionRecord(holderIdentity: "d", leaseDuration: .seconds(40)))
            #expect(await changes.next() != nil)
        }
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
