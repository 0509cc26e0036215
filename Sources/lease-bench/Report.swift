import Foundation

/// Everything `bench/results.json` holds.
struct BenchReport: Codable, Sendable {
    var schemaVersion = 1
    var tool = "lease-bench"
    var startedAt: String
    var finishedAt: String?
    var machine: MachineInfo
    var versions: VersionInfo
    var configuration: Configuration
    var goal = Goal()
    var scenarios: [ScenarioResult] = []
    /// Scenarios not run because `--filter` did not select them.
    var notSelected: [String] = []
    /// Scenarios that failed (the error), so none disappears from the report.
    var failures: [Failure] = []
    /// Every check of every scenario passed and no scenario failed.
    var passed = true

    struct Configuration: Codable, Sendable {
        var options: BenchOptions
        /// Why this run is below the documented minimums (empty for a comparable run).
        var belowDocumentedMinimums: [String]
        var transport = "plaintext gRPC (HTTP/2) over 127.0.0.1; one EtcdClient (one channel, one connection) shared by all calls"
        var etcdCommandLine: [String]
        var etcdDataFileSystem: String
        var grpcVerbosity: String
        var percentiles = "nearest rank over the timed calls of one round; the summary is the median over rounds of each per-round percentile"
        var cpuAccounting = "client: CLOCK_PROCESS_CPUTIME_ID of the benchmark process (all threads); etcd: utime+stime from /proc/<pid>/stat (10 ms ticks); context switches: getrusage(RUSAGE_SELF) ru_nvcsw + ru_nivcsw"
        var roundTripAccounting = "delta of etcd's grpc_server_started_total (all methods) over the timed calls, scraped from /metrics before and after"
        var kubernetesTransport = "kubernetes.* scenarios: KubernetesClient (AsyncHTTPClient, HTTP/1.1 keep-alive, TLS through NIOSSL/BoringSSL with the EtcdTesting test CA, bearer token) to a LeaseAPIServer in this process on 127.0.0.1 (SwiftNIO + NIOSSL), which stores the Leases in the same etcd through an EtcdClient of its own; one client per scenario, one per elector"
        var kubernetesRequestAccounting = "kubernetes.* scenarios: delta of LeaseAPIServer.requestCounts (requests by HTTP method, counted on arrival; WATCH for watches) over the timed calls; CPU 'client' is the whole bench process, which includes the API server"
    }

    struct Goal: Codable, Sendable {
        var maximumRatioToGo = GoReference.goalRatio
        var comparedStatistic = "p50 latency"
        var kubernetesHandOff = KubernetesGoal.handOff
        var kubernetesTakeover = KubernetesGoal.takeover
        var leasectlHandOff = LeasectlHandOffGoal.text
    }

    struct Failure: Codable, Sendable {
        var scenario: String
        var error: String
    }
}

func formatMicros(_ value: Double) -> String {
    value < 100 ? String(format: "%.1f", value) : String(format: "%.0f", value)
}

/// Milliseconds: one decimal below 100 ms, none above.
func formatMillis(_ value: Double) -> String {
    value < 100 ? String(format: "%.1f", value) : String(format: "%.0f", value)
}

func formatRatio(_ value: Double, digits: Int = 2) -> String {
    String(format: "%.\(digits)f", value)
}

private func cpuCell(_ client: Double, _ server: Double?) -> String {
    "\(formatMicros(client)) / \(server.map(formatMicros) ?? "n/a")"
}

