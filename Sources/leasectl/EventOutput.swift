import ArgumentParser
import LeaderElection
import Synchronization

/// Prints an elector's events for `leasectl elect`: one JSON object per line on standard output
/// (`--events json`), or short human lines on standard error (`--events text`, the default).
///
/// A JSON line looks like
/// `{"time":"2025-01-02T03:04:05.123456Z","monotonicNanos":123,"identity":"a","event":"startedLeading","leader":"a","fencingToken":3}`.
/// `monotonicNanos` is `CLOCK_MONOTONIC` when the line was printed, comparable across processes of one
/// host. `stoppedLeading` lines add `reason` (`lost`, `released`, `cancelled`) and, when the leader work
/// had finished, `workStoppedMonotonicNanos`: the moment this process stopped acting as leader, which
/// precedes the release that lets the next leader in (the event itself is sent after the release).
struct EventOutput: Sendable {
    /// The `--events` format.
    enum Format: String, ExpressibleByArgument, CaseIterable, Sendable {
        case text, json
    }

    let format: Format
    let identity: String
    /// When each term's leader work stopped, by fencing token.
    let workStops = WorkStopLog()

    /// Prints `event` now.
    func emit(_ event: LeaderElectionEvent) {
        switch format {
        case .json:
            let stopped: UInt64? = if case .stoppedLeading(let term, _) = event { workStops.take(term.fencingToken) } else { nil }
            Terminal.out(Self.jsonLine(for: event, identity: identity, time: .now(), monotonicNanos: Terminal.monotonicNanos(), workStoppedMonotonicNanos: stopped))
        case .text:
            Terminal.err("leasectl: \(Self.humanLine(for: event, identity: identity))")
        }
    }

    /// A note for the operator (always on standard error).
    func note(_ text: String) {
        Terminal.err("leasectl: \(text)")
    }

    /// The JSON line for `event` (without the newline).
    static func jsonLine(
        for event: LeaderElectionEvent, identity: String, time: MicroTime, monotonicNanos: UInt64,
        workStoppedMonotonicNanos: UInt64? = nil
    ) -> String {
        var fields: [(String, StructuredValue)] = [
            ("time", .string(time.rfc3339)),
            ("monotonicNanos", .int(monotonicNanos)),
            ("identity", .string(identity)),
        ]
        switch event {
        case .newLeader(let leader):
            fields += [("event", .string("newLeader")), ("leader", .string(leader))]
        case .startedLeading(let term):
            fields += [("event", .string("startedLeading")), ("leader", .string(term.identity)), ("fencingToken", .int(term.fencingToken))]
        case .stoppedLeading(let term, let reason):
            fields += [("event", .string("stoppedLeading")), ("fencingToken", .int(term.fencingToken)), ("reason", .string(reason.description))]
            if let workStoppedMonotonicNanos { fields.append(("workStoppedMonotonicNanos", .int(workStoppedMonotonicNanos))) }
        }
        return StructuredValue.object(fields).json()
    }

    /// A short human description of `event`.
    static func humanLine(for event: LeaderElectionEvent, identity: String) -> String {
        switch event {
        case .newLeader(let leader) where leader == identity: "\(identity): this candidate is the leader"
        case .newLeader(let leader): "\(identity): new leader observed: \(leader)"
        case .startedLeading(let term): "\(identity): started leading (fencing token \(term.fencingToken))"
        case .stoppedLeading(let term, let reason): "\(identity): stopped leading (\(reason), fencing token \(term.fencingToken))"
        }
    }
}

/// When each term's leader work stopped (`CLOCK_MONOTONIC` nanoseconds), by fencing token.
final class WorkStopLog: Sendable {
    private let stops = Mutex<[Int: UInt64]>([:])

    /// Records that the work of term `fencingToken` stopped now.
    func record(_ fencingToken: Int) {
        let now = Terminal.monotonicNanos()
        stops.withLock { $0[fencingToken] = now }
    }

    /// The recorded stop of term `fencingToken`, removing it.
    func take(_ fencingToken: Int) -> UInt64? {
        stops.withLock { $0.removeValue(forKey: fencingToken) }
    }
}
