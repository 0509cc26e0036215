import LeaderElection

/// The checks of `leasectl doctor`: the troubleshooting table every Kubernetes leader-election guide
/// prints (two leaders → check time sync; no leader → check the store's reachability; frequent switching →
/// check the network; renew failures → check the store's load), run against what the doctor measured.
///
/// Every check is a pure function of ``Doctor/Read``s (timed on this host's monotonic clock, stamped with
/// its wall clock) and the configuration, so tests can feed synthetic observations; ``DoctorProbe`` makes
/// the reads against a real lock.
enum Doctor {
    /// The verdict of one check.
    enum Status: String, Sendable, Comparable, CaseIterable {
        /// Nothing to act on.
        case ok = "OK"
        /// Worth a look; leader election still works.
        case warn = "WARN"
        /// Leader election is broken or misconfigured.
        case fail = "FAIL"
        /// The check had nothing to judge (for example, the store could not be read).
        case skip = "SKIP"

        private var rank: Int {
            switch self {
            case .skip: 0
            case .ok: 1
            case .warn: 2
            case .fail: 3
            }
        }

        static func < (lhs: Status, rhs: Status) -> Bool { lhs.rank < rhs.rank }
    }

    /// One line of the report: a check, its verdict, what was measured, and what to do about it.
    struct Finding: Sendable, Equatable {
        /// The check: `store`, `holder`, `flapping`, `clock` or `config`.
        var name: String
        var status: Status
        /// What was measured, with numbers.
        var evidence: String
        /// What to do; `nil` when there is nothing to do.
        var hint: String?

        /// `{"name", "status", "evidence", "hint"}` (`hint` is `null` when there is none).
        var structured: StructuredValue {
            .object([
                ("name", .string(name)), ("status", .string(status.rawValue)),
                ("evidence", .string(evidence)), ("hint", hint.map { StructuredValue.string($0) } ?? StructuredValue.null),
            ])
        }
    }

    /// One read of the lock.
    struct Read: Sendable {
        /// When the read completed, on this host's monotonic clock, from the start of the doctor's reads.
        var at: Duration
        /// How long the read took.
        var latency: Duration
        /// This host's wall clock when the read completed.
        var wall: MicroTime
        /// What it found.
        var state: LeaseSnapshot.State

        /// When the read started, on the monotonic clock.
        var startedAt: Duration { at - latency }
        /// This host's wall clock half-way through the read: the best guess of when the store answered.
        var wallMidpoint: MicroTime { wall.advanced(by: .zero - latency / 2) }

        /// The record, if the read returned one.
        var record: VersionedRecord? {
            if case .record(let fetched) = state { return fetched }
            return nil
        }

        /// `true` when the store answered (a record, no record, or an undecodable one).
        var answered: Bool {
            if case .failed = state { return false }
            return true
        }

        /// What identifies the stored state, to tell whether it changed between two reads.
        var fingerprint: String {
            switch state {
            case .record(let fetched): "record:\(fetched.version):\(fetched.holderIsKnownGone)"
            case .missing: "missing"
            case .corrupt(_, let version): "corrupt:\(version?.description ?? "?")"
            case .failed: "failed"
            }
        }
    }

    /// The timing the candidates are (believed to be) configured with: `--lease-duration`,
    /// `--renew-deadline` and `--retry-period`.
    struct Timing: Sendable {
        var leaseDuration: Duration
        var renewDeadline: Duration
        var retryPeriod: Duration
        /// client-go's `JitterFactor`.
        var jitterFactor: Double = 1.2

        /// How long a free lock can stay free while candidates campaign: an attempt comes every
        /// retryPeriod × (1 + random × jitterFactor), at most retryPeriod × 2.2.
        var takeoverWindow: Duration { retryPeriod * (1 + jitterFactor) }
    }

    /// Wall-clock differences below this are not held against anyone: record timestamps come from other
    /// hosts' clocks, which NTP keeps within a few milliseconds but not exactly.
    static let clockTolerance: Duration = .seconds(1)

