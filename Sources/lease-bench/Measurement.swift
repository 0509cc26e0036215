#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

// MARK: - Clocks

/// CLOCK_MONOTONIC in nanoseconds (what every latency sample is taken with).
@inline(__always)
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// CPU time of this whole process (every thread: Swift's pool and gRPC's poller and event-engine threads).
func processCPUNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Voluntary + involuntary context switches of this whole process so far (`getrusage(RUSAGE_SELF)` sums
/// every thread): each time a thread blocks or is preempted. A call that hops between threads pays for them.
func processContextSwitches() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_nvcsw + usage.ru_nivcsw
}

// MARK: - Statistics

/// Latency percentiles of one set of samples, in microseconds (nearest-rank: the p-th percentile of n sorted
/// samples is the ⌈p·n/100⌉-th).
struct Percentiles: Codable, Sendable {
    var p50: Double
    var p90: Double
    var p99: Double
    var max: Double
    var mean: Double

    init(p50: Double, p90: Double, p99: Double, max: Double, mean: Double) {
        (self.p50, self.p90, self.p99, self.max, self.mean) = (p50, p90, p99, max, mean)
    }

    /// The percentiles of `samples` (µs); all zero for no samples.
    init(samples: [Double]) {
        guard !samples.isEmpty else {
            self.init(p50: 0, p90: 0, p99: 0, max: 0, mean: 0)
            return
        }
        let sorted = samples.sorted()
        func rank(_ p: Double) -> Double {
            let index = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
            return sorted[Swift.min(Swift.max(index, 0), sorted.count - 1)]
        }
        self.init(p50: rank(50), p90: rank(90), p99: rank(99), max: sorted[sorted.count - 1],
                  mean: sorted.reduce(0, +) / Double(sorted.count))
    }

    /// The per-field median over several rounds.
    static func median(of rounds: [Percentiles]) -> Percentiles {
        Percentiles(p50: lease_bench.median(rounds.map(\.p50)), p90: lease_bench.median(rounds.map(\.p90)),
                    p99: lease_bench.median(rounds.map(\.p99)), max: lease_bench.median(rounds.map(\.max)),
                    mean: lease_bench.median(rounds.map(\.mean)))
    }
}

/// The median (mean of the two middle values for an even count; 0 for none).
func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    let mid = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/// The median of optional values, ignoring `nil`s (`nil` when all are).
func median(_ values: [Double?]) -> Double? {
    let present = values.compactMap { $0 }
    return present.isEmpty ? nil : median(present)
}

// MARK: - Server-side counters around a measured section

/// Requests an API server has answered so far, by HTTP method (`LeaseAPIServer.requestCounts`: `GET`, `PUT`,
/// `POST`, …, watches as `WATCH`); read before and after a section to count the requests made in it.
typealias RequestCounter = @Sendable () -> [String: Int]

/// What the server and this process did during a measured section: CPU time and gRPC calls received (and,
/// for the Kubernetes scenarios, the requests the API server received).
struct SectionCounters {
    let fixture: EtcdFixture
    let wallStart: UInt64
    let clientCPUStart: UInt64
    let contextSwitchesStart: Int
    let serverCPUStart: UInt64?
    let rpcsStart: [String: Int]
    let apiRequests: RequestCounter?
    let apiRequestsStart: [String: Int]?

    /// Takes the starting values (scrapes etcd's /metrics first, so the scrape is outside the section).
    static func start(_ fixture: EtcdFixture, apiRequests: RequestCounter? = nil) throws -> SectionCounters {
        let rpcs = try fixture.metrics.rpcsStarted()
        let serverCPU = fixture.serverCPUNanos()
        return SectionCounters(fixture: fixture, wallStart: monotonicNanos(), clientCPUStart: processCPUNanos(),
                               contextSwitchesStart: processContextSwitches(), serverCPUStart: serverCPU, rpcsStart: rpcs,
                               apiRequests: apiRequests, apiRequestsStart: apiRequests?())
    }

