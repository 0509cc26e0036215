#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EtcdTesting
import Foundation
import Kubernetes
import KubernetesLock
import LeaderElection
import Synchronization

// Issue 6, "benchmarks against the physical floor": the elector-level scenarios on every backend that the
// etcd and Kubernetes rows above do not cover — graceful hand-off and crash takeover on flock and etcd, renew
// cost, follower load, contention, 10k heartbeat leases, and idle memory. Goals are printed next to the values
// ("met" / "not met") and never fail the run; only the checks (and errors) do.

enum FloorGoal {
    static let handOffP50Millis = 20.0
    static let handOffP99Millis = 100.0
    static let handOff = "graceful hand-off p50 ≤ 20 ms and p99 ≤ 100 ms"
    static let etcdTakeoverPastExpiryMillis = 50.0
    static let etcdTakeover = "crash takeover ≤ 50 ms past lease expiry (every sample, i.e. the max)"
    static let fileTakeoverMillis = 100.0
    static let fileTakeover = "crash takeover ≤ 100 ms in total (kernel detection; every sample, i.e. the max)"
    static let scaleCores = 0.5
    static let scaleRSSMiB = 150.0
}

func floorScenarios(_ options: BenchOptions) -> [Scenario] {
    var list: [Scenario] = [
        handOffScenario(.file), handOffScenario(.etcd),
        fileTakeoverScenario, etcdTakeoverScenario,
        fileOpLatencyScenario,
    ]
    for kind in BackendKind.allCases { list.append(renewCostScenario(kind)) }
    for kind in BackendKind.allCases { list.append(followerLoadScenario(kind, followers: options.followers)) }
    for kind in BackendKind.allCases { list.append(contentionScenario(kind, candidates: options.contenders)) }
    list.append(scaleScenario(.etcd, leases: options.scaleLeases))
    list.append(scaleScenario(.kubernetes, leases: options.scaleLeases))
    list.append(idleMemoryScenario)
    return list
}

private func perSecond(_ count: Int, _ seconds: Double) -> Double { seconds > 0 ? Double(count) / seconds : 0 }

// MARK: Graceful hand-off (flock, etcd)

func handOffScenario(_ kind: BackendKind) -> Scenario {
    Scenario(id: "\(kind.rawValue).handoff.graceful", title: "Graceful hand-off on \(kind.label)") { context in
        let backend = try await makeBackend(kind, context)
        defer { Task { await backend.cleanup() } }
        let count = context.options.handOffs
        let electors = 3
        let configuration = LeaderElectionConfiguration(
            name: "lease-bench-handoff", leaseDuration: .seconds(4), renewDeadline: .seconds(3), retryPeriod: .seconds(1))
        return try await withCandidates(electors, prefix: "bench-handoff", backend: backend, configuration: configuration) { candidates, log in
            let samples = try await measureHandOffs(candidates, log, count: count)
            let percentiles = Percentiles(samples: samples.map(\.millis))
            var summary = TransitionSummary(
                electors: electors, leaseDurationSeconds: seconds(configuration.leaseDuration),
                renewDeadlineSeconds: seconds(configuration.renewDeadline), retryPeriodSeconds: seconds(configuration.retryPeriod),
                measuredFrom: "the leader's elector.run task is cancelled (releaseOnCancel: its work stops, then it writes an empty holder)",
                measuredTo: "another elector's startedLeading event arrives at its events() subscriber",
                samples: samples, millis: percentiles, pastLeaseExpiryMillis: nil, goal: FloorGoal.handOff,
                withinGoal: percentiles.p50 <= FloorGoal.handOffP50Millis && percentiles.p99 <= FloorGoal.handOffP99Millis)
            summary.summarizePhases()
            let notReleased = samples.filter { $0.previousLeaderStopReason != "released" }
            return ScenarioMeasurement(
                operation: "\(electors) LeaderElectors in this process on one \(kind.label) lock, each with its own lock "
                    + "(and connections); lease 4 s, renew deadline 3 s, retryPeriod 1 s. Per sample: wait until both followers "
                    + "have observed the leader, 200–700 ms more, cancel the leader's run, wait for the next startedLeading",
                transition: summary,
                checks: [Check(
                    name: "every hand-off was a release", expected: "stoppedLeading reason `released` in every sample",
                    measured: "\(samples.count - notReleased.count) of \(samples.count) released",
                    passed: notReleased.isEmpty && !samples.isEmpty)])
        }
    }
}

// MARK: Crash takeover on etcd (a real process, SIGKILLed; as kubernetes.takeover.crash)

let etcdTakeoverScenario = Scenario(id: "etcdlock.takeover.crash", title: "Crash takeover on etcd (leader process SIGKILLed → follower leads)") { context in
    try await childTakeoverMeasurement(.etcd, context, goal: FloorGoal.etcdTakeover, goalPastExpiryMillis: FloorGoal.etcdTakeoverPastExpiryMillis)
}

