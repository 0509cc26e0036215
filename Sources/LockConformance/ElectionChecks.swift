import LeaderElection

/// The election layer: ``LeaderElector``s over the lock under test, on simulated time.
enum ElectionChecks {
    static var all: [LockConformanceSuite.Check] {
        [
            .init(name: "election.singleCandidateAcquiresAndRenews", layer: .election, run: singleCandidate),
            .init(name: "election.exactlyOneLeaderAmongMany", layer: .election, run: exactlyOneLeader),
            .init(name: "election.crashedLeaderIsReplacedAfterExpiry", layer: .election, run: crashTakeover),
            .init(name: "election.releaseHandsOverWithoutWaiting", layer: .election, run: releaseHandOver),
            .init(name: "election.storeOutageStopsWorkBeforeTakeover", layer: .election, run: storeOutage),
            .init(name: "election.wallClockOffsetsDoNotMatter", layer: .election, run: wallClockOffsets),
            .init(name: "election.fencingTokensStrictlyIncrease", layer: .election, run: fencingTokens),
            .init(name: "election.corruptRecordRecovers", layer: .election, run: corruptRecord),
            .init(name: "election.handoffGoesToThePreferredHolder", layer: .election, run: handoff),
            .init(name: "election.renewalsAreSeenWhenTheWallClockStallsOrStepsBack", layer: .election, run: stalledWallClock),
        ]
    }

    static func singleCandidate(_ c: ConformanceContext) async throws {
        let h = ElectionHarness(c)
        let a = try await h.spawn("a")
        try await h.run(until: "a leads") { a.elector.isLeader }
        guard let first = try await a.lock.base.get() else { throw c.fail("no record after a became leader") }
        try c.expect(first.record.holderIdentity == "a", "record holder is \(first.record.holderIdentity), expected a")
        try c.expect(first.record.leaseDuration == h.configuration.leaseDuration, "record lease duration is \(first.record.leaseDuration)")
        // Feed elements are counted as the elector takes them, and a read follows at once: counting them before
        // settling, and reads after, keeps an element taken just before the window from adding a read to it.
        let unknownBefore = a.lock.counts.unknownChanges
        try await h.quiesce()
        let countsBefore = a.lock.counts
        let start = h.clock.now
        // Run for five renew periods: the leader must keep leading, renewing with one write each and no reads. (A
        // feed that reports changes without their records costs the leader one read per element, to look for a
        // hand-off request; a feed that carries records, none.)
        try await h.run(until: "five renew periods pass") { start.duration(to: h.clock.now) >= h.configuration.retryPeriod * 5 }
        try c.expect(a.elector.isLeader, "a stopped leading while it was the only candidate")
        let counts = a.lock.counts
        let renewals = counts.updates - countsBefore.updates
        try c.expect(renewals >= 5, "a renewed \(renewals) times in five renew periods, expected at least 5")
        let reads = counts.gets - countsBefore.gets
        let unknownChanges = counts.unknownChanges - unknownBefore
        try c.expect(reads <= unknownChanges,
                     "steady-state renewals read the record \(reads) times, expected none (fast path) beyond one per LockChange.unknown reported (\(unknownChanges))")
        guard let later = try await a.lock.base.get() else { throw c.fail("record vanished") }
        try c.expect(later.version != first.version, "renewals did not change the record's version")
        try c.expect(later.record.acquireTime == first.record.acquireTime && later.record.leaseTransitions == first.record.leaseTransitions,
                     "renewing changed acquireTime or leaseTransitions: \(first.record) → \(later.record)")
        try c.expect((later.record.renewTime ?? .init(microsecondsSinceEpoch: 0)) > (first.record.renewTime ?? .init(microsecondsSinceEpoch: 0)),
                     "renewTime did not move on: \(String(describing: first.record.renewTime)) → \(String(describing: later.record.renewTime))")
        try c.expect(a.elector.currentTerm?.isValid == true, "the leader's term is not valid while renewing")
    }

    static func exactlyOneLeader(_ c: ConformanceContext) async throws {
        let h = ElectionHarness(c)
        let candidates = [try await h.spawn("a"), try await h.spawn("b"), try await h.spawn("c")]
        try await h.run(until: "someone leads") { h.leaders.count == 1 }
        let leader = h.leaders[0]
        for _ in 0..<20 {
            try await h.step()
            try c.expect(h.leaders.map(\.identity) == [leader.identity], "leadership changed without a fault: \(h.leaders.map(\.identity))")
        }
        try await h.quiesce()
        for candidate in candidates where candidate !== leader {
            try c.expect(candidate.elector.currentLeader == leader.identity,
                         "\(candidate.identity) sees leader \(String(describing: candidate.elector.currentLeader)), expected \(leader.identity)")
        }
    }

