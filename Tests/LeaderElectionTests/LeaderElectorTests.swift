import LeaderElection
import LockConformance
import InMemoryTracing
import MetricsTestKit
import Synchronization
import Testing

private let config = LeaderElectionConfiguration(name: "test")

private func ghostRecord(_ holder: String = "ghost", duration: Duration = .seconds(15), transitions: Int = 4) -> LeaderElectionRecord {
    LeaderElectionRecord(holderIdentity: holder, leaseDuration: duration, acquireTime: .now(), renewTime: .now(), leaseTransitions: transitions)
}

@Suite struct ConfigurationTests {
    @Test func defaultsAreClientGos() throws {
        let c = LeaderElectionConfiguration()
        #expect(c.leaseDuration == .seconds(15) && c.renewDeadline == .seconds(10) && c.retryPeriod == .seconds(2))
        #expect(c.jitterFactor == 1.2 && c.releaseOnCancel)
        try c.validate(identity: "x")
    }

    @Test(arguments: [
        (15, 15, 2, "x", "leaseDuration must be greater than renewDeadline (leaseDuration=15s, renewDeadline=15s)"),
        (15, 2, 2, "x", "renewDeadline must be greater than retryPeriod*JitterFactor (renewDeadline=2s, retryPeriod=2s, jitterFactor=1.2)"),
        (15, 10, 0, "x", "retryPeriod must be greater than zero (got 0s)"),
        (15, 10, 2, "", "Lock identity is empty"),
    ])
    func validationNamesTheOffendingValues(_ lease: Int, _ renew: Int, _ retry: Int, _ identity: String, _ message: String) {
        let c = LeaderElectionConfiguration(leaseDuration: .seconds(lease), renewDeadline: .seconds(renew), retryPeriod: .seconds(retry))
        #expect(throws: LeaderElectionError(code: .invalidConfiguration, message: message)) { try c.validate(identity: identity) }
    }

    @Test func electorRejectsInvalidConfiguration() {
        let lock = InMemoryLockStore().lock(identity: "a")
        #expect(throws: LeaderElectionError.self) {
            _ = try LeaderElector(lock: lock, configuration: .init(leaseDuration: .seconds(5), renewDeadline: .seconds(10)))
        }
    }
}

@Suite struct LeaderElectorTests {
    // MARK: expiry timers instead of polling

    @Test func followerTakesOverAtTheExpiryInstantNotAtItsNextPoll() async throws {
        let store = InMemoryLockStore()
        _ = try await store.lock(identity: "ghost").create(ghostRecord())
        let clock = ManualClock()
        let lock = InstrumentedLock(store.lock(identity: "b"), hideChanges: true)
        let elector = try LeaderElector(lock: lock, configuration: config, clock: clock, jitter: fixedJitter)
        let started = Stamp(), stopped = Stamp()
        let run = Task { try await elector.run(whileLeading: waitUntilCancelled(clock, started: started, stopped: stopped)) }
        defer { run.cancel() }
        for _ in 0..<20 where started.instant == nil {
            try await settle(clock, parked: 1, locks: [lock])
            #expect(!elector.isLeader || clock.now >= ManualClock.Instant(offset: .seconds(15)))
            clock.advanceToNextDeadline()
        }
        try await eventually("b leads") { started.instant != nil }
        // Polling every 3.2 s (2 s × (1 + 0.5 × 1.2)) would first notice at 16 s; the timer fires at 15 s.
        #expect(started.instant == ManualClock.Instant(offset: .seconds(15)))
        let record = try await lock.get()
        #expect(record?.record.holderIdentity == "b")
        #expect(record?.record.leaseTransitions == 5)
    }