// MARK: Crash takeover on flock (a real process, SIGKILLed)

let fileTakeoverScenario = Scenario(id: "filelock.takeover.crash", title: "Crash takeover on flock (leader process SIGKILLed → follower leads)") { context in
    let backend = try await makeBackend(.file, context)
    defer { Task { await backend.cleanup() } }
    guard let directory = backend.directory else { throw BenchError("no flock directory") }
    let count = context.options.takeovers
    let configuration = LeaderElectionConfiguration(
        name: "lease-bench-takeover", leaseDuration: .seconds(2), renewDeadline: .seconds(1), retryPeriod: .milliseconds(250))
    let leaseName = "bench-takeover-\(randomHex(6))"
    let log = ElectionLog()
    let made = try await backend.makeLock(leaseName, "bench-follower", configuration)
    let follower = try Candidate(identity: "bench-follower", lock: made.lock, configuration: configuration, log: log, close: made.close)
    let probe = try await backend.makeLock(leaseName, "bench-probe", configuration).lock
    var waiter = ElectionWaiter(log)
    var samples: [TransitionSample] = []
    var exitStatuses: [String] = []
    try await withKilledChildSamples(count: count, follower: follower) { index, started in
        let childIdentity = "bench-child-\(index)-\(randomHex(4))"
        let child = try await ChildProcess.spawn([
            "elector", "--backend", "filelock", "--dir", directory, "--name", leaseName, "--identity", childIdentity,
            "--lease-ms", "2000", "--renew-ms", "1000", "--retry-ms", "250",
        ])
        started(child)
        try await waitUntilAsync(timeout: .seconds(20), "child \(childIdentity) leads") {
            (try? await probe.get())?.record.holderIdentity == childIdentity
        }
        follower.start()
        try await waitUntil(timeout: .seconds(15), "the follower observes \(childIdentity)") {
            follower.elector.currentLeader == childIdentity
        }
        try await Task.sleep(for: .milliseconds(Int.random(in: 0..<250)))
        let from = log.count
        let killedAt = monotonicNanos()
        child.kill(SIGKILL)
        let next = try await waiter.first(from: from, timeout: .seconds(15), "the follower to take over from the killed child") {
            $0.isStarted && $0.identity == follower.identity
        }
        exitStatuses.append(await child.waitForExit())
        var phases: [String: Double] = [:]
        if let acquire = follower.lock.lastWrite, acquire.start >= killedAt, acquire.end <= next.nanos {
            phases["acquireStarted"] = millis(from: killedAt, to: acquire.start)
            phases["acquireWritten"] = millis(from: killedAt, to: acquire.end)
        }
        samples.append(TransitionSample(
            index: index, from: childIdentity, to: follower.identity, millis: millis(from: killedAt, to: next.nanos),
            previousLeaderStopReason: "killed (SIGKILL)", previousLeaderStoppedRelativeMillis: millis(from: next.nanos, to: killedAt),
            phases: phases))
    }
    let percentiles = Percentiles(samples: samples.map(\.millis))
    var summary = TransitionSummary(
        electors: 2, leaseDurationSeconds: 2, renewDeadlineSeconds: 1, retryPeriodSeconds: 0.25,
        measuredFrom: "kill(child, SIGKILL) of the leading child process (a lease-bench --child elector)",
        measuredTo: "the in-process follower's startedLeading event arrives at its events() subscriber",
        samples: samples, millis: percentiles, pastLeaseExpiryMillis: nil, goal: FloorGoal.fileTakeover,
        withinGoal: percentiles.max <= FloorGoal.fileTakeoverMillis)
    summary.summarizePhases()
    let killed = exitStatuses.filter { $0 == "signal 9" }.count
    return ScenarioMeasurement(
        operation: "a leader in a separate process (this binary, --child elector, FileLock, lease 2 s, renew deadline 1 s, "
            + "retryPeriod 250 ms) is SIGKILLed at a random moment; one follower in this process (inotify change feed) takes "
            + "over when the kernel has released the dead holder's liveness flock (holderIsKnownGone), without waiting for the lease",
        transition: summary,
        checks: [Check(name: "each leader child was killed by SIGKILL", expected: "\(count) of \(count) exited by signal 9",
                       measured: "\(killed) of \(exitStatuses.count): \(Set(exitStatuses).sorted().joined(separator: ", "))",
                       passed: killed == count)])
}

/// Polls an async condition every 5 ms.
func waitUntilAsync(timeout: Duration, _ what: String, _ condition: () async -> Bool) async throws {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while !(await condition()) {
        if ContinuousClock.now >= deadline { throw BenchError("timed out after \(timeout) waiting until \(what)") }
        try await Task.sleep(for: .milliseconds(5))
    }
}

// MARK: Renew cost

