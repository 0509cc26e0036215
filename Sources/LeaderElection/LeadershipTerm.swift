import Synchronization

/// One leadership term of one candidate: who leads, with which fencing token, and until when
/// leadership is guaranteed.
///
/// The term is handed to the leader work. Guard every critical write with ``check()``, and pass
/// ``fencingToken`` to downstream systems that can reject writes from older terms.
///
/// - Important: What a term guarantees rests on the same assumption as client-go: clocks of the
///   candidates advance at roughly the same *rate* (not the same time). While ``check()`` passes, no other
///   candidate can have taken the lease unless its clock runs faster than ours by more than
///   `leaseDuration / renewDeadline`. A process paused between ``check()`` and the write it guards can
///   still act late; only a fencing token checked by the downstream system closes that gap.
public struct LeadershipTerm: Sendable, Hashable, CustomStringConvertible {
    /// The leader's identity.
    public let identity: String
    /// A number that strictly increases from one term to the next on a lock (the record's
    /// `leaseTransitions` as written when the term began).
    public let fencingToken: Int
    /// When the term began, by the leader's wall clock (informational).
    public let acquireTime: MicroTime
    private let state: TermState

    init(identity: String, fencingToken: Int, acquireTime: MicroTime, state: TermState) {
        self.identity = identity
        self.fencingToken = fencingToken
        self.acquireTime = acquireTime
        self.state = state
    }

    /// How long leadership is still guaranteed: until the start of the last successful renew plus
    /// `renewDeadline`, on the elector's monotonic clock. Zero or negative once the term has lapsed.
    public var remaining: Duration { state.ended ? .zero : state.remaining() }

    /// `true` while leadership is guaranteed (``remaining`` > 0 and the term has not ended).
    public var isValid: Bool { remaining > .zero }

    /// Throws ``LeaderElectionError/Code/leadershipLost`` once leadership is no longer guaranteed.
    /// Cheap: one clock read and one lock; call it right before every critical write.
    public func check() throws {
        let remaining = self.remaining
        guard remaining > .zero else {
            throw LeaderElectionError.leadershipLost(
                "term \(fencingToken) of \(identity) is no longer guaranteed (\(state.ended ? "ended" : "deadline passed \(formatDuration(.zero - remaining)) ago"))")
        }
    }

    public var description: String { "term(\(identity), token \(fencingToken))" }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.identity == rhs.identity && lhs.fencingToken == rhs.fencingToken && lhs.state === rhs.state
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(identity)
        hasher.combine(fencingToken)
    }
}

/// Shared, mutable part of a term: its deadline moves with every successful renew.
final class TermState: Sendable {
    private let endedFlag = Mutex(false)
    let remaining: @Sendable () -> Duration

    init(remaining: @escaping @Sendable () -> Duration) { self.remaining = remaining }

    var ended: Bool { endedFlag.withLock { $0 } }
    func end() { endedFlag.withLock { $0 = true } }
}

/// Why a term ended.
public struct StopReason: Hashable, Sendable, CustomStringConvertible {
    private let raw: String
    /// Renewing failed for `renewDeadline`, or the record was found held by someone else, released or
    /// deleted. The work was cancelled as soon as that was known.
    public static let lost = StopReason(raw: "lost")
    /// The work stopped (finished, failed or was cancelled) and the lease was released by
    /// compare-and-swap, so a follower can take over at once.
    public static let released = StopReason(raw: "released")
    /// The election was cancelled and the lease was left to expire: `releaseOnCancel` is off, the release
    /// failed, or the work did not stop within the drain timeout.
    public static let cancelled = StopReason(raw: "cancelled")
    /// The record named another candidate as `preferredHolder` (a hand-off, ``requestHandoff(on:to:maxAttempts:)``): the work
    /// was cancelled and drained, then the lease released for that candidate. The elector campaigns again.
    public static let handedOff = StopReason(raw: "handedOff")
    public var description: String { raw }
}

/// What a ``LeaderElector`` observed or did.
public enum LeaderElectionEvent: Sendable, Hashable, CustomStringConvertible {
    /// A (different) holder was observed, including the first one and this candidate itself.
    case newLeader(String)
    /// This candidate became leader; its work is starting.
    case startedLeading(LeadershipTerm)
    /// This candidate's term ended and its work has stopped (sent only after ``startedLeading(_:)``).
    case stoppedLeading(LeadershipTerm, reason: StopReason)

    public var description: String {
        switch self {
        case .newLeader(let identity): "newLeader(\(identity))"
        case .startedLeading(let term): "startedLeading(\(term))"
        case .stoppedLeading(let term, let reason): "stoppedLeading(\(term), \(reason))"
        }
    }
}
