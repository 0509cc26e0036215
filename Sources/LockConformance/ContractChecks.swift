import LeaderElection

/// The contract layer: every rule of the ``ResourceLock`` documentation, checked directly.
enum ContractChecks {
    static var all: [LockConformanceSuite.Check] {
        [
            .init(name: "contract.missingRecordIsNil", layer: .contract, run: missingRecordIsNil),
            .init(name: "contract.roundTripsEveryField", layer: .contract, run: roundTripsEveryField),
            .init(name: "contract.createTwiceFailsWithAlreadyExists", layer: .contract, run: createTwice),
            .init(name: "contract.updateOfMissingRecordFailsWithNotFound", layer: .contract, run: updateMissing),
            .init(name: "contract.staleUpdateFailsWithConflict", layer: .contract, run: staleUpdate),
            .init(name: "contract.concurrentUpdatersExactlyOneWins", layer: .contract, run: concurrentUpdaters),
            .init(name: "contract.changedRecordsGetNewVersions", layer: .contract, run: versionsChange),
            .init(name: "contract.changeFeedWakesOnOtherWriter", layer: .contract, run: changeFeed),
            .init(name: "contract.recordChangesCarryStoredRecords", layer: .contract, run: recordFeed),
            .init(name: "contract.corruptDataIsTypedAndReplaceable", layer: .contract, run: corruptData),
        ]
    }

    static func sample(_ holder: String, transitions: Int = 3) -> LeaderElectionRecord {
        LeaderElectionRecord(
            holderIdentity: holder,
            leaseDuration: .seconds(15),
            acquireTime: MicroTime(microsecondsSinceEpoch: 1_764_000_000_123_456),
            renewTime: MicroTime(microsecondsSinceEpoch: 1_764_000_009_654_321),
            leaseTransitions: transitions)
    }

    static func missingRecordIsNil(_ c: ConformanceContext) async throws {
        let lock = try await c.lock("a")
        let got = try await lock.get()
        try c.expect(got == nil, "get() on a fresh lock name returned \(String(describing: got)), expected nil")
    }

    static func roundTripsEveryField(_ c: ConformanceContext) async throws {
        let a = try await c.lock("a")
        let b = try await c.lock("b")
        var record = sample("a")
        record.strategy = "OldestEmulationVersion"
        record.preferredHolder = "b"
        let v1 = try await a.create(record)
        guard let read = try await b.get() else { throw c.fail("get() returned nil after create") }
        try c.expect(read.record == record, "round trip changed the record:\n  wrote \(record)\n  read  \(read.record)")
        try c.expect(read.version == v1, "get() version \(read.version) differs from create()'s \(v1)")

        let released = LeaderElectionRecord(
            holderIdentity: "", leaseDuration: .seconds(1),
            acquireTime: MicroTime(microsecondsSinceEpoch: 1_764_000_010_000_001),
            renewTime: MicroTime(microsecondsSinceEpoch: 1_764_000_010_000_001), leaseTransitions: 3)
        let v2 = try await b.update(released, expecting: v1)
        guard let read2 = try await a.get() else { throw c.fail("get() returned nil after update") }
        try c.expect(read2.record == released, "round trip of a released record changed it:\n  wrote \(released)\n  read  \(read2.record)")
        try c.expect(read2.version == v2, "get() version \(read2.version) differs from update()'s \(v2)")
    }

    static func createTwice(_ c: ConformanceContext) async throws {
        let a = try await c.lock("a")
        let b = try await c.lock("b")
        _ = try await a.create(sample("a"))
        try await c.expectError(.alreadyExists, "second create()") { try await b.create(sample("b")) }
        let read = try await a.get()
        try c.expect(read?.record.holderIdentity == "a", "a failed create() changed the record: \(String(describing: read))")
    }

    static func updateMissing(_ c: ConformanceContext) async throws {
        let a = try await c.lock("a")
        try await c.expectError(.notFound, "update() on a lock name with no record") {
            try await a.update(sample("a"), expecting: LockVersion("1"))
        }
        let read = try await a.get()
        try c.expect(read == nil, "a failed update() created a record: \(String(describing: read))")
        let v = try await a.create(sample("a"))
        try await c.expectError(.conflict, "update() with a version the store never issued") {
            try await a.update(sample("a"), expecting: LockVersion("never-issued-\(UInt64.random(in: 1...UInt64.max))"))
        }
        let read2 = try await a.get()
        try c.expect(read2?.version == v, "a conflicting update() changed the version")
    }

    static func staleUpdate(_ c: ConformanceContext) async throws {
        let a = try await c.lock("a")
        let b = try await c.lock("b")
        let v1 = try await a.create(sample("a"))
        let v2 = try await a.update(sample("a", transitions: 4), expecting: v1)
        try await c.expectError(.conflict, "update() with a stale version") {
            try await b.update(sample("b", transitions: 5), expecting: v1)
        }
        // A stale version conflicts even when the record presented is exactly the stored one (a kube-apiserver
        // checks resourceVersion before it notices that nothing would change).
        try await c.expectError(.conflict, "update() with a stale version and the record already stored") {
            try await b.update(sample("a", transitions: 4), expecting: v1)
        }
        let read = try await b.get()
        try c.expect(read?.version == v2 && read?.record.holderIdentity == "a",
                     "a conflicting update() changed the record: \(String(describing: read))")
    }

