#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Kubernetes
import KubernetesLock
import LeaderElection
import Synchronization

// The Kubernetes rows: KubernetesLock and our LeaderElector against a LeaseAPIServer (HTTPS, bearer token) in
// this process, which stores the Leases in the bench's etcd. See KubernetesFixture.

private let kubernetesIdentity = "lease-bench-k8s-\(getpid())"

/// The goals of the benchmark issue for the elector on Kubernetes (informational, like the Go ratio: they
/// are reported, never fail the run).
enum KubernetesGoal {
    static let handOffP50Millis = 50.0
    static let handOffP99Millis = 100.0
    static let takeoverPastExpiryMillis = 50.0
    static let handOff = "graceful hand-off p50 ≤ 50 ms and p99 ≤ 100 ms"
    static let takeover = "crash takeover ≤ 50 ms past lease expiry (every sample, i.e. the max)"
}

/// The Kubernetes scenarios, in the order they run (after the etcd rows).
func kubernetesScenarios(_ options: BenchOptions) -> [Scenario] {
    [kubernetesGetLatency, kubernetesUpdateLatency, kubernetesRenew, kubernetesHandOff, kubernetesTakeover]
}

// MARK: Checks

/// `GET 10000, PUT 3` (methods sorted; `none` when empty).
func formatCounts(_ counts: [String: Int]) -> String {
    counts.isEmpty ? "none" : counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
}

/// Checks that every timed call was exactly one request of `method` to the API server and nothing else
/// (no read before a write, no retry, no re-established watch).
private func apiRequestsCheck(_ what: String, method: String, calls: Int, byMethod: [String: Int]) -> Check {
    let total = byMethod.values.reduce(0, +)
    let perCall = calls == 0 ? 0 : Double(total) / Double(calls)
    return Check(
        name: "API server requests per \(what)",
        expected: "1 \(method) and no other request (LeaseAPIServer.requestCounts delta / calls)",
        measured: "\(formatRatio(perCall, digits: 4)) (\(total) requests for \(calls) timed \(what)s: \(formatCounts(byMethod)))",
        passed: calls > 0 && byMethod[method] == calls && total == calls)
}

/// Runs `body` with a new client of the fixture's API server and shuts the client down afterwards.
private func withClient<R>(_ fixture: KubernetesFixture, _ body: (KubernetesClient) async throws -> R) async throws -> R {
    let client = try fixture.makeClient()
    do {
        let result = try await body(client)
        try? await client.shutdown()
        return result
    } catch {
        try? await client.shutdown()
        throw error
    }
}

func millis(_ nanos: UInt64) -> Double { Double(nanos) / 1e6 }
func millis(from start: UInt64, to end: UInt64) -> Double { (Double(end) - Double(start)) / 1e6 }
func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

// MARK: Lock latency

let kubernetesGetLatency = Scenario(id: "kubernetes.get.latency", title: "KubernetesLock.get() (one GET)") { context in
    let fixture = try await context.kubernetes.fixture()
    return try await withClient(fixture) { client in
        let lock = try KubernetesLock(client: client, configuration: .init(name: "get-\(randomHex(6))", namespace: fixture.namespace),
                                      identity: kubernetesIdentity)
        _ = try await lock.create(sampleRecord(identity: kubernetesIdentity))
        var rounds: [LatencyRound] = []
        for round in 1...context.options.rounds {
            rounds.append(try await measureLatencyRound(
                round: round, warmup: context.options.warmupCalls, samples: context.options.latencySamples, fixture: context.etcd,
                apiRequests: fixture.requestCounter
            ) {
                guard try await lock.get() != nil else { throw BenchError("the Lease \(lock) disappeared") }
            })
        }
        let summary = LatencySummary(rounds: rounds)
        return ScenarioMeasurement(
            operation: "KubernetesLock.get(): GET /apis/coordination.k8s.io/v1/namespaces/\(fixture.namespace)/leases/NAME over "
                + "HTTPS (HTTP/1.1 keep-alive, one KubernetesClient), JSON decode of the Lease; the API server reads etcd "
                + "(linearizable Range); sequential",
            latency: summary,
            checks: [apiRequestsCheck("get()", method: "GET", calls: summary.totalSamples, byMethod: summary.apiRequestsByMethod ?? [:])])
    }
}

