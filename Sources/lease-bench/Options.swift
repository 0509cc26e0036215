import Foundation

/// Command-line options of `lease-bench`.
///
/// The defaults are the documented configuration of `make bench` (docs/performance.md). Smaller values are
/// accepted — for profiling under valgrind, say — but then the report says that the run is below the
/// documented minimums and its figures are not comparable.
struct BenchOptions: Sendable, Codable {
    /// Rounds of every latency scenario; the report gives the median of the per-round percentiles.
    var rounds = 5
    /// Timed calls per round of the Range and CAS Txn latency scenarios.
    var latencySamples = 2000
    /// Timed renewals per round of the EtcdLock renewal scenario.
    var renewalSamples = 2000
    /// Untimed calls before every latency round (and before every throughput round).
    var warmupCalls = 300
    /// Rounds of every throughput scenario; the report gives the median calls/s.
    var throughputRounds = 3
    /// Minimum wall time of one throughput round, in seconds.
    var throughputSeconds = 2.0
    /// Minimum number of calls of one throughput round (a round runs until both minimums are met).
    var throughputMinCalls = 2000
    /// Timed renewals per round of the Kubernetes elector renewal scenario (one every 50 ms).
    var kubernetesRenewals = 100
    /// Leadership hand-offs timed by the Kubernetes graceful hand-off scenario.
    var handOffs = 50
    /// Crash takeovers timed by the Kubernetes takeover scenario (each waits out a 2 s lease).
    var takeovers = 10
    /// `leasectl handoff --wait` runs timed by each `*.handoff.leasectl` scenario (issue 13).
    var leasectlHandOffs = 20
    /// The `leasectl` those scenarios run; by default the one next to this binary (`make bench` builds both).
    var leasectl: String? = nil
    /// Issue-6 scenarios: followers next to the one leader (`*.followers.cN`).
    var followers = 100
    /// Length of the follower-load window, seconds.
    var followerSeconds = 20.0
    /// Candidates of the contention scenarios (`*.contention.cN`), and their rounds.
    var contenders = 100
    var contentionRounds = 3
    /// Renewals in the window of the renew-cost scenarios (one per 50 ms).
    var renewCostRenewals = 200
    /// Heartbeat leases of the scale scenarios, their renew interval and the measured window after one
    /// interval of warm-up, seconds.
    var scaleLeases = 10_000
    var scaleIntervalSeconds = 10
    var scaleSeconds = 60
    /// Seconds a leading child elector idles before its RSS is read (`memory.idle`).
    var idleSeconds = 5.0
    /// Calls in flight for the throughput scenarios.
    var concurrencyLevels = [1, 8, 32]
    /// The built `bench/go-clientv3` (Go's etcd client), run between the rounds of the etcd latency scenarios;
    /// without it the ratios are to the documented Go figures.
    var goReference: String? = nil
    /// Where the JSON results go.
    var output = "bench/results.json"
    /// Run only the scenarios whose id contains one of these substrings (all when empty).
    var filters: [String] = []
    /// List the scenarios and exit.
    var listOnly = false

    /// The documented minimums (the brief of the benchmark milestone).
    static let minimumRounds = 3
    static let minimumLatencySamples = 2000
    static let minimumRenewalSamples = 1000
    static let minimumThroughputCalls = 2000
    static let minimumKubernetesRenewals = 100
    static let minimumHandOffs = 50
    static let minimumTakeovers = 10
    static let minimumLeasectlHandOffs = 20