/// The Markdown report printed to stdout (and pasted into docs/performance.md).
func markdown(_ report: BenchReport) -> String {
    let options = report.configuration.options
    var out: [String] = []
    out.append("## lease-bench — \(report.versions.etcdServer.isEmpty ? "etcd" : "etcd \(report.versions.etcdServer)"), "
        + "\(report.machine.nproc) × \(report.machine.cpuModel), \(report.versions.buildConfiguration) build")
    out.append("")
    if !report.configuration.belowDocumentedMinimums.isEmpty {
        out.append("> **Not a comparable run** — below the documented configuration: "
            + report.configuration.belowDocumentedMinimums.joined(separator: "; ") + ".")
        out.append("")
    }
    let latency = report.scenarios.filter { $0.latency != nil && !isKubernetes($0) }
    if !latency.isEmpty {
        out.append("### Latency (µs; median over \(options.rounds) rounds of each round's percentile; sequential calls)")
        out.append("")
        out.append("| Scenario | Timed calls | p50 | p90 | p99 | max | p50 spread over rounds | Go clientv3 p50 | Ratio (p50) | CPU µs/call (client / etcd) | Client ctx switches/call | RPCs/call |")
        out.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for s in latency {
            let l = s.latency!
            let p = l.medianLatencyMicros
            let reference = s.reference.map { r in
                r.measured ? "\(formatMicros(r.p50Micros)) (this run)" : "\(formatMicros(r.p50Micros)) (documented)"
            } ?? "—"
            let ratio = s.ratioToReference.map { r in
                "\(formatRatio(r))×" + (r <= GoReference.goalRatio ? "" : " **(above \(formatRatio(GoReference.goalRatio, digits: 1))×)**")
            } ?? "—"
            out.append("| \(s.title) | \(l.rounds.count) × \(l.samplesPerRound) | \(formatMicros(p.p50)) | \(formatMicros(p.p90)) | "
                + "\(formatMicros(p.p99)) | \(formatMicros(p.max)) | \(formatMicros(l.p50RangeMicros[0]))–\(formatMicros(l.p50RangeMicros[1])) | "
                + "\(reference) | \(ratio) | \(cpuCell(l.medianClientCPUMicrosPerCall, l.medianServerCPUMicrosPerCall)) | "
                + "\(formatRatio(l.medianClientContextSwitchesPerCall, digits: 1)) | \(formatRatio(l.serverRPCsPerCall, digits: 3)) |")
        }
        out.append("")
        out += goReferenceMarkdown(latency)
    }
    let throughput = report.scenarios.filter { $0.throughput != nil }
    if !throughput.isEmpty {
        out.append("### Throughput (median over \(options.throughputRounds) rounds of ≥ \(formatRatio(options.throughputSeconds, digits: 1)) s "
            + "and ≥ \(options.throughputMinCalls) calls; one client)")
        out.append("")
        out.append("| Operation | In flight | Calls/s | Min–max over rounds | p50 µs | p99 µs | CPU µs/call (client / etcd) | Calls |")
        out.append("|---|--:|--:|--:|--:|--:|--:|--:|")
        for s in throughput {
            let t = s.throughput!
            let name = s.id.hasPrefix("etcd.range") ? "etcd Range (linearizable)" : s.id.hasPrefix("etcd.put") ? "etcd Put" : s.title
            out.append("| \(name) | \(t.concurrency) | \(String(format: "%.0f", t.medianCallsPerSecond)) | "
                + "\(String(format: "%.0f", t.callsPerSecondRange[0]))–\(String(format: "%.0f", t.callsPerSecondRange[1])) | "
                + "\(formatMicros(t.medianLatencyMicros.p50)) | \(formatMicros(t.medianLatencyMicros.p99)) | "
                + "\(cpuCell(t.medianClientCPUMicrosPerCall, t.medianServerCPUMicrosPerCall)) | \(t.totalCalls) |")
        }
        out.append("")
    }
    out += kubernetesMarkdown(report)
    out += floorMarkdown(report)
    out += leasectlHandOffMarkdown(report)
    let checks = report.scenarios.flatMap { s in s.checks.map { (s.id, $0) } }
    if !checks.isEmpty {
        out.append("### Checks")
        out.append("")
        for (id, check) in checks {
            out.append("- \(check.passed ? "PASS" : "**FAIL**") `\(id)`: \(check.name) = \(check.measured); expected \(check.expected)")
        }
        out.append("")
    }
    for failure in report.failures {
        out.append("- **FAILED** `\(failure.scenario)`: \(failure.error)")
    }
    for id in report.notSelected {
        out.append("- not run (not selected by --filter): `\(id)`")
    }
    if !report.failures.isEmpty || !report.notSelected.isEmpty { out.append("") }
    let kubernetesGoals = report.scenarios.contains { $0.transition != nil }
        ? "Kubernetes goals (informational): \(KubernetesGoal.handOff); \(KubernetesGoal.takeover). " : ""
    let measuredGo = report.scenarios.contains { $0.reference?.measured == true }
    out.append("Reference: \(measuredGo ? GoReference.measuredSource : GoReference.documentedSource). Goal: p50 ≤ \(formatRatio(GoReference.goalRatio, digits: 1))× Go. " + kubernetesGoals
        + "etcd data directory on \(report.configuration.etcdDataFileSystem). "
        + "Load average at start / end: \(report.machine.loadAverageAtStart) / \(report.machine.loadAverageAtEnd ?? "?").")
    return out.joined(separator: "\n")
}

