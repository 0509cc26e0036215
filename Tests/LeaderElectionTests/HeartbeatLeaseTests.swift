import LeaderElection
import Synchronization
import Testing

/// A lock that fails every call while `failing` is set, recording on `clock` when each call came.
final class FailingLock: ResourceLock {
    let base: any ResourceLock
    let clock: ManualClock
    let failing = Mutex(true)
    let calls = Mutex<[ManualClock.Instant]>([])

    init(_ base: any ResourceLock, clock: ManualClock) {
        self.base = base
        self.clock = clock
    }

    var identity: String { base.identity }
    var description: String { "failing(\(base))" }

    private func enter() throws {
        calls.withLock { $0.append(clock.now) }
        if failing.withLock({ $0 }) { throw LeaderElectionError.unavailable("injected failure") }
    }

    func get() async throws -> VersionedRecord? { try enter(); return try await base.get() }
    func create(_ record: LeaderElectionRecord) async throws -> LockVersion { try enter(); return try await base.create(record) }
    func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion {
        try enter()
        return try await base.update(record, expecting: version)
    }
}

/// In-memory stores as a collection, for monitor tests.
final class InMemoryDirectory: LeaseDirectory {
    let stores = Mutex<[String: InMemoryLockStore]>([:])
    var description: String { "memory:/" }

    func store(_ name: String) -> InMemoryLockStore {
        stores.withLock { stores in
            if let store = stores[name] { return store }
            let store = InMemoryLockStore(name: name)
            stores[name] = store
            return store
        }
    }

    func remove(_ name: String) { _ = stores.withLock { $0.removeValue(forKey: name) } }

    func list() async throws -> [ListedLease] {
        var leases: [ListedLease] = []
        for (name, store) in stores.withLock({ $0 }).sorted(by: { $0.key < $1.key }) {
            if let stored = try await store.lock(identity: "monitor").get() {
                leases.append(ListedLease(name: name, record: stored.record, version: stored.version))
            }
        }
        return leases
    }
}

/// The next element of `iterator`, or a failure when the stream ended.
func next<Element>(_ iterator: inout AsyncStream<Element>.Iterator, _ what: String) async throws -> Element {
    guard let element = await iterator.next() else { throw TestFailure("stream ended waiting for \(what)") }
    return element
}