let kubernetesUpdateLatency = Scenario(id: "kubernetes.update.latency", title: "KubernetesLock.update(expecting:) (one CAS PUT)") { context in
    let fixture = try await context.kubernetes.fixture()
    return try await withClient(fixture) { client in
        let lock = try KubernetesLock(client: client, configuration: .init(name: "update-\(randomHex(6))", namespace: fixture.namespace),
                                      identity: kubernetesIdentity)
        var record = sampleRecord(identity: kubernetesIdentity)
        var version = try await lock.create(record)
        var rounds: [LatencyRound] = []
        for round in 1...context.options.rounds {
            rounds.append(try await measureLatencyRound(
                round: round, warmup: context.options.warmupCalls, samples: context.options.latencySamples, fixture: context.etcd,
                apiRequests: fixture.requestCounter
            ) {
                record.renewTime = MicroTime.now()
                version = try await lock.update(record, expecting: version)
            })
        }
        let summary = LatencySummary(rounds: rounds)
        return ScenarioMeasurement(
            operation: "record.renewTime = now; KubernetesLock.update(record, expecting: version): one PUT of the Lease with "
                + "metadata.resourceVersion = version (and its uid) over HTTPS, JSON both ways; the API server reads the key "
                + "and writes it with an etcd CAS Txn; sequential, each with the version the previous one returned",
            latency: summary,
            checks: [apiRequestsCheck("update", method: "PUT", calls: summary.totalSamples, byMethod: summary.apiRequestsByMethod ?? [:])])
    }
}

// MARK: Renewals of a leading elector

/// A one-shot result with a timeout.
final class OneShot<T: Sendable>: Sendable {
    private struct State {
        var result: Result<T, any Error>?
        var waiters: [CheckedContinuation<T, any Error>] = []
    }
    private let state = Mutex(State())

