import LeaderElection
@testable import LeaderElectionService
import Logging
import ServiceLifecycle
import Synchronization

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// An ordered log of what happened, which tests can await: ``waitFor(_:timeout:_:)`` resumes as soon as
/// an appended event satisfies the condition (no polling), bounded by a real-time timeout.
final class Recorder: Sendable {
    private struct Waiter {
        var id: Int
        var condition: @Sendable ([String]) -> Bool
        var continuation: CheckedContinuation<Void, Never>
    }
    private struct State {
        var events: [String] = []
        var waiters: [Waiter] = []
        var nextID = 0
    }
    private let state = Mutex(State())

    func record(_ event: String) {
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.events.append(event)
            let events = state.events
            let ready = state.waiters.filter { $0.condition(events) }
            state.waiters.removeAll { $0.condition(events) }
            return ready.map(\.continuation)
        }
        for continuation in ready { continuation.resume() }
    }

    var events: [String] { state.withLock { $0.events } }

    func index(of event: String) -> Int? { events.firstIndex(of: event) }

    func count(of event: String) -> Int { events.filter { $0 == event }.count }

    /// Waits until `event` has been recorded.
    func waitFor(_ event: String, timeout: Duration = .seconds(10)) async throws {
        try await waitFor("\"\(event)\"", timeout: timeout) { $0.contains(event) }
    }

    /// Waits until `condition` holds for the recorded events.
    func waitFor(_ what: String, timeout: Duration = .seconds(10), _ condition: @escaping @Sendable ([String]) -> Bool) async throws {
        let id = state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        let satisfied = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let now = self.state.withLock { state -> Bool in
                        if condition(state.events) { return true }
                        state.waiters.append(Waiter(id: id, condition: condition, continuation: continuation))
                        return false
                    }
                    if now { continuation.resume() }
                }
                return true
            }
            group.addTask {
                // A bound on a test that would otherwise hang, not a synchronisation.
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next()!
            if !first {
                let waiter = self.state.withLock { state -> Waiter? in
                    guard let i = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                    return state.waiters.remove(at: i)
                }
                waiter?.continuation.resume()
            }
            group.cancelAll()
            return first
        }
        if !satisfied { throw TestFailure("timed out waiting for \(what); events: \(events)") }
    }
}

/// A gate the test opens; `wait()` ignores cancellation so that work can be held while it drains (the service's own
/// one-way gate).
typealias Latch = Gate

/// Suspends until the current task is cancelled.
func untilCancelled() async {
    let latch = Latch()
    await withTaskCancellationHandler {
        await latch.wait()
    } onCancel: {
        latch.open()
    }
}

/// An ``InMemoryLock`` that records every successful write: `"<who> acquired"`, `"<who> renewed"`,
/// `"<who> released"`.
struct RecordingLock: ResourceLock {
    let base: InMemoryLock
    let recorder: Recorder

    var identity: String { base.identity }
    var description: String { base.description }

    func get() async throws -> VersionedRecord? { try await base.get() }

    func create(_ record: LeaderElectionRecord) async throws -> LockVersion {
        let version = try await base.create(record)
        recorder.record("\(identity) acquired")
        return version
    }

    func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion {
        let previous = try await base.get()?.record
        let newVersion = try await base.update(record, expecting: version)
        if record.holderIdentity.isEmpty {
            recorder.record("\(identity) released")
        } else if previous?.holderIdentity == record.holderIdentity {
            recorder.record("\(identity) renewed")
        } else {
            recorder.record("\(identity) acquired")
        }
        return newVersion
    }

    func changes() -> AsyncStream<Void>? { base.changes() }
}

/// Leader work that records `"<name> started <token>"`, runs until cancelled, then records
/// `"<name> cancelled <token>"`, waits for `drain` (when given), and records `"<name> stopped <token>"`.
func recordingWork(_ name: String, _ recorder: Recorder, drain: Latch? = nil) -> @Sendable (LeadershipTerm?) async throws -> Void {
    { term in
        let token = term.map { String($0.fencingToken) } ?? "none"
        recorder.record("\(name) started \(token)")
        await untilCancelled()
        recorder.record("\(name) cancelled \(token)")
        await drain?.wait()
        recorder.record("\(name) stopped \(token)")
    }
}

/// The holder stored in `store`, or `nil` when there is no record.
func holder(of store: InMemoryLockStore) async throws -> String? {
    try await store.lock(identity: "observer").get()?.record.holderIdentity
}

/// Makes another candidate hold the record (as if it had taken over an expired lease).
func steal(_ store: InMemoryLockStore, as thief: String) async throws {
    let lock = store.lock(identity: thief)
    guard let current = try await lock.get() else { throw TestFailure("no record to steal") }
    var record = current.record
    record.holderIdentity = thief
    record.leaseTransitions += 1
    _ = try await lock.update(record, expecting: current.version)
}

/// Makes `holder` release the record (empty holder), as the elector does.
func release(_ store: InMemoryLockStore, as holder: String) async throws {
    let lock = store.lock(identity: holder)
    guard let current = try await lock.get() else { throw TestFailure("no record to release") }
    var record = current.record
    record.holderIdentity = ""
    _ = try await lock.update(record, expecting: current.version)
}

let quietLogger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
