#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Etcd
import EtcdLock
import LeaderElection

/// The value stored by the Range, Txn and Put scenarios: a real lease record as EtcdLock writes it (~170 bytes),
/// so payload sizes match what an elector sends.
func sampleRecord(identity: String) -> LeaderElectionRecord {
    let now = MicroTime.now()
    return LeaderElectionRecord(holderIdentity: identity, leaseDuration: .seconds(15), acquireTime: now, renewTime: now,
                                leaseTransitions: 3)
}

private let benchIdentity = "lease-bench-\(getpid())"

/// The etcd scenarios of this milestone: latency of Range, CAS Txn and EtcdLock renewals, then throughput of
/// Range and Put at each concurrency level.
func etcdScenarios(_ options: BenchOptions) -> [Scenario] {
    var list = [rangeLatency, rangeLatencyGlobalExecutor, casTxnLatency, renewalLatency]
    for concurrency in options.concurrencyLevels { list.append(rangeThroughput(concurrency: concurrency)) }
    for concurrency in options.concurrencyLevels { list.append(putThroughput(concurrency: concurrency)) }
    return list
}

/// Checks that every timed call cost exactly one gRPC round trip (no hidden retries or extra reads).
private func oneRoundTripCheck(_ what: String, rpcsPerCall: Double, calls: Int) -> Check {
    Check(name: "gRPC round trips per \(what)", expected: "1 (server-side grpc_server_started_total delta / calls)",
          measured: "\(formatRatio(rpcsPerCall, digits: 4)) (\(Int((rpcsPerCall * Double(calls)).rounded())) RPCs started by etcd for \(calls) timed \(what)s)",
          passed: abs(rpcsPerCall - 1) < 1e-9)
}

// MARK: Latency

/// One round of Go's client right after one of ours (nil without `--go-reference`).
private func goRound(_ operation: GoClientReference.Operation, context: BenchContext, key: String, value: [UInt8],
                     samples: Int) async throws -> GoRound? {
    guard let go = context.goReference else { return nil }
    return try await go.round(operation, endpoint: context.etcd.server.endpoint, key: key, value: value, samples: samples,
                              warmup: context.options.warmupCalls)
}

let rangeLatency = Scenario(id: "etcd.range.latency", title: "etcd Range (linearizable, 1 key)") { context in
    try await measureRangeLatency(context, executor: context.etcd.client.executor,
                                  caller: "the calling task prefers the client's poller executor (`withTaskExecutorPreference(client.executor)`)")
}

/// The same Range loop without the executor preference: what a caller that does not opt in gets (each reply
/// wakes a thread of Swift's global pool).
let rangeLatencyGlobalExecutor = Scenario(id: "etcd.range.latency.global-executor",
                                          title: "etcd Range (linearizable, 1 key), caller on Swift's global executor") { context in
    try await measureRangeLatency(context, executor: nil,
                                  caller: "the calling task has no executor preference (Swift's global concurrent executor)")
}

private func measureRangeLatency(_ context: BenchContext, executor: (any TaskExecutor)?, caller: String) async throws -> ScenarioMeasurement {
    let client = context.etcd.client
    let key = Array("/lease-bench/range".utf8)
    let value = sampleRecord(identity: benchIdentity).jsonBytes()
    try await client.put(key, value)
    var rounds: [LatencyRound] = []
    var goRounds: [GoRound] = []
    for round in 1...context.options.rounds {
        rounds.append(try await measureLatencyRound(
            round: round, warmup: context.options.warmupCalls, samples: context.options.latencySamples, fixture: context.etcd,
            executor: executor
        ) {
            let response = try await client.range(key)
            guard response.kvs.count == 1 else { throw BenchError("Range returned \(response.kvs.count) keys, expected 1") }
        })
        if let go = try await goRound(.range, context: context, key: "/lease-bench/go/range", value: value,
                                      samples: context.options.latencySamples) {
            goRounds.append(go)
        }
    }
    let summary = LatencySummary(rounds: rounds)
    return ScenarioMeasurement(
        operation: "EtcdClient.range(key) — one key, serializable: false, \(value.count)-byte value; sequential; \(caller)",
        latency: summary, reference: GoReference.figure(.range, rounds: goRounds),
        checks: [oneRoundTripCheck("Range", rpcsPerCall: summary.serverRPCsPerCall, calls: summary.totalSamples)])
}