    /// Completes (the first completion wins).
    func complete(_ result: Result<T, any Error>) {
        let waiters = state.withLock { state -> [CheckedContinuation<T, any Error>] in
            guard state.result == nil else { return [] }
            state.result = result
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }

    /// The result, or a timeout error after `timeout`.
    func value(timeout: Duration, _ what: String) async throws -> T {
        let timer = Task {
            try await Task.sleep(for: timeout)
            self.complete(.failure(BenchError("timed out after \(timeout) waiting for \(what)")))
        }
        defer { timer.cancel() }
        return try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { state -> Result<T, any Error>? in
                if let result = state.result { return result }
                state.waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}

/// Cuts the renewals of one leader into rounds: called (through the lock's update hook) after every
/// successful renewal, in the renew loop, before the elector sees the result — so the counters are read
/// between two renewals, and a round's counters cover exactly its renewals.
final class RenewalRecorder: Sendable {
    private struct State {
        var renewals = 0
        var counters: SectionCounters?
        var latencies: [Double] = []
        var rounds: [LatencyRound] = []
    }
    private let state = Mutex(State())
    private let etcd: EtcdFixture
    private let apiRequests: RequestCounter
    let warmup: Int
    let perRound: Int
    let roundCount: Int
    let done = OneShot<[LatencyRound]>()

    init(etcd: EtcdFixture, apiRequests: @escaping RequestCounter, warmup: Int, perRound: Int, rounds: Int) {
        self.etcd = etcd
        self.apiRequests = apiRequests
        self.warmup = warmup
        self.perRound = perRound
        self.roundCount = rounds
    }

    func renewed(start: UInt64, end: UInt64) {
        do {
            try state.withLock { state in
                state.renewals += 1
                if state.renewals == warmup {
                    state.counters = try SectionCounters.start(etcd, apiRequests: apiRequests)
                    return
                }
                guard state.renewals > warmup, let counters = state.counters else { return }
                state.latencies.append(Double(end - start) / 1000)
                guard state.latencies.count == perRound else { return }
                let totals = try counters.finish()
                state.rounds.append(LatencyRound(round: state.rounds.count + 1, latencies: state.latencies, totals: totals))
                state.latencies = []
                if state.rounds.count == roundCount {
                    state.counters = nil
                    done.complete(.success(state.rounds))
                } else {
                    state.counters = try SectionCounters.start(etcd, apiRequests: apiRequests)
                }
            }
        } catch {
            state.withLock { $0.counters = nil }
            done.complete(.failure(error))
        }
    }
}

let kubernetesRenew = Scenario(id: "kubernetes.renew", title: "LeaderElector renewals on KubernetesLock (steady state)") { context in
    let fixture = try await context.kubernetes.fixture()
    let retryPeriod = Duration.milliseconds(50)
    let configuration = LeaderElectionConfiguration(
        name: "lease-bench-renew", leaseDuration: .seconds(2), renewDeadline: .seconds(1), retryPeriod: retryPeriod)
    let warmup = 20
    let perRound = context.options.kubernetesRenewals
    let roundCount = context.options.rounds
    return try await withCandidates(1, prefix: "lease-bench-renew", fixture: fixture, configuration: configuration) { candidates, log in
        let leader = candidates[0]
        let recorder = RenewalRecorder(etcd: context.etcd, apiRequests: fixture.requestCounter, warmup: warmup,
                                       perRound: perRound, rounds: roundCount)
        leader.lock.setHook { start, end in recorder.renewed(start: start, end: end) }
        var waiter = ElectionWaiter(log)
        leader.start()
        _ = try await waiter.first(from: 0, timeout: .seconds(15), "\(leader.identity) to start leading") { $0.isStarted }
        let failedBefore = leader.lock.failedUpdates
        let expectedSeconds = Double(warmup + perRound * roundCount) * seconds(retryPeriod)
        let rounds = try await recorder.done.value(timeout: .seconds(expectedSeconds * 4 + 15), "\(perRound * roundCount) renewals")
        leader.lock.setHook(nil)
        let failed = leader.lock.failedUpdates - failedBefore
        let stopped = log.first(from: 0) { $0.stopReason != nil }
        let summary = LatencySummary(rounds: rounds)
        let renewalsPerSecond = Double(summary.totalSamples) / rounds.reduce(0) { $0 + $1.wallSeconds }
        return ScenarioMeasurement(
            operation: "one LeaderElector (ContinuousClock, lease 2 s, renew deadline 1 s, retryPeriod 50 ms) leading on a "
                + "KubernetesLock, renewing on its own; after \(warmup) untimed renewals, rounds of \(perRound) renewals. Latency: "
                + "KubernetesLock.update(_:expecting:) timed by a wrapping lock (JSON + one PUT). Counters: API server requests "
                + "from the end of the renewal before a round to the end of its last renewal (no other elector on the Lease; "
                + "the leader's own watch stays open). Measured rate: \(formatRatio(renewalsPerSecond, digits: 1)) renewals/s",
            latency: summary,
            checks: [
                apiRequestsCheck("renewal", method: "PUT", calls: summary.totalSamples, byMethod: summary.apiRequestsByMethod ?? [:]),
                Check(name: "leadership kept and every renewal succeeded while measuring",
                      expected: "no stoppedLeading, 0 failed renewals",
                      measured: (stopped.map { "stoppedLeading(\($0.stopReason!)) at event #\($0.seq)" } ?? "no stoppedLeading")
                          + ", \(failed) failed renewals",
                      passed: stopped == nil && failed == 0),
            ])
    }
}

// MARK: Graceful hand-off

let kubernetesHandOff = Scenario(id: "kubernetes.handoff.graceful", title: "Graceful hand-off (leader cancelled → next leader)") { context in
    let fixture = try await context.kubernetes.fixture()
    let count = context.options.handOffs
    let electors = 3
    let configuration = LeaderElectionConfiguration(
        name: "lease-bench-handoff", leaseDuration: .seconds(4), renewDeadline: .seconds(3), retryPeriod: .seconds(1))
    return try await withCandidates(electors, prefix: "lease-bench-handoff", fixture: fixture, configuration: configuration) { candidates, log in
        let samples = try await measureHandOffs(candidates, log, count: count)
        let percentiles = Percentiles(samples: samples.map(\.millis))
        let withinGoal = percentiles.p50 <= KubernetesGoal.handOffP50Millis && percentiles.p99 <= KubernetesGoal.handOffP99Millis
        let notReleased = samples.filter { $0.previousLeaderStopReason != "released" }
        var summary = TransitionSummary(
            electors: electors, leaseDurationSeconds: seconds(configuration.leaseDuration),
            renewDeadlineSeconds: seconds(configuration.renewDeadline), retryPeriodSeconds: seconds(configuration.retryPeriod),
            measuredFrom: "the leader's elector.run task is cancelled (releaseOnCancel: its work stops, then it writes an empty holder)",
            measuredTo: "another elector's startedLeading event arrives at its events() subscriber",
            samples: samples, millis: percentiles, pastLeaseExpiryMillis: nil,
            goal: KubernetesGoal.handOff, withinGoal: withinGoal)
        summary.summarizePhases()
        return ScenarioMeasurement(
            operation: "\(electors) LeaderElectors in this process on one Lease, each with its own KubernetesClient (own "
                + "connections, as separate processes) and KubernetesLock (watching the Lease; events recorded, the default); "
                + "lease 4 s, renew deadline 3 s, retryPeriod 1 s. Per sample: wait until both followers have observed the "
                + "leader, 200–700 ms more, cancel the leader's run, wait for the next startedLeading, restart the old leader "
                + "as a follower",
            transition: summary,
            checks: [Check(
                name: "every hand-off was a release", expected: "the cancelled leader's stoppedLeading reason is `released` in every sample",
                measured: notReleased.isEmpty ? "\(samples.count) of \(samples.count) released"
                    : "\(samples.count - notReleased.count) of \(samples.count) released; others: "
                        + notReleased.map { "#\($0.index) \($0.previousLeaderStopReason)" }.joined(separator: ", "),
                passed: notReleased.isEmpty)])
    }
}

// MARK: Crash takeover

/// A leader in a separate process (`lease-bench --child elector`) is SIGKILLed; one follower in this process takes
/// over once the lease has expired (see ``measureChildTakeovers``).
let kubernetesTakeover = Scenario(id: "kubernetes.takeover.crash", title: "Crash takeover (leader process SIGKILLed → follower leads)") { context in
    try await childTakeoverMeasurement(.kubernetes, context, goal: KubernetesGoal.takeover, goalPastExpiryMillis: KubernetesGoal.takeoverPastExpiryMillis)
}