    struct Totals {
        var wallSeconds: Double
        var clientCPUMicros: Double
        var contextSwitches: Int
        var serverCPUMicros: Double?
        /// gRPC calls the server started during the section, by `service/method`.
        var rpcsByMethod: [String: Int]
        var rpcs: Int { rpcsByMethod.values.reduce(0, +) }
        /// Requests the API server received during the section, by method (Kubernetes scenarios only).
        var apiRequestsByMethod: [String: Int]?
        var apiRequests: Int? { apiRequestsByMethod.map { $0.values.reduce(0, +) } }
    }

    /// Takes the final values.
    func finish() throws -> Totals {
        let apiRequestsEnd = apiRequests?()
        let wallEnd = monotonicNanos()
        let clientCPUEnd = processCPUNanos()
        let contextSwitchesEnd = processContextSwitches()
        let serverCPUEnd = fixture.serverCPUNanos()
        let rpcsEnd = try fixture.metrics.rpcsStarted()
        let serverCPU: Double? = if let s = serverCPUStart, let e = serverCPUEnd { Double(e &- s) / 1000 } else { nil }
        let apiDelta: [String: Int]? = if let s = apiRequestsStart, let e = apiRequestsEnd { countDelta(from: s, to: e) } else { nil }
        return Totals(wallSeconds: Double(wallEnd - wallStart) / 1e9,
                      clientCPUMicros: Double(clientCPUEnd - clientCPUStart) / 1000,
                      contextSwitches: contextSwitchesEnd - contextSwitchesStart,
                      serverCPUMicros: serverCPU, rpcsByMethod: countDelta(from: rpcsStart, to: rpcsEnd),
                      apiRequestsByMethod: apiDelta)
    }
}

/// `end − start` per key, leaving out keys that did not change.
func countDelta(from start: [String: Int], to end: [String: Int]) -> [String: Int] {
    var delta: [String: Int] = [:]
    for (key, count) in end {
        let d = count - (start[key] ?? 0)
        if d != 0 { delta[key] = d }
    }
    return delta
}

/// Adds up per-key counts.
func sumCounts(_ counts: [[String: Int]]) -> [String: Int] {
    counts.reduce(into: [:]) { total, next in total.merge(next, uniquingKeysWith: +) }
}

// MARK: - Latency

/// One round of a sequential latency scenario.
struct LatencyRound: Codable, Sendable {
    var round: Int
    var samples: Int
    /// Latency of one call, µs.
    var latencyMicros: Percentiles
    var wallSeconds: Double
    /// CPU time of the whole benchmark process per call, µs.
    var clientCPUMicrosPerCall: Double
    /// Context switches of the benchmark process (all threads) per call.
    var clientContextSwitchesPerCall: Double
    /// CPU time of the etcd process per call, µs (clock-tick resolution, 10 ms per round).
    var serverCPUMicrosPerCall: Double?
    /// gRPC calls etcd started per timed call (from its `grpc_server_started_total` counters). For the
    /// Kubernetes scenarios these are the calls the API server made to etcd.
    var serverRPCsPerCall: Double
    var serverRPCsByMethod: [String: Int]
    /// Kubernetes scenarios: requests the API server received per timed call, and by method.
    var apiRequestsPerCall: Double? = nil
    var apiRequestsByMethod: [String: Int]? = nil

    /// One round from the counters of its timed section.
    init(round: Int, latencies: [Double], totals: SectionCounters.Totals) {
        let samples = Double(latencies.count)
        self.round = round
        self.samples = latencies.count
        latencyMicros = Percentiles(samples: latencies)
        wallSeconds = totals.wallSeconds
        clientCPUMicrosPerCall = totals.clientCPUMicros / samples
        clientContextSwitchesPerCall = Double(totals.contextSwitches) / samples
        serverCPUMicrosPerCall = totals.serverCPUMicros.map { $0 / samples }
        serverRPCsPerCall = Double(totals.rpcs) / samples
        serverRPCsByMethod = totals.rpcsByMethod
        apiRequestsPerCall = totals.apiRequests.map { Double($0) / samples }
        apiRequestsByMethod = totals.apiRequestsByMethod
    }
}

