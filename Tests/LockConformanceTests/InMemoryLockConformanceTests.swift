import LeaderElection
import LockConformance
import Testing

/// The reference implementation passes the whole suite.
@Suite struct InMemoryLockConformanceTests {
    static let suite = LockConformanceSuite(name: "InMemoryLock") {
        let store = InMemoryLockStore(name: "conformance")
        return .init(
            makeLock: { identity in store.lock(identity: identity) },
            writeGarbage: { bytes in store.writeGarbage(bytes) })
    }

    @Test(arguments: LockConformanceSuite.Check.all)
    func conformance(_ check: LockConformanceSuite.Check) async throws {
        try await Self.suite.run(check)
    }

    /// The same election checks with the change feed hidden: the timer/poll path must also pass.
    @Test(arguments: LockConformanceSuite.Check.election)
    func conformanceWithoutChangeFeed(_ check: LockConformanceSuite.Check) async throws {
        let suite = LockConformanceSuite(name: "InMemoryLock(no feed)") {
            let store = InMemoryLockStore(name: "conformance")
            return .init(
                makeLock: { identity in InstrumentedLock(store.lock(identity: identity), hideChanges: true) },
                writeGarbage: { bytes in store.writeGarbage(bytes) })
        }
        try await suite.run(check)
    }
}
