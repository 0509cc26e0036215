import Foundation

/// A safety violation found in the logs.
struct Violation: Codable, Sendable, CustomStringConvertible {
    var kind: String
    var message: String
    var mono: Int64?
    var fault: String?
    var description: String { "[\(kind)] \(message)\(fault.map { " (during \($0))" } ?? "")" }
}

/// Per-fault-type numbers.
struct FaultStats: Codable, Sendable {
    var fault: String
    var injected: Int
    var failovers: Int
    var violations: Int
    var unrecovered: Int
    var maxGapMillis: Double?
    var p50GapMillis: Double?
    var p99GapMillis: Double?
}

/// What the checker concluded about one backend run.
struct BackendResult: Codable, Sendable {
    var backend: String
    var seed: UInt64
    var profile: String
    var candidates: Int
    var timing: Timing
    var durationSeconds: Double
    var actions: Int
    var terms: Int
    var failovers: Int
    var inducedFailovers: Int
    var spontaneousFailovers: Int
    var maxToken: Int
    var refusedActions: Int
    var lateLandedActions: Int
    var faults: [FaultStats]
    var violations: [Violation]
    var finalRecord: FinalRecord
    var notes: [String]
    var logs: String?

    var passed: Bool { violations.isEmpty }
}

/// Proves safety from the logs of one run.
///
/// - Fenced actions are totally ordered by token: sorted by their monotonic timestamp (taken before
///   `check()`), no action carries a lower token than an earlier one.
/// - No two terms act in overlapping intervals: each term (identity, token) spans [first action, last action];
///   sorted by start, each ends before the next begins, and tokens strictly increase from term to term.
/// - A token belongs to one identity: no two identities ever act, or start leading, with the same token.
/// - The store's final record decodes, names a known candidate (or nobody), and its `leaseTransitions` is not
///   below any token used (nothing was lost).
///
/// Liveness: for each fault, the longest stretch without a fenced action between the last action before the
/// fault and the first action after recovery ("leaderless gap").
struct Checker {
    var actionsPath: String
    var eventsPath: String

    struct Term {
        var identity: String
        var token: Int
        var first: Int64
        var last: Int64
        var count: Int
    }

    func check(faults: [FaultRecord], finalRecord: FinalRecord, spawned: Set<String>, base: BackendResult) throws -> BackendResult {
        var result = base
        var violations: [Violation] = []
        let decoder = JSONDecoder()

        // Actions, in file order (the order the shared log received them).
        let actionText = try String(contentsOfFile: actionsPath, encoding: .utf8)
        var actions: [ActionLine] = []
        var lineNumber = 0
        for line in actionText.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.isEmpty { continue }
            guard let action = try? decoder.decode(ActionLine.self, from: Data(line.utf8)) else {
                violations.append(Violation(kind: "corrupt-action", message: "line \(lineNumber) of the action log does not decode: \(line.prefix(200))"))
                continue
            }
            actions.append(action)
        }
        // Late landings: a write that reached the log after a write of a newer term (a process paused between
        // check() and write()). Its timestamp still lies inside its term; a fencing downstream rejects it.
        var maxSoFar = Int.min
        var late = 0
        for action in actions {
            if action.token < maxSoFar { late += 1 }
            maxSoFar = max(maxSoFar, action.token)
        }
        result.lateLandedActions = late

        let sorted = actions.enumerated().sorted { ($0.element.mono, $0.offset) < ($1.element.mono, $1.offset) }.map(\.element)
        func faultAt(_ mono: Int64) -> String? {
            faults.last { $0.inject <= mono && mono <= ($0.recovered ?? $0.clear) + 1_000_000_000 }.map { "\($0.kind.rawValue) step \($0.step)" }
        }

        // 1. Total order by token in monotonic time.
        var highest: ActionLine?
        var orderViolations = 0
        for action in sorted {
            if let h = highest, action.token < h.token {
                orderViolations += 1
                if orderViolations <= 20 {
                    violations.append(Violation(
                        kind: "token-order",
                        message: "\(action.identity) acted with token \(action.token) at \(action.mono) after \(h.identity) acted with token \(h.token) at \(h.mono) (\(ms(action.mono - h.mono)) ms later)",
                        mono: action.mono, fault: faultAt(action.mono)))
                }
            }
            if highest == nil || action.token > highest!.token { highest = action }
        }
        if orderViolations > 20 {
            violations.append(Violation(kind: "token-order", message: "\(orderViolations - 20) more token-order violations"))
        }

        // 2. Terms: one identity per token; non-overlapping; strictly increasing tokens.
        var termsByKey: [String: Term] = [:]
        var identitiesByToken: [Int: Set<String>] = [:]
        for action in sorted {
            let key = "\(action.identity)#\(action.token)"
            if var term = termsByKey[key] {
                term.last = action.mono
                term.count += 1
                termsByKey[key] = term
            } else {
                termsByKey[key] = Term(identity: action.identity, token: action.token, first: action.mono, last: action.mono, count: 1)
            }
            identitiesByToken[action.token, default: []].insert(action.identity)
        }
        for (token, identities) in identitiesByToken where identities.count > 1 {
            violations.append(Violation(kind: "token-reused", message: "token \(token) used by \(identities.sorted().joined(separator: ", "))"))
        }
        let terms = termsByKey.values.sorted { ($0.first, $0.token) < ($1.first, $1.token) }
        var overlapViolations = 0
        for (previous, next) in zip(terms, terms.dropFirst()) {
            if next.first <= previous.last {
                overlapViolations += 1
                if overlapViolations <= 20 {
                    violations.append(Violation(
                        kind: "overlap",
                        message: "\(previous.identity) (token \(previous.token)) acted until \(previous.last) but \(next.identity) (token \(next.token)) began acting at \(next.first): \(ms(previous.last - next.first)) ms of overlap",
                        mono: next.first, fault: faultAt(next.first)))
                }
            }
            if next.token <= previous.token {
                violations.append(Violation(
                    kind: "token-not-increasing",
                    message: "term \(next.identity)#\(next.token) began after term \(previous.identity)#\(previous.token)",
                    mono: next.first, fault: faultAt(next.first)))
            }
        }

