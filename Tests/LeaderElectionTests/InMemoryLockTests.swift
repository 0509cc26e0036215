import LeaderElection
import Testing

/// `InMemoryLock` behaves like a kube-apiserver answering a PUT: a write of identical data keeps the version and
/// notifies nobody; a change of a single microsecond is a new version and a notification.
@Suite(.timeLimit(.minutes(1))) struct InMemoryLockTests {
    private static let record = LeaderElectionRecord(
        holderIdentity: "a", leaseDuration: .seconds(15),
        acquireTime: MicroTime(microsecondsSinceEpoch: 1_764_000_000_000_000),
        renewTime: MicroTime(microsecondsSinceEpoch: 1_764_000_000_000_000), leaseTransitions: 2)

    @Test func anIdenticalWriteKeepsTheVersionAndNotifiesNobody() async throws {
        let store = InMemoryLockStore()
        let lock = store.lock(identity: "a")
        let v1 = try await lock.create(Self.record)
        var feed = try #require(store.lock(identity: "watcher").recordChanges()).makeAsyncIterator()

        let same = try await lock.update(Self.record, expecting: v1)
        #expect(same == v1)
        #expect(try await lock.get() == VersionedRecord(record: Self.record, version: v1))

        var renewed = Self.record
        renewed.renewTime = renewed.renewTime?.advanced(by: .microseconds(1))
        let v2 = try await lock.update(renewed, expecting: v1)
        #expect(v2 != v1)
        // The first element the feed delivers is the 1 µs change: the identical write before it was not reported.
        #expect(await feed.next() == .stored(VersionedRecord(record: renewed, version: v2)))
    }

    @Test func aStaleVersionConflictsEvenForTheStoredRecord() async throws {
        let store = InMemoryLockStore()
        let lock = store.lock(identity: "a")
        let v1 = try await lock.create(Self.record)
        var renewed = Self.record
        renewed.renewTime = renewed.renewTime?.advanced(by: .microseconds(1))
        let v2 = try await lock.update(renewed, expecting: v1)
        await #expect(throws: LeaderElectionError.conflict("memory:default is at version \(v2), not \(v1)", current: v2)) {
            _ = try await lock.update(renewed, expecting: v1)
        }
    }

    @Test func identicalGarbageKeepsItsVersion() async throws {
        let store = InMemoryLockStore()
        _ = try await store.lock(identity: "a").create(Self.record)
        store.writeGarbage(Array("garbage".utf8))
        let first = await #expect(throws: LeaderElectionError.self) { _ = try await store.lock(identity: "a").get() }
        store.writeGarbage(Array("garbage".utf8))
        let second = await #expect(throws: LeaderElectionError.self) { _ = try await store.lock(identity: "a").get() }
        #expect(first?.version != nil && first?.version == second?.version)
    }

    /// A consumer cancelled while another task writes: the write yields to the consumer under the store's lock while
    /// the runtime, cancelling the consumer, runs the stream's termination; the two must not wait for each other.
    @Test func consumersCancelledDuringWritesDoNotDeadlock() async throws {
        let store = InMemoryLockStore()
        let writer = store.lock(identity: "a")
        var version = try await writer.create(Self.record)
        var record = Self.record
        for _ in 0..<300 {
            let feed = try #require(store.lock(identity: "watcher").recordChanges())
            let consumer = Task { for await _ in feed {} }
            record.renewTime = record.renewTime?.advanced(by: .microseconds(1))
            let next = record
            let expected = version
            async let written = writer.update(next, expecting: expected)
            consumer.cancel()
            version = try await written
            await consumer.value
        }
        #expect(try await writer.get()?.record == record)
    }
}