    static func crashTakeover(_ c: ConformanceContext) async throws {
        let h = ElectionHarness(c)
        let a = try await h.spawn("a")
        try await h.run(until: "a leads") { a.elector.isLeader }
        let b = try await h.spawn("b")
        try await h.run(until: "b follows a") { b.elector.currentLeader == "a" }
        try await h.run(until: "a renews a few times") { (a.lock.counts.updates) >= 3 }
        let tokenA = a.elector.currentTerm!.fencingToken
        await a.crash()
        guard let lastWrite = a.lastSuccessfulWrite else { throw c.fail("a never wrote") }
        try await h.run(until: "b takes over") { b.elector.isLeader }
        guard let term = b.elector.currentTerm, let interval = h.allIntervals.last(where: { $0.identity == "b" }) else {
            throw c.fail("b has no term")
        }
        let expiry = lastWrite.advanced(by: h.configuration.leaseDuration)
        try c.expect(interval.startedAt >= expiry,
                     "b took over at \(interval.startedAt), before a's lease could expire (\(expiry))")
        let latest = expiry.advanced(by: h.configuration.retryPeriod * 2.2)
        try c.expect(interval.startedAt <= latest, "b took over at \(interval.startedAt), long after a's lease expired at \(expiry)")
        try c.expect(term.fencingToken == tokenA + 1, "takeover token is \(term.fencingToken), expected \(tokenA + 1)")
        let record = try await b.lock.base.get()
        try c.expect(record?.record.holderIdentity == "b" && record?.record.leaseTransitions == tokenA + 1,
                     "after takeover the record is \(String(describing: record)), expected holder b with leaseTransitions \(tokenA + 1)")
    }

    static func releaseHandOver(_ c: ConformanceContext) async throws {
        let h = ElectionHarness(c)
        let a = try await h.spawn("a")
        try await h.run(until: "a leads") { a.elector.isLeader }
        let b = try await h.spawn("b")
        try await h.run(until: "b follows a") { b.elector.currentLeader == "a" }
        let tokenA = a.elector.currentTerm!.fencingToken
        let releaseWrite = LockedList<LeaderElectionRecord>()
        a.lock.onSuccessfulWrite { record in
            if record.holderIdentity.isEmpty { releaseWrite.append(record) }
            a.noteWrite(h.clock.now)
        }
        try await h.quiesce()
        let before = h.clock.now
        await a.stop()
        guard let released = releaseWrite.all.first else {
            throw c.fail("a did not release the lease when its election was cancelled (releaseOnCancel is on)")
        }
        let canWatch = b.lock.changes() != nil
        if canWatch {
            try await h.wait(until: "b takes over after a released, woken by the change feed") { b.elector.isLeader }
            try c.expect(h.clock.now == before, "simulated time moved during a watched hand-off")
        } else {
            try await h.run(until: "b takes over after a released") { b.elector.isLeader }
            try c.expect(before.duration(to: h.clock.now) <= h.configuration.retryPeriod * (1 + h.configuration.jitterFactor),
                         "hand-off took \(before.duration(to: h.clock.now)) of simulated time, more than one jittered retry period")
        }
        try c.expect(released.leaseTransitions == tokenA && released.leaseDuration == .seconds(1),
                     "release wrote \(released), expected empty holder, 1 s, leaseTransitions \(tokenA)")
        try c.expect(b.elector.currentTerm?.fencingToken == tokenA + 1, "b's token is \(String(describing: b.elector.currentTerm?.fencingToken)), expected \(tokenA + 1)")
    }

    static func storeOutage(_ c: ConformanceContext) async throws {
        let h = ElectionHarness(c)
        let a = try await h.spawn("a")
        try await h.run(until: "a leads") { a.elector.isLeader }
        let b = try await h.spawn("b")
        try await h.run(until: "b follows a") { b.elector.currentLeader == "a" }
        guard let termA = a.elector.currentTerm else { throw c.fail("a has no term") }
        a.lock.setFailure(.unavailable("simulated outage between a and the store"))
        guard let lastWrite = a.lastSuccessfulWrite else { throw c.fail("a never wrote") }
        try await h.run(until: "b takes over") { b.elector.isLeader }
        let intervals = h.allIntervals
        guard let aInterval = intervals.first(where: { $0.identity == "a" }), let cancelledAt = aInterval.endedAt,
              let bInterval = intervals.first(where: { $0.identity == "b" }) else {
            throw c.fail("a's work was not cancelled before b took over: \(intervals.map { ($0.identity, $0.endedAt as Any) })")
        }
        try c.expect(cancelledAt <= lastWrite.advanced(by: h.configuration.renewDeadline),
                     "a's work was cancelled at \(cancelledAt), after its renew deadline \(lastWrite.advanced(by: h.configuration.renewDeadline))")
        try c.expect(cancelledAt < bInterval.startedAt, "a's work was cancelled at \(cancelledAt), not before b started at \(bInterval.startedAt)")
        do {
            try termA.check()
            throw c.fail("a's term still passes check() after it lost leadership")
        } catch let error as LeaderElectionError {
            try c.expect(error.code == .leadershipLost, "check() threw \(error), expected leadershipLost")
        }
        try c.expect(!a.elector.isLeader, "a still believes it leads during the outage")
    }

