/// What a scenario is compared against: Go's etcd client (`go.etcd.io/etcd/clientv3`) on the same machine
/// against the same kind of single-member loopback etcd — measured in this run when `--go-reference` is given
/// (`make bench` does), otherwise the figure documented in the benchmark issue.
struct ReferenceFigure: Codable, Sendable {
    /// What was measured, in words.
    var description: String
    /// The reference p50 latency the ratio is computed against, µs: the median over the Go rounds of this run,
    /// or the documented figure when none ran.
    var p50Micros: Double
    var source: String
    /// `true` when ``p50Micros`` was measured in this run (interleaved with the scenario's own rounds).
    var measured: Bool
    /// The figure documented in the issue (measured with Go's client on an earlier day).
    var documentedP50Micros: Double
    /// The Go rounds of this run, in order (each ran right after the scenario's round of the same number).
    var rounds: [GoRound] = []

    /// Smallest and largest per-round p50 of the Go rounds, µs.
    var p50RangeMicros: [Double]? { rounds.isEmpty ? nil : [rounds.map(\.p50Micros).min()!, rounds.map(\.p50Micros).max()!] }
    /// Median over the Go rounds of the Go process's CPU per call, µs.
    var medianCPUMicrosPerCall: Double? { rounds.isEmpty ? nil : median(rounds.map(\.cpuMicrosPerCall)) }
}

/// The reference figures: Go's client measured in this run, or the documented figures.
enum GoReference {
    static let documentedSource = "Go clientv3 (etcd 3.4 client), single-member etcd on loopback, measured on this machine "
        + "on an earlier day; figures documented in the benchmark issue and docs/performance.md"
    static let measuredSource = "Go clientv3 (bench/go-clientv3: go.etcd.io/etcd/clientv3 from Debian golang-etcd-server-dev), "
        + "same etcd, one Go round (own process, own connection, same warm-up and sample counts, own key) after each of ours"
    /// Single-key linearizable Range: documented p50.
    static let documentedRangeMicros = 190.0
    /// `mod_revision == expected → put, else range` transaction: documented p50.
    static let documentedCASTxnMicros = 460.0
    static let rangeDescription = "clientv3 Get (linearizable, one key) p50"
    static let casTxnDescription = "clientv3 Txn(If(ModRevision == rev)).Then(OpPut).Else(OpGet) p50"
    /// The goal: at most this much slower than Go.
    static let goalRatio = 1.1

    /// The figure for `operation`: the median p50 of `rounds` when there are any, else the documented one.
    static func figure(_ operation: GoClientReference.Operation, rounds: [GoRound]) -> ReferenceFigure {
        let (description, documented) = switch operation {
        case .range: (rangeDescription, documentedRangeMicros)
        case .txn: (casTxnDescription, documentedCASTxnMicros)
        }
        guard !rounds.isEmpty else {
            return ReferenceFigure(description: description, p50Micros: documented, source: documentedSource, measured: false,
                                   documentedP50Micros: documented)
        }
        return ReferenceFigure(description: description, p50Micros: median(rounds.map(\.p50Micros)), source: measuredSource,
                               measured: true, documentedP50Micros: documented, rounds: rounds)
    }
}

/// A pass/fail invariant a scenario checks (a failed check fails the run).
struct Check: Codable, Sendable {
    var name: String
    var expected: String
    var measured: String
    var passed: Bool
}

/// The result of one scenario.
struct ScenarioResult: Codable, Sendable {
    var id: String
    var title: String
    /// The exact call measured.
    var operation: String
    var latency: LatencySummary?
    var throughput: ThroughputSummary?
    /// Leadership hand-off or takeover times (elector scenarios).
    var transition: TransitionSummary?
    /// The issue-6 scenarios' figures (renew cost, follower load, contention, scale, memory, hand-off and
    /// takeover on flock and etcd).
    var floor: FloorSummary?
    /// `leasectl handoff --wait` against `leasectl elect` candidates (issue 13).
    var leasectlHandOff: LeasectlHandOffSummary?
    var reference: ReferenceFigure?
    /// Measured median p50 / reference p50 (Go measured in this run when it ran).
    var ratioToReference: Double?
    /// Measured median p50 / the documented Go figure (for comparison with earlier runs).
    var ratioToDocumentedReference: Double?
    /// The p50 ratio to Go is within ``GoReference/goalRatio``, or the transition times meet their goal.
    var withinGoal: Bool?
    var checks: [Check] = []