func renewCostScenario(_ kind: BackendKind) -> Scenario {
    Scenario(id: "\(kind.rawValue).renew.cost", title: "Renew cost on \(kind.label) (steady state)") { context in
        // Kubernetes: the leader's client reaches the API server through a counting TCP proxy (bytes on the wire).
        let countingProxy: FaultProxy? = kind == .kubernetes ? try FaultProxy() : nil
        defer { countingProxy?.shutdown() }
        let backend = if let countingProxy { try await kubernetesBackend(context, through: countingProxy) } else { try await makeBackend(kind, context) }
        defer { Task { await backend.cleanup() } }
        let warmup = 20
        let renewals = context.options.renewCostRenewals
        let configuration = LeaderElectionConfiguration(
            name: "lease-bench-renew-cost", leaseDuration: .seconds(2), renewDeadline: .seconds(1), retryPeriod: .milliseconds(50))
        return try await withCandidates(1, prefix: "bench-renew", backend: backend, configuration: configuration) { candidates, log in
            let leader = candidates[0]
            final class Window: Sendable {
                typealias Snapshot = (StoreCounts?, Int, UInt64, [Int: FaultProxy.Traffic])
                struct State { var seen = 0; var latencies: [Double] = []; var start: Snapshot?; var end: Snapshot?; var error: String? }
                let state = Mutex(State())
            }
            let window = Window()
            let storeCounts = backend.storeCounts
            let lock = leader.lock
            let done = OneShot<Void>()
            leader.lock.setHook { start, end in
                let phase = window.state.withLock { s -> Int in
                    s.seen += 1
                    if s.seen > warmup && s.seen <= warmup + renewals { s.latencies.append(Double(end - start) / 1000) }
                    return s.seen
                }
                guard phase == warmup || phase == warmup + renewals else { return }
                let counts: StoreCounts?
                do { counts = try storeCounts?() } catch {
                    window.state.withLock { $0.error = "\(error)" }
                    counts = nil
                }
                let snapshot = (counts, lock.totalCalls, monotonicNanos(), countingProxy?.trafficByConnection(proxy: 0) ?? [:])
                window.state.withLock { s in if phase == warmup { s.start = snapshot } else { s.end = snapshot } }
                if phase == warmup + renewals { done.complete(.success(())) }
            }
            var waiter = ElectionWaiter(log)
            leader.start()
            _ = try await waiter.first(from: 0, timeout: .seconds(15), "the leader to start leading") { $0.isStarted }
            try await done.value(timeout: .seconds(Double(warmup + renewals) * 0.05 * 4 + 15), "\(renewals) renewals")
            leader.lock.setHook(nil)
            let s = window.state.withLock { $0 }
            if let error = s.error { throw BenchError("reading the store's counters failed: \(error)") }
            guard let start = s.start, let end = s.end else { throw BenchError("renewal window incomplete") }
            let stopped = log.first(from: 0) { $0.stopReason != nil }
            let latency = Percentiles(samples: s.latencies)
            let lockCalls = end.1 - start.1
            let wall = Double(end.2 - start.2) / 1e9
            var metrics: [FloorMetric] = []
            var counts: [String: [String: Int]] = [:]
            let n = Double(renewals)
            if let a = start.0, let b = end.0 {
                let delta = a.delta(to: b)
                counts["storeRequests"] = delta.requests
                if let rpcs = delta.etcdRPCs { counts["etcdRPCsOfTheAPIServer"] = rpcs }
                let perRenew = Double(delta.total) / n
                metrics.append(FloorMetric(name: "store round trips per renew (server-side)", value: perRenew, unit: "",
                                           text: formatCounts(delta.requests), goal: "exactly 1", met: abs(perRenew - 1) < 1e-9))
                if kind == .kubernetes, let received = delta.bytesReceived, let sent = delta.bytesSent {
                    // By connection: the one that carried the PUTs (most bytes from the client), and the rest (the
                    // leader's own watch, whose events for its renewals come back to it).
                    let traffic = Set(start.3.keys).union(end.3.keys).sorted().map { id in
                        (id, (end.3[id] ?? .init()).subtracting(start.3[id] ?? .init()))
                    }
                    let requests = traffic.max { $0.1.clientToUpstream < $1.1.clientToUpstream }
                    var text = "\(String(format: "%.0f", received / n)) / \(String(format: "%.0f", sent / n))"
                    if let requests {
                        let other = traffic.filter { $0.0 != requests.0 }
                            .reduce(into: FaultProxy.Traffic()) { $0.clientToUpstream += $1.1.clientToUpstream; $0.upstreamToClient += $1.1.upstreamToClient }
                        text += " (PUT connection \(String(format: "%.0f", Double(requests.1.clientToUpstream) / n)) / "
                            + "\(String(format: "%.0f", Double(requests.1.upstreamToClient) / n)); other connections (the leader's watch) "
                            + "\(String(format: "%.0f", Double(other.clientToUpstream) / n)) / \(String(format: "%.0f", Double(other.upstreamToClient) / n)))"
                        counts["bytesByConnection"] = Dictionary(uniqueKeysWithValues: traffic.flatMap { id, t in
                            [("\(id) client→server", t.clientToUpstream), ("\(id) server→client", t.upstreamToClient)]
                        })
                    }
                    metrics.append(FloorMetric(name: "bytes per renew, client → API server / API server → client (TLS on the TCP connections, counting proxy)",
                                               value: received / n, unit: "B", text: text))
                } else if let received = delta.bytesReceived, let sent = delta.bytesSent {
                    metrics.append(FloorMetric(name: "bytes per renew, client → etcd / etcd → client (server-side counters)",
                                               value: received / n, unit: "B",
                                               text: "\(String(format: "%.0f", received / n)) / \(String(format: "%.0f", sent / n))"))
                }
                if let rpcs = delta.etcdRPCs {
                    metrics.append(FloorMetric(name: "etcd RPCs per renew made by the API server", value: Double(rpcs.values.reduce(0, +)) / n,
                                               unit: "", text: formatCounts(rpcs)))
                }
            }
            let perRenewCalls = Double(lockCalls) / n
            metrics.append(FloorMetric(name: "lock calls per renew (client-side)", value: perRenewCalls, unit: "",
                                       goal: kind == .file ? "exactly 1 (no server to count on)" : nil,
                                       met: kind == .file ? abs(perRenewCalls - 1) < 1e-9 : nil))
            if kind == .file, let directory = backend.directory,
               let names = try? FileManager.default.contentsOfDirectory(atPath: directory),
               let name = names.first(where: { $0.hasPrefix("bench-renew-") }),
               let size = (try? FileManager.default.attributesOfItem(atPath: directory + "/" + name))?[.size] as? Int {
                metrics.append(FloorMetric(name: "bytes written per renew (the record file, rewritten whole + fsync)", value: Double(size), unit: "B"))
            }
            metrics.append(FloorMetric(name: "renew latency p50 / p99 (update(expecting:))", value: latency.p50, unit: "µs",
                                       text: "\(formatMicros(latency.p50)) / \(formatMicros(latency.p99))"))
            metrics.append(FloorMetric(name: "renewals per second", value: n / wall, unit: "/s"))
            return ScenarioMeasurement(
                operation: "one LeaderElector leading on \(kind.label), renewing on its own (lease 2 s, renew deadline 1 s, retryPeriod 50 ms); "
                    + "after \(warmup) renewals, a window of \(renewals) renewals; counters read right after the renewals that open and close it"
                    + (kind == .kubernetes ? ". The leader's KubernetesClient reaches the API server through a TCP proxy in this process "
                        + "(EtcdTesting.FaultProxy, no faults) that counts the bytes it reads from each side before forwarding them "
                        + "(TLS records, HTTP and JSON; all of the client's connections: its PUTs and its watch); the proxy's two "
                        + "extra loopback hops are in the latency" : ""),
                floor: FloorSummary(backend: kind.label, setup: "1 elector, retry 50 ms, \(renewals) renewals", metrics: metrics,
                                    details: ["latencyMicros": s.latencies], counts: counts),
                checks: [Check(name: "leadership kept while measuring", expected: "no stoppedLeading",
                               measured: stopped.map { "stoppedLeading(\($0.stopReason!))" } ?? "no stoppedLeading", passed: stopped == nil)])
        }
    }
}

