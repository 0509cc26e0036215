import LeaderElection
import LockConformance
import Testing

/// `MultiLock` passes the whole suite, and the election layer holds during both rollouts of a migration: lock A
/// only mixed with MultiLock(A, B) candidates, and MultiLock(A, B) mixed with lock B only.
@Suite struct MultiLockConformanceTests {
    private static func suite(garbageIn which: String) -> LockConformanceSuite {
        LockConformanceSuite(name: "MultiLock(garbage in \(which))") {
            let a = InMemoryLockStore(name: "a")
            let b = InMemoryLockStore(name: "b")
            return .init(
                makeLock: { identity in try MultiLock(primary: a.lock(identity: identity), secondary: b.lock(identity: identity)) },
                writeGarbage: { bytes in (which == "primary" ? a : b).writeGarbage(bytes) })
        }
    }

    @Test(arguments: LockConformanceSuite.Check.all)
    func conformanceWithGarbageInThePrimary(_ check: LockConformanceSuite.Check) async throws {
        try await Self.suite(garbageIn: "primary").run(check)
    }

    @Test(arguments: LockConformanceSuite.Check.all.filter { $0.name.contains("orrupt") })
    func corruptRecordInTheSecondary(_ check: LockConformanceSuite.Check) async throws {
        try await Self.suite(garbageIn: "secondary").run(check)
    }

    /// Rollout 1: candidate `a` still runs on lock A alone, the others already on MultiLock(A, B).
    @Test(arguments: LockConformanceSuite.Check.election)
    func firstRolloutOldAndMultiLockCandidates(_ check: LockConformanceSuite.Check) async throws {
        let suite = LockConformanceSuite(name: "A + MultiLock(A, B)") {
            let a = InMemoryLockStore(name: "a")
            let b = InMemoryLockStore(name: "b")
            return .init(
                makeLock: { identity in
                    identity == "a" ? a.lock(identity: identity) as any ResourceLock : try MultiLock(primary: a.lock(identity: identity), secondary: b.lock(identity: identity))
                },
                writeGarbage: { bytes in a.writeGarbage(bytes) })
        }
        try await suite.run(check)
    }

    /// Rollout 2: candidate `a` still runs on MultiLock(A, B), the others already on lock B alone.
    @Test(arguments: LockConformanceSuite.Check.election)
    func lastRolloutMultiLockAndNewCandidates(_ check: LockConformanceSuite.Check) async throws {
        let suite = LockConformanceSuite(name: "MultiLock(A, B) + B") {
            let a = InMemoryLockStore(name: "a")
            let b = InMemoryLockStore(name: "b")
            return .init(
                makeLock: { identity in
                    identity == "a" ? try MultiLock(primary: a.lock(identity: identity), secondary: b.lock(identity: identity)) as any ResourceLock : b.lock(identity: identity)
                },
                writeGarbage: { bytes in b.writeGarbage(bytes) })
        }
        try await suite.run(check)
    }

    @Test func identitiesMustMatch() throws {
        let a = InMemoryLockStore(name: "a")
        #expect(throws: LeaderElectionError.self) { try MultiLock(primary: a.lock(identity: "x"), secondary: a.lock(identity: "y")) }
    }

    @Test func differentHoldersReadAsUnknownLeader() async throws {
        let a = InMemoryLockStore(name: "a")
        let b = InMemoryLockStore(name: "b")
        _ = try await a.lock(identity: "p").create(LeaderElectionRecord(holderIdentity: "p", leaseDuration: .seconds(15)))
        _ = try await b.lock(identity: "q").create(LeaderElectionRecord(holderIdentity: "q", leaseDuration: .seconds(15)))
        let multi = try MultiLock(primary: a.lock(identity: "m"), secondary: b.lock(identity: "m"))
        let read = try #require(try await multi.get())
        #expect(read.record.holderIdentity == MultiLock.unknownLeader)
        // A stale combined version conflicts; the current one replaces both records.
        let mine = LeaderElectionRecord(holderIdentity: "m", leaseDuration: .seconds(15), leaseTransitions: 1)
        let written = try await multi.update(mine, expecting: read.version)
        #expect(try await a.lock(identity: "r").get()?.record.holderIdentity == "m")
        #expect(try await b.lock(identity: "r").get()?.record.holderIdentity == "m")
        await #expect(throws: LeaderElectionError.self) { _ = try await multi.update(mine, expecting: read.version) }
        #expect(try await multi.get()?.version == written)
    }
}