    init(_ scenario: Scenario, _ measurement: ScenarioMeasurement) {
        id = scenario.id
        title = scenario.title
        operation = measurement.operation
        latency = measurement.latency
        throughput = measurement.throughput
        transition = measurement.transition
        floor = measurement.floor
        leasectlHandOff = measurement.leasectlHandOff
        reference = measurement.reference
        checks = measurement.checks
        if let transition { withinGoal = transition.withinGoal }
        if let floor, let met = floor.withinGoal { withinGoal = (withinGoal ?? true) && met }
        if let leasectlHandOff { withinGoal = (withinGoal ?? true) && leasectlHandOff.withinGoal }
        if let reference, let latency {
            let ratio = latency.medianLatencyMicros.p50 / reference.p50Micros
            ratioToReference = ratio
            ratioToDocumentedReference = latency.medianLatencyMicros.p50 / reference.documentedP50Micros
            withinGoal = ratio <= GoReference.goalRatio
        }
    }
}

/// What a scenario's run returns; the driver adds the scenario's id and title.
struct ScenarioMeasurement: Sendable {
    /// The exact call measured.
    var operation: String
    var latency: LatencySummary? = nil
    var throughput: ThroughputSummary? = nil
    var transition: TransitionSummary? = nil
    var floor: FloorSummary? = nil
    var leasectlHandOff: LeasectlHandOffSummary? = nil
    /// What the median p50 is compared against, if anything.
    var reference: ReferenceFigure? = nil
    var checks: [Check] = []
}

/// Everything a scenario may use.
struct BenchContext: Sendable {
    let options: BenchOptions
    let etcd: EtcdFixture
    /// Go's etcd client, run between the rounds of the etcd latency scenarios (`--go-reference`).
    let goReference: GoClientReference?
    /// The Kubernetes API server over `etcd`, started by the first Kubernetes scenario that asks for it.
    let kubernetes: KubernetesFixtureHolder
}

/// One benchmark scenario. `lease-bench` runs the list in order; later milestones append theirs (hand-off,
/// takeover, other backends) to `allScenarios`. Ids start with the backend (`etcd.`, `etcdlock.`, `kubernetes.`).
struct Scenario: Sendable {
    /// Stable identifier (JSON key, `--filter`), such as `etcd.range.latency`.
    let id: String
    let title: String
    let run: @Sendable (BenchContext) async throws -> ScenarioMeasurement
}

/// Every scenario, in the order they run: etcd, then Kubernetes, then the issue-6 figures on every backend, then
/// `leasectl handoff --wait` on every backend (issue 13).
func allScenarios(_ options: BenchOptions) -> [Scenario] {
    etcdScenarios(options) + kubernetesScenarios(options) + floorScenarios(options) + leasectlHandOffScenarios(options)
}

/// One figure of an issue-6 scenario, with its goal when the issue sets one.
struct FloorMetric: Codable, Sendable {
    var name: String
    /// The measured value (nil when it could not be measured; `text` says why).
    var value: Double?
    var unit: String
    var text: String? = nil
    var goal: String? = nil
    var met: Bool? = nil
}

/// The figures of an issue-6 scenario on one backend.
struct FloorSummary: Codable, Sendable {
    var backend: String
    /// Candidates, timing, duration, in words.
    var setup: String
    var metrics: [FloorMetric]
    /// Every goal of ``metrics`` met (nil when none has a goal).
    var withinGoal: Bool? {
        let goals = metrics.compactMap(\.met)
        return goals.isEmpty ? nil : goals.allSatisfy { $0 }
    }
    /// Raw per-sample or per-round data, for the JSON.
    var details: [String: [Double]] = [:]
    var counts: [String: [String: Int]] = [:]
}
