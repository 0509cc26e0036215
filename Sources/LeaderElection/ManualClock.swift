import Synchronization

/// A `Clock` whose time moves only when told to: time-dependent elector behaviour can be tested
/// without sleeping.
///
/// Sleepers wake, in deadline order, when ``advance(by:)`` moves time to or past their deadline.
/// ``sleepers`` and ``waitForSleepers(atLeast:timeout:)`` let a test wait until the code under test is parked.
public final class ManualClock: Clock, Sendable {
    /// An instant of a ``ManualClock``: an offset from its start.
    public struct Instant: InstantProtocol, Hashable, Sendable, CustomStringConvertible {
        /// The time since the clock was created.
        public var offset: Duration
        /// Creates an instant.
        public init(offset: Duration) { self.offset = offset }
        public func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        public func duration(to other: Instant) -> Duration { other.offset - offset }
        public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
        public var description: String { "t+\(formatDuration(offset))" }
    }

    /// Set by the elector around sleeps that bound an operation in flight (deadline timers), which are
    /// not "parked" sleeps; see ``parkedSleepers``.
    @TaskLocal static var isDeadlineTimer = false

    private struct Sleeper {
        var id: Int
        var isTimer: Bool
        var deadline: Instant
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now = Instant(offset: .zero)
        var nextID = 0
        var sleepers: [Sleeper] = []
        var cancelledBeforeRegistration: Set<Int> = []
    }

    private let state = Mutex(State())

    /// Creates a clock at offset zero.
    public init() {}

    public var now: Instant { state.withLock { $0.now } }
    public var minimumResolution: Duration { .nanoseconds(1) }

    /// The number of tasks currently sleeping on this clock.
    public var sleepers: Int { state.withLock { $0.sleepers.count } }

    /// The number of tasks parked on this clock: sleepers other than the elector's internal deadline
    /// timers, which only exist while a store call is in flight. When every elector task is parked and no
    /// store call is in flight, the system is quiescent and time can be advanced deterministically.
    public var parkedSleepers: Int { state.withLock { $0.sleepers.filter { !$0.isTimer }.count } }

    /// The earliest deadline of a current sleeper, if any.
    public var nextDeadline: Instant? { state.withLock { $0.sleepers.map(\.deadline).min() } }

    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        let isTimer = ManualClock.isDeadlineTimer
        let id = state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let resumeNow: Result<Void, any Error>? = state.withLock { state in
                    if state.cancelledBeforeRegistration.remove(id) != nil { return .failure(CancellationError()) }
                    if deadline <= state.now { return .success(()) }
                    state.sleepers.append(Sleeper(id: id, isTimer: isTimer, deadline: deadline, continuation: continuation))
                    return nil
                }
                if let resumeNow { continuation.resume(with: resumeNow) }
            }
        } onCancel: {
            let continuation: CheckedContinuation<Void, any Error>? = state.withLock { state in
                if let index = state.sleepers.firstIndex(where: { $0.id == id }) {
                    return state.sleepers.remove(at: index).continuation
                }
                state.cancelledBeforeRegistration.insert(id)
                return nil
            }
            continuation?.resume(throwing: CancellationError())
        }
        state.withLock { _ = $0.cancelledBeforeRegistration.remove(id) }
    }

    /// Moves time forward by `duration`, waking every sleeper whose deadline is reached.
    public func advance(by duration: Duration) {
        let woken: [Sleeper] = state.withLock { state in
            state.now = state.now.advanced(by: duration)
            let now = state.now
            let due = state.sleepers.filter { $0.deadline <= now }.sorted { $0.deadline < $1.deadline }
            state.sleepers.removeAll { $0.deadline <= now }
            return due
        }
        for sleeper in woken { sleeper.continuation.resume() }
    }

    /// Moves time to the earliest sleeper's deadline (if it lies in the future) and wakes it.
    /// - Returns: the instant moved to, or `nil` when nobody sleeps.
    @discardableResult
    public func advanceToNextDeadline() -> Instant? {
        guard let next = nextDeadline else { return nil }
        let now = self.now
        advance(by: next > now ? now.duration(to: next) : .zero)
        return next
    }

    /// Waits (yielding, bounded by `timeout` of real time) until at least `count` tasks sleep on this clock.
    /// - Returns: `true` if they did.
    @discardableResult
    public func waitForSleepers(atLeast count: Int, timeout: Duration = .seconds(10)) async -> Bool {
        let real = ContinuousClock()
        let end = real.now.advanced(by: timeout)
        while sleepers < count {
            if real.now >= end { return false }
            try? await real.sleep(for: .microseconds(200))
        }
        return true
    }
}