private func isKubernetes(_ scenario: ScenarioResult) -> Bool { scenario.id.hasPrefix("kubernetes.") }

/// The Kubernetes section: lock and renewal latency, then hand-off and takeover times.
private func kubernetesMarkdown(_ report: BenchReport) -> [String] {
    let scenarios = report.scenarios.filter { isKubernetes($0) && $0.leasectlHandOff == nil }
    guard !scenarios.isEmpty else { return [] }
    var out: [String] = []
    out.append("### Kubernetes (LeaseAPIServer in this process: HTTPS, HTTP/1.1, bearer token; Leases in the same etcd)")
    out.append("")
    let latency = scenarios.filter { $0.latency != nil }
    if !latency.isEmpty {
        out.append("Latency in µs; median over \(report.configuration.options.rounds) rounds of each round's percentile; sequential calls. "
            + "CPU \"process\" is the whole bench process, API server included.")
        out.append("")
        out.append("| Scenario | Timed calls | p50 | p90 | p99 | max | p50 spread over rounds | CPU µs/call (process / etcd) | Ctx switches/call | API requests/call | etcd RPCs/call |")
        out.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for s in latency {
            let l = s.latency!
            let p = l.medianLatencyMicros
            let methods = (l.apiRequestsByMethod ?? [:]).keys.sorted().joined(separator: "+")
            let api = l.apiRequestsPerCall.map { "\(formatRatio($0, digits: 3)) (\(methods.isEmpty ? "none" : methods))" } ?? "n/a"
            out.append("| \(s.title) | \(l.rounds.count) × \(l.samplesPerRound) | \(formatMicros(p.p50)) | \(formatMicros(p.p90)) | "
                + "\(formatMicros(p.p99)) | \(formatMicros(p.max)) | \(formatMicros(l.p50RangeMicros[0]))–\(formatMicros(l.p50RangeMicros[1])) | "
                + "\(cpuCell(l.medianClientCPUMicrosPerCall, l.medianServerCPUMicrosPerCall)) | "
                + "\(formatRatio(l.medianClientContextSwitchesPerCall, digits: 1)) | \(api) | \(formatRatio(l.serverRPCsPerCall, digits: 3)) |")
        }
        out.append("")
    }
    let transitions = scenarios.filter { $0.transition != nil }
    if !transitions.isEmpty {
        out.append("Leadership changes in ms, nearest rank over all samples (p99 is the largest sample when there are ≤ 100).")
        out.append("")
        out += transitionTable(transitions)
        out += transitionSteps(transitions, write: "PUT")
    }
    return out
}

/// The issue-6 section: hand-off and takeover on flock and etcd, then every other figure with its goal.
private func floorMarkdown(_ report: BenchReport) -> [String] {
    let transitions = report.scenarios.filter { $0.transition != nil && !isKubernetes($0) }
    let figures = report.scenarios.filter { $0.floor != nil }
    guard !transitions.isEmpty || !figures.isEmpty else { return [] }
    var out: [String] = []
    out.append("### Against the floor: every backend (issue 6)")
    out.append("")
    if !transitions.isEmpty {
        out.append("Leadership changes in ms, nearest rank over all samples.")
        out.append("")
        out += transitionTable(transitions)
        out += transitionSteps(transitions, write: "write")
    }
    if !figures.isEmpty {
        out.append("| Scenario | Backend | Setup | Figure | Value | Goal |")
        out.append("|---|---|---|---|--:|---|")
        for s in figures {
            let f = s.floor!
            for m in f.metrics {
                let value = m.text ?? (m.value.map { v in (abs(v) >= 100 ? String(format: "%.0f", v) : String(format: "%.2f", v)) } ?? "n/a")
                let unit = m.unit.isEmpty ? "" : " \(m.unit)"
                let goal = m.goal.map { g in "\(g): " + (m.met == true ? "met" : "**not met**") } ?? "—"
                out.append("| `\(s.id)` | \(f.backend) | \(f.setup) | \(m.name) | \(value)\(unit) | \(goal) |")
            }
        }
        out.append("")
    }
    return out
}