    @Test func followersUseTheHoldersLeaseDuration() async throws {
        let store = InMemoryLockStore()
        _ = try await store.lock(identity: "ghost").create(ghostRecord(duration: .seconds(40)))
        let clock = ManualClock()
        let lock = InstrumentedLock(store.lock(identity: "b"))
        let elector = try LeaderElector(lock: lock, configuration: config, clock: clock, jitter: fixedJitter)
        let started = Stamp(), stopped = Stamp()
        let run = Task { try await elector.run(whileLeading: waitUntilCancelled(clock, started: started, stopped: stopped)) }
        defer { run.cancel() }
        for _ in 0..<40 where started.instant == nil {
            try await settle(clock, parked: 1, locks: [lock])
            clock.advanceToNextDeadline()
        }
        try await eventually("b leads") { started.instant != nil }
        #expect(started.instant == ManualClock.Instant(offset: .seconds(40)))
    }

    @Test func emptyHolderIsAcquiredAtOnceAndOwnIdentityStartsANewTerm() async throws {
        let store = InMemoryLockStore()
        _ = try await store.lock(identity: "x").create(ghostRecord("", transitions: 2))
        let clock = ManualClock()
        let elector = try LeaderElector(lock: store.lock(identity: "b"), configuration: config, clock: clock, jitter: fixedJitter)
        let token = try await elector.run { term in term.fencingToken }
        #expect(token == 3)
        #expect(clock.now == ManualClock.Instant(offset: .zero))
        // The record now says "" again (released when the work returned); simulate our own stale record.
        let current = try await store.lock(identity: "b").get()!
        _ = try await store.lock(identity: "b").update(ghostRecord("b", transitions: 3), expecting: current.version)
        let token2 = try await elector.run { term in term.fencingToken }
        #expect(token2 == 4, "a new term must get a new fencing token even when the record names us")
    }

    // MARK: leader work is a child task

    @Test func workIsCancelledAndAwaitedBeforeTheLeaseIsReleased_renewingWhileItDrains() async throws {
        let store = InMemoryLockStore()
        let clock = ManualClock()
        let lock = InstrumentedLock(store.lock(identity: "a"))
        let elector = try LeaderElector(lock: lock, configuration: config, clock: clock, jitter: fixedJitter)
        let workStopped = Mutex(false)
        let releasedWhileWorkRan = Mutex<Bool?>(nil)
        lock.onSuccessfulWrite { record in
            if record.holderIdentity.isEmpty { releasedWhileWorkRan.withLock { $0 = !workStopped.withLock { $0 } } }
        }
        let leading = Stamp()
        let run = Task {
            try await elector.run { term in
                leading.set(clock.now)
                try? await Task.sleep(for: .seconds(3600))          // until cancelled
                await Task { try? await clock.sleep(for: .seconds(5)) }.value   // drain: 5 s of simulated time
                try term.check()                                     // still guaranteed while draining
                workStopped.withLock { $0 = true }
            }
        }
        try await eventually("a leads") { leading.instant != nil }
        try await settle(clock, parked: 1, locks: [lock])
        let updatesBefore = lock.counts.updates
        run.cancel()
        // Draining: the renewer, the drain timer and the work's 5 s all sleep on the clock.
        for _ in 0..<10 {
            try await eventually("parked or stopped") {
                workStopped.withLock { $0 } || (clock.parkedSleepers >= 3 && lock.inFlight == 0)
            }
            if workStopped.withLock({ $0 }) { break }
            clock.advanceToNextDeadline()
        }
        let result: Void? = try await run.value
        #expect(result == nil)
        #expect(lock.counts.updates - updatesBefore >= 3, "renewals (at 2 s and 4 s) plus the release")
        #expect(releasedWhileWorkRan.withLock { $0 } == false, "the lease must be released only after the work stopped")
        let record = try await lock.get()
        #expect(record?.record.holderIdentity == "")
        #expect(record?.record.leaseDuration == .seconds(1))
        #expect(record?.record.leaseTransitions == 0)
    }