    /// Reasons why this configuration is below the documented minimums (empty when it is not).
    var belowMinimums: [String] {
        var reasons: [String] = []
        if rounds < Self.minimumRounds { reasons.append("rounds \(rounds) < \(Self.minimumRounds)") }
        if throughputRounds < Self.minimumRounds { reasons.append("throughput rounds \(throughputRounds) < \(Self.minimumRounds)") }
        if latencySamples < Self.minimumLatencySamples { reasons.append("samples \(latencySamples) < \(Self.minimumLatencySamples)") }
        if renewalSamples < Self.minimumRenewalSamples { reasons.append("renewals \(renewalSamples) < \(Self.minimumRenewalSamples)") }
        if throughputMinCalls < Self.minimumThroughputCalls && throughputSeconds < 2 {
            reasons.append("throughput rounds of \(throughputSeconds) s and \(throughputMinCalls) calls (need ~2 s or ≥ \(Self.minimumThroughputCalls) calls)")
        }
        if kubernetesRenewals < Self.minimumKubernetesRenewals {
            reasons.append("Kubernetes renewals \(kubernetesRenewals) < \(Self.minimumKubernetesRenewals)")
        }
        if handOffs < Self.minimumHandOffs { reasons.append("hand-offs \(handOffs) < \(Self.minimumHandOffs)") }
        if takeovers < Self.minimumTakeovers { reasons.append("takeovers \(takeovers) < \(Self.minimumTakeovers)") }
        if leasectlHandOffs < Self.minimumLeasectlHandOffs {
            reasons.append("leasectl hand-offs \(leasectlHandOffs) < \(Self.minimumLeasectlHandOffs)")
        }
        if followers < 100 { reasons.append("followers \(followers) < 100") }
        if contenders < 100 { reasons.append("contenders \(contenders) < 100") }
        if scaleLeases < 10_000 { reasons.append("scale leases \(scaleLeases) < 10000") }
        if scaleSeconds < 60 { reasons.append("scale window \(scaleSeconds) s < 60 s") }
        if renewCostRenewals < 200 { reasons.append("renew-cost renewals \(renewCostRenewals) < 200") }
        if goReference == nil { reasons.append("no --go-reference: Go ratios are to the documented figures, not measured in this run") }
        if !filters.isEmpty { reasons.append("scenarios filtered by --filter \(filters.joined(separator: ","))") }
        return reasons
    }

    static let usage = """
        usage: lease-bench [options]

        Starts a single-member etcd (temporary directory, free loopback ports), measures the etcd client and
        EtcdLock, then KubernetesLock and the elector against a LeaseAPIServer (HTTPS, in this process) over the
        same etcd; prints a Markdown table and writes JSON results. Needs `etcd`, `etcdctl` and `openssl`
        (make bootstrap).

          --rounds N               rounds of each latency scenario (default 5; documented minimum 3)
          --samples N              timed calls per Range / CAS Txn / Kubernetes get / update latency round
                                   (default 2000)
          --renewals N             timed EtcdLock renewals per round (default 2000; minimum 1000)
          --k8s-renewals N         timed elector renewals per round of kubernetes.renew, one per 50 ms
                                   (default 100; minimum 100)
          --handoffs N             graceful hand-offs timed by kubernetes.handoff.graceful (default 50;
                                   minimum 50)
          --takeovers N            crash takeovers (SIGKILLed leader process) timed by each *.takeover.crash
                                   scenario, ~3 s each (default 10; minimum 10)
          --leasectl-handoffs N    `leasectl handoff --wait` runs timed by each *.handoff.leasectl
                                   scenario, ~1 s each at most (default 20; minimum 20)
          --leasectl PATH          the leasectl those scenarios run (default: the one next to this
                                   binary; make bench builds it)
          --followers N            followers next to the leader in *.followers.cN (default 100)
          --follower-seconds S     follower-load window (default 20)
          --contenders N           candidates of *.contention.cN (default 100)
          --contention-rounds N    rounds of each contention scenario (default 3)
          --renew-cost-renewals N  renewals in the window of *.renew.cost (default 200)
          --scale-leases N         heartbeat leases of *.scale.heartbeats (default 10000)
          --scale-interval S       their renew interval, whole seconds (default 10; lease = 4 × interval)
          --scale-seconds S        measured window after one interval of warm-up (default 60)
          --idle-seconds S         idle time before memory.idle reads a child's RSS (default 5)
          --warmup N               untimed calls before each round (default 300)
          --throughput-rounds N    rounds of each throughput scenario (default 3)
          --throughput-seconds S   minimum duration of a throughput round (default 2)
          --throughput-min-calls N minimum calls of a throughput round (default 2000)
          --concurrency LIST       calls in flight for throughput, comma-separated (default 1,8,32)
          --filter SUBSTRING       run only scenarios whose id contains it (repeatable; others are
                                   reported as not selected)
          --go-reference PATH      Go's etcd client (bench/go-clientv3, built by make bench): one Go round
                                   after each etcd latency round, same etcd; ratios are to it (without
                                   it: to the documented figures, 190 / 460 µs)
          --output PATH            JSON results (default bench/results.json)
          --list                   list the scenario ids and exit
          -h, --help               this text

        GRPC_VERBOSITY defaults to NONE (set it in the environment to see gRPC's own logs).
        """

