/// What a scenario is compared against: a figure measured with Go's etcd client (`go.etcd.io/etcd/clientv3`)
/// on the same machine against the same kind of single-member loopback etcd.
struct ReferenceFigure: Codable, Sendable {
    /// What was measured, in words.
    var description: String
    /// The reference p50 latency, µs.
    var p50Micros: Double
    var source: String
}

/// The documented reference figures (the only numbers this benchmark does not measure itself).
enum GoReference {
    static let source = "Go clientv3 (etcd 3.4 client), single-member etcd on loopback, measured on this machine; "
        + "figures documented in the benchmark milestone and docs/performance.md"
    /// Single-key linearizable Range.
    static let range = ReferenceFigure(description: "clientv3 Get (linearizable, one key) p50", p50Micros: 190, source: source)
    /// `mod_revision == expected → put, else range` transaction.
    static let casTxn = ReferenceFigure(description: "clientv3 Txn(If(ModRevision == rev)).Then(OpPut).Else(OpGet) p50",
                                        p50Micros: 460, source: source)
    /// The goal: at most this much slower than Go.
    static let goalRatio = 1.1
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
    var reference: ReferenceFigure?
    /// Measured median p50 / reference p50.
    var ratioToReference: Double?
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
        reference = measurement.reference
        checks = measurement.checks
        if let transition { withinGoal = transition.withinGoal }
        if let floor, let met = floor.withinGoal { withinGoal = (withinGoal ?? true) && met }
        if let reference, let latency {
            let ratio = latency.medianLatencyMicros.p50 / reference.p50Micros
            ratioToReference = ratio
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
    /// What the median p50 is compared against, if anything.
    var reference: ReferenceFigure? = nil
    var checks: [Check] = []
}

/// Everything a scenario may use.
struct BenchContext: Sendable {
    let options: BenchOptions
    let etcd: EtcdFixture
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

/// Every scenario, in the order they run: etcd, then Kubernetes.
func allScenarios(_ options: BenchOptions) -> [Scenario] {
    etcdScenarios(options) + kubernetesScenarios(options) + floorScenarios(options)
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