    /// A lock is "flapping" when the current term began less than this many lease durations ago and the
    /// lock has changed hands at least ``flappingTransitions`` times (or when a change of holder is seen).
    static let flappingTenureFactor = 10
    /// See ``flappingTenureFactor``.
    static let flappingTransitions = 10

    // MARK: 1. Store

    /// Is the store reachable, and how fast does it answer compared with the renew deadline?
    ///
    /// - Parameters:
    ///   - samples: back-to-back timed reads (latency statistics come from these).
    ///   - observed: the reads made while observing, whose failures are counted.
    /// - Returns: FAIL when every sample failed (the store's message), when some failed, or when the slowest
    ///   took more than renewDeadline/2 (a renewal then cannot be retried within the deadline); WARN above
    ///   renewDeadline/4 or when reads failed during observation; OK otherwise.
    static func checkStore(samples: [Read], observed: [Read] = [], timing: Timing) -> Finding {
        let hintUnreachable = "no candidate can renew or take the lock: check that the store is reachable from the candidates (endpoints, network, TLS, credentials)"
        let hintSlow = "renewals that take this long fail within the renew deadline and leadership is lost: check the store's (API server's) load and the network to it"
        let answered = samples.filter(\.answered)
        let failures = samples.compactMap { read -> String? in
            if case .failed(let message) = read.state { return message }
            return nil
        }
        guard !samples.isEmpty else { return Finding(name: "store", status: .skip, evidence: "no reads made") }
        guard !answered.isEmpty else {
            return Finding(name: "store", status: .fail, evidence: "unreachable: \(failures.first!)", hint: hintUnreachable)
        }
        let latencies = answered.map(\.latency).sorted()
        let p50 = latencies[(latencies.count + 1) / 2 - 1]
        let maximum = latencies.last!
        let warnAbove = timing.renewDeadline / 4
        let failAbove = timing.renewDeadline / 2
        var evidence = "\(answered.count) of \(samples.count) reads answered: p50 \(format(p50)), max \(format(maximum)) (renew deadline \(format(timing.renewDeadline)): WARN above \(format(warnAbove)), FAIL above \(format(failAbove)))"
        let observedFailures = observed.filter { !$0.answered }.count
        if observedFailures > 0 {
            evidence += "; \(observedFailures) of \(observed.count) reads failed while observing"
        }
        if !failures.isEmpty {
            return Finding(
                name: "store", status: .fail,
                evidence: evidence + "; \(failures.count) failed: \(failures.first!)", hint: hintUnreachable)
        }
        if maximum > failAbove { return Finding(name: "store", status: .fail, evidence: evidence, hint: hintSlow) }
        if maximum > warnAbove { return Finding(name: "store", status: .warn, evidence: evidence, hint: hintSlow) }
        if observedFailures > 0 { return Finding(name: "store", status: .warn, evidence: evidence, hint: hintUnreachable) }
        return Finding(name: "store", status: .ok, evidence: evidence)
    }

    // MARK: 2. Holder