    /// Parses the arguments (without the program name).
    static func parse(_ arguments: [String]) throws(BenchError) -> BenchOptions? {
        var options = BenchOptions()
        var iterator = arguments.makeIterator()
        func value(_ flag: String) throws(BenchError) -> String {
            guard let v = iterator.next() else { throw BenchError("\(flag) needs a value") }
            return v
        }
        func positive(_ flag: String) throws(BenchError) -> Int {
            let text = try value(flag)
            guard let n = Int(text), n > 0 else { throw BenchError("\(flag) needs a positive integer, got \"\(text)\"") }
            return n
        }
        while let argument = iterator.next() {
            switch argument {
            case "-h", "--help": return nil
            case "--rounds": options.rounds = try positive(argument)
            case "--samples": options.latencySamples = try positive(argument)
            case "--renewals": options.renewalSamples = try positive(argument)
            case "--k8s-renewals": options.kubernetesRenewals = try positive(argument)
            case "--handoffs": options.handOffs = try positive(argument)
            case "--takeovers": options.takeovers = try positive(argument)
            case "--leasectl-handoffs": options.leasectlHandOffs = try positive(argument)
            case "--leasectl": options.leasectl = try value(argument)
            case "--warmup":
                let text = try value(argument)
                guard let n = Int(text), n >= 0 else { throw BenchError("--warmup needs a non-negative integer, got \"\(text)\"") }
                options.warmupCalls = n
            case "--throughput-rounds": options.throughputRounds = try positive(argument)
            case "--throughput-seconds":
                let text = try value(argument)
                guard let s = Double(text), s >= 0 else { throw BenchError("--throughput-seconds needs a non-negative number, got \"\(text)\"") }
                options.throughputSeconds = s
            case "--throughput-min-calls": options.throughputMinCalls = try positive(argument)
            case "--concurrency":
                let text = try value(argument)
                let levels = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard !levels.isEmpty, levels.allSatisfy({ ($0 ?? 0) > 0 }) else {
                    throw BenchError("--concurrency needs positive integers separated by commas, got \"\(text)\"")
                }
                options.concurrencyLevels = levels.map { $0! }
            case "--followers": options.followers = try positive(argument)
            case "--follower-seconds": options.followerSeconds = Double(try positive(argument))
            case "--contenders": options.contenders = try positive(argument)
            case "--contention-rounds": options.contentionRounds = try positive(argument)
            case "--renew-cost-renewals": options.renewCostRenewals = try positive(argument)
            case "--scale-leases": options.scaleLeases = try positive(argument)
            case "--scale-interval": options.scaleIntervalSeconds = try positive(argument)
            case "--scale-seconds": options.scaleSeconds = try positive(argument)
            case "--idle-seconds": options.idleSeconds = Double(try positive(argument))
            case "--filter": options.filters.append(try value(argument))
            case "--output": options.output = try value(argument)
            case "--go-reference": options.goReference = try value(argument)
            case "--list": options.listOnly = true
            default: throw BenchError("unknown argument \"\(argument)\" (see --help)")
            }
        }
        return options
    }
}

/// A failure of the benchmark harness itself (bad arguments, an unexpected answer, a failed invariant).
struct BenchError: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}