/// The Kubernetes backend with every client going through `proxy` (a new proxy, id 0, to the API server);
/// the store counters carry the bytes the proxy read from the clients / the server.
private func kubernetesBackend(_ context: BenchContext, through proxy: FaultProxy) async throws -> LockBackend {
    let fixture = try await context.kubernetes.fixture()
    let port = try proxy.addProxy(id: 0, upstream: UInt16(fixture.server.port))
    let server = "https://127.0.0.1:\(port)"
    let counter = fixture.requestCounter
    let etcd = context.etcd
    return LockBackend(
        kind: .kubernetes,
        makeLock: { name, identity, configuration in
            try KubernetesLock.validate(configuration)
            let client = try fixture.makeClient(
                requestTimeout: KubernetesConfiguration.requestTimeout(forRenewDeadline: configuration.renewDeadline), server: server)
            do {
                let lock = try KubernetesLock(client: client, configuration: .init(name: name, namespace: fixture.namespace), identity: identity)
                return (lock, { try? await client.shutdown() })
            } catch {
                try? await client.shutdown()
                throw error
            }
        },
        storeCounts: {
            let traffic = proxy.traffic(proxy: 0)
            return StoreCounts(requests: counter(), bytesReceived: Double(traffic.clientToUpstream), bytesSent: Double(traffic.upstreamToClient),
                               etcdRPCs: try etcd.metrics.rpcsStarted())
        },
        storeRequestMeaning: "requests the LeaseAPIServer received (requestCounts by method, WATCH for watches; Event POSTs included)",
        cleanup: {}, directory: nil)
}