    static func wallClockOffsets(_ c: ConformanceContext) async throws {
        let h = ElectionHarness(c)
        let candidates = [
            try await h.spawn("fast", wallClock: .offset(by: .seconds(3600))),
            try await h.spawn("true"),
            try await h.spawn("slow", wallClock: .offset(by: .seconds(-3600))),
        ]
        try await h.run(until: "someone leads") { h.leaders.count == 1 }
        for _ in 0..<10 { try await h.step() }
        let first = h.leaders[0]
        await first.crash()
        try await h.run(until: "a new leader") { h.leaders.count == 1 }
        for _ in 0..<10 { try await h.step() }
        try c.expect(h.leaders.count == 1, "\(h.leaders.count) leaders after the takeover")
        _ = candidates
    }

    static func fencingTokens(_ c: ConformanceContext) async throws {
        let h = ElectionHarness(c)
        var live = [try await h.spawn("a"), try await h.spawn("b"), try await h.spawn("c")]
        var spawned = 3
        for round in 0..<4 {
            try await h.run(until: "a leader in round \(round)") { h.leaders.count == 1 }
            let leader = h.leaders[0]
            if round % 2 == 0 { await leader.stop() } else { await leader.crash() }
            live.removeAll { $0 === leader }
            live.append(try await h.spawn("n\(spawned)"))
            spawned += 1
        }
        try await h.run(until: "a final leader") { h.leaders.count == 1 }
        let tokens = h.allIntervals.sorted { $0.startSeq < $1.startSeq }.map(\.token)
        try c.expect(tokens.count == 5, "expected 5 terms, saw \(tokens.count)")
        try c.expect(zip(tokens, tokens.dropFirst()).allSatisfy { $0 < $1 }, "fencing tokens are not strictly increasing: \(tokens)")
    }

    static func corruptRecord(_ c: ConformanceContext) async throws {
        let seed = try await c.lock("seed")
        _ = try await seed.create(ContractChecks.sample("ghost"))
        try await c.environment.writeGarbage(Array("\u{0}\u{1}not a record".utf8))
        let h = ElectionHarness(c)
        let start = h.clock.now
        let a = try await h.spawn("a")
        try await h.run(until: "a overwrites the corrupt record and leads") { a.elector.isLeader }
        try c.expect(start.duration(to: h.clock.now) >= h.configuration.leaseDuration,
                     "a overwrote a corrupt record after \(start.duration(to: h.clock.now)), before it stayed unchanged for the lease duration")
        let record = try await a.lock.base.get()
        try c.expect(record?.record.holderIdentity == "a", "after recovery the record is \(String(describing: record))")
    }

