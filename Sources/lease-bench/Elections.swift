#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Kubernetes
import KubernetesLock
import LeaderElection
import Synchronization

// The machinery of the elector scenarios (renewals, hand-off, takeover): candidates in this process, each with
// its own client and connections, a log of their events timestamped as they arrive, and a lock wrapper that
// times writes and can simulate a crash; and crash takeovers from a leader in a separate process.

// MARK: - Results

/// One leadership change.
struct TransitionSample: Codable, Sendable {
    var index: Int
    /// The identity that led before.
    var from: String
    /// The identity that started leading.
    var to: String
    /// The measured time, ms (see ``TransitionSummary/measuredFrom``).
    var millis: Double
    /// Takeovers: ``millis`` − the lease duration, i.e. how long after the lease expired the follower led, ms.
    var pastLeaseExpiryMillis: Double?
    /// Takeovers: from the *start* of the crashed leader's last successful renewal, ms (the leader's own
    /// guarantee counts from there, so this must be at least the lease duration).
    var sinceLastRenewalStartMillis: Double?
    /// How the previous leader's term ended (`released`, `lost`, `cancelled`).
    var previousLeaderStopReason: String
    /// When the previous leader's stoppedLeading arrived, relative to the new leader's startedLeading, ms
    /// (negative: before).
    var previousLeaderStoppedRelativeMillis: Double
    /// Where the time went: when each step ended, ms from the sample's start — for takeovers, ms past the lease
    /// expiry (`releaseStarted` / `releaseWritten`: the old leader's successful release update was sent (its
    /// work had stopped) / returned; `acquireStarted` / `acquireWritten`:
    /// the new leader's winning update was sent / returned; the rest, up to ``millis``, is recording the
    /// Event and delivering startedLeading).
    var phases: [String: Double] = [:]
}

/// Leadership hand-off or takeover times over all samples of a scenario (one pool, no rounds).
struct TransitionSummary: Codable, Sendable {
    /// Candidates on the Lease, each with its own KubernetesClient.
    var electors: Int
    var leaseDurationSeconds: Double
    var renewDeadlineSeconds: Double
    var retryPeriodSeconds: Double
    /// Where each sample starts and ends.
    var measuredFrom: String
    var measuredTo: String
    var samples: [TransitionSample]
    /// Nearest-rank percentiles over all samples, **ms** (with n samples p99 is the ⌈0.99·n⌉-th: the largest
    /// for n ≤ 100).
    var millis: Percentiles
    /// Takeovers: the percentiles of the time past lease expiry, ms.
    var pastLeaseExpiryMillis: Percentiles?
    /// The goal, in words, and whether it is met (informational: goals never fail the run).
    var goal: String
    var withinGoal: Bool
    /// The median of each phase over the samples that have it, ms from the sample's start.
    var medianPhasesMillis: [String: Double] = [:]

    /// Fills ``medianPhasesMillis`` from the samples.
    mutating func summarizePhases() {
        let names = Set(samples.flatMap(\.phases.keys))
        medianPhasesMillis = Dictionary(uniqueKeysWithValues: names.map { name in (name, median(samples.compactMap { $0.phases[name] })) })
    }
}

// MARK: - Instrumented lock

/// A ``ResourceLock`` that forwards to another one, times its successful writes, and can "crash": after
/// ``crash()`` every call fails at once with ``LeaderElectionError/Code/unavailable`` and no event is
/// recorded — the holder can neither renew nor release, as if its process had died or lost the network.
final class InstrumentedLock: ResourceLock {
    let inner: any ResourceLock
    var identity: String { inner.identity }
    var description: String { inner.description }

    /// Called after every successful `update`, before it returns, with its start and end (monotonic ns).
    typealias UpdateHook = @Sendable (_ start: UInt64, _ end: UInt64) -> Void

    private struct State {
        var crashed = false
        var successfulUpdates = 0
        var failedUpdates = 0
        /// Every call made through this lock (attempted), by kind.
        var gets = 0
        var creates = 0
        var failedCreates = 0
        var updates = 0
        /// Start and end (monotonic ns) of the last successful update or create.
        var lastWrite: (start: UInt64, end: UInt64)?
        /// Start and end of the last successful update that wrote an empty holder (a release).
        var lastRelease: (start: UInt64, end: UInt64)?
        /// The version the last successful update replaced (its `expecting`).
        var lastUpdateExpected: LockVersion?
        var hook: UpdateHook?
        /// Count what the record change feed delivers (set before the elector starts; off by default so the
        /// hand-off and takeover scenarios get the backend's feed without an extra forwarding task).
        var countFeed = false
        var feedStored = 0
        var feedDeleted = 0
        var feedUnknown = 0
    }
    private let state = Mutex(State())