let casTxnLatency = Scenario(id: "etcd.txn.cas.latency", title: "etcd CAS Txn (mod_revision == rev → put, else range)") { context in
    let client = context.etcd.client
    let key = Array("/lease-bench/cas".utf8)
    let value = sampleRecord(identity: benchIdentity).jsonBytes()
    var revision = try await client.put(key, value).revision
    var rounds: [LatencyRound] = []
    var goRounds: [GoRound] = []
    for round in 1...context.options.rounds {
        rounds.append(try await measureLatencyRound(
            round: round, warmup: context.options.warmupCalls, samples: context.options.latencySamples, fixture: context.etcd,
            executor: context.etcd.client.executor
        ) {
            let response = try await client.txn([EtcdCompare(key: key, .modRevision(revision))],
                                                success: [.put(key: key, value: value)],
                                                failure: [.range(key: key)])
            guard response.succeeded else { throw BenchError("CAS Txn at revision \(revision) did not succeed (nothing else writes the key)") }
            revision = response.header.revision
        })
        if let go = try await goRound(.txn, context: context, key: "/lease-bench/go/cas", value: value,
                                      samples: context.options.latencySamples) {
            goRounds.append(go)
        }
    }
    let summary = LatencySummary(rounds: rounds)
    return ScenarioMeasurement(
        operation: "EtcdClient.txn([modRevision(key) == rev], success: [put(key, \(value.count) B)], failure: [range(key)]), "
            + "rev = the previous call's header.revision; sequential",
        latency: summary, reference: GoReference.figure(.txn, rounds: goRounds),
        checks: [oneRoundTripCheck("Txn", rpcsPerCall: summary.serverRPCsPerCall, calls: summary.totalSamples)])
}

let renewalLatency = Scenario(id: "etcdlock.renewal.latency", title: "EtcdLock renewal (update(expecting:))") { context in
    let lock = try EtcdLock(client: context.etcd.client,
                            configuration: .init(name: "renewal", namespace: "lease-bench"), identity: benchIdentity)
    try await lock.delete()
    var record = sampleRecord(identity: benchIdentity)
    var version = try await lock.create(record)
    var rounds: [LatencyRound] = []
    var goRounds: [GoRound] = []
    for round in 1...context.options.rounds {
        rounds.append(try await measureLatencyRound(
            round: round, warmup: context.options.warmupCalls, samples: context.options.renewalSamples, fixture: context.etcd,
            executor: context.etcd.client.executor
        ) {
            record.renewTime = MicroTime.now()
            version = try await lock.update(record, expecting: version)
        })
        if let go = try await goRound(.txn, context: context, key: "/lease-bench/go/renewal", value: record.jsonBytes(),
                                      samples: context.options.renewalSamples) {
            goRounds.append(go)
        }
    }
    let summary = LatencySummary(rounds: rounds)
    // The renewal should cost what one raw CAS Txn costs: compare it with Go's Txn (with the same record bytes).
    return ScenarioMeasurement(
        operation: "record.renewTime = now; EtcdLock.update(record, expecting: version) — JSON encode + one CAS Txn; "
            + "sequential, each with the version the previous one returned",
        latency: summary, reference: GoReference.figure(.txn, rounds: goRounds),
        checks: [oneRoundTripCheck("renewal", rpcsPerCall: summary.serverRPCsPerCall, calls: summary.totalSamples)])
}

// MARK: Throughput

private func throughputScenario(id: String, title: String, operation: String, concurrency: Int,
                                prepare: @escaping @Sendable (EtcdClient) async throws -> @Sendable (Int) async throws -> Void) -> Scenario {
    Scenario(id: id, title: title) { context in
        let call = try await prepare(context.etcd.client)
        var rounds: [ThroughputRound] = []
        for round in 1...context.options.throughputRounds {
            rounds.append(try await measureThroughputRound(round: round, concurrency: concurrency, options: context.options,
                                                           fixture: context.etcd, call))
        }
        let summary = ThroughputSummary(concurrency: concurrency, rounds: rounds)
        return ScenarioMeasurement(
            operation: operation, throughput: summary,
            checks: [oneRoundTripCheck("call", rpcsPerCall: summary.serverRPCsPerCall, calls: summary.totalCalls)])
    }
}

func rangeThroughput(concurrency: Int) -> Scenario {
    throughputScenario(
        id: "etcd.range.throughput.c\(concurrency)", title: "etcd Range, \(concurrency) in flight",
        operation: "EtcdClient.range(key) — one key, linearizable; \(concurrency) tasks calling back to back on one client",
        concurrency: concurrency
    ) { client in
        let key = Array("/lease-bench/range".utf8)
        try await client.put(key, sampleRecord(identity: benchIdentity).jsonBytes())
        return { _ in _ = try await client.range(key) }
    }
}

func putThroughput(concurrency: Int) -> Scenario {
    throughputScenario(
        id: "etcd.put.throughput.c\(concurrency)", title: "etcd Put, \(concurrency) in flight",
        operation: "EtcdClient.put(key, \(sampleRecord(identity: benchIdentity).jsonBytes().count) B) — one key per task; "
            + "\(concurrency) tasks calling back to back on one client",
        concurrency: concurrency
    ) { client in
        let value = sampleRecord(identity: benchIdentity).jsonBytes()
        let keys = (0..<concurrency).map { Array("/lease-bench/put/\($0)".utf8) }
        return { worker in _ = try await client.put(keys[worker], value) }
    }
}
