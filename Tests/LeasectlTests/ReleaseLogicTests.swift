import LeaderElection
import Testing
@testable import leasectl

/// `leasectl release`'s compare-and-swap logic, on an in-memory lock.
@Suite struct ReleaseLogicTests {
    let now = MicroTime(microsecondsSinceEpoch: 1_700_000_000_000_000)

    @Test func liveLeaseNeedsForceAndKeepsTransitions() async throws {
        let store = InMemoryLockStore(name: "r")
        let holder = store.lock(identity: "h")
        _ = try await holder.create(LeaderElectionRecord(holderIdentity: "h", leaseDuration: .seconds(15), acquireTime: now, renewTime: now, leaseTransitions: 6))
        let operator_ = store.lock(identity: "op")
        let now = self.now
        await #expect(throws: LeaseCtlError.self) { try await ReleaseCommand.release(operator_, force: false, now: { now }) }
        let outcome = try await ReleaseCommand.release(operator_, force: true, now: { now })
        #expect(outcome == .released(holder: "h", transitions: 6))
        let stored = try #require(try await holder.get()).record
        #expect(stored.holderIdentity == "")
        #expect(stored.leaseTransitions == 6)
        #expect(stored.leaseDuration == .seconds(1))
        #expect(try await ReleaseCommand.release(operator_, force: false, now: { now }) == .alreadyFree(transitions: 6))
    }

    @Test func expiredLeaseIsReleasedWithoutForce() async throws {
        let store = InMemoryLockStore(name: "r")
        let lock = store.lock(identity: "op")
        _ = try await lock.create(LeaderElectionRecord(holderIdentity: "h", leaseDuration: .seconds(15), acquireTime: now, renewTime: now, leaseTransitions: 1))
        let later = now.advanced(by: .seconds(20))
        #expect(try await ReleaseCommand.release(lock, force: false, now: { later }) == .released(holder: "h", transitions: 1))
    }

    @Test func corruptRecordIsReplacedOnlyWithForce() async throws {
        let store = InMemoryLockStore(name: "r")
        _ = try await store.lock(identity: "w").create(LeaderElectionRecord(holderIdentity: "", leaseDuration: .seconds(1)))
        store.writeGarbage([0xff])
        let lock = store.lock(identity: "op")
        await #expect(throws: LeaseCtlError.self) { try await ReleaseCommand.release(lock, force: false) }
        #expect(try await ReleaseCommand.release(lock, force: true) == .replacedCorrupt)
        #expect(try await lock.get()?.record.holderIdentity == "")
    }

    @Test func missingRecordIsAnError() async throws {
        let lock = InMemoryLockStore(name: "r").lock(identity: "op")
        await #expect(throws: LeaseCtlError.self) { try await ReleaseCommand.release(lock, force: true) }
    }
}