// MARK: Follower load

func followerLoadScenario(_ kind: BackendKind, followers: Int) -> Scenario {
    Scenario(id: "\(kind.rawValue).followers.c\(followers)", title: "Follower load on \(kind.label): 1 leader + \(followers) followers") { context in
        let backend = try await makeBackend(kind, context)
        defer { Task { await backend.cleanup() } }
        let windowSeconds = context.options.followerSeconds
        let configuration = LeaderElectionConfiguration(name: "lease-bench-followers")   // client-go defaults: 15 s / 10 s / 2 s
        return try await withCandidates(followers + 1, prefix: "bench-followers", backend: backend, configuration: configuration) { candidates, log in
            var waiter = ElectionWaiter(log)
            for candidate in candidates { candidate.lock.countFeedDeliveries() }
            for candidate in candidates { candidate.start() }
            let first = try await waiter.first(from: 0, timeout: .seconds(60), "a first leader") { $0.isStarted }
            try await waitUntil(timeout: .seconds(90), "every follower has observed \(first.identity)") {
                candidates.allSatisfy { $0.elector.currentLeader == first.identity }
            }
            try await Task.sleep(for: .seconds(3))
            let leader = candidates.first { $0.identity == first.identity }!
            let others = candidates.filter { $0 !== leader }
            let from = log.count
            let store0 = try backend.storeCounts?()
            let followerCalls0 = others.reduce(0) { $0 + $1.lock.totalCalls }
            let feed0 = others.reduce(0) { $0 + $1.lock.feedDeliveries.stored + $1.lock.feedDeliveries.deleted + $1.lock.feedDeliveries.unknown }
            let leaderCalls0 = leader.lock.totalCalls
            let cpu0 = processCPUNanos(), etcdCPU0 = context.etcd.serverCPUNanos(), t0 = monotonicNanos()
            try await Task.sleep(for: .seconds(windowSeconds))
            let cpu1 = processCPUNanos(), etcdCPU1 = context.etcd.serverCPUNanos(), t1 = monotonicNanos()
            let followerCalls = others.reduce(0) { $0 + $1.lock.totalCalls } - followerCalls0
            let feed = others.reduce(0) { $0 + $1.lock.feedDeliveries.stored + $1.lock.feedDeliveries.deleted + $1.lock.feedDeliveries.unknown } - feed0
            let leaderCalls = leader.lock.totalCalls - leaderCalls0
            let store1 = try backend.storeCounts?()
            let wall = Double(t1 - t0) / 1e9
            let changes = log.first(from: from) { $0.isStarted || $0.stopReason != nil }
            var metrics: [FloorMetric] = []
            var counts: [String: [String: Int]] = [:]
            if let a = store0, let b = store1 {
                let delta = a.delta(to: b)
                counts["storeRequests"] = delta.requests
                metrics.append(FloorMetric(name: "store requests/s, all candidates (server-side)", value: perSecond(delta.total, wall),
                                           unit: "/s", text: "\(formatRatio(perSecond(delta.total, wall), digits: 2)) (\(formatCounts(delta.requests)) in \(formatRatio(wall, digits: 1)) s)"))
            }
            metrics.append(FloorMetric(name: "leader's lock calls/s (its renewals)", value: perSecond(leaderCalls, wall), unit: "/s"))
            metrics.append(FloorMetric(name: "followers' lock calls/s, all \(followers) together (client-side)",
                                       value: perSecond(followerCalls, wall), unit: "/s",
                                       goal: "0: followers cost no periodic requests when the store can watch",
                                       met: followerCalls == 0))
            metrics.append(FloorMetric(
                name: "change-feed deliveries/s to the followers, all together (\(kind == .file ? "each one local read of the record file on the feed's thread, after an inotify event" : kind == .etcd ? "watch events pushed by etcd" : "watch events pushed by the API server"))",
                value: perSecond(feed, wall), unit: "/s"))
            if leaderCalls > 0 {
                metrics.append(FloorMetric(name: "follower lock calls per follower per leader lock call (1.0: every follower re-reads after each renewal it is told of)",
                                           value: Double(followerCalls) / Double(followers) / Double(leaderCalls), unit: ""))
            }
            metrics.append(FloorMetric(name: "CPU of this process (\(followers + 1) electors\(kind == .kubernetes ? " + the API server" : ""))",
                                       value: Double(cpu1 - cpu0) / 1e9 / wall * 100, unit: "% of one core"))
            if kind != .file, let e0 = etcdCPU0, let e1 = etcdCPU1 {
                metrics.append(FloorMetric(name: "CPU of etcd", value: Double(e1 - e0) / 1e9 / wall * 100, unit: "% of one core"))
            }
            return ScenarioMeasurement(
                operation: "\(followers + 1) LeaderElectors in this process on one \(kind.label) lock, each with its own lock and "
                    + "connections, client-go default timing (lease 15 s, renew deadline 10 s, retryPeriod 2 s); once every "
                    + "follower has observed the leader and 3 s more, a \(formatRatio(windowSeconds, digits: 0)) s window. Store: \(backend.storeRequestMeaning)",
                floor: FloorSummary(backend: kind.label, setup: "1 + \(followers) electors, 15 s / 10 s / 2 s, \(formatRatio(windowSeconds, digits: 0)) s window",
                                    metrics: metrics, counts: counts),
                checks: [Check(name: "leadership stable during the window", expected: "no startedLeading or stoppedLeading",
                               measured: changes.map { "\($0.identity): \($0.event)" } ?? "none", passed: changes == nil)])
        }
    }
}

