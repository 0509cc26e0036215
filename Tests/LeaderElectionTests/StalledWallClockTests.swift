import LeaderElection
import LockConformance
import Synchronization
import Testing

/// A wall clock read by a test: it stands still, or steps back by `step` at every reading.
private final class ScriptedWallClock: Sendable {
    private let readings = Mutex(0)
    let start = MicroTime(microsecondsSinceEpoch: 1_764_000_000_000_000)
    let step: Duration

    init(steppingBackBy step: Duration) { self.step = step }

    var wallClock: WallClock {
        WallClock { [self] in
            let n = readings.withLock { n in defer { n += 1 }; return n }
            return start.advanced(by: .zero - step * n)
        }
    }
}

/// Issue 13: a kube-apiserver answers a write of identical data with the same resourceVersion and no watch event, so
/// a renewal that wrote the same `renewTime` as the last one would be invisible to followers, who would take over
/// from a live leader. `InMemoryLock` behaves the same way; the leader must change the record every time.
@Suite(.timeLimit(.minutes(1))) struct StalledWallClockTests {
    private let config = LeaderElectionConfiguration(name: "test")

    @Test func renewalsChangeTheRecordWhenTheWallClockStandsStill() async throws {
        try await followersSeeEveryRenewal(leaderWallClock: ScriptedWallClock(steppingBackBy: .zero).wallClock)
    }

    @Test func renewalsChangeTheRecordWhenTheWallClockStepsBack() async throws {
        try await followersSeeEveryRenewal(leaderWallClock: ScriptedWallClock(steppingBackBy: .seconds(1)).wallClock)
    }

    /// Leader `a` renews on `leaderWallClock` for three lease durations while `b` follows through the record feed and
    /// `p` polls. Every renewal writes a `renewTime` at least 1 µs after the previous one and gets a new version; no
    /// follower takes over; the release (also stamped after the last renewal) hands over at once.
    private func followersSeeEveryRenewal(leaderWallClock: WallClock) async throws {
        let store = InMemoryLockStore()
        let clock = ManualClock()
        let a = InstrumentedLock(store.lock(identity: "a"))
        let b = InstrumentedLock(store.lock(identity: "b"))
        let p = InstrumentedLock(store.lock(identity: "p"), hideChanges: true)
        var leaderConfig = config
        leaderConfig.wallClock = leaderWallClock
        var followerConfig = config
        followerConfig.wallClock = ScriptedWallClock(steppingBackBy: .zero).wallClock
        let leader = try LeaderElector(lock: a, configuration: leaderConfig, clock: clock, jitter: fixedJitter)
        let watching = try LeaderElector(lock: b, configuration: followerConfig, clock: clock, jitter: fixedJitter)
        let polling = try LeaderElector(lock: p, configuration: followerConfig, clock: clock, jitter: fixedJitter)
        let runA = Task { try await leader.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
        try await eventually("a leads") { leader.isLeader }
        let runB = Task { try await watching.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
        let runP = Task { try await polling.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
        defer { runA.cancel(); runB.cancel(); runP.cancel() }
        try await eventually("b and p follow a") { watching.currentLeader == "a" && polling.currentLeader == "a" }
        try await settle(clock, parked: 3, locks: [a, b, p])

        var last = try #require(try await store.lock(identity: "x").get())
        var versions: Set<LockVersion> = [last.version]
        var renewals = 0
        let start = clock.now
        while start.duration(to: clock.now) < config.leaseDuration * 3 {
            let updatesBefore = a.counts.updates
            clock.advanceToNextDeadline()
            try await settle(clock, parked: 3, locks: [a, b, p])
            #expect(leader.isLeader && !watching.isLeader && !polling.isLeader, "leadership moved at \(clock.now)")
            let written = a.counts.updates - updatesBefore
            guard written > 0 else { continue }
            #expect(written == 1, "\(written) writes in one timer step")
            let now = try #require(try await store.lock(identity: "x").get())
            let previous = try #require(last.record.renewTime), renewed = try #require(now.record.renewTime)
            #expect(renewed.duration(since: previous) >= .microseconds(1), "renewTime \(previous) → \(renewed)")
            #expect(!versions.contains(now.version), "renewal at \(clock.now) kept or reused version \(now.version)")
            versions.insert(now.version)
            last = now
            renewals += 1
        }
        #expect(renewals >= 20, "a renewed \(renewals) times in three lease durations")
        #expect(watching.currentLeader == "a" && polling.currentLeader == "a")

        // The release is stamped after the last renewal too, and b, told by its feed, takes over at once.
        let release = Mutex<LeaderElectionRecord?>(nil)
        a.onSuccessfulWrite { record in release.withLock { $0 = record } }
        let releasedAt = clock.now
        runA.cancel()
        _ = try await runA.value
        let released = try #require(release.withLock { $0 })
        #expect(released.holderIdentity == "" && released.leaseTransitions == last.record.leaseTransitions)
        #expect(try #require(released.renewTime) > (try #require(last.record.renewTime)))
        try await eventually("b leads after a released") { watching.isLeader }
        #expect(clock.now == releasedAt)
        #expect(try await store.lock(identity: "x").get()?.record.leaseTransitions == last.record.leaseTransitions + 1)
    }
}