/// Runs `warmup` untimed then `samples` timed sequential calls of `call`.
///
/// With an `executor` (the client's poller executor), the loop runs with that executor preferred, as a
/// latency-sensitive caller would (see `EtcdClient.executor`).
/// With `apiRequests` (a Kubernetes API server's request counters), the round also counts the requests that
/// server received during the timed calls.
func measureLatencyRound(round: Int, warmup: Int, samples: Int, fixture: EtcdFixture, executor: (any TaskExecutor)? = nil,
                         apiRequests: RequestCounter? = nil,
                         _ call: () async throws -> Void) async throws -> LatencyRound {
    try await withTaskExecutorPreference(executor) {
        try await measureLatencyRoundBody(round: round, warmup: warmup, samples: samples, fixture: fixture,
                                          apiRequests: apiRequests, call)
    }
}

private func measureLatencyRoundBody(round: Int, warmup: Int, samples: Int, fixture: EtcdFixture, apiRequests: RequestCounter?,
                                     _ call: () async throws -> Void) async throws -> LatencyRound {
    for _ in 0..<warmup { try await call() }
    var latencies = [Double]()
    latencies.reserveCapacity(samples)
    let counters = try SectionCounters.start(fixture, apiRequests: apiRequests)
    for _ in 0..<samples {
        let t0 = monotonicNanos()
        try await call()
        latencies.append(Double(monotonicNanos() - t0) / 1000)
    }
    let totals = try counters.finish()
    return LatencyRound(round: round, latencies: latencies, totals: totals)
}

/// The rounds of a latency scenario and their medians.
struct LatencySummary: Codable, Sendable {
    var rounds: [LatencyRound]
    var samplesPerRound: Int
    var totalSamples: Int
    /// Median over rounds of each per-round percentile, µs.
    var medianLatencyMicros: Percentiles
    /// Smallest and largest per-round p50, µs (the spread between rounds).
    var p50RangeMicros: [Double]
    var medianClientCPUMicrosPerCall: Double
    var medianClientContextSwitchesPerCall: Double
    var medianServerCPUMicrosPerCall: Double?
    /// Total gRPC calls etcd started over total timed calls, all rounds.
    var serverRPCsPerCall: Double
    /// Kubernetes scenarios: total API server requests over total timed calls, all rounds, and their sum by method.
    var apiRequestsPerCall: Double?
    var apiRequestsByMethod: [String: Int]?

    init(rounds: [LatencyRound]) {
        self.rounds = rounds
        samplesPerRound = rounds.first?.samples ?? 0
        totalSamples = rounds.reduce(0) { $0 + $1.samples }
        medianLatencyMicros = Percentiles.median(of: rounds.map(\.latencyMicros))
        let p50s = rounds.map(\.latencyMicros.p50)
        p50RangeMicros = [p50s.min() ?? 0, p50s.max() ?? 0]
        medianClientCPUMicrosPerCall = median(rounds.map(\.clientCPUMicrosPerCall))
        medianClientContextSwitchesPerCall = median(rounds.map(\.clientContextSwitchesPerCall))
        medianServerCPUMicrosPerCall = median(rounds.map(\.serverCPUMicrosPerCall))
        let rpcs = rounds.reduce(0.0) { $0 + $1.serverRPCsPerCall * Double($1.samples) }
        serverRPCsPerCall = totalSamples == 0 ? 0 : rpcs / Double(totalSamples)
        let apiCounts = rounds.compactMap(\.apiRequestsByMethod)
        if !rounds.isEmpty && apiCounts.count == rounds.count {
            let byMethod = sumCounts(apiCounts)
            apiRequestsByMethod = byMethod
            apiRequestsPerCall = totalSamples == 0 ? 0 : Double(byMethod.values.reduce(0, +)) / Double(totalSamples)
        }
    }

    /// Kubernetes scenarios: requests of `method` the API server received per timed call, all rounds.
    func apiRequestsPerCall(method: String) -> Double {
        totalSamples == 0 ? 0 : Double(apiRequestsByMethod?[method] ?? 0) / Double(totalSamples)
    }
}

// MARK: - Throughput

/// One round of a throughput scenario.
struct ThroughputRound: Codable, Sendable {
    var round: Int
    var concurrency: Int
    var calls: Int
    var wallSeconds: Double
    var callsPerSecond: Double
    /// Latency of one call under this load, µs.
    var latencyMicros: Percentiles
    var clientCPUMicrosPerCall: Double
    var clientContextSwitchesPerCall: Double
    var serverCPUMicrosPerCall: Double?
    var serverRPCsPerCall: Double
}

