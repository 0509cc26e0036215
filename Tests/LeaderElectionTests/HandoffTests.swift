import LeaderElection
import LockConformance
import MetricsTestKit
import Synchronization
import Testing

/// A lock whose change feed says only *that* something changed (the default `recordChanges()`: `.unknown`).
private struct ChangesOnlyLock: ForwardingLock {
    let base: any ResourceLock
    var description: String { "changes-only:\(base.description)" }
    func changes() -> AsyncStream<Void>? { base.changes() }
}

/// A lock whose record feed also delivers elements the test injects (stale or foreign records), in order and
/// without coalescing.
private final class ScriptedFeedLock: ForwardingLock {
    let base: any ResourceLock
    private let injected = Mutex<[AsyncStream<LockChange>.Continuation]>([])
    init(_ base: any ResourceLock) { self.base = base }
    var description: String { "scripted:\(base.description)" }
    func recordChanges() -> AsyncStream<LockChange>? {
        let (stream, continuation) = AsyncStream.makeStream(of: LockChange.self)
        injected.withLock { $0.append(continuation) }
        let relay = Task {
            guard let changes = base.recordChanges() else { return }
            for await change in changes { continuation.yield(change) }
        }
        continuation.onTermination = { _ in relay.cancel() }
        return stream
    }
    /// Delivers `change` to every subscriber.
    func inject(_ change: LockChange) {
        for continuation in injected.withLock({ $0 }) { continuation.yield(change) }
    }
}