    init(_ inner: any ResourceLock) { self.inner = inner }

    /// From now on every call fails (calls already in flight complete).
    func crash() { state.withLock { $0.crashed = true } }
    /// Calls succeed again.
    func recover() { state.withLock { $0.crashed = false } }
    func setHook(_ hook: UpdateHook?) { state.withLock { $0.hook = hook } }

    /// From now on, `recordChanges()` counts its deliveries (call before the elector starts).
    func countFeedDeliveries() { state.withLock { $0.countFeed = true } }
    /// Change-feed deliveries so far by kind (only with ``countFeedDeliveries()``).
    var feedDeliveries: (stored: Int, deleted: Int, unknown: Int) {
        state.withLock { ($0.feedStored, $0.feedDeleted, $0.feedUnknown) }
    }
    var successfulUpdates: Int { state.withLock { $0.successfulUpdates } }
    /// get, create and update calls made through this lock so far (attempted, whether they succeeded or not).
    var callCounts: (gets: Int, creates: Int, updates: Int) { state.withLock { ($0.gets, $0.creates, $0.updates) } }
    var failedCreates: Int { state.withLock { $0.failedCreates } }
    var totalCalls: Int { state.withLock { $0.gets + $0.creates + $0.updates } }
    var failedUpdates: Int { state.withLock { $0.failedUpdates } }
    var lastWrite: (start: UInt64, end: UInt64)? { state.withLock { $0.lastWrite } }
    var lastRelease: (start: UInt64, end: UInt64)? { state.withLock { $0.lastRelease } }
    /// The version the last successful update replaced (the `expecting` it was called with).
    var lastUpdateExpected: LockVersion? { state.withLock { $0.lastUpdateExpected } }

    private func checkAlive() throws {
        if state.withLock({ $0.crashed }) {
            throw LeaderElectionError.unavailable("\(inner): simulated crash (lease-bench)")
        }
    }

    func get() async throws -> VersionedRecord? {
        try checkAlive()
        state.withLock { $0.gets += 1 }
        return try await inner.get()
    }

    func create(_ record: LeaderElectionRecord) async throws -> LockVersion {
        try checkAlive()
        state.withLock { $0.creates += 1 }
        let start = monotonicNanos()
        let version: LockVersion
        do {
            version = try await inner.create(record)
        } catch {
            state.withLock { $0.failedCreates += 1 }
            throw error
        }
        let end = monotonicNanos()
        state.withLock { $0.lastWrite = (start, end) }
        return version
    }

    func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion {
        try checkAlive()
        state.withLock { $0.updates += 1 }
        let start = monotonicNanos()
        let newVersion: LockVersion
        do {
            newVersion = try await inner.update(record, expecting: version)
        } catch {
            state.withLock { $0.failedUpdates += 1 }
            throw error
        }
        let end = monotonicNanos()
        let hook = state.withLock { state -> UpdateHook? in
            state.successfulUpdates += 1
            state.lastWrite = (start, end)
            state.lastUpdateExpected = version
            if record.holderIdentity.isEmpty { state.lastRelease = (start, end) }
            return state.hook
        }
        hook?(start, end)
        return newVersion
    }

    func recordEvent(_ event: LockEvent) async {
        guard !state.withLock({ $0.crashed }) else { return }
        await inner.recordEvent(event)
    }

    func changes() -> AsyncStream<Void>? { inner.changes() }

    func recordChanges() -> AsyncStream<LockChange>? {
        guard let upstream = inner.recordChanges() else { return nil }
        guard state.withLock({ $0.countFeed }) else { return upstream }
        let (stream, continuation) = AsyncStream.makeStream(of: LockChange.self, bufferingPolicy: .bufferingNewest(1))
        let forward = Task { [self] in
            for await change in upstream {
                self.state.withLock { state in
                    switch change {
                    case .stored: state.feedStored += 1
                    case .deleted: state.feedDeleted += 1
                    case .unknown: state.feedUnknown += 1
                    }
                }
                continuation.yield(change)
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in forward.cancel() }
        return stream
    }
}

// MARK: - Event log

/// Every event of every candidate, timestamped (CLOCK_MONOTONIC) when the candidate's subscriber receives it.
final class ElectionLog: Sendable {
    struct Entry: Sendable {
        var seq: Int
        var identity: String
        var event: LeaderElectionEvent
        var nanos: UInt64