private final class CallCounter: Sendable {
    let value = Atomic<Int>(0)
}

/// Runs `concurrency` workers that each call `call` back to back until at least `seconds` have passed and at
/// least `minCalls` calls have completed (both); the wall time runs until the last call in flight returns.
func runConcurrently(concurrency: Int, seconds: Double, minCalls: Int,
                     _ call: @escaping @Sendable (_ worker: Int) async throws -> Void)
    async throws -> (calls: Int, wallNanos: UInt64, latencies: [Double])
{
    let completed = CallCounter()
    let start = monotonicNanos()
    let deadline = start + UInt64(seconds * 1e9)
    let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
        for worker in 0..<concurrency {
            group.addTask {
                var mine = [Double]()
                mine.reserveCapacity(4096)
                while monotonicNanos() < deadline || completed.value.load(ordering: .relaxed) < minCalls {
                    let t0 = monotonicNanos()
                    try await call(worker)
                    mine.append(Double(monotonicNanos() - t0) / 1000)
                    completed.value.add(1, ordering: .relaxed)
                }
                return mine
            }
        }
        var all = [Double]()
        for try await part in group { all += part }
        return all
    }
    return (latencies.count, monotonicNanos() - start, latencies)
}

/// One throughput round: a warm-up at the same concurrency, then the measured run.
func measureThroughputRound(round: Int, concurrency: Int, options: BenchOptions, fixture: EtcdFixture,
                            _ call: @escaping @Sendable (_ worker: Int) async throws -> Void) async throws -> ThroughputRound {
    if options.warmupCalls > 0 {
        _ = try await runConcurrently(concurrency: concurrency, seconds: 0, minCalls: options.warmupCalls, call)
    }
    let counters = try SectionCounters.start(fixture)
    let run = try await runConcurrently(concurrency: concurrency, seconds: options.throughputSeconds,
                                        minCalls: options.throughputMinCalls, call)
    let totals = try counters.finish()
    let calls = Double(run.calls)
    return ThroughputRound(
        round: round, concurrency: concurrency, calls: run.calls, wallSeconds: Double(run.wallNanos) / 1e9,
        callsPerSecond: calls / (Double(run.wallNanos) / 1e9), latencyMicros: Percentiles(samples: run.latencies),
        clientCPUMicrosPerCall: totals.clientCPUMicros / calls,
        clientContextSwitchesPerCall: Double(totals.contextSwitches) / calls,
        serverCPUMicrosPerCall: totals.serverCPUMicros.map { $0 / calls },
        serverRPCsPerCall: Double(totals.rpcs) / calls)
}

/// The rounds of a throughput scenario and their medians.
struct ThroughputSummary: Codable, Sendable {
    var concurrency: Int
    var rounds: [ThroughputRound]
    var totalCalls: Int
    var medianCallsPerSecond: Double
    /// Lowest and highest calls/s over the rounds.
    var callsPerSecondRange: [Double]
    var medianLatencyMicros: Percentiles
    var medianClientCPUMicrosPerCall: Double
    var medianClientContextSwitchesPerCall: Double
    var medianServerCPUMicrosPerCall: Double?
    var serverRPCsPerCall: Double

    init(concurrency: Int, rounds: [ThroughputRound]) {
        self.concurrency = concurrency
        self.rounds = rounds
        totalCalls = rounds.reduce(0) { $0 + $1.calls }
        let rates = rounds.map(\.callsPerSecond)
        medianCallsPerSecond = median(rates)
        callsPerSecondRange = [rates.min() ?? 0, rates.max() ?? 0]
        medianLatencyMicros = Percentiles.median(of: rounds.map(\.latencyMicros))
        medianClientCPUMicrosPerCall = median(rounds.map(\.clientCPUMicrosPerCall))
        medianClientContextSwitchesPerCall = median(rounds.map(\.clientContextSwitchesPerCall))
        medianServerCPUMicrosPerCall = median(rounds.map(\.serverCPUMicrosPerCall))
        let rpcs = rounds.reduce(0.0) { $0 + $1.serverRPCsPerCall * Double($1.calls) }
        serverRPCsPerCall = totalCalls == 0 ? 0 : rpcs / Double(totalCalls)
    }
}
