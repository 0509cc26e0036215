import LeaderElection
import LockConformance
import Testing

/// A lock that breaks the contract on purpose: its update ignores the expected version (no CAS) and
/// its change feed never yields.
private struct CarelessLock: ResourceLock {
    let base: InMemoryLock
    var identity: String { base.identity }
    var description: String { "careless:\(base.description)" }
    func get() async throws -> VersionedRecord? { try await base.get() }
    func create(_ record: LeaderElectionRecord) async throws -> LockVersion { try await base.create(record) }
    func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion {
        guard let current = try await base.get() else { throw LeaderElectionError.notFound("none") }
        return try await base.update(record, expecting: current.version)
    }
    func changes() -> AsyncStream<Void>? { AsyncStream { _ in } }
}

/// A lock whose records lose microseconds and optional fields.
private struct LossyLock: ResourceLock {
    let base: InMemoryLock
    var identity: String { base.identity }
    var description: String { "lossy:\(base.description)" }
    func get() async throws -> VersionedRecord? {
        guard var read = try await base.get() else { return nil }
        read.record.preferredHolder = nil
        if let t = read.record.renewTime { read.record.renewTime = MicroTime(microsecondsSinceEpoch: t.microsecondsSinceEpoch / 1_000_000 * 1_000_000) }
        return read
    }
    func create(_ record: LeaderElectionRecord) async throws -> LockVersion { try await base.create(record) }
    func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion {
        try await base.update(record, expecting: version)
    }
}

@Suite struct SuiteDetectsBrokenLocksTests {
    private static func suite(_ wrap: @escaping @Sendable (InMemoryLock) -> any ResourceLock) -> LockConformanceSuite {
        LockConformanceSuite(name: "broken") {
            let store = InMemoryLockStore()
            return .init(makeLock: { wrap(store.lock(identity: $0)) }, writeGarbage: { store.writeGarbage($0) })
        }
    }

    private static func check(_ name: String) -> LockConformanceSuite.Check {
        LockConformanceSuite.Check.all.first { $0.name == name }!
    }

    @Test func lockWithoutCompareAndSwapFails() async throws {
        let suite = Self.suite { CarelessLock(base: $0) }
        for name in ["contract.staleUpdateFailsWithConflict", "contract.concurrentUpdatersExactlyOneWins"] {
            await #expect(throws: ConformanceFailure.self, "\(name) must catch a missing CAS") {
                try await suite.run(Self.check(name))
            }
        }
    }

    @Test func silentChangeFeedFails() async throws {
        let suite = Self.suite { CarelessLock(base: $0) }
        await #expect(throws: ConformanceFailure.self) {
            try await suite.run(Self.check("contract.changeFeedWakesOnOtherWriter"))
        }
    }

    @Test func lossyRoundTripFails() async throws {
        let suite = Self.suite { LossyLock(base: $0) }
        await #expect(throws: ConformanceFailure.self) {
            try await suite.run(Self.check("contract.roundTripsEveryField"))
        }
    }
}