@Suite(.timeLimit(.minutes(1))) struct HeartbeatLeaseTests {
    @Test func defaultsAreTheKubeletsNodeLease() throws {
        let configuration = HeartbeatConfiguration()
        #expect(configuration.leaseDuration == .seconds(40))
        #expect(configuration.effectiveRenewInterval == .seconds(10))
        #expect((1...9).map { configuration.backoff(afterFailures: $0) } == [
            .milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600), .milliseconds(3200),
            .milliseconds(6400), .seconds(7), .seconds(7), .seconds(7),
        ])
        #expect(configuration.backoff(afterFailures: 10_000) == .seconds(7))
        #expect(throws: LeaderElectionError.self) { try HeartbeatConfiguration(leaseDuration: .seconds(4), renewInterval: .seconds(4)).validate() }
        #expect(throws: LeaderElectionError.self) { try HeartbeatConfiguration(leaseDuration: .zero).validate() }
    }

    @Test func createsThenRenewsEveryInterval() async throws {
        let clock = ManualClock()
        let store = InMemoryLockStore()
        let heartbeat = try HeartbeatLease(lock: store.lock(identity: "node-a"), clock: clock)
        var events = heartbeat.events().makeAsyncIterator()
        let task = Task { await heartbeat.run() }
        defer { task.cancel() }

        guard case .renewed(true, let v1, let first) = try await next(&events, "create") else { throw TestFailure("expected a create") }
        #expect(first.holderIdentity == "node-a" && first.leaseDuration == .seconds(40) && first.leaseTransitions == 0)
        #expect(try await store.lock(identity: "x").get()?.version == v1)
        for round in 1...3 {
            #expect(await clock.waitForSleepers(atLeast: 1))
            #expect(clock.nextDeadline == ManualClock.Instant(offset: .seconds(10 * Int64(round))))
            clock.advance(by: .seconds(10))
            guard case .renewed(false, let version, let record) = try await next(&events, "renew \(round)") else {
                throw TestFailure("expected a renewal")
            }
            #expect(try await store.lock(identity: "x").get()?.version == version)
            #expect(record.acquireTime == first.acquireTime)
        }
    }

    /// A store may keep the version of an identical write (a kube-apiserver does) and monitors see a beat only as a
    /// new version: with a wall clock that stands still, every renewal still writes a later `renewTime`.
    @Test func renewalsChangeTheRecordWhenTheWallClockStandsStill() async throws {
        let clock = ManualClock()
        let store = InMemoryLockStore()
        let frozen = MicroTime(microsecondsSinceEpoch: 1_764_000_000_000_000)
        let heartbeat = try HeartbeatLease(lock: store.lock(identity: "node-a"), clock: clock, wallClock: WallClock { frozen })
        var events = heartbeat.events().makeAsyncIterator()
        let task = Task { await heartbeat.run() }
        defer { task.cancel() }

        guard case .renewed(true, let v1, let first) = try await next(&events, "create") else { throw TestFailure("expected a create") }
        var versions: Set<LockVersion> = [v1]
        var previous = try #require(first.renewTime)
        for round in 1...3 {
            #expect(await clock.waitForSleepers(atLeast: 1))
            clock.advance(by: .seconds(10))
            guard case .renewed(false, let version, let record) = try await next(&events, "renew \(round)") else {
                throw TestFailure("expected a renewal")
            }
            let renewed = try #require(record.renewTime)
            #expect(renewed.duration(since: previous) == .microseconds(1), "renewTime \(previous) → \(renewed)")
            #expect(!versions.contains(version), "renewal \(round) kept version \(version)")
            versions.insert(version)
            previous = renewed
        }
    }

    @Test func overwritesAnotherHoldersRecordAndACorruptOne() async throws {
        let clock = ManualClock()
        let store = InMemoryLockStore()
        _ = try await store.lock(identity: "intruder").create(LeaderElectionRecord(holderIdentity: "intruder", leaseDuration: .seconds(5), leaseTransitions: 3))
        let heartbeat = try HeartbeatLease(lock: store.lock(identity: "node-a"), clock: clock)
        var events = heartbeat.events().makeAsyncIterator()
        let task = Task { await heartbeat.run() }
        defer { task.cancel() }
        guard case .renewed(false, _, let record) = try await next(&events, "overwrite") else { throw TestFailure("expected an update") }
        #expect(record.holderIdentity == "node-a" && record.leaseTransitions == 4 && record.leaseDuration == .seconds(40))

        store.writeGarbage(Array("not json".utf8))
        #expect(await clock.waitForSleepers(atLeast: 1))
        clock.advance(by: .seconds(10))
        guard case .renewed(false, let version, let replaced) = try await next(&events, "replace garbage") else {
            throw TestFailure("expected the corrupt record to be replaced")
        }
        #expect(replaced.holderIdentity == "node-a")
        #expect(try await store.lock(identity: "x").get()?.version == version)

        store.delete()
        #expect(await clock.waitForSleepers(atLeast: 1))
        clock.advance(by: .seconds(10))
        guard case .renewed(true, _, _) = try await next(&events, "re-create") else { throw TestFailure("expected a re-create") }
    }

    @Test func backsOffLikeTheKubeletThenReturnsToTheInterval() async throws {
        let clock = ManualClock()
        let lock = FailingLock(InMemoryLockStore().lock(identity: "node-a"), clock: clock)
        let heartbeat = try HeartbeatLease(lock: lock, clock: clock)
        var events = heartbeat.events().makeAsyncIterator()
        let task = Task { await heartbeat.run() }
        defer { task.cancel() }

        let expected: [Duration] = [
            .milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600), .milliseconds(3200),
            .milliseconds(6400), .seconds(7), .seconds(7),
        ]
        for (index, delay) in expected.enumerated() {
            guard case .failed(let error, let failures, let retryIn) = try await next(&events, "failure \(index + 1)") else {
                throw TestFailure("expected a failure")
            }
            #expect(error.code == .unavailable)
            #expect(failures == index + 1)
            #expect(retryIn == delay)
            #expect(await clock.waitForSleepers(atLeast: 1))
            if index == expected.count - 1 { lock.failing.withLock { $0 = false } }
            clock.advance(by: delay)
        }
        guard case .renewed(true, _, _) = try await next(&events, "recovery") else { throw TestFailure("expected recovery") }
        // Attempts came exactly one backoff apart (the first at once), measured on the injected clock.
        let firstCalls = lock.calls.withLock { $0 }.prefix(expected.count + 1)
        let gaps = zip(firstCalls.dropFirst(), firstCalls).map { $0.offset - $1.offset }
        #expect(gaps == expected)
        #expect(await clock.waitForSleepers(atLeast: 1))
        #expect(clock.nextDeadline == clock.now.advanced(by: .seconds(10)))
    }

    @Test func stopsOnCancellationAndLeavesTheLease() async throws {
        let clock = ManualClock()
        let store = InMemoryLockStore()
        let heartbeat = try HeartbeatLease(lock: store.lock(identity: "node-a"), clock: clock)
        var events = heartbeat.events().makeAsyncIterator()
        let task = Task { await heartbeat.run() }
        _ = try await next(&events, "create")
        #expect(await clock.waitForSleepers(atLeast: 1))
        task.cancel()
        await task.value
        #expect(try await store.lock(identity: "x").get()?.record.holderIdentity == "node-a")
    }
}

