import LeaderElection
import Synchronization

/// A ``ResourceLock`` wrapper that counts calls, tracks calls in flight, injects faults and can hide
/// the wrapped lock's change feed.
///
/// The conformance suite wraps every candidate's lock in one, so that it can simulate a store outage
/// at the client boundary for one candidate while the others keep working, and so that tests can
/// assert how many round trips an operation cost.
public final class InstrumentedLock: ResourceLock {
    /// Counts of calls made through the wrapper.
    public struct Counts: Hashable, Sendable {
        /// Calls to `get()`.
        public var gets = 0
        /// Calls to `create(_:)`.
        public var creates = 0
        /// Calls to `update(_:expecting:)`.
        public var updates = 0
        /// Successful `create` and `update` calls.
        public var successfulWrites = 0
        /// ``LockChange/unknown`` elements delivered by `recordChanges()` subscriptions.
        public var unknownChanges = 0
    }

    private struct State {
        var counts = Counts()
        var inFlight = 0
        var failure: LeaderElectionError?
        var onSuccessfulWrite: (@Sendable (LeaderElectionRecord) -> Void)?
    }

    /// The wrapped lock.
    public let base: any ResourceLock
    private let hideChanges: Bool
    private let state = Mutex(State())

    /// Wraps `base`.
    /// - Parameter hideChanges: report no change feed, to exercise the elector's polling/timer path.
    public init(_ base: any ResourceLock, hideChanges: Bool = false) {
        self.base = base
        self.hideChanges = hideChanges
    }

    public var identity: String { base.identity }
    public var description: String { base.description }

    /// Calls so far.
    public var counts: Counts { state.withLock { $0.counts } }
    /// Calls currently executing.
    public var inFlight: Int { state.withLock { $0.inFlight } }

    /// Makes every following call throw `error` (for example ``LeaderElectionError/unavailable(_:file:line:)``)
    /// until cleared with `nil`.
    public func setFailure(_ error: LeaderElectionError?) { state.withLock { $0.failure = error } }

    /// Calls `body` after every successful write, with the record written.
    public func onSuccessfulWrite(_ body: @escaping @Sendable (LeaderElectionRecord) -> Void) {
        state.withLock { $0.onSuccessfulWrite = body }
    }

    private func begin(_ bump: (inout Counts) -> Void) throws {
        try state.withLock { state in
            bump(&state.counts)
            if let failure = state.failure { throw failure }
            state.inFlight += 1
        }
    }

    private func end(written: LeaderElectionRecord?) {
        let hook = state.withLock { state -> (@Sendable (LeaderElectionRecord) -> Void)? in
            state.inFlight -= 1
            if written != nil { state.counts.successfulWrites += 1 }
            return state.onSuccessfulWrite
        }
        if let written { hook?(written) }
    }

    public func get() async throws -> VersionedRecord? {
        try begin { $0.gets += 1 }
        defer { end(written: nil) }
        return try await base.get()
    }

    public func create(_ record: LeaderElectionRecord) async throws -> LockVersion {
        try begin { $0.creates += 1 }
        do {
            let version = try await base.create(record)
            end(written: record)
            return version
        } catch {
            end(written: nil)
            throw error
        }
    }

    public func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion {
        try begin { $0.updates += 1 }
        do {
            let newVersion = try await base.update(record, expecting: version)
            end(written: record)
            return newVersion
        } catch {
            end(written: nil)
            throw error
        }
    }

    public func recordEvent(_ event: LockEvent) async { await base.recordEvent(event) }

    public func changes() -> AsyncStream<Void>? { hideChanges ? nil : base.changes() }

    public func recordChanges() -> AsyncStream<LockChange>? {
        guard !hideChanges, let changes = base.recordChanges() else { return nil }
        // Counted as the consumer takes each element (no buffer of its own: the wrapped feed's buffering decides
        // what is coalesced), so that a count taken while the consumer is idle includes every element it acted on.
        let source = FeedIterator(changes.makeAsyncIterator())
        return AsyncStream(unfolding: { [self] in
            let change = await source.next()
            if change == .unknown { state.withLock { $0.counts.unknownChanges += 1 } }
            return change
        })
    }
}

/// One consumer's iterator over a wrapped feed. `AsyncStream(unfolding:)` calls its producer from one consumer at a
/// time, never concurrently, which is what makes the unchecked `Sendable` sound.
private final class FeedIterator: @unchecked Sendable {
    private var iterator: AsyncStream<LockChange>.Iterator
    init(_ iterator: AsyncStream<LockChange>.Iterator) { self.iterator = iterator }
    func next() async -> LockChange? { await iterator.next() }
}