    static func concurrentUpdaters(_ c: ConformanceContext) async throws {
        let first = try await c.lock("w0")
        let base = try await first.create(sample("w0"))
        let writers = 8
        var locks: [any ResourceLock] = [first]
        for i in 1..<writers { locks.append(try await c.lock("w\(i)")) }
        let results = await withTaskGroup(of: (Int, Result<LockVersion, any Error>).self) { group in
            for (i, lock) in locks.enumerated() {
                group.addTask {
                    do { return (i, .success(try await lock.update(sample("w\(i)", transitions: 10 + i), expecting: base))) }
                    catch { return (i, .failure(error)) }
                }
            }
            var all: [(Int, Result<LockVersion, any Error>)] = []
            for await r in group { all.append(r) }
            return all
        }
        let winners = results.filter { if case .success = $0.1 { return true }; return false }
        try c.expect(winners.count == 1, "\(winners.count) of \(writers) concurrent update()s with the same version succeeded, expected exactly 1")
        for (i, result) in results {
            if case .failure(let error) = result {
                try c.expect((error as? LeaderElectionError)?.code == .conflict, "writer w\(i) failed with \(error), expected conflict")
            }
        }
        let winner = winners[0].0
        let read = try await first.get()
        try c.expect(read?.record.holderIdentity == "w\(winner)" && read?.record.leaseTransitions == 10 + winner,
                     "stored record \(String(describing: read)) is not the winner w\(winner)'s write")
    }

    /// A write that changes the record — if only by the 1 µs a renewal may move `renewTime` — yields a version
    /// different from every version returned before. An identical write may return the same version (as a
    /// kube-apiserver does for a PUT that changes nothing) or a new one (etcd, `FileLock`). Either way, `get()`
    /// then returns the record written with the version the update returned.
    static func versionsChange(_ c: ConformanceContext) async throws {
        let a = try await c.lock("a")
        var current = sample("a")
        var version = try await a.create(current)
        var seen: Set<LockVersion> = [version]
        for i in 0..<12 {
            var record = current
            let change: String
            switch i % 4 {
            case 0: change = "identical"
            case 1:
                change = "renewTime + 1 µs"
                record.renewTime = current.renewTime?.advanced(by: .microseconds(1))
            case 2:
                change = "leaseTransitions + 1"
                record.leaseTransitions += 1
            default:
                change = i % 8 == 3 ? "holder released" : "holder taken"
                record.holderIdentity = i % 8 == 3 ? "" : "a"
            }
            let previous = version
            version = try await a.update(record, expecting: previous)
            if record == current {
                try c.expect(version == previous || !seen.contains(version),
                             "update #\(i) (\(change)) returned version \(version), an earlier version other than the current \(previous)")
            } else {
                try c.expect(!seen.contains(version), "update #\(i) (\(change)) returned version \(version), which was returned before")
            }
            seen.insert(version)
            current = record
            let read = try await a.get()
            try c.expect(read?.version == version && read?.record == record,
                         "after update #\(i) (\(change)) get() returned \(String(describing: read)), expected \(record) at version \(version)")
        }
    }

    static func changeFeed(_ c: ConformanceContext) async throws {
        let a = try await c.lock("a")
        let b = try await c.lock("b")
        guard let feed = a.changes() else { return } // optional capability
        let v = try await b.create(sample("b"))
        let woke = FeedRecorder(feed)
        defer { woke.stop() }
        // A subscription may or may not replay the create; require a wake after a fresh update.
        let before = woke.all.count
        _ = try await b.update(sample("b", transitions: 4), expecting: v)
        let yielded = await woke.wait(timeout: .seconds(10)) { $0.count > before }
        try c.expect(yielded, "changes() did not yield within 10 s after another lock's update()")
    }

    /// `recordChanges()`: a `.stored` element carries a record and version that were really stored, and the
    /// update made after subscribing is reported (as `.stored` with its record and version, or as `.unknown`).
    static func recordFeed(_ c: ConformanceContext) async throws {
        let a = try await c.lock("a")
        let b = try await c.lock("b")
        guard let feed = a.recordChanges() else { return } // optional capability
        let v1 = try await b.create(sample("b"))
        let seen = FeedRecorder(feed)
        defer { seen.stop() }
        let v2 = try await b.update(sample("b", transitions: 4), expecting: v1)
        let written: [LockVersion: LeaderElectionRecord] = [v1: sample("b"), v2: sample("b", transitions: 4)]
        let reportedV2 = await seen.wait(timeout: .seconds(10)) { changes in
            changes.contains { change in
                if case .stored(let read) = change { return read.version == v2 }
                return change == .unknown
            }
        }
        try c.expect(reportedV2, "recordChanges() did not report another lock's update() within 10 s: \(seen.all)")
        for case .stored(let read) in seen.all {
            try c.expect(written[read.version] == read.record,
                         "recordChanges() reported version \(read.version) with \(read.record), which is not what was stored at that version")
        }
    }

    static func corruptData(_ c: ConformanceContext) async throws {
        let a = try await c.lock("a")
        let b = try await c.lock("b")
        _ = try await a.create(sample("a"))
        try await c.environment.writeGarbage(Array("{\"holderIdentity\": 42, garbage".utf8))
        let error = try await c.expectError(.corruptRecord, "get() of garbage") { try await b.get() }
        guard let version = error.version else {
            throw c.fail("corruptRecord error carries no version, so the data could never be replaced by compare-and-swap")
        }
        let error2 = try await c.expectError(.corruptRecord, "second get() of the same garbage") { try await a.get() }
        try c.expect(error2.version == version, "unchanged garbage reported versions \(version) then \(String(describing: error2.version))")
        try await c.expectError(.conflict, "update() of garbage with a wrong version") {
            try await b.update(sample("b"), expecting: LockVersion("not-\(version)"))
        }
        let v2 = try await b.update(sample("b", transitions: 9), expecting: version)
        let read = try await a.get()
        try c.expect(read?.version == v2 && read?.record == sample("b", transitions: 9),
                     "after replacing garbage, get() returned \(String(describing: read))")
    }
}