@Suite(.timeLimit(.minutes(1))) struct LeaseMonitorTests {
    @Test func aliveExpiredAliveOnTheMonitorsOwnClock() async throws {
        let directory = InMemoryDirectory()
        let heartbeatClock = ManualClock()
        let heartbeat = try HeartbeatLease(lock: directory.store("node-a").lock(identity: "node-a"), clock: heartbeatClock)
        var beats = heartbeat.events().makeAsyncIterator()
        var running = Task { await heartbeat.run() }
        _ = try await next(&beats, "create")

        let clock = ManualClock()
        let monitor = try LeaseMonitor(directory: directory, configuration: .init(pollInterval: .seconds(5)), clock: clock)
        var transitions = monitor.transitions().makeAsyncIterator()
        let first = try await next(&transitions, "alive")
        #expect(first.name == "node-a" && first.state == .alive)

        // Renewals keep it alive past one lease duration.
        for _ in 0..<5 {
            #expect(await heartbeatClock.waitForSleepers(atLeast: 1))
            heartbeatClock.advance(by: .seconds(10))
            _ = try await next(&beats, "renew")
            #expect(await clock.waitForSleepers(atLeast: 1))
            clock.advance(by: .seconds(10))
        }
        // Stopped: expired exactly one lease duration (the record's 40 s) after the last change it saw.
        running.cancel()
        await running.value
        var expired: LeaseTransition?
        for _ in 0..<20 where expired == nil {
            #expect(await clock.waitForSleepers(atLeast: 1))
            clock.advanceToNextDeadline()
            // Each wake either expires it or lists again and sleeps; collect what is ready.
            if clock.now.offset >= .seconds(90) { expired = try await next(&transitions, "expired") }
        }
        #expect(expired?.state == .expired && expired?.name == "node-a")
        #expect(expired.map { $0.unchangedFor >= .seconds(40) } == true)

        // Restarted: alive again on the next listing.
        running = Task { await heartbeat.run() }
        defer { running.cancel() }
        _ = try await next(&beats, "renew after restart")
        #expect(await clock.waitForSleepers(atLeast: 1))
        clock.advance(by: .seconds(5))
        let alive = try await next(&transitions, "alive again")
        #expect(alive.name == "node-a" && alive.state == .alive)

        // Deleted: removed.
        directory.remove("node-a")
        #expect(await clock.waitForSleepers(atLeast: 1))
        clock.advance(by: .seconds(5))
        let removed = try await next(&transitions, "removed")
        #expect(removed.state == .removed)
    }

    @Test func aReleasedLeaseIsExpiredAtOnce() async throws {
        let directory = InMemoryDirectory()
        _ = try await directory.store("gone").lock(identity: "x").create(LeaderElectionRecord(holderIdentity: "", leaseDuration: .seconds(1)))
        let monitor = try LeaseMonitor(directory: directory, clock: ManualClock())
        var transitions = monitor.transitions().makeAsyncIterator()
        let first = try await next(&transitions, "expired")
        #expect(first.state == .expired)
    }
}