        var isStarted: Bool { if case .startedLeading = event { true } else { false } }
        var stopReason: StopReason? { if case .stoppedLeading(_, let reason) = event { reason } else { nil } }
    }

    private let entries = Mutex<[Entry]>([])
    private let continuation: AsyncStream<Void>.Continuation
    /// Yields after every new entry (coalesced), and on ``poke()``.
    let signals: AsyncStream<Void>

    init() {
        (signals, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    func record(_ identity: String, _ event: LeaderElectionEvent) {
        let now = monotonicNanos()
        entries.withLock { $0.append(Entry(seq: $0.count, identity: identity, event: event, nanos: now)) }
        continuation.yield()
    }

    func poke() { continuation.yield() }

    /// The sequence number the next entry will get.
    var count: Int { entries.withLock { $0.count } }

    func first(from seq: Int, where predicate: (Entry) -> Bool) -> Entry? {
        entries.withLock { entries in entries[min(seq, entries.count)...].first(where: predicate) }
    }
}

/// Waits for entries of an ``ElectionLog``; owned by one task.
struct ElectionWaiter {
    let log: ElectionLog
    private var iterator: AsyncStream<Void>.Iterator

    init(_ log: ElectionLog) {
        self.log = log
        iterator = log.signals.makeAsyncIterator()
    }

    /// The first entry from `seq` on that matches, waiting up to `timeout` for it.
    mutating func first(from seq: Int, timeout: Duration, _ what: String, where predicate: (ElectionLog.Entry) -> Bool) async throws -> ElectionLog.Entry {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        let log = self.log
        let watchdog = Task {
            try? await Task.sleep(until: deadline, clock: .continuous)
            log.poke()
        }
        defer { watchdog.cancel() }
        while true {
            if let entry = log.first(from: seq, where: predicate) { return entry }
            if ContinuousClock.now >= deadline { throw BenchError("timed out after \(timeout) waiting for \(what)") }
            try Task.checkCancellation()
            _ = await iterator.next()
        }
    }
}

/// Polls `condition` every 5 ms until it holds, up to `timeout` (for harness states that have no event).
func waitUntil(timeout: Duration, _ what: String, _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while !condition() {
        if ContinuousClock.now >= deadline { throw BenchError("timed out after \(timeout) waiting until \(what)") }
        try await Task.sleep(for: .milliseconds(5))
    }
}

// MARK: - Candidates

/// One candidate, as a separate process would be: its own client (own connections), a lock (wrapped in an
/// ``InstrumentedLock``) and a `LeaderElector` on `ContinuousClock`, whose events go to the shared log. Its
/// leader work just sleeps until cancelled.
final class Candidate: Sendable {
    let identity: String
    let lock: InstrumentedLock
    let elector: LeaderElector<ContinuousClock>
    private let closeConnections: @Sendable () async -> Void
    private let running = Mutex<Task<Void, Never>?>(nil)
    private let subscriber: Task<Void, Never>

    /// A candidate on any lock; `close` closes its connections at ``shutdown()``.
    init(identity: String, lock inner: any ResourceLock, configuration: LeaderElectionConfiguration, log: ElectionLog,
         close: @escaping @Sendable () async -> Void) throws {
        lock = InstrumentedLock(inner)
        do {
            elector = try LeaderElector(lock: lock, configuration: configuration, clock: ContinuousClock())
        } catch {
            Task { await close() }
            throw error
        }
        self.identity = identity
        closeConnections = close
        let events = elector.events()
        subscriber = Task {
            for await event in events { log.record(identity, event) }
        }
    }

    /// A candidate on a `KubernetesLock` with its own `KubernetesClient` (own connection pool).
    convenience init(identity: String, leaseName: String, fixture: KubernetesFixture, configuration: LeaderElectionConfiguration,
                     log: ElectionLog) throws {
        try KubernetesLock.validate(configuration)
        let client = try fixture.makeClient(
            requestTimeout: KubernetesConfiguration.requestTimeout(forRenewDeadline: configuration.renewDeadline))
        let kubernetesLock: KubernetesLock
        do {
            kubernetesLock = try KubernetesLock(
                client: client, configuration: .init(name: leaseName, namespace: fixture.namespace), identity: identity)
        } catch {
            Task { try? await client.shutdown() }
            throw error
        }
        try self.init(identity: identity, lock: kubernetesLock, configuration: configuration, log: log,
                      close: { try? await client.shutdown() })
    }

    /// Starts campaigning (`elector.run`) in a task of its own.
    func start() {
        let elector = self.elector
        running.withLock { running in
            precondition(running == nil, "\(identity) is already running")
            running = Task {
                _ = try? await elector.run { _ -> Void in
                    try await Task.sleep(for: .seconds(86_400))
                }
            }
        }
    }

    /// Cancels the run (a leader stops its work, then releases the lease) without waiting for it.
    func cancel() { running.withLock { $0?.cancel() } }

    /// Cancels the run and waits until `run` has returned.
    func stop() async {
        let task = running.withLock { running in
            defer { running = nil }
            return running
        }
        task?.cancel()
        await task?.value
    }

    /// Stops, ends the event subscription and closes the client.
    func shutdown() async {
        await stop()
        subscriber.cancel()
        await closeConnections()
    }
}

/// Runs `body` with `count` candidates on one new Lease, shutting them all down afterwards (also on errors).
func withCandidates<R>(
    _ count: Int, prefix: String, fixture: KubernetesFixture, configuration: LeaderElectionConfiguration,
    _ body: ([Candidate], ElectionLog) async throws -> R
) async throws -> R {
    try await withCandidates(count, prefix: prefix, make: { identity, leaseName, log in
        try Candidate(identity: identity, leaseName: leaseName, fixture: fixture, configuration: configuration, log: log)
    }, body)
}

/// Runs `body` with `count` candidates made by `make(identity, leaseName, log)` on one new lock name (`prefix`
/// plus a random suffix), shutting them all down afterwards (also on errors).
func withCandidates<R>(
    _ count: Int, prefix: String, make: (_ identity: String, _ leaseName: String, _ log: ElectionLog) async throws -> Candidate,
    _ body: ([Candidate], ElectionLog) async throws -> R
) async throws -> R {
    let leaseName = "\(prefix)-\(randomHex(6))"
    let log = ElectionLog()
    var candidates: [Candidate] = []
    do {
        for index in 0..<count {
            candidates.append(try await make("\(prefix)-\(index)", leaseName, log))
        }
        let result = try await body(candidates, log)
        for candidate in candidates { await candidate.shutdown() }
        return result
    } catch {
        for candidate in candidates { await candidate.shutdown() }
        throw error
    }
}

/// What ``measureChildTakeovers`` found.
struct ChildTakeovers {
    var samples: [TransitionSample]
    /// How each killed child ended (`signal 9` expected).
    var exitStatuses: [String]
    /// Samples whose child was killed while a renewal was in flight, and that renewal had reached the store
    /// (the follower's winning CAS replaced a version the child never reported): measured from that renewal's
    /// `attempt` line instead of the last `wrote` line.
    var committedInFlight: Int
    /// Samples where the follower's winning CAS replaced a version the child did not report, with no renewal
    /// in flight (should not happen; measured from the last reported renewal).
    var unmatched: [String]
    /// Median renewals the child reported per sample before it was killed.
    var medianWrites: Double
}

/// Milliseconds of a duration, for the child's flags.
private func wholeMillis(_ duration: Duration) -> String { "\(Int((seconds(duration) * 1000).rounded()))" }

/// Runs `count` crash samples against one in-process follower. Each `sample` spawns a leader child (handing it to
/// `started`), lets it lead, SIGKILLs it and records the takeover. After each sample the follower is stopped (it
/// releases, so the next child leads at once); when a sample fails its child is killed and reaped; at the end,
/// or on failure, the follower is shut down.
func withKilledChildSamples(count: Int, follower: Candidate,
                            _ sample: (_ index: Int, _ started: (ChildProcess) -> Void) async throws -> Void) async throws {
    do {
        for index in 1...count {
            var child: ChildProcess?
            do {
                try await sample(index) { child = $0 }
                await follower.stop()
            } catch {
                if let child {
                    child.kill(SIGKILL)
                    _ = await child.waitForExit()
                }
                throw error
            }
        }
    } catch {
        await follower.shutdown()
        throw error
    }
    await follower.shutdown()
}

/// Crash takeovers with a real leader process: `count` times, starts `lease-bench --child elector --report stdout`
/// on one lock of `kind` (it acquires at once: the lock is free), waits until it has acquired and renewed twice,
/// starts one follower in this process and waits until it has observed the child as the leader, waits a random
/// 0–retryPeriod more (a random phase of the renewals) and SIGKILLs the child; times the follower's
/// `startedLeading`, then stops the follower (it releases, so the next child leads at once).
///
/// The child reports every write of its lock on its stdout (``ChildReport``, CLOCK_MONOTONIC timestamps); a
/// sample runs from the *start* of the child's last renewal that reached the store — its last `wrote` line, or,
/// if the follower's winning compare-and-swap replaced a version the child never reported (killed after the
/// store applied a renewal, before it returned), the `attempt` of that renewal. The lease the dead leader held
/// expires `leaseDuration` after that start (the guarantee LeaderElector gives a leader counts from there).
/// Shared by `etcdlock.takeover.crash` and `kubernetes.takeover.crash`.
func measureChildTakeovers(_ kind: BackendKind, _ context: BenchContext, count: Int,
                           configuration: LeaderElectionConfiguration) async throws -> ChildTakeovers {
    let backend = try await makeBackend(kind, context)
    defer { Task { await backend.cleanup() } }
    let childBackend = try await childBackendArguments(kind, context, directory: backend.directory)
    defer { childBackend.cleanup() }
    let leaseNanos = UInt64(seconds(configuration.leaseDuration) * 1e9)
    let retryMillis = max(1, Int(seconds(configuration.retryPeriod) * 1000))
    let leaseName = "bench-takeover-\(randomHex(6))"
    let log = ElectionLog()
    let made = try await backend.makeLock(leaseName, "bench-follower", configuration)
    let follower = try Candidate(identity: "bench-follower", lock: made.lock, configuration: configuration, log: log, close: made.close)
    var waiter = ElectionWaiter(log)
    var result = ChildTakeovers(samples: [], exitStatuses: [], committedInFlight: 0, unmatched: [], medianWrites: 0)
    var writesPerSample: [Double] = []
    try await withKilledChildSamples(count: count, follower: follower) { index, started in
        let identity = "bench-child-\(index)-\(randomHex(4))"
        let child = try await ChildProcess.spawn(
            ["elector", "--backend", kind.rawValue, "--name", leaseName, "--identity", identity,
             "--lease-ms", wholeMillis(configuration.leaseDuration), "--renew-ms", wholeMillis(configuration.renewDeadline),
             "--retry-ms", wholeMillis(configuration.retryPeriod), "--report", "stdout"] + childBackend.arguments,
            environment: childBackend.environment, reportLines: true)
        started(child)
        let lines = child.lines!
        func writes() -> [(start: UInt64, end: UInt64, version: String)] {
            lines.lines.compactMap { line in
                if case .wrote(let start, let end, let version) = ChildReport(line) { (start, end, version) } else { nil }
            }
        }
        try await waitUntil(timeout: .seconds(20), "child \(identity) leads and has renewed twice") { writes().count >= 3 }
        follower.start()
        try await waitUntil(timeout: .seconds(15), "the follower observes \(identity)") {
            follower.elector.currentLeader == identity
        }
        try await Task.sleep(for: .milliseconds(Int.random(in: 0..<retryMillis)))
        let from = log.count
        let killedAt = monotonicNanos()
        child.kill(SIGKILL)
        let next = try await waiter.first(from: from, timeout: configuration.leaseDuration + .seconds(15),
                                          "the follower to take over from the killed \(identity)") {
            $0.isStarted && $0.identity == follower.identity
        }
        result.exitStatuses.append(await child.waitForExit())
        // The child is gone, so its stdout reaches EOF once every line it wrote has been read.
        try await waitUntil(timeout: .seconds(5), "the killed child's stdout to end") { lines.ended }
        let reports = lines.lines.compactMap(ChildReport.init)
        let wrote = writes()
        guard let lastWrote = wrote.last else { throw BenchError("child \(identity) reported no write") }
        writesPerSample.append(Double(wrote.count))
        let lastAttempt = reports.compactMap { report -> UInt64? in if case .attempt(let start) = report { start } else { nil } }.last
        // The version the follower's winning update replaced: the last one the dead leader wrote.
        let acquire = follower.lock.lastWrite.flatMap { $0.start >= killedAt && $0.end <= next.nanos ? $0 : nil }
        let replaced = acquire == nil ? nil : follower.lock.lastUpdateExpected
        var renewalStart = lastWrote.start
        if replaced?.rawValue != lastWrote.version {
            if let attempt = lastAttempt, attempt > lastWrote.start {
                renewalStart = attempt
                result.committedInFlight += 1
            } else {
                result.unmatched.append("#\(index): the follower replaced version \(replaced?.rawValue ?? "?"), the child's last was \(lastWrote.version)")
            }
        }
        let expiry = renewalStart + leaseNanos
        let sinceStart = millis(from: renewalStart, to: next.nanos)
        var phases: [String: Double] = [
            "lastRenewalReturned": millis(from: expiry, to: lastWrote.end),
            "killed": millis(from: expiry, to: killedAt),
        ]
        if let acquire {
            phases["acquireStarted"] = millis(from: expiry, to: acquire.start)
            phases["acquireWritten"] = millis(from: expiry, to: acquire.end)
        }
        result.samples.append(TransitionSample(
            index: index, from: identity, to: follower.identity, millis: sinceStart,
            pastLeaseExpiryMillis: millis(from: expiry, to: next.nanos), sinceLastRenewalStartMillis: sinceStart,
            previousLeaderStopReason: "killed (SIGKILL)", previousLeaderStoppedRelativeMillis: millis(from: next.nanos, to: killedAt),
            phases: phases))
    }
    result.medianWrites = median(writesPerSample)
    return result
}

/// The transition summary and checks of `etcdlock.takeover.crash` and `kubernetes.takeover.crash`.
func childTakeoverMeasurement(_ kind: BackendKind, _ context: BenchContext, goal: String, goalPastExpiryMillis: Double) async throws -> ScenarioMeasurement {
    let count = context.options.takeovers
    let configuration = LeaderElectionConfiguration(
        name: "lease-bench-takeover", leaseDuration: .seconds(2), renewDeadline: .seconds(1), retryPeriod: .milliseconds(250))
    let leaseMillis = seconds(configuration.leaseDuration) * 1000
    let result = try await measureChildTakeovers(kind, context, count: count, configuration: configuration)
    let samples = result.samples
    let pastExpiry = Percentiles(samples: samples.compactMap(\.pastLeaseExpiryMillis))
    var summary = TransitionSummary(
        electors: 2, leaseDurationSeconds: seconds(configuration.leaseDuration),
        renewDeadlineSeconds: seconds(configuration.renewDeadline), retryPeriodSeconds: seconds(configuration.retryPeriod),
        measuredFrom: "the start of the killed leader's last renewal that reached the store (the child's CLOCK_MONOTONIC "
            + "timestamp from just before it sent the update)",
        measuredTo: "the in-process follower's startedLeading event arrives at its events() subscriber",
        samples: samples, millis: Percentiles(samples: samples.map(\.millis)), pastLeaseExpiryMillis: pastExpiry,
        goal: goal, withinGoal: !samples.isEmpty && pastExpiry.max <= goalPastExpiryMillis)
    summary.summarizePhases()
    let early = samples.filter { ($0.sinceLastRenewalStartMillis ?? 0) < leaseMillis }
    let minimumSinceStart = samples.compactMap(\.sinceLastRenewalStartMillis).min() ?? 0
    let killed = result.exitStatuses.filter { $0 == "signal 9" }.count
    let store = kind == .kubernetes ? "KubernetesClient and KubernetesLock (watching the Lease, events recorded)"
        : "EtcdClient and EtcdLock (watching the key)"
    return ScenarioMeasurement(
        operation: "a leader in a separate process (this binary, --child elector --report stdout, its own \(store); lease 2 s, "
            + "renew deadline 1 s, retryPeriod 250 ms) that reports every write of its lock on stdout with CLOCK_MONOTONIC "
            + "timestamps, and one follower in this process; once the child has renewed twice and the follower has observed it, "
            + "0–250 ms more, the child is SIGKILLed (no release, no event). Reported: from the start of its last renewal that "
            + "reached the store to the follower's startedLeading, and that minus the lease duration (past expiry). "
            + "\(result.committedInFlight) of \(samples.count) children were killed with a renewal in flight that reached the store "
            + "(measured from that renewal's start); median \(formatRatio(result.medianWrites, digits: 0)) writes per child",
        transition: summary,
        checks: [
            Check(name: "takeover only after the lease expired",
                  expected: "follower's startedLeading − start of the killed leader's last renewal ≥ lease duration (\(formatMicros(leaseMillis)) ms) in every sample",
                  measured: "min \(formatRatio(minimumSinceStart, digits: 1)) ms; \(early.count) of \(samples.count) samples earlier",
                  passed: early.isEmpty && !samples.isEmpty),
            Check(name: "samples", expected: "at least \(count) takeovers (--takeovers)", measured: "\(samples.count)",
                  passed: samples.count >= count),
            Check(name: "each leader child was killed by SIGKILL", expected: "\(count) of \(count) exited by signal 9",
                  measured: "\(killed) of \(result.exitStatuses.count): \(Set(result.exitStatuses).sorted().joined(separator: ", "))",
                  passed: killed == count),
            Check(name: "the killed leader's last renewal is known",
                  expected: "the follower's winning update replaced the version of the child's last reported write, or of a renewal in flight at the kill",
                  measured: result.unmatched.isEmpty ? "\(samples.count) of \(samples.count)" : result.unmatched.joined(separator: "; "),
                  passed: result.unmatched.isEmpty),
        ])
}

/// Graceful hand-offs on `candidates` (already made, not started): starts them, then `count` times waits until every
/// follower has observed the leader, waits 200–700 ms more (a random phase of the leader's renewals), cancels the
/// leader's run (it drains and releases), times the next `startedLeading`, and brings the old leader back as a
/// follower. Shared by the flock, etcd and Kubernetes hand-off scenarios.
func measureHandOffs(_ candidates: [Candidate], _ log: ElectionLog, count: Int) async throws -> [TransitionSample] {
    var waiter = ElectionWaiter(log)
    for candidate in candidates { candidate.start() }
    var current = try await waiter.first(from: 0, timeout: .seconds(15), "a first leader") { $0.isStarted }
    var samples: [TransitionSample] = []
    for index in 1...count {
        let leader = candidates.first { $0.identity == current.identity }!
        let followers = candidates.filter { $0 !== leader }
        try await waitUntil(timeout: .seconds(15), "every follower has observed \(leader.identity) as the leader") {
            followers.allSatisfy { $0.elector.currentLeader == leader.identity }
        }
        // Settle (the restarted candidate's watch), at a random phase of the leader's 1 s renewals.
        try await Task.sleep(for: .milliseconds(Int.random(in: 200..<700)))
        let from = log.count
        let cancelledAt = monotonicNanos()
        leader.cancel()
        let next = try await waiter.first(from: from, timeout: .seconds(15), "a new leader after \(leader.identity) was cancelled") {
            $0.isStarted && $0.identity != leader.identity
        }
        let stopped = try await waiter.first(from: from, timeout: .seconds(15), "\(leader.identity) to stop leading") {
            $0.identity == leader.identity && $0.stopReason != nil
        }
        await leader.stop()
        let newLeader = candidates.first { $0.identity == next.identity }!
        var phases: [String: Double] = [:]
        if let release = leader.lock.lastRelease, release.start >= cancelledAt {
            phases["releaseStarted"] = millis(from: cancelledAt, to: release.start)
            phases["releaseWritten"] = millis(from: cancelledAt, to: release.end)
        }
        if let acquire = newLeader.lock.lastWrite, acquire.start >= cancelledAt, acquire.end <= next.nanos {
            phases["acquireStarted"] = millis(from: cancelledAt, to: acquire.start)
            phases["acquireWritten"] = millis(from: cancelledAt, to: acquire.end)
        }
        samples.append(TransitionSample(
            index: index, from: leader.identity, to: next.identity, millis: millis(from: cancelledAt, to: next.nanos),
            previousLeaderStopReason: "\(stopped.stopReason!)",
            previousLeaderStoppedRelativeMillis: millis(from: next.nanos, to: stopped.nanos), phases: phases))
        leader.start()   // back as a follower
        current = next
    }
    return samples
}
