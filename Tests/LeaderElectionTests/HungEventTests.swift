import LeaderElection
import LockConformance
import Synchronization
import Testing

/// A lock whose `recordEvent(_:)` does not return until the test lets it: an events endpoint that hangs.
private final class HungEventsLock: ForwardingLock {
    let base: any ResourceLock
    private let waiting = Mutex<[CheckedContinuation<Void, Never>]>([])
    private let released = Mutex(false)
    private let calls = Mutex<[LockEvent.Kind]>([])

    init(_ base: any ResourceLock) { self.base = base }

    var description: String { "hung-events:\(base.description)" }
    func changes() -> AsyncStream<Void>? { base.changes() }
    func recordChanges() -> AsyncStream<LockChange>? { base.recordChanges() }

    func recordEvent(_ event: LockEvent) async {
        calls.withLock { $0.append(event.kind) }
        await withCheckedContinuation { continuation in
            let resumeNow = released.withLock { released in
                if !released { waiting.withLock { $0.append(continuation) } }
                return released
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// The events recorded so far (each still hanging until ``unblock()``).
    var recorded: [LockEvent.Kind] { calls.withLock { $0 } }

    /// Lets every hanging and future `recordEvent` return.
    func unblock() {
        let continuations = released.withLock { released in
            released = true
            return waiting.withLock { waiting in
                defer { waiting = [] }
                return waiting
            }
        }
        for continuation in continuations { continuation.resume() }
    }
}

/// Issue 13: recording the "became leader" event is off the critical path. A lock whose events never get through
/// (a hung Kubernetes events endpoint) delays neither the work nor the renewals.
@Suite(.timeLimit(.minutes(1))) struct HungEventTests {
    @Test func aHungEventDelaysNeitherTheWorkNorTheRenewals() async throws {
        let store = InMemoryLockStore()
        let clock = ManualClock()
        let hung = HungEventsLock(store.lock(identity: "a"))
        let a = InstrumentedLock(hung)
        let config = LeaderElectionConfiguration(name: "test")
        let elector = try LeaderElector(lock: a, configuration: config, clock: clock, jitter: fixedJitter)
        let started = Stamp(), stopped = Stamp()
        let run = Task { try await elector.run(whileLeading: waitUntilCancelled(clock, started: started, stopped: stopped)) }

        try await eventually("the work started while the became-leader event hangs") { started.instant != nil }
        #expect(hung.recorded == [.becameLeader], "events recorded: \(hung.recorded)")

        // Three renew deadlines of renewals, all while the event is still hanging.
        try await settle(clock, parked: 1, locks: [a])
        let updatesBefore = a.counts.successfulWrites
        let start = clock.now
        while start.duration(to: clock.now) < config.renewDeadline * 3 {
            clock.advanceToNextDeadline()
            try await settle(clock, parked: 1, locks: [a])
            #expect(elector.isLeader, "leadership lost at \(clock.now) while the event hangs")
        }
        let renewals = a.counts.successfulWrites - updatesBefore
        #expect(renewals >= Int((config.renewDeadline * 3) / config.retryPeriod) - 1, "only \(renewals) renewals")
        #expect(stopped.instant == nil)

        hung.unblock()
        run.cancel()
        _ = try? await run.value
    }
}