// MARK: Contention

func contentionScenario(_ kind: BackendKind, candidates count: Int) -> Scenario {
    Scenario(id: "\(kind.rawValue).contention.c\(count)", title: "Contention on \(kind.label): \(count) candidates start at once") { context in
        let backend = try await makeBackend(kind, context)
        defer { Task { await backend.cleanup() } }
        let configuration = LeaderElectionConfiguration(name: "lease-bench-contention")   // 15 s / 10 s / 2 s
        var firstLeader: [Double] = [], stable: [Double] = [], storeRequests: [Double] = [], lockCalls: [Double] = [], conflicts: [Double] = []
        var leadersPerRound: [Int] = []
        var lastCounts: [String: Int] = [:]
        for _ in 1...context.options.contentionRounds {
            try await withCandidates(count, prefix: "bench-contention", backend: backend, configuration: configuration) { (candidates: [Candidate], log: ElectionLog) async throws -> Void in
                var waiter = ElectionWaiter(log)
                let store0 = try backend.storeCounts?()
                let t0 = monotonicNanos()
                for candidate in candidates { candidate.start() }
                let first = try await waiter.first(from: 0, timeout: .seconds(60), "a first leader") { $0.isStarted }
                try await waitUntil(timeout: .seconds(90), "all \(count) candidates observe \(first.identity)") {
                    candidates.allSatisfy { $0.elector.currentLeader == first.identity }
                }
                let t2 = monotonicNanos()
                let calls = candidates.reduce(0) { $0 + $1.lock.totalCalls }
                let failed = candidates.reduce(0) { $0 + $1.lock.failedUpdates + $1.lock.failedCreates }
                let store1 = try backend.storeCounts?()
                firstLeader.append(millis(from: t0, to: first.nanos))
                stable.append(millis(from: t0, to: t2))
                lockCalls.append(Double(calls))
                conflicts.append(Double(failed))
                if let a = store0, let b = store1 {
                    let delta = a.delta(to: b)
                    storeRequests.append(Double(delta.total))
                    lastCounts = delta.requests
                }
                var started = 0
                var seq = 0
                while let entry = log.first(from: seq, where: { $0.isStarted }) { started += 1; seq = entry.seq + 1 }
                leadersPerRound.append(started)
            }
        }
        var metrics = [
            FloorMetric(name: "time to first leader, median / max over rounds", value: median(firstLeader), unit: "ms",
                        text: "\(formatMillis(median(firstLeader))) / \(formatMillis(firstLeader.max() ?? 0))"),
            FloorMetric(name: "time until all \(count) observe the leader, median / max", value: median(stable), unit: "ms",
                        text: "\(formatMillis(median(stable))) / \(formatMillis(stable.max() ?? 0))"),
        ]
        if !storeRequests.isEmpty {
            metrics.append(FloorMetric(name: "store requests until stable (server-side), median", value: median(storeRequests), unit: "",
                                       text: "\(String(format: "%.0f", median(storeRequests))) (last round: \(formatCounts(lastCounts)))"))
        }
        metrics.append(FloorMetric(name: "lock calls until stable (client-side), median", value: median(lockCalls), unit: ""))
        metrics.append(FloorMetric(name: "failed writes (lost create / CAS races), median", value: median(conflicts), unit: ""))
        return ScenarioMeasurement(
            operation: "\(count) LeaderElectors in this process, each with its own lock and connections, on one new \(kind.label) lock, "
                + "client-go default timing; all started at once (a loop of start()); timed from before the loop to the first "
                + "startedLeading and to when every candidate's currentLeader names it; \(context.options.contentionRounds) rounds. Store: \(backend.storeRequestMeaning)",
            floor: FloorSummary(backend: kind.label, setup: "\(count) candidates, \(context.options.contentionRounds) rounds",
                                metrics: metrics,
                                details: ["firstLeaderMillis": firstLeader, "stableMillis": stable, "storeRequests": storeRequests,
                                          "lockCalls": lockCalls, "failedUpdates": conflicts]),
            checks: [Check(name: "exactly one leader per round", expected: "1 startedLeading in every round",
                           measured: leadersPerRound.map(String.init).joined(separator: ", "), passed: leadersPerRound.allSatisfy { $0 == 1 })])
    }
}

// MARK: Scale: heartbeat leases in a separate process