/// Issue 13: `leasectl handoff --wait` against `leasectl elect` candidates, one row per backend, then where the
/// time goes.
private func leasectlHandOffMarkdown(_ report: BenchReport) -> [String] {
    let scenarios = report.scenarios.filter { $0.leasectlHandOff != nil }
    guard !scenarios.isEmpty else { return [] }
    var out = ["### `leasectl handoff --wait` (issue 13: real `leasectl elect` candidates, the command timed from spawn to exit)", "",
               "Milliseconds, nearest rank over the samples; the request is sent at a random point of the leader's 1 s renewal cycle.", "",
               "| Scenario | Candidates | Lease / renew deadline / retry | Samples | p50 | p90 | p99 | max | Goal | Load average (1 min) at start / end |",
               "|---|--:|---|--:|--:|--:|--:|--:|---|--:|"]
    for s in scenarios {
        let h = s.leasectlHandOff!
        let p = h.commandMillis
        let timing = "\(formatSeconds(h.leaseDurationSeconds)) / \(formatSeconds(h.renewDeadlineSeconds)) / \(formatSeconds(h.retryPeriodSeconds))"
        out.append("| `\(s.id)` | \(h.candidates) | \(timing) | \(h.samples.count) | \(formatMillis(p.p50)) | \(formatMillis(p.p90)) | "
            + "\(formatMillis(p.p99)) | \(formatMillis(p.max)) | \(h.goal): \(h.withinGoal ? "met" : "**not met**") | "
            + "\(h.loadAverageAtStart.split(separator: " ").first ?? "?") / \(h.loadAverageAtEnd.split(separator: " ").first ?? "?") |")
    }
    out.append("")
    out.append("Where the time goes (p50 / max, ms; \"spawn\" is the start of `leasectl handoff --wait`; the candidates' event lines carry CLOCK_MONOTONIC):")
    out.append("")
    out.append("| Scenario | `leasectl --help` (start-up) | `leasectl get URL` (start-up + connect + read) | spawn → old leader's work stopped | spawn → target's startedLeading | target's startedLeading → exit (`--wait`) |")
    out.append("|---|--:|--:|--:|--:|--:|")
    func cell(_ p: Percentiles?) -> String { p.map { "\(formatMillis($0.p50)) / \(formatMillis($0.max))" } ?? "n/a" }
    for s in scenarios {
        let h = s.leasectlHandOff!
        out.append("| `\(s.id)` | \(cell(h.noOpMillis)) | \(cell(h.getMillis)) | \(cell(h.leaderStoppedMillis)) | \(cell(h.targetLeadsMillis)) | "
            + "\(cell(h.afterTargetLeadsMillis)) |")
    }
    out.append("")
    return out
}

private func formatSeconds(_ seconds: Double) -> String {
    seconds >= 1 && seconds.rounded() == seconds ? "\(Int(seconds)) s" : "\(formatMillis(seconds * 1000)) ms"
}

/// Writes the JSON results, creating the directory when needed.
func writeJSON(_ report: BenchReport, to path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    let data = try encoder.encode(report)
    let url = URL(fileURLWithPath: path)
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try data.write(to: url, options: .atomic)
}

/// Now, ISO 8601 in UTC.
func timestamp() -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.string(from: Date())
}