    /// `requestHandoff(on:to:)`: the leader drains and releases, the named candidate (not the other follower)
    /// takes over at once, and the name is cleared. With a change feed the leader is told of the request and the
    /// candidate of the release: the whole hand-off happens without simulated time moving (no renewal, no retry).
    static func handoff(_ c: ConformanceContext) async throws {
        let h = ElectionHarness(c)
        let a = try await h.spawn("a")
        try await h.run(until: "a leads") { a.elector.isLeader }
        let b = try await h.spawn("b")
        let target = try await h.spawn("c")
        try await h.run(until: "b and c follow a") { b.elector.currentLeader == "a" && target.elector.currentLeader == "a" }
        let tokenA = a.elector.currentTerm!.fencingToken
        let stops = LockedList<StopReason>()
        let events = a.elector.events()
        let collector = Task { for await event in events { if case .stoppedLeading(_, let reason) = event { stops.append(reason) } } }
        defer { collector.cancel() }
        try await h.quiesce()
        let requested = h.clock.now
        let readsBefore = a.lock.counts.gets
        let written = try await requestHandoff(on: a.lock.base, to: "c")
        try c.expect(written.preferredHolder == "c" && written.holderIdentity == "a" && !(written.strategy ?? "").isEmpty,
                     "requestHandoff wrote \(written), expected holder a, preferredHolder c and a strategy")
        if a.lock.recordChanges() != nil && target.lock.recordChanges() != nil {
            // a's feed reports the request: its work drains and it releases at once; c's feed reports the release.
            try await h.wait(until: "a drains its work and releases, told by its change feed") { !a.elector.isLeader && !stops.all.isEmpty }
            try await h.wait(until: "c leads, woken by the release") { target.elector.isLeader }
            try c.expect(h.clock.now == requested, "simulated time moved during a watched hand-off (to \(h.clock.now))")
        } else {
            // a's next renewal conflicts, it reads the record and sees the hand-off. Its work then drains and it
            // releases in real time: simulated time must not move meanwhile (it would run a's drain timeout out).
            try await h.run(until: "a reads the record at its next renewal") { a.lock.counts.gets > readsBefore }
            try await h.wait(until: "a drains its work and releases") { !a.elector.isLeader && !stops.all.isEmpty }
            try await h.run(until: "c leads after a hands off") { target.elector.isLeader }
            try c.expect(requested.duration(to: h.clock.now) < h.configuration.leaseDuration,
                         "the hand-off took \(requested.duration(to: h.clock.now)) of simulated time: c waited for the lease to expire")
        }
        try c.expect(!h.allIntervals.contains { $0.identity == "b" }, "b led during a hand-off to c")
        try c.expect(a.isRunning && !a.elector.isLeader, "a should still be campaigning as a follower after handing off")
        try c.expect(stops.all.first == .handedOff, "a stopped with \(stops.all), expected handedOff")
        try c.expect(target.elector.currentTerm?.fencingToken == tokenA + 1,
                     "c's token is \(String(describing: target.elector.currentTerm?.fencingToken)), expected \(tokenA + 1)")
        guard let record = try await target.lock.base.get() else { throw c.fail("record vanished after the hand-off") }
        try c.expect(record.record.holderIdentity == "c" && record.record.preferredHolder == nil,
                     "after the hand-off the record is \(record.record), expected holder c and no preferredHolder")
        // Leadership stays with c: a and b do not take it back.
        for _ in 0..<10 { try await h.step() }
        try c.expect(h.leaders.map(\.identity) == ["c"], "leadership moved after the hand-off: \(h.leaders.map(\.identity))")
    }

    /// A store may keep the version of an identical write (a kube-apiserver does), and followers see a renewal only
    /// as a new version: the leader's renewals must change the record even when its wall clock stands still or
    /// steps back. The leader's wall clock stands still for its first 12 readings (longer than a lease duration of
    /// renewals), then steps back a second at every reading; the followers' stands still. Over three lease
    /// durations no follower may take over (one watches the change feed, one polls), and every renewal writes a
    /// strictly later `renewTime`.
    static func stalledWallClock(_ c: ConformanceContext) async throws {
        let h = ElectionHarness(c)
        let base: Int64 = 1_764_000_000_000_000
        let readings = Sequencer()
        let stallingAndSteppingBack = WallClock {
            let stepsBack = max(0, readings.next() - 12)
            return MicroTime(microsecondsSinceEpoch: base - Int64(stepsBack) * 1_000_000)
        }
        let frozen = WallClock { MicroTime(microsecondsSinceEpoch: base) }
        let a = try await h.spawn("a", wallClock: stallingAndSteppingBack)
        try await h.run(until: "a leads") { a.elector.isLeader }
        let written = LockedList<LeaderElectionRecord>()
        a.lock.onSuccessfulWrite { record in
            written.append(record)
            a.noteWrite(h.clock.now)
        }
        let watching = try await h.spawn("b", wallClock: frozen)
        let polling = try await h.spawn("p", wallClock: frozen, hideChanges: true)
        try await h.run(until: "b and p follow a") { watching.elector.currentLeader == "a" && polling.elector.currentLeader == "a" }
        guard let first = try await a.lock.base.get() else { throw c.fail("no record while a leads") }
        let start = h.clock.now
        try await h.run(until: "three lease durations pass", maxSteps: 400) {
            start.duration(to: h.clock.now) >= h.configuration.leaseDuration * 3
        }
        try c.expect(h.leaders.map(\.identity) == ["a"] && h.allIntervals.map(\.identity) == ["a"],
                     "leadership moved while a renewed with a stalled wall clock: \(h.allIntervals.map(\.identity)), now \(h.leaders.map(\.identity))")
        let renewals = written.all.filter { $0.holderIdentity == "a" }
        try c.expect(renewals.count >= 15, "a renewed \(renewals.count) times in three lease durations")
        let stamps = renewals.compactMap(\.renewTime)
        try c.expect(stamps.count == renewals.count && zip(stamps, stamps.dropFirst()).allSatisfy { $0 < $1 },
                     "renewTime did not strictly increase from renewal to renewal: \(stamps)")
        guard let later = try await a.lock.base.get() else { throw c.fail("record vanished") }
        try c.expect(later.version != first.version && later.record.renewTime == stamps.last,
                     "after \(renewals.count) renewals the record is \(later), first \(first)")
    }
}
