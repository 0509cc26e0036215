import Foundation
import LeaderElection
import LockConformance
import Synchronization
import Testing

@testable import FileLock

@Suite("FileLock record feed")
struct FileLockRecordFeedTests {
    /// How the leader stops in ``followersOfALiveFileLeaseReadNothingWhileTheLeaderRenews(_:)``.
    enum Ending: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// Cancelled with `releaseOnCancel`: it writes an empty holder.
        case release
        /// Stopped without releasing, then its liveness descriptor is closed, as the kernel does when its process dies.
        case crash
        var testDescription: String { rawValue }
    }

    /// The FileLock counterpart of the core's `followersOfARecordFeedReadNothingWhileTheLeaderRenews`, with real
    /// locks on one file: a follower on a second `FileLock` makes no `get()` at all while the leader renews (the
    /// feed delivers each renewal's record), and still takes over when the leader stops — at once, well before the
    /// lease could expire, whether the leader released or died.
    @Test(
        "followers of a live file lease read nothing while the leader renews, and take over when it stops",
        .timeLimit(.minutes(3)), arguments: Ending.allCases)
    func followersOfALiveFileLeaseReadNothingWhileTheLeaderRenews(_ ending: Ending) async throws {
        try await withTemporaryDirectory { dir in
            // A long lease with fast renewals: many renewals per lease, and a takeover "before the lease could have
            // expired" has seconds of slack on a loaded machine.
            let config = LeaderElectionConfiguration(
                name: "feed", leaseDuration: .seconds(10), renewDeadline: .seconds(6), retryPeriod: .milliseconds(100),
                releaseOnCancel: ending == .release)
            let fileA = try FileLock(directory: dir, name: "app", identity: "a")
            let a = InstrumentedLock(fileA)
            let lastWrite = Mutex<ContinuousClock.Instant?>(nil)
            let (writes, wrote) = AsyncStream.makeStream(of: Void.self)
            a.onSuccessfulWrite { _ in
                lastWrite.withLock { $0 = .now }
                wrote.yield()
            }
            let leaderWrites = ChangeRecorder(writes)
            let b = FeedCountingLock(try FileLock(directory: dir, name: "app", identity: "b"))

            let leader = try LeaderElector(lock: a, configuration: config)
            let follower = try LeaderElector(lock: b, configuration: config)
            let aLeads = signal(leader.events()) { if case .startedLeading = $0 { true } else { false } }
            let bFollowsA = signal(follower.events()) { $0 == .newLeader("a") }
            let bLeads = signal(follower.events()) { if case .startedLeading = $0 { true } else { false } }

            let runA = Task { try await leader.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
            defer { runA.cancel() }
            try #require(await aLeads.wait(forCountAbove: 0, timeout: .seconds(30)), "a did not lead")
            let runB = Task { try await follower.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
            defer { runB.cancel() }
            try #require(await bFollowsA.wait(forCountAbove: 0, timeout: .seconds(30)), "b did not see a lead")
            // The elector asks its feed for the next element only after applying the previous one: once three records
            // were delivered, it has applied a stored record (its feed is live) at least two renewals ago.
            #expect(
                await b.storedDeliveries.wait(forCountAbove: 2, timeout: .seconds(30)),
                "the follower's recordChanges() delivered \(b.storedDeliveries.count) stored records in 30 s of renewals")

            let readsBefore = b.gets
            let writesBefore = leaderWrites.count
            let deliveriesBefore = b.storedDeliveries.count
            #expect(
                await leaderWrites.wait(forCountAbove: writesBefore + 19, timeout: .seconds(60)),
                "the leader renewed only \(leaderWrites.count - writesBefore) times in 60 s")
            let renewals = leaderWrites.count - writesBefore
            #expect(b.gets == readsBefore, "the follower read \(b.gets - readsBefore) times over \(renewals) renewals")
            #expect(b.storedDeliveries.count > deliveriesBefore, "no renewal was delivered to the follower as a record")
            #expect(leader.isLeader && !follower.isLeader && follower.currentLeader == "a")

            let stopped = ContinuousClock.now
            runA.cancel()
            _ = try await runA.value
            if ending == .crash {
                let left = try #require(try await fileA.get())
                #expect(left.record.holderIdentity == "a", "a left \(left.record) (it must not have released)")
                fileA.releaseLivenessForTesting()
            }
            try #require(await bLeads.wait(forCountAbove: 0, timeout: .seconds(60)), "b did not take over within 60 s")
            let tookOver = ContinuousClock.now
            // Expiry would come one lease duration after the last write b was told about: the takeover must not wait
            // for it (a crash is detected through a's liveness file, a release through its empty holder).
            let last = try #require(lastWrite.withLock { $0 })
            #expect(last.duration(to: tookOver) < config.leaseDuration, "b took over \(last.duration(to: tookOver)) after a's last write")
            #expect(stopped.duration(to: tookOver) < config.leaseDuration)
            #expect(follower.isLeader)
            let record = try #require(try await fileA.get())
            #expect(record.record.holderIdentity == "b")
            #expect(record.record.leaseTransitions == 1)
            runB.cancel()
            _ = try await runB.value
        }
    }

    @Test("recordChanges() reports another instance's writes as stored records, deletes as deleted, garbage as unknown")
    func recordFeedReportsWhatIsStored() async throws {
        try await withTemporaryDirectory { dir in
            let watcher = try FileLock(directory: dir, name: "app", identity: "w")
            let writer = try FileLock(directory: dir, name: "app", identity: "x")
            let feed = ChangeLog(try #require(watcher.recordChanges()))
            defer { feed.stop() }

            let v1 = try await writer.create(sampleRecord(holder: ""))
            #expect(await feed.waitFor { $0 == .stored(VersionedRecord(record: sampleRecord(holder: ""), version: v1)) })
            let v2 = try await writer.update(sampleRecord(holder: "x", transitions: 1), expecting: v1)
            #expect(await feed.waitFor { $0 == .stored(VersionedRecord(record: sampleRecord(holder: "x", transitions: 1), version: v2)) })
            try writer.writeRaw(Array("{ not a record".utf8))
            #expect(await feed.waitFor { $0 == .unknown })
            try writer.delete()
            #expect(await feed.waitFor { $0 == .deleted })
            for case .stored(let read) in feed.all {
                #expect([v1, v2].contains(read.version), "reported a version that was never written: \(read)")
            }
        }
    }

    @Test("recordChanges() reports a holder's death as unknown, and the read it prompts finds the holder gone")
    func recordFeedReportsLivenessAsUnknown() async throws {
        try await withTemporaryDirectory { dir in
            let holder = try FileLock(directory: dir, name: "app", identity: "h")
            let watcher = try FileLock(directory: dir, name: "app", identity: "w")
            _ = try await holder.create(sampleRecord(holder: "h"))
            let feed = ChangeLog(try #require(watcher.recordChanges()))
            defer { feed.stop() }
            let seen = feed.all.count
            holder.releaseLivenessForTesting()
            #expect(await feed.waitFor(after: seen) { $0 == .unknown })
            #expect(!feed.all.dropFirst(seen).contains { if case .stored(let read) = $0 { read.record.holderIdentity == "h" } else { false } },
                    "a stored record of the dead holder would only move a follower's expiry timer")
            #expect(try await watcher.get()?.holderIsKnownGone == true)
        }
    }
}