/// The Go rounds of this run next to ours, and the ratios to the documented figures.
private func goReferenceMarkdown(_ latency: [ScenarioResult]) -> [String] {
    let measured = latency.filter { $0.reference?.measured == true }
    guard !measured.isEmpty else {
        return ["Go clientv3 was not measured in this run (no `--go-reference`): the ratios are to the documented figures.", ""]
    }
    var out = ["#### Go clientv3 in the same run (one Go round after each of ours, same etcd)", "",
               "| Scenario | Go rounds | Go p50 | Go p90 | Go p99 | Go p50 spread over rounds | Go CPU µs/call | Ours / Go (p50) | Documented Go p50 | Ours / documented |",
               "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for s in measured {
        let r = s.reference!
        let spread = r.p50RangeMicros.map { "\(formatMicros($0[0]))–\(formatMicros($0[1]))" } ?? "—"
        out.append("| \(s.title) | \(r.rounds.count) × \(r.rounds.first?.samples ?? 0) | \(formatMicros(r.p50Micros)) | "
            + "\(formatMicros(median(r.rounds.map(\.p90Micros)))) | \(formatMicros(median(r.rounds.map(\.p99Micros)))) | \(spread) | "
            + "\(r.medianCPUMicrosPerCall.map(formatMicros) ?? "—") | \(s.ratioToReference.map { formatRatio($0) + "×" } ?? "—") | "
            + "\(formatMicros(r.documentedP50Micros)) | \(s.ratioToDocumentedReference.map { formatRatio($0) + "×" } ?? "—") |")
    }
    out.append("")
    return out
}

/// The leadership-change table: one row per hand-off, two per takeover past expiry (total, then past expiry).
private func transitionTable(_ transitions: [ScenarioResult]) -> [String] {
    var out = ["| Scenario | Electors | Lease / renew deadline / retry | Samples | Measured | p50 | p90 | p99 | max | Goal |",
               "|---|--:|---|--:|---|--:|--:|--:|--:|---|"]
    for s in transitions {
        let t = s.transition!
        let timing = "\(formatSeconds(t.leaseDurationSeconds)) / \(formatSeconds(t.renewDeadlineSeconds)) / \(formatSeconds(t.retryPeriodSeconds))"
        let goal = "\(t.goal): " + (t.withinGoal ? "met" : "**not met**")
        func row(_ what: String, _ p: Percentiles, goal: String) -> String {
            "| \(s.title) | \(t.electors) | \(timing) | \(t.samples.count) | \(what) | \(formatMillis(p.p50)) | \(formatMillis(p.p90)) | "
                + "\(formatMillis(p.p99)) | \(formatMillis(p.max)) | \(goal) |"
        }
        if let past = t.pastLeaseExpiryMillis {
            out.append(row("last renewal → new leader", t.millis, goal: "—"))
            out.append(row("… minus the lease (past expiry)", past, goal: goal))
        } else {
            out.append(row(s.id.contains("takeover") ? "SIGKILL → new leader" : "cancel → new leader", t.millis, goal: goal))
        }
    }
    out.append("")
    return out
}

/// "Where the time goes": the median phases of each transition, then its startedLeading.
private func transitionSteps(_ transitions: [ScenarioResult], write: String) -> [String] {
    var out: [String] = []
    for s in transitions {
        let t = s.transition!
        let m = t.medianPhasesMillis
        var steps: [String] = []
        if let v = m["releaseStarted"] { steps.append("release \(write) sent \(formatMillis(v))") }
        if let v = m["releaseWritten"] { steps.append("returned \(formatMillis(v))") }
        if let v = m["acquireStarted"] { steps.append("new leader's winning \(write) sent \(formatMillis(v))") }
        if let v = m["acquireWritten"] { steps.append("returned \(formatMillis(v))") }
        steps.append("startedLeading \(formatMillis(median(t.samples.map { $0.pastLeaseExpiryMillis ?? $0.millis })))")
        let origin = t.pastLeaseExpiryMillis != nil
            ? "ms past the lease's expiry = start of the dead leader's last renewal that reached the store + lease duration"
            : s.id.contains("takeover") ? "ms after the SIGKILL" : "ms after the cancel"
        out.append("- `\(s.id)`, where the time goes (medians, \(origin)): " + steps.joined(separator: " → ") + ".")
    }
    out.append("")
    return out
}
