import LeaderElection
import Synchronization

/// A total order of observations across candidates (happens-before within this process).
final class Sequencer: Sendable {
    private let counter = Mutex(0)
    func next() -> Int { counter.withLock { $0 += 1; return $0 } }
}

/// One leadership interval of one candidate, stamped on the manual clock and the global sequence.
struct LeadershipInterval: Sendable {
    var identity: String
    var token: Int
    var startedAt: ManualClock.Instant
    var startSeq: Int
    var endedAt: ManualClock.Instant?
    var endSeq: Int?
    var term: LeadershipTerm
}

/// A candidate process, simulated in-process: an elector on its own lock instance.
final class Candidate: Sendable {
    let identity: String
    let lock: InstrumentedLock
    let elector: LeaderElector<ManualClock>
    private let state = Mutex<(task: Task<Void, Never>?, running: Bool, lastWrite: ManualClock.Instant?)>((nil, false, nil))

    init(identity: String, lock: InstrumentedLock, elector: LeaderElector<ManualClock>) {
        self.identity = identity
        self.lock = lock
        self.elector = elector
    }

    var isRunning: Bool { state.withLock { $0.running } }
    var lastSuccessfulWrite: ManualClock.Instant? { state.withLock { $0.lastWrite } }
    func noteWrite(_ at: ManualClock.Instant) { state.withLock { $0.lastWrite = at } }

    func start(_ body: @escaping @Sendable () async -> Void) {
        state.withLock { state in
            state.running = true
            state.task = Task {
                await body()
                self.state.withLock { $0.running = false }
            }
        }
    }

    /// Cancels the candidate's election and waits for it to end.
    func stop() async {
        let task = state.withLock { $0.task }
        task?.cancel()
        await task?.value
    }

    /// Simulates a crash: every store call fails from now on (nothing is released), then the election stops.
    func crash() async {
        lock.setFailure(.unavailable("simulated crash of \(identity)"))
        await stop()
    }
}

/// Runs several ``LeaderElector``s on a ``ManualClock`` over one lock name, advancing simulated time
/// only when every candidate is parked and no store call is in flight.
final class ElectionHarness: Sendable {
    let clock = ManualClock()
    let context: ConformanceContext
    let configuration: LeaderElectionConfiguration
    let sequencer = Sequencer()
    private let candidates = LockedList<Candidate>()
    private let intervals = Mutex<[LeadershipInterval]>([])

    init(_ context: ConformanceContext, configuration: LeaderElectionConfiguration = .init(name: "conformance")) {
        self.context = context
        self.configuration = configuration
        context.onShutdown { [self] in
            for candidate in candidates.all { await candidate.stop() }
        }
    }

    var allIntervals: [LeadershipInterval] { intervals.withLock { $0 } }

    /// Starts a candidate whose leader work runs until cancelled.
    @discardableResult
    func spawn(_ identity: String, wallClock: WallClock = .system, hideChanges: Bool = false) async throws -> Candidate {
        let raw = try await context.lock(identity)
        let lock = InstrumentedLock(raw, hideChanges: hideChanges)
        var configuration = self.configuration
        configuration.wallClock = wallClock
        let elector = try LeaderElector(lock: lock, configuration: configuration, clock: clock, jitter: { 0.5 })
        let candidate = Candidate(identity: identity, lock: lock, elector: elector)
        let clock = self.clock
        lock.onSuccessfulWrite { _ in candidate.noteWrite(clock.now) }
        candidates.append(candidate)
        candidate.start { [self] in
            _ = try? await elector.run { term in
                let index = self.intervals.withLock { intervals -> Int in
                    intervals.append(LeadershipInterval(
                        identity: identity, token: term.fencingToken, startedAt: clock.now,
                        startSeq: self.sequencer.next(), term: term))
                    return intervals.count - 1
                }
                await withTaskCancellationHandler {
                    try? await Task.sleep(for: .seconds(24 * 3600))
                } onCancel: {
                    self.intervals.withLock { intervals in
                        intervals[index].endedAt = clock.now
                        intervals[index].endSeq = self.sequencer.next()
                    }
                }
            }
        }
        return candidate
    }

    var running: [Candidate] { candidates.all.filter(\.isRunning) }

    /// Current leaders according to the electors.
    var leaders: [Candidate] { running.filter { $0.elector.isLeader } }

    /// Waits (real time, bounded) until every running candidate is parked on the clock and no store call
    /// is in flight, twice in a row.
    func quiesce() async throws {
        let real = ContinuousClock()
        let limit = real.now.advanced(by: .seconds(20))
        var stableSamples = 0
        while stableSamples < 2 {
            let running = self.running
            let inFlight = running.reduce(0) { $0 + $1.lock.inFlight }
            if inFlight == 0 && clock.parkedSleepers >= running.count {
                stableSamples += 1
            } else {
                stableSamples = 0
            }
            if real.now > limit {
                throw context.fail("candidates did not settle within 20 s (running \(running.count), parked \(clock.parkedSleepers), in flight \(inFlight))")
            }
            try await Task.sleep(for: .microseconds(300))
        }
    }

    /// Quiesces, checks the safety invariants, then advances simulated time to the next timer.
    func step() async throws {
        try await quiesce()
        try checkSafety()
        clock.advanceToNextDeadline()
    }

    /// Steps until `condition` holds (checked at quiescent points); fails after `maxSteps`.
    func run(until what: String, maxSteps: Int = 200, _ condition: () -> Bool) async throws {
        for _ in 0..<maxSteps {
            try await quiesce()
            try checkSafety()
            if condition() { return }
            clock.advanceToNextDeadline()
        }
        throw context.fail("\(what): not reached within \(maxSteps) timer steps (simulated time \(clock.now))")
    }

    /// Waits in real time (bounded), without advancing simulated time, until `condition` holds.
    func wait(until what: String, timeout: Duration = .seconds(20), _ condition: () -> Bool) async throws {
        let real = ContinuousClock()
        let limit = real.now.advanced(by: timeout)
        while !condition() {
            if real.now > limit { throw context.fail("\(what): not reached within \(timeout) of real time without advancing the clock") }
            try await Task.sleep(for: .microseconds(500))
        }
    }

    /// At most one candidate leads; no two leadership intervals overlap in happens-before order.
    func checkSafety() throws {
        let leaders = self.leaders
        try context.expect(leaders.count <= 1, "\(leaders.count) candidates lead at once: \(leaders.map(\.identity))")
        let sorted = allIntervals.sorted { $0.startSeq < $1.startSeq }
        for (previous, next) in zip(sorted, sorted.dropFirst()) {
            guard let endSeq = previous.endSeq else {
                throw context.fail("\(next.identity) started leading (token \(next.token)) while \(previous.identity)'s work (token \(previous.token)) was still running")
            }
            try context.expect(endSeq < next.startSeq,
                               "\(next.identity) started leading before \(previous.identity)'s work was cancelled")
            try context.expect(next.token > previous.token,
                               "fencing token did not increase: \(previous.identity) had \(previous.token), then \(next.identity) got \(next.token)")
        }
    }
}