    @Test func workThatWillNotStopLeavesTheLeaseToExpireInsteadOfReleasingIt() async throws {
        let store = InMemoryLockStore()
        let clock = ManualClock()
        let lock = InstrumentedLock(store.lock(identity: "a"))
        var configuration = config
        configuration.drainTimeout = .seconds(3)
        let elector = try LeaderElector(lock: lock, configuration: configuration, clock: clock, jitter: fixedJitter)
        let events = EventLog(elector.events())
        let stubborn = AsyncStream.makeStream(of: Void.self)
        let run = Task {
            try await elector.run { _ in
                await Task { for await _ in stubborn.stream {} }.value   // ignores cancellation until the test ends it
            }
        }
        try await events.wait(for: "started") { $0.contains { if case .startedLeading = $0 { true } else { false } } }
        try await settle(clock, parked: 1, locks: [lock])
        run.cancel()
        try await settle(clock, parked: 2, locks: [lock])
        clock.advance(by: .seconds(3))
        let result: Void? = try await run.value
        #expect(result == nil)
        let record = try await lock.get()
        #expect(record?.record.holderIdentity == "a", "not released while the work may still run")
        try await events.wait(for: "stopped(cancelled)") { $0.contains { if case .stoppedLeading(_, .cancelled) = $0 { true } else { false } } }
        stubborn.continuation.finish()
    }

    @Test func workResultIsReturnedAndTheLeaseReleased() async throws {
        let store = InMemoryLockStore()
        let elector = try LeaderElector(lock: store.lock(identity: "a"), configuration: config, clock: ManualClock())
        let value = try await elector.run { term in "done by \(term.identity)" }
        #expect(value == "done by a")
        #expect(try await store.lock(identity: "a").get()?.record.holderIdentity == "")
        struct Boom: Error {}
        await #expect(throws: Boom.self) { try await elector.run { _ in throw Boom() } }
        #expect(try await store.lock(identity: "a").get()?.record.holderIdentity == "")
    }

    @Test func runningTwiceAtOnceIsRejected() async throws {
        let elector = try LeaderElector(lock: InMemoryLockStore().lock(identity: "a"), configuration: config, clock: ManualClock())
        let gate = AsyncStream.makeStream(of: Void.self)
        let first = Task { try await elector.run { _ in for await _ in gate.stream {} } }
        try await eventually("leading") { elector.isLeader }
        await #expect(throws: LeaderElectionError.self) { _ = try await elector.run { _ in } }
        gate.continuation.finish()
        _ = try await first.value
    }

    // MARK: terms and fencing