    /// Who holds the lock, and is it expired (or free) with nobody taking it?
    ///
    /// Expiry is judged as client-go judges it: from the moment *this process* saw the record change (on
    /// its monotonic clock) plus the record's leaseDuration, never from the record's timestamps. An
    /// observation shorter than the lease cannot prove expiry that way, so a holder that did not renew for
    /// 2 × retryPeriod is also judged by the wall clock (renewTime + leaseDuration + 1 s tolerance in the
    /// past), and said to be so.
    ///
    /// - Parameter reads: every read, samples and observation, in order.
    /// - Returns: FAIL "no leader" when the record is missing, corrupt, free (released or its holder known
    ///   gone) for longer than a candidate needs to take it, or held by a holder whose lease expired without
    ///   anyone taking it; WARN when the holder did not renew while observed, or the lock has been free only
    ///   briefly; OK when held and renewed. Notes a pending hand-off (preferredHolder).
    static func checkHolder(reads: [Read], timing: Timing) -> Finding {
        let answered = reads.filter(\.answered)
        guard let last = answered.last, let first = answered.first else {
            return Finding(name: "holder", status: .skip, evidence: "the lock could not be read")
        }
        let observedFor = last.at - first.startedAt
        let hintNoLeader = "no candidate is campaigning, or none can reach the store: check that candidates run with this lock URL and can reach the store (API server reachability)"
        switch last.state {
        case .failed:
            return Finding(name: "holder", status: .skip, evidence: "the lock could not be read")   // not reached: answered reads only
        case .missing:
            return Finding(
                name: "holder", status: .fail,
                evidence: "no leader: the lock has no record (observed \(format(observedFor))), so nobody has ever campaigned on it",
                hint: "check the URL (leasectl get lists the locks), and that the candidates are started with it")
        case .corrupt(let message, _):
            return Finding(
                name: "holder", status: .fail, evidence: "no leader: the record does not decode: \(message)",
                hint: "find what else writes there; leasectl release --force replaces it with a free record")
        case .record(let fetched):
            let record = fetched.record
            // The first read of the last run of reads showing this very record: client-go's observedTime.
            let lastChangeIndex = answered.lastIndex { $0.fingerprint != last.fingerprint }.map { $0 + 1 } ?? 0
            let lastChange = answered[lastChangeIndex]
            let sawChange = lastChangeIndex > 0
            let unchangedFor = last.at - (sawChange ? lastChange.at : first.startedAt)
            let since = sawChange ? "last change seen \(format(unchangedFor)) ago" : "unchanged during \(format(unchangedFor))"
            let handoff = record.preferredHolder.map { "; hand-off to \($0) pending (preferredHolder)" } ?? ""
            if record.isReleased || fetched.holderIsKnownGone {
                let what = record.isReleased
                    ? "free (released)"
                    : "held by \(record.holderIdentity), whose process is gone (the backend verified it)"
                // How long it has been free, by this host's monotonic clock…
                let freeIndex = answered.lastIndex { read in
                    guard let other = read.record else { return true }
                    return !(other.record.isReleased || other.holderIsKnownGone)
                }.map { $0 + 1 } ?? 0
                let freeFor = last.at - (freeIndex > 0 ? answered[freeIndex].at : first.startedAt)
                // … and, for a release, by the releaser's timestamp against this host's wall clock.
                let releasedAgo = record.isReleased ? record.renewTime.map { last.wall.duration(since: $0) } : nil
                var window = timing.takeoverWindow
                if record.preferredHolder != nil { window += record.leaseDuration }   // the others stand back
                var evidence = "no leader: \(what), nobody took it during \(format(freeFor)) observed"
                if let releasedAgo { evidence += " (released \(format(releasedAgo)) ago by this host's wall clock)" }
                evidence += handoff
                let long = freeFor >= window || (releasedAgo.map { $0 >= window + clockTolerance } ?? false)
                if long {
                    var hint = hintNoLeader
                    if let preferred = record.preferredHolder { hint += "; is \(preferred), the preferred holder, running?" }
                    return Finding(name: "holder", status: .fail, evidence: evidence + "; campaigning candidates take a free lock within \(format(window))", hint: hint)
                }
                return Finding(
                    name: "holder", status: .warn,
                    evidence: "\(what) for \(format(freeFor)) only\(handoff); campaigning candidates take a free lock within \(format(window))",
                    hint: "observe longer (--observe \(format(window + timing.retryPeriod))) to tell whether anyone takes it")
            }
            let holder = record.holderIdentity
            let tenure = record.acquireTime.map { " for \(format(last.wall.duration(since: $0)))" } ?? ""
            let renewals = zip(answered, answered.dropFirst()).filter { previous, next in
                previous.fingerprint != next.fingerprint && previous.record?.record.holderIdentity == holder
                    && next.record?.record.holderIdentity == holder
            }.count
            let describe = "held by \(holder)\(tenure), lease \(format(record.leaseDuration)), \(since), \(renewals) renewal\(renewals == 1 ? "" : "s") seen in \(format(observedFor))\(handoff)"
            if unchangedFor >= record.leaseDuration {
                return Finding(
                    name: "holder", status: .fail,
                    evidence: "no leader: \(describe): the lease expired by client-go's rule (unchanged for its lease duration on this host's monotonic clock) and nobody took it",
                    hint: "the holder stopped renewing (crashed, or cut off from the store); " + hintNoLeader)
            }
            if unchangedFor >= timing.retryPeriod * 2 {
                if let renewed = record.renewTime {
                    let stale = last.wall.duration(since: renewed)
                    if stale > record.leaseDuration + clockTolerance {
                        return Finding(
                            name: "holder", status: .fail,
                            evidence: "no leader: \(describe); renewTime is \(format(stale)) old by this host's wall clock, more than the lease: expired (a wall-clock estimate; --observe \(format(record.leaseDuration)) judges on the monotonic clock) and nobody took it",
                            hint: "the holder stopped renewing (crashed, or cut off from the store); " + hintNoLeader)
                    }
                }
                return Finding(
                    name: "holder", status: .warn,
                    evidence: "\(describe); expected a renewal every retry period (\(format(timing.retryPeriod))); if the holder has stopped, the lease expires \(format(record.leaseDuration)) after the last change",
                    hint: "check the holder process and its renewals (renew failures → check the store's/API server's load); if it runs with a longer --retry-period, pass that")
            }
            return Finding(name: "holder", status: .ok, evidence: describe)
        }
    }

