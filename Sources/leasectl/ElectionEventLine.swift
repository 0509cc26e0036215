import Foundation

/// One line of `leasectl elect --events json`, decoded (used by `leasectl demo` and by tests).
struct ElectionEventLine: Decodable, Sendable, Hashable {
    /// Wall-clock time, RFC 3339 with microseconds.
    var time: String
    /// `CLOCK_MONOTONIC` when printed.
    var monotonicNanos: UInt64
    /// The candidate that printed it.
    var identity: String
    /// `newLeader`, `startedLeading` or `stoppedLeading`.
    var event: String
    /// The (new) leader, for `newLeader` and `startedLeading`.
    var leader: String?
    /// The term's fencing token, for `startedLeading` and `stoppedLeading`.
    var fencingToken: Int?
    /// `lost`, `released` or `cancelled`, for `stoppedLeading`.
    var reason: String?
    /// When the leader work stopped, for `stoppedLeading` (absent if it had not).
    var workStoppedMonotonicNanos: UInt64?

    /// Decodes one line; `nil` for anything that is not an event line.
    init?(line: some StringProtocol) {
        guard let data = String(line).data(using: .utf8),
              let decoded = try? JSONDecoder().decode(ElectionEventLine.self, from: data) else { return nil }
        self = decoded
    }

    /// The moment the candidate stopped acting as leader: when its work stopped, else when it said so.
    var leadershipEndNanos: UInt64 { workStoppedMonotonicNanos ?? monotonicNanos }
}