    @Test func checkThrowsOnceTheRenewDeadlinePasses() async throws {
        let clock = ManualClock()
        let lock = InstrumentedLock(InMemoryLockStore().lock(identity: "a"))
        let elector = try LeaderElector(lock: lock, configuration: config, clock: clock, jitter: fixedJitter)
        let events = EventLog(elector.events())
        let run = Task { try await elector.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
        defer { run.cancel() }
        try await eventually("leading") { elector.isLeader }
        let term = try #require(elector.currentTerm)
        try term.check()
        #expect(term.remaining == .seconds(10))
        lock.setFailure(.unavailable("store down"))
        try await settle(clock, parked: 1, locks: [lock])
        clock.advance(by: .seconds(10) - .nanoseconds(1))
        try term.check()
        try await settle(clock, parked: 1, locks: [lock])
        clock.advance(by: .nanoseconds(1))
        #expect(throws: LeaderElectionError.self) { try term.check() }
        try await events.wait(for: "stopped(lost)") { $0.contains { if case .stoppedLeading(_, .lost) = $0 { true } else { false } } }
        #expect(!elector.isLeader)
    }

    // MARK: events

    @Test func eventsAreDeduplicatedAndStoppedOnlyFollowsStarted() async throws {
        let store = InMemoryLockStore()
        let clock = ManualClock()
        let lockA = InstrumentedLock(store.lock(identity: "a")), lockB = InstrumentedLock(store.lock(identity: "b"))
        let a = try LeaderElector(lock: lockA, configuration: config, clock: clock, jitter: fixedJitter)
        let b = try LeaderElector(lock: lockB, configuration: config, clock: clock, jitter: fixedJitter)
        let eventsA = EventLog(a.events()), eventsB = EventLog(b.events())
        let runA = Task { try await a.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
        try await eventually("a leads") { a.isLeader }
        let runB = Task { try await b.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
        for _ in 0..<10 {   // many renewals and follower retries
            try await settle(clock, parked: 2, locks: [lockA, lockB])
            clock.advanceToNextDeadline()
        }
        try await settle(clock, parked: 2, locks: [lockA, lockB])
        runB.cancel()
        _ = try await runB.value
        runA.cancel()
        _ = try await runA.value
        try await eventsA.wait(for: "a stopped") { $0.count == 3 }
        let a0 = eventsA.all
        guard a0.count == 3, case .newLeader("a") = a0[0], case .startedLeading(let term) = a0[1],
              case .stoppedLeading(let stoppedTerm, .released) = a0[2] else {
            Issue.record("unexpected events of a: \(a0.map(\.description))")
            return
        }
        #expect(term == stoppedTerm)
        try await Task.sleep(for: .milliseconds(20))   // let b's stream deliver anything it might still have
        #expect(eventsB.all.map(\.description) == ["newLeader(a)"], "b followed only: one newLeader, no stoppedLeading")
    }

    // MARK: fast path, slow path, metrics

    @Test func renewIsOneWriteAndConflictsTakeTheCountedSlowPath() async throws {
        let metrics = TestMetrics()
        let store = InMemoryLockStore()
        let clock = ManualClock()
        let lock = InstrumentedLock(store.lock(identity: "a"))
        let elector = try LeaderElector(lock: lock, configuration: config, clock: clock, metricsFactory: metrics, jitter: fixedJitter)
        let run = Task { try await elector.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
        try await eventually("leading") { elector.isLeader }
        #expect(try metrics.expectGauge("leader_election_master_status", [("name", "test")]).lastValue == 1)
        try await settle(clock, parked: 1, locks: [lock])
        let before = lock.counts
        for _ in 0..<3 {
            clock.advanceToNextDeadline()
            try await settle(clock, parked: 1, locks: [lock])
        }
        #expect(lock.counts.updates - before.updates == 3)
        #expect(lock.counts.gets == before.gets)
        // Someone rewrites our record (same holder, same term, renewTime 1 µs later: a write of identical data would
        // keep the version, as on a kube-apiserver): the next blind write conflicts.
        let other = store.lock(identity: "operator")
        let current = try await other.get()!
        var rewritten = current.record
        rewritten.renewTime = rewritten.renewTime?.advanced(by: .microseconds(1))
        _ = try await other.update(rewritten, expecting: current.version)
        clock.advanceToNextDeadline()
        try await settle(clock, parked: 1, locks: [lock])
        #expect(elector.isLeader)
        #expect(try metrics.expectCounter("leader_election_slowpath_total", [("name", "test")]).totalValue == 1)
        #expect(try metrics.expectCounter("leader_election_transitions_total", [("name", "test")]).totalValue == 1)
        run.cancel()
        _ = try await run.value
        #expect(try metrics.expectGauge("leader_election_master_status", [("name", "test")]).lastValue == 0)
    }

    /// Issue 6's follower-load goal: with a change feed that carries records, a follower reads nothing while the
    /// leader renews, yet still takes over when the renewals stop, one lease duration after the last one it saw.
    @Test func followersOfARecordFeedReadNothingWhileTheLeaderRenews() async throws {
        let store = InMemoryLockStore()
        let clock = ManualClock()
        let a = InstrumentedLock(store.lock(identity: "a"))
        let b = InstrumentedLock(store.lock(identity: "b"))
        let leader = try LeaderElector(lock: a, configuration: config, clock: clock, jitter: fixedJitter)
        let follower = try LeaderElector(lock: b, configuration: config, clock: clock, jitter: fixedJitter)
        let lastWrite = Mutex<ManualClock.Instant?>(nil)
        a.onSuccessfulWrite { _ in lastWrite.withLock { $0 = clock.now } }
        let runA = Task { try await leader.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
        try await eventually("a leads") { leader.isLeader }
        let runB = Task { try await follower.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
        defer { runA.cancel(); runB.cancel() }
        try await eventually("b follows a") { follower.currentLeader == "a" }
        try await settle(clock, parked: 2, locks: [a, b])
        let readsBefore = b.counts.gets
        let renewalsBefore = a.counts.updates
        let start = clock.now
        while start.duration(to: clock.now) < config.leaseDuration * 3 {   // three lease durations of renewals
            clock.advanceToNextDeadline()
            try await settle(clock, parked: 2, locks: [a, b])
        }
        #expect(a.counts.updates - renewalsBefore >= 20, "the leader renewed \(a.counts.updates - renewalsBefore) times")
        #expect(b.counts.gets == readsBefore, "the follower read \(b.counts.gets - readsBefore) times while the leader renewed")
        #expect(leader.isLeader && !follower.isLeader && follower.currentLeader == "a")

        // The leader's store calls now fail: it stops renewing; b takes over one lease duration after the last
        // renewal it was told about.
        a.setFailure(.unavailable("partitioned"))
        let lastRenewal = try #require(lastWrite.withLock { $0 })
        try await eventually("b leads", timeout: .seconds(20)) {
            if !follower.isLeader { clock.advanceToNextDeadline() }
            return follower.isLeader
        }
        #expect(lastRenewal.duration(to: clock.now) >= config.leaseDuration)
        #expect(lastRenewal.duration(to: clock.now) <= config.leaseDuration + config.retryPeriod * 3)
    }

    @Test func acquireRenewAndReleaseAreTraced() async throws {
        let tracer = InMemoryTracer()
        let store = InMemoryLockStore()
        let clock = ManualClock()
        let lock = InstrumentedLock(store.lock(identity: "a"))
        let elector = try LeaderElector(lock: lock, configuration: config, clock: clock, tracer: tracer, jitter: fixedJitter)
        let run = Task { try await elector.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
        try await eventually("leading") { elector.isLeader }
        try await settle(clock, parked: 1, locks: [lock])
        clock.advanceToNextDeadline()
        try await settle(clock, parked: 1, locks: [lock])
        run.cancel()
        _ = try await run.value
        let spans = tracer.finishedSpans
        #expect(spans.map(\.operationName) == ["leader_election.acquire", "leader_election.renew", "leader_election.release"])
        for span in spans {
            #expect(span.attributes["leader_election.name"]?.toSpanAttribute() == "test")
            #expect(span.attributes["leader_election.identity"]?.toSpanAttribute() == "a")
        }
        #expect(spans.map { $0.attributes["leader_election.outcome"]?.toSpanAttribute() } == ["acquired", "renewed", "released"])
        #expect(spans.allSatisfy { $0.attributes["leader_election.fencing_token"]?.toSpanAttribute() == 0 })
    }

    @Test func releaseNeverOverwritesAnotherHoldersRecord() async throws {
        let store = InMemoryLockStore()
        let clock = ManualClock()
        let lock = InstrumentedLock(store.lock(identity: "a"))
        let elector = try LeaderElector(lock: lock, configuration: config, clock: clock, jitter: fixedJitter)
        let events = EventLog(elector.events())
        let run = Task { try await elector.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
        try await eventually("leading") { elector.isLeader }
        try await settle(clock, parked: 1, locks: [lock])
        let op = store.lock(identity: "z")
        let current = try await op.get()!
        _ = try await op.update(ghostRecord("z", transitions: 9), expecting: current.version)
        run.cancel()
        _ = try await run.value
        #expect(try await op.get()?.record.holderIdentity == "z")
        try await events.wait(for: "stopped") { $0.contains { if case .stoppedLeading(_, .cancelled) = $0 { true } else { false } } }
    }

    @Test func corruptRecordIsReportedThenOverwrittenAfterTheLeaseDuration() async throws {
        let metrics = TestMetrics()
        let store = InMemoryLockStore()
        _ = try await store.lock(identity: "x").create(ghostRecord())
        store.writeGarbage(Array("garbage".utf8))
        let clock = ManualClock()
        let lock = InstrumentedLock(store.lock(identity: "a"))
        let elector = try LeaderElector(lock: lock, configuration: config, clock: clock, metricsFactory: metrics, jitter: fixedJitter)
        let started = Stamp(), stopped = Stamp()
        let run = Task { try await elector.run(whileLeading: waitUntilCancelled(clock, started: started, stopped: stopped)) }
        defer { run.cancel() }
        for _ in 0..<20 where started.instant == nil {
            try await settle(clock, parked: 1, locks: [lock])
            #expect(!elector.isLeader || clock.now >= ManualClock.Instant(offset: .seconds(15)))
            clock.advanceToNextDeadline()
        }
        try await eventually("a leads") { started.instant != nil }
        #expect(started.instant == ManualClock.Instant(offset: .seconds(15)))
        #expect(try metrics.expectCounter("leader_election_corrupt_record_total", [("name", "test")]).totalValue == 1)
        #expect(try await lock.get()?.record.holderIdentity == "a")
    }

    @Test func healthCheck() async throws {
        let clock = ManualClock()
        let lock = InstrumentedLock(InMemoryLockStore().lock(identity: "a"))
        let elector = try LeaderElector(lock: lock, configuration: config, clock: clock, jitter: fixedJitter)
        try elector.check(maxTolerableExpiredLease: .seconds(1))   // not leading: healthy
        let run = Task { try await elector.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
        defer { run.cancel() }
        try await eventually("leading") { elector.isLeader }
        try elector.check(maxTolerableExpiredLease: .seconds(1))
    }
}

/// A lock whose reads take simulated time: the holder renews while the read is in flight.
private struct SlowReadLock: ResourceLock {
    let base: InMemoryLock
    let clock: ManualClock
    let renewDuringRead: @Sendable () async throws -> Void
    let slowReads = SlowReads()
    var identity: String { base.identity }
    var description: String { "slow-read:\(base.description)" }
    func get() async throws -> VersionedRecord? {
        if slowReads.first() {
            clock.advance(by: .seconds(5))      // the first read is slow…
            try await renewDuringRead()         // …and the holder renews before it is served
        }
        return try await base.get()
    }
    func create(_ record: LeaderElectionRecord) async throws -> LockVersion { try await base.create(record) }
    func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion {
        try await base.update(record, expecting: version)
    }
}

final class SlowReads: Sendable {
    private let count = Mutex(0)
    /// `true` for the first call only.
    func first() -> Bool { count.withLock { n in defer { n += 1 }; return n == 0 } }
}

@Suite struct ObservationTimeTests {
    @Test func anObservationIsStampedWhenTheReadReturnsNotWhenItStarted() async throws {
        let store = InMemoryLockStore()
        let holder = store.lock(identity: "holder")
        _ = try await holder.create(ghostRecord("holder"))
        let clock = ManualClock()
        let renewedAt = Mutex<ManualClock.Instant?>(nil)
        let lock = SlowReadLock(base: store.lock(identity: "b"), clock: clock) {
            guard renewedAt.withLock({ $0 }) == nil, let current = try await holder.get() else { return }
            var renewal = current.record
            renewal.renewTime = renewal.renewTime?.advanced(by: .seconds(5))   // a renewal changes the record
            _ = try await holder.update(renewal, expecting: current.version)
            renewedAt.withLock { $0 = clock.now }
        }
        let elector = try LeaderElector(lock: lock, configuration: config, clock: clock, jitter: fixedJitter)
        let started = Stamp(), stopped = Stamp()
        let run = Task { try await elector.run(whileLeading: waitUntilCancelled(clock, started: started, stopped: stopped)) }
        defer { run.cancel() }
        for _ in 0..<40 where started.instant == nil {
            try await eventually("parked") { clock.parkedSleepers >= 1 || started.instant != nil }
            clock.advanceToNextDeadline()
        }
        try await eventually("b leads") { started.instant != nil }
        let renewal = try #require(renewedAt.withLock { $0 })
        // The holder's last renewal landed at t+5 (during b's first read); b may not take over before t+5+15.
        #expect(try #require(started.instant) >= renewal.advanced(by: .seconds(15)))
    }
}