    // MARK: 3. Flapping

    /// How often does leadership change hands?
    ///
    /// - Returns: WARN when a new term (a higher leaseTransitions, or another holder) was seen while
    ///   observing, with the rate per hour extrapolated from it; WARN when the current term began less than
    ///   10 × leaseDuration ago (by acquireTime against this host's wall clock) and the lock has changed hands
    ///   at least 10 times; OK otherwise.
    static func checkFlapping(reads: [Read], timing: Timing) -> Finding {
        let records = reads.compactMap { read in read.record.map { (read, $0.record) } }
        guard let (lastRead, last) = records.last, let (firstRead, firstRecord) = records.first else {
            return Finding(name: "flapping", status: .skip, evidence: "no record read")
        }
        let hint = "leadership is switching: check the network between the candidates and the store, and the store's (API server's) load (renewals that miss the renew deadline lose leadership)"
        var holderChanges = 0
        var lastHolder = firstRecord.holderIdentity
        var transitionsSeen = 0
        for ((_, previous), (_, next)) in zip(records, records.dropFirst()) {
            if next.leaseTransitions > previous.leaseTransitions { transitionsSeen += next.leaseTransitions - previous.leaseTransitions }
            if !next.holderIdentity.isEmpty {
                if !lastHolder.isEmpty && next.holderIdentity != lastHolder { holderChanges += 1 }
                lastHolder = next.holderIdentity
            }
        }
        let newTerms = max(holderChanges, transitionsSeen)
        let window = lastRead.at - firstRead.startedAt
        if newTerms > 0 {
            let hours = max(window, .milliseconds(1)) / .seconds(3600)
            let perHour = Int((Double(newTerms) / hours).rounded())
            return Finding(
                name: "flapping", status: .warn,
                evidence: "\(newTerms) new term\(newTerms == 1 ? "" : "s") seen in \(format(window)) observed (about \(perHour) per hour); \(last.leaseTransitions) transitions in total",
                hint: hint)
        }
        var evidence = "\(last.leaseTransitions) transitions in total, no change of holder in \(format(window)) observed"
        let threshold = timing.leaseDuration * flappingTenureFactor
        let recordThreshold = last.leaseDuration * flappingTenureFactor
        if !last.isReleased, let acquired = last.acquireTime {
            let tenure = lastRead.wall.duration(since: acquired)
            evidence += "; the current term began \(format(tenure)) ago (acquireTime, this host's wall clock)"
            let young = max(threshold, recordThreshold)
            if tenure < young && last.leaseTransitions >= flappingTransitions {
                return Finding(
                    name: "flapping", status: .warn,
                    evidence: evidence + ", less than \(flappingTenureFactor) × the lease duration (\(format(young))) with \(flappingTransitions) or more transitions",
                    hint: hint)
            }
        }
        return Finding(name: "flapping", status: .ok, evidence: evidence)
    }