/// Issue 13, targeted hand-off: the leader learns of `requestHandoff(on:to:)` from its lock's change feed and hands
/// over at once, not at its next renewal; stale feed elements never end a term.
@Suite(.timeLimit(.minutes(1))) struct HandoffTests {
    private let config = LeaderElectionConfiguration(name: "test")

    private struct Candidates {
        let clock: ManualClock
        let locks: [InstrumentedLock]
        let electors: [LeaderElector<ManualClock>]
        let events: [EventLog]
        let runs: [Task<Void?, any Error>]
        var a: LeaderElector<ManualClock> { electors[0] }
        var b: LeaderElector<ManualClock> { electors[1] }
        var c: LeaderElector<ManualClock> { electors[2] }

        func cancel() {
            for run in runs { run.cancel() }
            for log in events { log.cancel() }
        }
    }

    /// Starts `a`, waits until it leads, then starts `b` and `c` and waits until everyone is parked.
    private func start(_ wrap: (InMemoryLock) -> any ResourceLock, store: InMemoryLockStore) async throws -> Candidates {
        let clock = ManualClock()
        let locks = ["a", "b", "c"].map { InstrumentedLock(wrap(store.lock(identity: $0))) }
        let electors = try locks.map { try LeaderElector(lock: $0, configuration: config, clock: clock, jitter: fixedJitter) }
        let events = electors.map { EventLog($0.events()) }
        var runs: [Task<Void?, any Error>] = []
        runs.append(Task { try await electors[0].run { _ in try? await Task.sleep(for: .seconds(3600)) } })
        try await eventually("a leads") { electors[0].isLeader }
        for elector in electors.dropFirst() {
            runs.append(Task { try await elector.run { _ in try? await Task.sleep(for: .seconds(3600)) } })
        }
        try await eventually("b and c follow a") { electors.dropFirst().allSatisfy { $0.currentLeader == "a" } }
        try await settle(clock, parked: 3, locks: locks)
        return Candidates(clock: clock, locks: locks, electors: electors, events: events, runs: runs)
    }

    @Test func theLeaderHearsOfAHandoffFromItsRecordFeedAndHandsOverAtOnce() async throws {
        let store = InMemoryLockStore()
        let candidates = try await start({ $0 }, store: store)
        defer { candidates.cancel() }
        let a = candidates.locks[0]
        let token = try #require(candidates.a.currentTerm?.fencingToken)
        let requestedAt = candidates.clock.now
        let updatesBefore = a.counts.updates

        try await requestHandoff(on: store.lock(identity: "operator"), to: "c")
        try await eventually("c leads") { candidates.c.isLeader }

        #expect(candidates.clock.now == requestedAt, "the hand-off waited for simulated time")
        #expect(a.counts.updates - updatesBefore == 1, "a wrote \(a.counts.updates - updatesBefore) times: expected the release only")
        try await candidates.events[0].wait(for: "a handed off") {
            $0.contains { if case .stoppedLeading(_, .handedOff) = $0 { true } else { false } }
        }
        #expect(!candidates.events[1].all.contains { if case .startedLeading = $0 { true } else { false } }, "b led during a hand-off to c")
        let record = try #require(try await store.lock(identity: "x").get()).record
        #expect(record.holderIdentity == "c" && record.leaseTransitions == token + 1 && record.preferredHolder == nil)
    }

    @Test func aFeedWithoutRecordsCostsTheLeaderOneReadPerElement() async throws {
        let store = InMemoryLockStore()
        let candidates = try await start({ ChangesOnlyLock(base: $0) }, store: store)
        defer { candidates.cancel() }
        let a = candidates.locks[0]
        let requestedAt = candidates.clock.now
        let getsBefore = a.counts.gets, unknownBefore = a.counts.unknownChanges

        try await requestHandoff(on: store.lock(identity: "operator"), to: "c")
        try await eventually("c leads") { candidates.c.isLeader }

        #expect(candidates.clock.now == requestedAt, "the hand-off waited for simulated time")
        #expect(a.counts.unknownChanges > unknownBefore)
        #expect(a.counts.gets > getsBefore, "a never read after its feed reported a change")
        try await candidates.events[0].wait(for: "a handed off") {
            $0.contains { if case .stoppedLeading(_, .handedOff) = $0 { true } else { false } }
        }
    }

    /// Elements of an earlier term, of another holder, or of this term without a request — delivered late, as a
    /// slow feed may — leave the term alone: no hand-off, no release, and the next renewal takes the fast path
    /// (nothing stale was adopted as the leader's last write).
    @Test func staleFeedElementsNeverEndATerm() async throws {
        let store = InMemoryLockStore()
        let metrics = TestMetrics()
        let clock = ManualClock()
        let lock = InstrumentedLock(store.lock(identity: "a"))
        let scripted = ScriptedFeedLock(lock)
        let elector = try LeaderElector(lock: scripted, configuration: config, clock: clock, metricsFactory: metrics, jitter: fixedJitter)
        let events = EventLog(elector.events())
        defer { events.cancel() }
        let run = Task { try await elector.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
        defer { run.cancel() }
        try await eventually("a leads") { elector.isLeader }
        try await settle(clock, parked: 1, locks: [lock])
        let term = try #require(elector.currentTerm)
        let current = try #require(try await store.lock(identity: "x").get())

        func record(holder: String, transitions: Int, preferred: String?) -> LeaderElectionRecord {
            var record = current.record
            record.holderIdentity = holder
            record.leaseTransitions = transitions
            record.preferredHolder = preferred
            record.strategy = preferred.map { _ in handoffStrategy }
            return record
        }
        let stale: [LockChange] = [
            .stored(VersionedRecord(record: record(holder: "a", transitions: term.fencingToken - 1, preferred: "c"), version: LockVersion("old-term"))),
            .stored(VersionedRecord(record: record(holder: "z", transitions: term.fencingToken + 1, preferred: "c"), version: LockVersion("other-holder"))),
            .stored(VersionedRecord(record: record(holder: "", transitions: term.fencingToken, preferred: "c"), version: LockVersion("released"))),
            .stored(VersionedRecord(record: record(holder: "a", transitions: term.fencingToken, preferred: "a"), version: LockVersion("prefers-a"))),
            .stored(VersionedRecord(record: record(holder: "a", transitions: term.fencingToken, preferred: nil), version: LockVersion("no-request"))),
            .deleted,
        ]
        for change in stale { scripted.inject(change) }
        // A last `.unknown` makes the leader read once: when that read happened, every element before it was handled.
        let getsBefore = lock.counts.gets
        scripted.inject(.unknown)
        try await eventually("a reads after the .unknown element") { lock.counts.gets > getsBefore }
        try await settle(clock, parked: 1, locks: [lock])

        #expect(elector.isLeader && term.isValid)
        #expect(!events.all.contains { if case .stoppedLeading = $0 { true } else { false } })
        #expect(try await store.lock(identity: "x").get() == current, "the leader wrote while handling stale elements")
        let updatesBefore = lock.counts.updates
        clock.advanceToNextDeadline()
        try await settle(clock, parked: 1, locks: [lock])
        #expect(lock.counts.updates == updatesBefore + 1 && elector.isLeader)
        #expect(try metrics.expectCounter("leader_election_slowpath_total", [("name", "test")]).totalValue == 0,
                "the renewal after the stale elements conflicted: a stale version was adopted")
    }

    /// A request the feed reports while a renewal is in flight: whichever sees it first starts the hand-off, once.
    @Test func aRequestSeenByTheFeedAndARenewalHandsOverOnce() async throws {
        let store = InMemoryLockStore()
        let candidates = try await start({ $0 }, store: store)
        defer { candidates.cancel() }
        try await requestHandoff(on: store.lock(identity: "operator"), to: "c")
        candidates.clock.advanceToNextDeadline()   // a's renewal may race the feed
        try await eventually("c leads") { candidates.c.isLeader }
        try await candidates.events[0].wait(for: "a handed off") {
            $0.contains { if case .stoppedLeading(_, .handedOff) = $0 { true } else { false } }
        }
        try await candidates.events[2].wait(for: "c started leading") {
            $0.contains { if case .startedLeading = $0 { true } else { false } }
        }
        func count(_ log: EventLog, _ started: Bool) -> Int {
            log.all.filter {
                switch $0 {
                case .startedLeading: started
                case .stoppedLeading: !started
                default: false
                }
            }.count
        }
        #expect(count(candidates.events[0], false) == 1, "a stopped leading \(count(candidates.events[0], false)) times")
        #expect(count(candidates.events[1], true) == 0 && count(candidates.events[2], true) == 1)
    }
}