func scaleScenario(_ kind: BackendKind, leases: Int) -> Scenario {
    Scenario(id: "\(kind.rawValue).scale.heartbeats", title: "Scale on \(kind.label): \(leases) heartbeat leases in one process") { context in
        let options = context.options
        let resultPath = NSTemporaryDirectory() + "/lease-bench-scale-\(getpid())-\(randomHex(6)).json"
        defer { try? FileManager.default.removeItem(atPath: resultPath) }
        let namespace = "lease-bench-scale-\(randomHex(6))"
        guard kind != .file else { throw BenchError("the heartbeat scale scenario runs on etcd and Kubernetes only") }
        let childBackend = try await childBackendArguments(kind, context, directory: nil)
        defer { childBackend.cleanup() }
        if kind == .kubernetes {
            // The API server enforces namespaces, as kube-apiserver does: create this scenario's own first.
            let client = try await context.kubernetes.fixture().makeClient()
            do {
                _ = try await client.createNamespace(namespace)
                try await client.shutdown()
            } catch {
                try? await client.shutdown()
                throw BenchError("cannot create the namespace \(namespace) for the heartbeat leases: \(error)")
            }
        }
        // The backend's flags first: this scenario's own --namespace comes later and wins.
        let arguments = ["heartbeats", "--backend", kind.rawValue] + childBackend.arguments
            + ["--count", "\(leases)", "--interval-ms", "\(options.scaleIntervalSeconds * 1000)",
               "--lease-ms", "\(options.scaleIntervalSeconds * 4000)", "--seconds", "\(options.scaleSeconds)",
               "--namespace", namespace, "--result", resultPath]
        let child = try await ChildProcess.spawn(arguments, environment: childBackend.environment)
        let etcdCPU0 = context.etcd.serverCPUNanos()
        let t0 = monotonicNanos()
        let limit = Double(options.scaleSeconds + options.scaleIntervalSeconds) + 600
        let status = await child.waitForExit(timeoutSeconds: limit)
        let etcdCPU1 = context.etcd.serverCPUNanos()
        let wall = Double(monotonicNanos() - t0) / 1e9
        guard status == "exit 0" else { throw BenchError("the heartbeat child process ended with \(status) after \(formatRatio(wall, digits: 1)) s") }
        guard let data = FileManager.default.contents(atPath: resultPath) else { throw BenchError("the heartbeat child wrote no result") }
        let result = try JSONDecoder().decode(HeartbeatResult.self, from: data)
        if kind == .etcd {
            var end = Array("/leader-election/\(namespace)/".utf8)
            let start = end
            end[end.count - 1] += 1
            _ = try? await context.etcd.client.delete(start, rangeEnd: end)
        }
        let expectedRate = Double(leases) / Double(options.scaleIntervalSeconds)
        let rateMet = result.renewRate >= expectedRate * 0.99 && result.failedRenewals == 0
        let isEtcd = kind == .etcd
        var metrics: [FloorMetric] = [
            FloorMetric(name: "achieved renew rate (target \(formatRatio(expectedRate, digits: 0))/s)", value: result.renewRate, unit: "/s",
                        text: "\(formatRatio(result.renewRate, digits: 1)) (completed in the \(formatRatio(result.measuredSeconds, digits: 1)) s window; of the \(result.renewals) scheduled in it, \(result.failedRenewals) failed)",
                        goal: "≥ 99 % of the target, 0 failed", met: rateMet),
            FloorMetric(name: "renewals completed more than one interval late", value: Double(result.lateByMoreThanInterval), unit: "",
                        text: "\(result.lateByMoreThanInterval) of \(result.renewals)"),
            FloorMetric(name: "renew lag p50 / p99 / max (completion − scheduled time)", value: result.lagMillis.p99, unit: "ms",
                        text: "\(formatMillis(result.lagMillis.p50)) / \(formatMillis(result.lagMillis.p99)) / \(formatMillis(result.lagMillis.max))"),
            FloorMetric(name: "renew latency p50 / p99", value: result.latencyMillis.p50, unit: "ms",
                        text: "\(formatMillis(result.latencyMillis.p50)) / \(formatMillis(result.latencyMillis.p99))"),
            FloorMetric(name: "client process CPU (cores)", value: result.cpuCores, unit: "cores", text: formatRatio(result.cpuCores, digits: 3),
                        goal: isEtcd ? "≤ 0.5 core" : nil, met: isEtcd ? result.cpuCores <= FloorGoal.scaleCores : nil),
            FloorMetric(name: "client process RSS, max during the window / peak (VmHWM)", value: result.rssMaxMiB, unit: "MiB",
                        text: "\(formatRatio(result.rssMaxMiB, digits: 1)) / \(formatRatio(result.rssPeakMiB, digits: 1))",
                        goal: isEtcd ? "≤ 150 MB" : nil, met: isEtcd ? result.rssPeakMiB * 1.048576 <= FloorGoal.scaleRSSMiB : nil),
            FloorMetric(name: "creating the \(leases) leases (64 in flight)", value: result.createSeconds, unit: "s"),
        ]
        if !result.failuresByError.isEmpty {
            metrics.append(FloorMetric(name: "failed renewals by error", value: Double(result.failedRenewals), unit: "",
                                       text: result.failuresByError.sorted { $0.value > $1.value }.prefix(3)
                                           .map { "\($0.value) × \($0.key.replacingOccurrences(of: "|", with: "/"))" }.joined(separator: "; ")))
        }
        if let e0 = etcdCPU0, let e1 = etcdCPU1 {
            let cores = Double(e1 - e0) / 1e9 / wall
            metrics.append(FloorMetric(name: "etcd CPU over the whole child run (creates included)", value: cores, unit: "cores",
                                       text: formatRatio(cores, digits: 3)))
        }
        return ScenarioMeasurement(
            operation: "a separate process (this binary, --child heartbeats) holds \(leases) leases, one \(kind == .etcd ? "EtcdLock on one EtcdClient" : "KubernetesLock on one KubernetesClient") "
                + "each: creates them, then renews each every \(options.scaleIntervalSeconds) s (update(expecting:) with renewTime = now; "
                + "start times spread evenly over the interval; lease duration \(options.scaleIntervalSeconds * 4) s). After one "
                + "interval of warm-up, a \(options.scaleSeconds) s window: the child measures its own CPU (CLOCK_PROCESS_CPUTIME_ID) "
                + "and RSS (/proc/self/status every second)"
                + (kind == .kubernetes ? "; the LeaseAPIServer runs in the bench process, not in the child" : ""),
            floor: FloorSummary(backend: kind.label, setup: "\(leases) leases, every \(options.scaleIntervalSeconds) s, \(options.scaleSeconds) s window",
                                metrics: metrics),
            checks: [Check(name: "every lease was created", expected: "\(leases)", measured: "\(result.created)", passed: result.created == leases)])
    }
}