    // MARK: 4. Clock offset

    /// The offset between the holder's wall clock and this host's, from the renewTime of each change seen.
    ///
    /// A change first seen by a read was written after the previous read started and before this read's
    /// midpoint, so renewTime − (this host's wall clock at that moment) lies in
    /// [renewTime − midpoint, renewTime − previous start]. The intervals of all changes are intersected
    /// (or the narrowest is kept when they do not overlap). Advisory: the elector judges expiry on each
    /// candidate's monotonic clock and never compares renewTime with its own clock.
    ///
    /// - Returns: WARN when the whole interval lies more than 1 s away from zero; OK when within; SKIP when
    ///   no renewal by a holder was seen.
    static func checkClock(reads: [Read]) -> Finding {
        var intervals: [(low: Duration, high: Duration, holder: String)] = []
        for (previous, next) in zip(reads, reads.dropFirst()) {
            guard let fetched = next.record, !fetched.record.isReleased, let renewed = fetched.record.renewTime,
                  previous.answered, previous.fingerprint != next.fingerprint
            else { continue }
            let low = renewed.duration(since: next.wallMidpoint)
            let high = renewed.duration(since: previous.wall.advanced(by: .zero - previous.latency))
            intervals.append((low, high, fetched.record.holderIdentity))
        }
        let advisory = "advisory: expiry is judged on each candidate's monotonic clock, not on renewTime"
        guard !intervals.isEmpty else {
            return Finding(name: "clock", status: .skip, evidence: "no renewal seen while observing, nothing to compare (\(advisory))")
        }
        var low = intervals.map(\.low).max()!
        var high = intervals.map(\.high).min()!
        if low > high {
            let narrowest = intervals.min { $0.high - $0.low < $1.high - $1.low }!
            (low, high) = (narrowest.low, narrowest.high)
        }
        let holders = Set(intervals.map(\.holder)).sorted().joined(separator: ", ")
        let estimate = low + (high - low) / 2
        let distance: Duration = low > .zero ? low : (high < .zero ? .zero - high : .zero)
        let evidence = "renewTime of \(holders) vs this host's clock: \(signed(estimate)) ± \(format((high - low) / 2)) from \(intervals.count) change\(intervals.count == 1 ? "" : "s") (\(advisory))"
        if distance > clockTolerance {
            return Finding(
                name: "clock", status: .warn, evidence: evidence + "; at least \(format(distance)) off, above \(format(clockTolerance))",
                hint: "check time sync (chrony/NTP) on this host and on the holder's; tools that judge expiry by renewTime see wrong expiries (two leaders, or none)")
        }
        return Finding(name: "clock", status: .ok, evidence: evidence)
    }

    // MARK: 5. Configuration