/// A ``ChangeRecorder`` counting the events of `events` that match.
private func signal(
    _ events: AsyncStream<LeaderElectionEvent>, _ match: @escaping @Sendable (LeaderElectionEvent) -> Bool
) -> ChangeRecorder {
    let (stream, continuation) = AsyncStream.makeStream(of: Void.self)
    Task {
        for await event in events where match(event) { continuation.yield() }
        continuation.finish()
    }
    return ChangeRecorder(stream)
}

/// A FileLock that counts `get()` calls and the ``LockChange/stored(_:)`` elements its ``recordChanges()`` feed has
/// handed to the consumer (counted as the consumer receives them, not when the feed produces them).
final class FeedCountingLock: ResourceLock {
    let base: FileLock
    private let getCount = Mutex(0)
    private let delivered: AsyncStream<Void>.Continuation
    /// Stored records handed to the consumer of ``recordChanges()``.
    let storedDeliveries: ChangeRecorder

    init(_ base: FileLock) {
        self.base = base
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self)
        delivered = continuation
        storedDeliveries = ChangeRecorder(stream)
    }

    var identity: String { base.identity }
    var description: String { base.description }
    /// Calls to `get()` so far.
    var gets: Int { getCount.withLock { $0 } }

    func get() async throws -> VersionedRecord? {
        getCount.withLock { $0 += 1 }
        return try await base.get()
    }

    func create(_ record: LeaderElectionRecord) async throws -> LockVersion { try await base.create(record) }

    func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion {
        try await base.update(record, expecting: version)
    }

    func changes() -> AsyncStream<Void>? { base.changes() }

    func recordChanges() -> AsyncStream<LockChange>? {
        guard let feed = base.recordChanges() else { return nil }
        let box = IteratorBox(feed.makeAsyncIterator())
        let delivered = self.delivered
        // `unfolding` runs when the consumer asks for an element and hands it over directly.
        return AsyncStream {
            let next = await box.next()
            if case .stored = next { delivered.yield() }
            return next
        }
    }
}

/// One consumer's iterator, used only from that consumer's sequential `next()` calls.
private final class IteratorBox: @unchecked Sendable {
    private var iterator: AsyncStream<LockChange>.Iterator
    init(_ iterator: AsyncStream<LockChange>.Iterator) { self.iterator = iterator }
    func next() async -> LockChange? { await iterator.next() }
}

/// Every element of a ``LockChange`` feed, consumed by a background task.
final class ChangeLog: Sendable {
    private final class Elements: Sendable {
        let list = Mutex<[LockChange]>([])
    }
    private let elements: Elements
    private let recorder: ChangeRecorder
    private let consumer: Task<Void, Never>

    init(_ feed: AsyncStream<LockChange>) {
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self)
        recorder = ChangeRecorder(stream)
        let elements = Elements()
        self.elements = elements
        consumer = Task {
            for await change in feed {
                elements.list.withLock { $0.append(change) }
                continuation.yield()
            }
            continuation.finish()
        }
    }

    deinit { consumer.cancel() }

    func stop() { consumer.cancel() }

    var all: [LockChange] { elements.list.withLock { $0 } }

    /// `true` once an element after the first `after` matches, re-checked on each element; `false` after `timeout`.
    func waitFor(after: Int = 0, timeout: Duration = .seconds(10), _ match: (LockChange) -> Bool) async -> Bool {
        await recorder.waitUntil(timeout: timeout) { all.dropFirst(after).contains(where: match) }
    }
}
