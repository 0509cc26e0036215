import Synchronization

/// The reference implementation of ``ResourceLock``: one record held in process memory.
///
/// Several ``InMemoryLock`` values created from the same store (one per candidate identity) contend
/// for the same record, so it is useful for unit tests and for electing among tasks of one process.
/// It implements the contract exactly, including a change feed and corrupt-data handling, and passes
/// the full `LockConformance` suite.
///
/// It is never more lenient than the real stores: like a kube-apiserver answering a PUT that changes nothing,
/// a write that stores exactly what is already stored keeps the version and notifies nobody (a stale version
/// still conflicts first). Code that must be seen by others has to change the record.
public final class InMemoryLockStore: Sendable {
    private enum Stored: Sendable, Equatable {
        case record(LeaderElectionRecord)
        case garbage([UInt8])
    }

    private struct State: Sendable {
        var stored: Stored?
        var generation: UInt64 = 0
        var nextSubscriber = 0
        /// Every `changes()` and `recordChanges()` subscriber, given each write's change; `false` once its stream
        /// has ended (it is then dropped).
        var subscribers: [Int: @Sendable (LockChange) -> Bool] = [:]
    }

    private let state = Mutex(State())
    /// A name for descriptions, such as `memory:my-controller`.
    public let name: String

    /// Creates an empty store.
    public init(name: String = "default") { self.name = name }

    /// A lock on this store writing as `identity`.
    public func lock(identity: String) -> InMemoryLock { InMemoryLock(store: self, identity: identity) }

    /// Replaces the stored data with bytes that do not decode, to exercise corrupt-record handling.
    ///
    /// - Parameter bytes: the raw bytes to store instead of a record.
    public func writeGarbage(_ bytes: [UInt8]) {
        write { state in state.stored = .garbage(bytes) }
    }

    /// Deletes the record.
    public func delete() {
        write { state in state.stored = nil }
    }

    fileprivate func get() throws -> VersionedRecord? {
        try state.withLock { state in
            switch state.stored {
            case nil: return nil
            case .record(let record): return VersionedRecord(record: record, version: LockVersion(state.generation))
            case .garbage(let bytes):
                throw LeaderElectionError.corruptRecord(
                    "memory:\(name) holds \(bytes.count) bytes that are not a record", version: LockVersion(state.generation))
            }
        }
    }

    fileprivate func create(_ record: LeaderElectionRecord) throws -> LockVersion {
        try write { state in
            guard state.stored == nil else {
                throw LeaderElectionError.alreadyExists("memory:\(name) already has a record")
            }
            state.stored = .record(record)
        }
    }

    fileprivate func update(_ record: LeaderElectionRecord, expecting version: LockVersion) throws -> LockVersion {
        try write { state in
            guard state.stored != nil else { throw LeaderElectionError.notFound("memory:\(name) has no record") }
            guard LockVersion(state.generation) == version else {
                throw LeaderElectionError.conflict(
                    "memory:\(name) is at version \(state.generation), not \(version)", current: LockVersion(state.generation))
            }
            state.stored = .record(record)
        }
    }

    /// A stream of `transform(change)` for every later write.
    ///
    /// A subscription that ended is dropped at the next write, not from its `onTermination`: that handler runs
    /// while the Swift runtime holds the cancelled consumer task's status lock, and a write yielding to that task
    /// under the store's lock needs the same status lock — taking the store's lock there could deadlock.
    fileprivate func subscribe<Element: Sendable>(_ transform: @escaping @Sendable (LockChange) -> Element) -> AsyncStream<Element> {
        let (stream, continuation) = AsyncStream.makeStream(of: Element.self, bufferingPolicy: .bufferingNewest(1))
        state.withLock { state in
            state.subscribers[state.nextSubscriber] = { change in
                if case .terminated = continuation.yield(transform(change)) { return false }
                return true
            }
            state.nextSubscriber += 1
        }
        return stream
    }

    /// Applies `body`; a write that leaves the stored data as it was returns the current version and notifies
    /// nobody, as a real store's no-op write does.
    @discardableResult
    private func write(_ body: (inout State) throws -> Void) rethrows -> LockVersion {
        try state.withLock { state in
            let before = state.stored
            try body(&state)
            if state.stored == before { return LockVersion(state.generation) }
            state.generation += 1
            let version = LockVersion(state.generation)
            let change: LockChange
            switch state.stored {
            case .record(let record)?: change = .stored(VersionedRecord(record: record, version: version))
            case .garbage?: change = .unknown
            case nil: change = .deleted
            }
            // Yielded under the lock, so every subscriber sees the writes in order.
            for (id, deliver) in state.subscribers where !deliver(change) { state.subscribers[id] = nil }
            return version
        }
    }
}

/// A ``ResourceLock`` on an ``InMemoryLockStore``, writing as one identity.
public struct InMemoryLock: ResourceLock {
    /// The store shared by all candidates.
    public let store: InMemoryLockStore
    public let identity: String

    /// Creates a lock on `store` for `identity`.
    public init(store: InMemoryLockStore, identity: String) {
        self.store = store
        self.identity = identity
    }

    public var description: String { "memory:\(store.name)" }

    public func get() async throws -> VersionedRecord? { try store.get() }

    public func create(_ record: LeaderElectionRecord) async throws -> LockVersion { try store.create(record) }

    public func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion {
        try store.update(record, expecting: version)
    }

    public func changes() -> AsyncStream<Void>? { store.subscribe { _ in () } }

    public func recordChanges() -> AsyncStream<LockChange>? { store.subscribe { $0 } }
}