    /// Are the durations sane (client-go's rules, and what the backend can store), and do they match what
    /// the holder writes?
    ///
    /// - Parameters:
    ///   - backendProblem: what the backend said of this configuration (``LockBackend/validate(_:for:)``).
    ///   - record: the last record read, if any.
    /// - Returns: FAIL when leaseDuration > renewDeadline > 1.2 × retryPeriod does not hold (or the backend
    ///   cannot store it); WARN when the holder writes another leaseDuration; OK otherwise.
    static func checkConfiguration(timing: Timing, backendProblem: String? = nil, record: LeaderElectionRecord?) -> Finding {
        let configuration = LeaderElectionConfiguration(
            leaseDuration: timing.leaseDuration, renewDeadline: timing.renewDeadline,
            retryPeriod: timing.retryPeriod, jitterFactor: timing.jitterFactor)
        let flags = "--lease-duration \(format(timing.leaseDuration)), --renew-deadline \(format(timing.renewDeadline)), --retry-period \(format(timing.retryPeriod))"
        let hint = "choose leaseDuration > renewDeadline > \(timing.jitterFactor) × retryPeriod (client-go's defaults: 15s, 10s, 2s)"
        do {
            try configuration.validate(identity: "leasectl-doctor")
        } catch let error as LeaderElectionError {
            return Finding(name: "config", status: .fail, evidence: "\(flags): \(error.message)", hint: hint)
        } catch {
            return Finding(name: "config", status: .fail, evidence: "\(flags): \(error)", hint: hint)
        }
        if let backendProblem {
            return Finding(name: "config", status: .fail, evidence: "\(flags): \(backendProblem)", hint: hint)
        }
        var evidence = "leaseDuration \(format(timing.leaseDuration)) > renewDeadline \(format(timing.renewDeadline)) > \(timing.jitterFactor) × retryPeriod \(format(timing.retryPeriod * timing.jitterFactor))"
        if let record, !record.isReleased {
            if record.leaseDuration != timing.leaseDuration {
                return Finding(
                    name: "config", status: .warn,
                    evidence: evidence + "; but the holder \(record.holderIdentity) writes leaseDuration \(format(record.leaseDuration)), not \(format(timing.leaseDuration)) (followers wait the holder's value)",
                    hint: "give doctor the candidates' durations, or make all candidates use the same ones")
            }
            evidence += "; the holder writes the same leaseDuration"
        }
        return Finding(name: "config", status: .ok, evidence: evidence)
    }

    // MARK: Report

    /// The process exit status for `findings`: 1 with any FAIL; 2 with WARN only, when `strict`; else 0.
    static func exitStatus(_ findings: [Finding], strict: Bool) -> Int32 {
        if findings.contains(where: { $0.status == .fail }) { return 1 }
        if strict && findings.contains(where: { $0.status == .warn }) { return 2 }
        return 0
    }

    /// The text report: one line per check (`STATUS  check  evidence → hint`), then a summary.
    static func textReport(_ findings: [Finding], heading: String) -> [String] {
        let width = findings.map(\.name.count).max() ?? 0
        var lines = [heading]
        for finding in findings {
            let status = finding.status.rawValue.doctorPadded(to: 4)
            var line = "\(status)  \(finding.name.doctorPadded(to: width))  \(finding.evidence)"
            if let hint = finding.hint { line += " → \(hint)" }
            lines.append(line)
        }
        let counts = [Status.fail, .warn, .ok, .skip].compactMap { status -> String? in
            let count = findings.filter { $0.status == status }.count
            return count == 0 ? nil : "\(count) \(status.rawValue)"
        }
        lines.append(counts.joined(separator: ", "))
        return lines
    }

    /// A duration for the report: `0.4ms`, `12ms`, `2.5s`, `1m30s`.
    static func format(_ duration: Duration) -> String {
        if duration < .zero { return "-" + format(.zero - duration) }
        let (seconds, attoseconds) = duration.components
        let total = Double(seconds) + Double(attoseconds) / 1e18
        if total < 0.01 { return trimmed(total * 1000, decimals: 2) + "ms" }
        if total < 1 { return trimmed(total * 1000, decimals: total < 0.1 ? 1 : 0) + "ms" }
        if total < 60 { return trimmed(total, decimals: total < 10 ? 2 : 1) + "s" }
        return formatDuration(.seconds(seconds))
    }

    /// `+1.5s` or `-20ms`.
    static func signed(_ duration: Duration) -> String {
        duration < .zero ? format(duration) : "+" + format(duration)
    }

    private static func trimmed(_ value: Double, decimals: Int) -> String {
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        if rounded == rounded.rounded() { return String(Int64(rounded)) }
        var text = String(rounded)
        if let dot = text.firstIndex(of: "."), text.distance(from: dot, to: text.endIndex) > decimals + 1 {
            text = String(text[..<text.index(dot, offsetBy: decimals + 1)])
        }
        return text
    }
}

extension String {
    /// The string padded with spaces to at least `length` characters.
    fileprivate func doctorPadded(to length: Int) -> String {
        count >= length ? self : self + String(repeating: " ", count: length - count)
    }
}