// MARK: Idle memory

let idleMemoryScenario = Scenario(id: "memory.idle", title: "RSS of an idle process with one elector, per backend") { context in
    var metrics: [FloorMetric] = []
    // A child that only parses its arguments and sleeps: the floor of this binary.
    let bare = try await ChildProcess.spawn(["idle"])
    try await Task.sleep(for: .seconds(3))
    let bareRSS = residentMemoryMiB(pid: bare.pid)
    bare.kill(SIGKILL)
    _ = await bare.waitForExit()
    guard let bareRSS else { throw BenchError("cannot read the idle child's RSS") }
    metrics.append(FloorMetric(name: "no elector (this binary, idle)", value: bareRSS.rss, unit: "MiB", text: formatRatio(bareRSS.rss, digits: 1)))
    for kind in BackendKind.allCases {
        let backend = try await makeBackend(kind, context)
        defer { Task { await backend.cleanup() } }
        let leaseName = "bench-memory-\(randomHex(6))"
        let identity = "bench-memory-child"
        let childBackend = try await childBackendArguments(kind, context, directory: backend.directory)
        defer { childBackend.cleanup() }
        let arguments = ["elector", "--backend", kind.rawValue, "--name", leaseName, "--identity", identity,
                         "--lease-ms", "15000", "--renew-ms", "10000", "--retry-ms", "2000"] + childBackend.arguments
        let probe = try await backend.makeLock(leaseName, "bench-memory-probe", LeaderElectionConfiguration())
        let child = try await ChildProcess.spawn(arguments, environment: childBackend.environment)
        do {
            try await waitUntilAsync(timeout: .seconds(30), "the \(kind.rawValue) child leads") {
                (try? await probe.lock.get())?.record.holderIdentity == identity
            }
            try await Task.sleep(for: .seconds(context.options.idleSeconds))
            guard let rss = residentMemoryMiB(pid: child.pid) else { throw BenchError("cannot read the child's RSS") }
            metrics.append(FloorMetric(name: "one leading elector on \(kind.label) (VmRSS / VmHWM)", value: rss.rss, unit: "MiB",
                                       text: "\(formatRatio(rss.rss, digits: 1)) / \(formatRatio(rss.peak, digits: 1))"))
        } catch {
            child.kill(SIGKILL)
            _ = await child.waitForExit()
            await probe.close()
            throw error
        }
        child.kill(SIGKILL)
        _ = await child.waitForExit()
        await probe.close()
    }
    return ScenarioMeasurement(
        operation: "a separate process (this binary, --child elector) runs one LeaderElector (client-go default timing) that leads; "
            + "after it leads and \(formatRatio(context.options.idleSeconds, digits: 0)) s idle, VmRSS from /proc/<pid>/status. "
            + "The first row is the same binary with no elector (--child idle)",
        floor: FloorSummary(backend: "all", setup: "1 elector per process", metrics: metrics))
}
