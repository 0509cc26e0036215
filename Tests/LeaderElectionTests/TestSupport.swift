import LeaderElection
import LockConformance
import Synchronization

/// A test lock wrapping another: `identity`, `get()`, `create(_:)` and `update(_:expecting:)` go to `base` unless the
/// wrapper declares its own. The change feeds are not forwarded here: each wrapper says which feed it offers.
protocol ForwardingLock: ResourceLock {
    var base: any ResourceLock { get }
}

extension ForwardingLock {
    var identity: String { base.identity }
    func get() async throws -> VersionedRecord? { try await base.get() }
    func create(_ record: LeaderElectionRecord) async throws -> LockVersion { try await base.create(record) }
    func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion {
        try await base.update(record, expecting: version)
    }
}

/// Collects elector events.
final class EventLog: Sendable {
    private let box = LockedEvents()
    private let task: Task<Void, Never>

    init(_ stream: AsyncStream<LeaderElectionEvent>) {
        let box = self.box
        self.task = Task { for await event in stream { box.append(event) } }
    }

    var all: [LeaderElectionEvent] { box.all }
    func cancel() { task.cancel() }

    /// Waits (bounded, real time) until `condition` holds for the collected events.
    func wait(for what: String, timeout: Duration = .seconds(10), _ condition: ([LeaderElectionEvent]) -> Bool) async throws {
        let real = ContinuousClock()
        let limit = real.now.advanced(by: timeout)
        while !condition(all) {
            if real.now > limit { throw TestFailure("timed out waiting for \(what); events: \(all)") }
            try await Task.sleep(for: .microseconds(300))
        }
    }
}

final class LockedEvents: Sendable {
    private let items = Mutex<[LeaderElectionEvent]>([])
    func append(_ e: LeaderElectionEvent) { items.withLock { $0.append(e) } }
    var all: [LeaderElectionEvent] { items.withLock { $0 } }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Waits until `parked` tasks sleep on `clock` and none of `locks` has a call in flight.
func settle(_ clock: ManualClock, parked: Int, locks: [InstrumentedLock]) async throws {
    let real = ContinuousClock()
    let limit = real.now.advanced(by: .seconds(10))
    var stable = 0
    while stable < 2 {
        if clock.parkedSleepers >= parked && locks.allSatisfy({ $0.inFlight == 0 }) { stable += 1 } else { stable = 0 }
        if real.now > limit { throw TestFailure("did not settle: parked \(clock.parkedSleepers)/\(parked)") }
        try await Task.sleep(for: .microseconds(300))
    }
}

/// Waits (bounded, real time) until `condition` holds.
func eventually(_ what: String, timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    let real = ContinuousClock()
    let limit = real.now.advanced(by: timeout)
    while !condition() {
        if real.now > limit { throw TestFailure("timed out waiting for \(what)") }
        try await Task.sleep(for: .microseconds(300))
    }
}

/// A flag and instant set from a cancellation handler.
final class Stamp: Sendable {
    private let value = Mutex<ManualClock.Instant?>(nil)
    func set(_ instant: ManualClock.Instant) { value.withLock { if $0 == nil { $0 = instant } } }
    var instant: ManualClock.Instant? { value.withLock { $0 } }
}

/// Leader work that runs until cancelled, stamping when it started and when it stopped.
func waitUntilCancelled(_ clock: ManualClock, started: Stamp, stopped: Stamp) -> @Sendable (LeadershipTerm) async throws -> Void {
    { _ in
        started.set(clock.now)
        await withTaskCancellationHandler {
            try? await Task.sleep(for: .seconds(24 * 3600))
        } onCancel: {}
        stopped.set(clock.now)
    }
}

let fixedJitter: @Sendable () -> Double = { 0.5 }