        // 3. Events: a token is acquired by one identity only; each process's tokens strictly increase.
        let eventText = (try? String(contentsOfFile: eventsPath, encoding: .utf8)) ?? ""
        var startedBy: [Int: String] = [:]
        var lastTokenOf: [String: Int] = [:]
        var refused = 0
        var startedCount = 0
        for line in eventText.split(separator: "\n") {
            guard let event = try? decoder.decode(EventLine.self, from: Data(line.utf8)) else { continue }
            if event.event == "checkFailed" { refused += 1 }
            guard event.event == "startedLeading", let token = event.token else { continue }
            startedCount += 1
            if let other = startedBy[token], other != event.identity {
                violations.append(Violation(kind: "token-reused", message: "both \(other) and \(event.identity) started leading with token \(token)", mono: event.mono, fault: faultAt(event.mono)))
            }
            startedBy[token] = event.identity
            if let previous = lastTokenOf[event.identity], token <= previous {
                violations.append(Violation(kind: "token-not-increasing", message: "\(event.identity) started leading with token \(token) after token \(previous)", mono: event.mono))
            }
            lastTokenOf[event.identity] = token
        }
        result.refusedActions = refused

        // 4. The store.
        let maxToken = max(terms.map(\.token).max() ?? -1, startedBy.keys.max() ?? -1)
        let knownIdentities = spawned.union(terms.map(\.identity))
        if !finalRecord.decoded {
            violations.append(Violation(kind: "store", message: "the final record could not be read: \(finalRecord.error ?? "?")"))
        } else {
            if let transitions = finalRecord.leaseTransitions, transitions < maxToken {
                violations.append(Violation(kind: "store", message: "the final record's leaseTransitions \(transitions) is below token \(maxToken), which was used: the store lost writes"))
            }
            if let holder = finalRecord.holder, !holder.isEmpty, !knownIdentities.contains(holder) {
                violations.append(Violation(kind: "store", message: "the final record names an unknown holder \(holder)"))
            }
        }

        // Liveness per fault.
        let monos = sorted.map(\.mono)
        func index(after mono: Int64) -> Int {
            var lo = 0, hi = monos.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if monos[mid] <= mono { lo = mid + 1 } else { hi = mid }
            }
            return lo
        }
        let termStarts = terms.map(\.first).sorted()
        var induced = Set<Int>()
        var stats: [FaultKind: (injected: Int, failovers: Int, violations: Int, unrecovered: Int, gaps: [Int64])] = [:]
        for fault in faults {
            var entry = stats[fault.kind] ?? (0, 0, 0, 0, [])
            entry.injected += 1
            if let recovered = fault.recovered {
                // From the last action before the fault to the first action at or after recovery.
                let startIndex = max(0, index(after: fault.inject) - 1)
                let endIndex = min(monos.count - 1, max(0, index(after: recovered - 1)))
                var gap: Int64 = 0
                if startIndex < endIndex {
                    for i in startIndex..<endIndex { gap = max(gap, monos[i + 1] - monos[i]) }
                }
                entry.gaps.append(gap)
                for (i, start) in termStarts.enumerated() where start > fault.inject && start <= recovered {
                    if induced.insert(i).inserted { entry.failovers += 1 }
                }
            } else {
                entry.unrecovered += 1
            }
            stats[fault.kind] = entry
        }
        for violation in violations {
            guard let mono = violation.mono, let fault = faults.last(where: { $0.inject <= mono && mono <= ($0.recovered ?? $0.clear) + 1_000_000_000 }) else { continue }
            stats[fault.kind]?.violations += 1
        }
        result.faults = FaultKind.allCases.compactMap { kind in
            guard let entry = stats[kind] else { return nil }
            let gaps = entry.gaps.sorted()
            func percentile(_ p: Double) -> Double? {
                guard !gaps.isEmpty else { return nil }
                let rank = Int((p * Double(gaps.count)).rounded(.up)) - 1
                return ms(gaps[max(0, min(gaps.count - 1, rank))])
            }
            return FaultStats(fault: kind.rawValue, injected: entry.injected, failovers: entry.failovers, violations: entry.violations,
                              unrecovered: entry.unrecovered, maxGapMillis: gaps.last.map(ms), p50GapMillis: percentile(0.5), p99GapMillis: percentile(0.99))
        }
        result.actions = actions.count
        result.terms = terms.count
        result.failovers = max(0, terms.count - 1)
        result.inducedFailovers = induced.count
        result.spontaneousFailovers = max(0, terms.count - 1 - induced.count)
        result.maxToken = maxToken
        result.violations = violations
        result.finalRecord = finalRecord
        return result
    }
}
