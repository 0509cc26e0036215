#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import Kubernetes
import LeaderElection

// Issue 13: a targeted hand-off as an operator runs it — `leasectl handoff --wait URL --to ID` — against real
// `leasectl elect` candidate processes on flock, etcd and Kubernetes (LeaseAPIServer over the bench's etcd).
// The time is the command's wall time, spawn to exit, as a shell would see it; the candidates' `--events json`
// lines (CLOCK_MONOTONIC, one clock for every process of the machine) say where in that time the old leader
// stopped and the target started leading, and no-op and `get` runs of the same binary give its start-up cost.

enum LeasectlHandOffGoal {
    static let p50Millis = 50.0
    static let text = "`leasectl handoff --wait` p50 ≤ 50 ms"
}

/// One timed `leasectl handoff --wait` of a `*.handoff.leasectl` scenario.
struct LeasectlHandOffSample: Codable, Sendable {
    var index: Int
    var from: String
    var to: String
    /// Spawn → exit of `leasectl handoff --wait`, ms.
    var commandMillis: Double
    /// Spawn → the old leader's work stopped (`workStoppedMonotonicNanos` of its `stoppedLeading` line, else
    /// the line's own time), ms.
    var leaderStoppedMillis: Double?
    /// Spawn → the target's `startedLeading` line, ms.
    var targetLeadsMillis: Double?
    /// The target's `startedLeading` line → the command's exit, ms (what `--wait` adds after the fact).
    var afterTargetLeadsMillis: Double?
    /// How long after every candidate had observed the leader the command was started, ms (uniform over one
    /// retryPeriod, so that the request lands at a random point of the leader's renewal cycle).
    var phaseMillis: Double
    /// The old leader's `stoppedLeading` reason.
    var leaderStopReason: String?
}

/// The figures of one `*.handoff.leasectl` scenario.
struct LeasectlHandOffSummary: Codable, Sendable {
    var backend: String
    var candidates: Int
    var leaseDurationSeconds: Double
    var renewDeadlineSeconds: Double
    var retryPeriodSeconds: Double
    /// The measured command, with placeholders for the lock and the target.
    var command: String
    var samples: [LeasectlHandOffSample]
    /// Spawn → exit of `leasectl handoff --wait`, ms (nearest rank over the samples).
    var commandMillis: Percentiles
    var leaderStoppedMillis: Percentiles?
    var targetLeadsMillis: Percentiles?
    var afterTargetLeadsMillis: Percentiles?
    /// `leasectl --help` (start-up, argument parsing, output, exit; no store), ms, one run before each sample.
    var noOpMillis: Percentiles
    /// `leasectl get URL` (start-up, connecting to the store, one read, output, exit), ms, one run before each sample.
    var getMillis: Percentiles
    /// `/proc/loadavg` (1, 5, 15 min) when the samples started and when they ended: on this shared machine the
    /// start-up of a process, and so every figure here, grows with the load.
    var loadAverageAtStart: String
    var loadAverageAtEnd: String
    /// The leasectl executable run.
    var leasectl: String
    var goal = LeasectlHandOffGoal.text
    var withinGoal: Bool
    /// Hand-offs that did not complete (the command failed, or the target did not lead), in words.
    var failures: [String]
}

func leasectlHandOffScenarios(_ options: BenchOptions) -> [Scenario] {
    BackendKind.allCases.map { kind in
        Scenario(id: "\(kind.rawValue).handoff.leasectl",
                 title: "`leasectl handoff --wait` on \(kind.label) (real leasectl elect candidates)") { context in
            try await measureLeasectlHandOffs(kind, context)
        }
    }
}

/// The `leasectl` the scenarios run: `--leasectl`, else the one next to this binary.
func leasectlExecutable(_ options: BenchOptions) throws -> String {
    let path = options.leasectl
        ?? URL(fileURLWithPath: ChildProcess.benchExecutable).deletingLastPathComponent().appendingPathComponent("leasectl").path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw BenchError("no leasectl executable at \(path): build it next to lease-bench (`swift build -c release --scratch-path "
                         + ".build-release --product leasectl`; make bench does) or pass --leasectl PATH")
    }
    return path
}

/// One line of `leasectl elect --events json`.
private struct LeasectlEvent: Decodable {
    var monotonicNanos: UInt64
    var identity: String
    var event: String
    var leader: String?
    var reason: String?
    var workStoppedMonotonicNanos: UInt64?

    static func decode(_ line: String) -> LeasectlEvent? { try? JSONDecoder().decode(LeasectlEvent.self, from: Data(line.utf8)) }
}

/// A `leasectl elect` candidate process and its event lines (decoded once each; used by one task).
private final class LeasectlCandidate {
    let identity: String
    let process: ChildProcess
    private var decoded: [LeasectlEvent] = []
    private var linesRead = 0

    init(identity: String, process: ChildProcess) {
        self.identity = identity
        self.process = process
    }

    /// Every event line so far.
    var events: [LeasectlEvent] {
        let lines = process.lines?.lines ?? []
        if lines.count > linesRead {
            decoded += lines[linesRead...].compactMap(LeasectlEvent.decode)
            linesRead = lines.count
        }
        return decoded
    }

    /// The leader this candidate last reported (`newLeader` or `startedLeading`).
    var observedLeader: String? { events.last { $0.event == "newLeader" || $0.event == "startedLeading" }?.leader }
    /// Whether its last `startedLeading` / `stoppedLeading` line is a `startedLeading`.
    var leads: Bool { events.last { $0.event == "startedLeading" || $0.event == "stoppedLeading" }?.event == "startedLeading" }
}

/// Where the candidates, the `handoff` and `get` commands, and the bench's own probe find the lock.
private struct LeasectlLock {
    var url: String
    /// Connection flags of every leasectl command (`--kubeconfig` for Kubernetes).
    var connection: [String]
    var cleanup: @Sendable () -> Void
}

private func leasectlLock(_ kind: BackendKind, _ context: BenchContext, backend: LockBackend, name: String) async throws -> LeasectlLock {
    switch kind {
    case .file:
        guard let directory = backend.directory else { throw BenchError("no flock directory") }
        return LeasectlLock(url: "file://\((directory as NSString).standardizingPath)/\(name)", connection: [], cleanup: {})
    case .etcd:
        // The key of the bench's EtcdLock(name:, namespace: "lease-bench"): /leader-election/lease-bench/NAME.
        return LeasectlLock(url: "etcd://\(context.etcd.server.endpoint)/leader-election/lease-bench/\(name)", connection: [], cleanup: {})
    case .kubernetes:
        let fixture = try await context.kubernetes.fixture()
        guard case .bearerToken(let token) = fixture.configuration.credentials else { throw BenchError("fixture has no bearer token") }
        let path = NSTemporaryDirectory() + "/lease-bench-kubeconfig-\(getpid())-\(randomHex(6)).yaml"
        try kubeconfigYAML(server: fixture.configuration.server, caPEM: fixture.configuration.caPEM ?? "", token: token,
                           namespace: fixture.namespace).write(toFile: path, atomically: true, encoding: .utf8)
        return LeasectlLock(url: "kubernetes://\(fixture.namespace)/\(name)", connection: ["--kubeconfig", path],
                            cleanup: { try? FileManager.default.removeItem(atPath: path) })
    }
}

/// A kubeconfig with one cluster (CA inline), one bearer-token user and one context.
private func kubeconfigYAML(server: String, caPEM: String, token: String, namespace: String) -> String {
    """
    apiVersion: v1
    kind: Config
    clusters:
    - name: lease-bench
      cluster:
        server: \(server)
        certificate-authority-data: \(Data(caPEM.utf8).base64EncodedString())
    users:
    - name: lease-bench
      user:
        token: \(token)
    contexts:
    - name: lease-bench
      context:
        cluster: lease-bench
        user: lease-bench
        namespace: \(namespace)
    current-context: lease-bench

    """
}

private func measureLeasectlHandOffs(_ kind: BackendKind, _ context: BenchContext) async throws -> ScenarioMeasurement {
    let leasectl = try leasectlExecutable(context.options)
    let backend = try await makeBackend(kind, context)
    defer { Task { await backend.cleanup() } }
    let name = "bench-leasectl-\(randomHex(6))"
    let lock = try await leasectlLock(kind, context, backend: backend, name: name)
    defer { lock.cleanup() }
    let configuration = LeaderElectionConfiguration(
        name: name, leaseDuration: .seconds(4), renewDeadline: .seconds(3), retryPeriod: .seconds(1))
    let probe = try await backend.makeLock(name, "bench-leasectl-probe", configuration)
    let count = context.options.leasectlHandOffs
    let candidateCount = 3

    var candidates: [LeasectlCandidate] = []
    func stopCandidates() async -> [String] {
        // SIGTERM: each releases if it leads and exits 0; SIGKILL after 10 s.
        for candidate in candidates { candidate.process.kill(SIGTERM) }
        var statuses: [String] = []
        for candidate in candidates { statuses.append(await candidate.process.waitForExit(timeoutSeconds: 10)) }
        return statuses
    }
    do {
        for i in 0..<candidateCount {
            let identity = "bench-leasectl-\(i)-\(randomHex(4))"
            let process = try await ChildProcess.spawn(
                executable: leasectl,
                ["elect", "--lock", lock.url, "--identity", identity, "--lease-duration", "4s", "--renew-deadline", "3s",
                 "--retry-period", "1s", "--events", "json"] + lock.connection,
                reportLines: true)
            candidates.append(LeasectlCandidate(identity: identity, process: process))
        }
        let identities = candidates.map(\.identity)
        func leader() -> String? {
            // The candidate whose last startedLeading/stoppedLeading line is a startedLeading.
            let leading = candidates.filter(\.leads)
            return leading.count == 1 ? leading[0].identity : nil
        }
        func everyoneObserves(_ leader: String) -> Bool { candidates.allSatisfy { $0.observedLeader == leader } }
        /// Waits until one candidate leads and the others observe it; returns it.
        func settledLeader(_ what: String, timeout: Duration) async throws -> String {
            try await waitUntil(timeout: timeout, what) { leader().map(everyoneObserves) ?? false }
            guard let settled = leader() else { throw BenchError("the leader changed again right after \(what)") }
            return settled
        }
        var current = try await settledLeader("one of the leasectl elect candidates leads and the others observe it", timeout: .seconds(30))

        // Untimed warm-up: page the binary in, open the store once.
        for _ in 0..<2 {
            _ = try await TimedCommand.run(leasectl, ["--help"], timeout: .seconds(20))
            _ = try await TimedCommand.run(leasectl, ["get", lock.url] + lock.connection, timeout: .seconds(20))
        }

        let loadAtStart = loadAverage()
        var samples: [LeasectlHandOffSample] = []
        var noOp: [Double] = [], get: [Double] = []
        var failures: [String] = []
        let retryMillis = seconds(configuration.retryPeriod) * 1000
        for index in 0..<count where failures.count < 3 {
            // Start-up cost of this binary, next to each sample (same load).
            let help = try await TimedCommand.run(leasectl, ["--help"], timeout: .seconds(20))
            guard help.succeeded else { throw BenchError("leasectl --help failed: \(help.line)") }
            noOp.append(help.millis)
            let read = try await TimedCommand.run(leasectl, ["get", lock.url] + lock.connection, timeout: .seconds(20))
            guard read.succeeded else { throw BenchError("leasectl get failed: \(read.line)") }
            get.append(read.millis)

            let from = current
            let leaderIndex = identities.firstIndex(of: from)!
            let target = identities[(leaderIndex + 1) % identities.count]
            try await waitUntil(timeout: .seconds(15), "every candidate observes \(from)") { everyoneObserves(from) }
            let phase = Double.random(in: 0..<retryMillis)
            try await Task.sleep(for: .milliseconds(Int(phase)))
            let eventsBefore = candidates.map { $0.events.count }
            let run = try await TimedCommand.run(
                // 10 s: a hand-off takes at most about one retry period even when the leader reacts only at its
                // next renewal; three failures end the samples, so a broken hand-off costs the run ≤ 30 s.
                leasectl, ["handoff", "--wait", lock.url, "--to", target, "--timeout", "10s"] + lock.connection,
                timeout: .seconds(20))
            guard run.succeeded, run.standardOutput.contains("\(target) leads") else {
                failures.append("sample \(index): \(run.line)")
                // Re-synchronise on whoever leads now.
                current = try await settledLeader("a leader after a failed hand-off", timeout: .seconds(20))
                continue
            }
            // The target's startedLeading line is printed after its winning write, which the command may have
            // read first: wait for it (untimed), and for the old leader's stoppedLeading.
            let targetIndex = identities.firstIndex(of: target)!
            func newEvents(_ i: Int) -> ArraySlice<LeasectlEvent> { candidates[i].events.dropFirst(eventsBefore[i]) }
            do {
                try await waitUntil(timeout: .seconds(10), "\(target) reports startedLeading and \(from) stoppedLeading") {
                    newEvents(targetIndex).contains { $0.event == "startedLeading" }
                        && newEvents(leaderIndex).contains { $0.event == "stoppedLeading" }
                }
            } catch {
                failures.append("sample \(index): the command reported \(target) leading, but its events did not follow: \(error)")
                current = try await settledLeader("a leader after a failed hand-off", timeout: .seconds(20))
                continue
            }
            let holder = (try? await probe.lock.get())?.record.holderIdentity
            guard holder == target else {
                failures.append("sample \(index): \(target) reported startedLeading but the record names \(holder ?? "nobody")")
                current = try await settledLeader("a leader after a failed hand-off", timeout: .seconds(20))
                continue
            }
            let started = newEvents(targetIndex).first { $0.event == "startedLeading" }!
            let stopped = newEvents(leaderIndex).first { $0.event == "stoppedLeading" }!
            let stoppedAt = stopped.workStoppedMonotonicNanos ?? stopped.monotonicNanos
            samples.append(LeasectlHandOffSample(
                index: index, from: from, to: target, commandMillis: run.millis,
                leaderStoppedMillis: stoppedAt >= run.startNanos ? millis(from: run.startNanos, to: stoppedAt) : nil,
                targetLeadsMillis: started.monotonicNanos >= run.startNanos ? millis(from: run.startNanos, to: started.monotonicNanos) : nil,
                afterTargetLeadsMillis: run.endNanos >= started.monotonicNanos ? millis(from: started.monotonicNanos, to: run.endNanos) : nil,
                phaseMillis: phase, leaderStopReason: stopped.reason))
            current = target
        }
        let loadAtEnd = loadAverage()
        let statuses = await stopCandidates()
        await probe.close()

        let command = Percentiles(samples: samples.map(\.commandMillis))
        func optional(_ values: [Double?]) -> Percentiles? {
            let present = values.compactMap { $0 }
            return present.isEmpty ? nil : Percentiles(samples: present)
        }
        let summary = LeasectlHandOffSummary(
            backend: kind.label, candidates: candidateCount, leaseDurationSeconds: 4, renewDeadlineSeconds: 3, retryPeriodSeconds: 1,
            command: "leasectl handoff --wait \(kind == .kubernetes ? "--kubeconfig KUBECONFIG " : "")URL --to ID --timeout 10s",
            samples: samples, commandMillis: command,
            leaderStoppedMillis: optional(samples.map(\.leaderStoppedMillis)),
            targetLeadsMillis: optional(samples.map(\.targetLeadsMillis)),
            afterTargetLeadsMillis: optional(samples.map(\.afterTargetLeadsMillis)),
            noOpMillis: Percentiles(samples: noOp), getMillis: Percentiles(samples: get),
            loadAverageAtStart: loadAtStart, loadAverageAtEnd: loadAtEnd, leasectl: leasectl,
            withinGoal: !samples.isEmpty && command.p50 <= LeasectlHandOffGoal.p50Millis, failures: failures)
        let handedOff = samples.filter { $0.leaderStopReason == StopReason.handedOff.description }.count
        let cleanExits = statuses.filter { $0 == "exit 0" }.count
        return ScenarioMeasurement(
            operation: "\(candidateCount) `leasectl elect --lock URL --identity ID --lease-duration 4s --renew-deadline 3s "
                + "--retry-period 1s --events json` processes (the release-built leasectl next to lease-bench) on one "
                + "\(kind.label) lock; once one leads and every candidate has observed it, a uniformly random 0–1 s pause "
                + "(a random point of the leader's renewal cycle), then `\(summary.command)` to the next candidate in turn, "
                + "timed from posix_spawn to waitpid on a thread of its own. Verified per sample: exit 0, the command's "
                + "\"ID leads\" line, the target's startedLeading and the old leader's stoppedLeading event lines, and the "
                + "record's holder read by the bench. Before each sample, one `leasectl --help` and one `leasectl get URL` "
                + "run (start-up cost)",
            leasectlHandOff: summary,
            checks: [
                Check(name: "every hand-off reached its target", expected: "\(count) of \(count): exit 0, target leads (events and record)",
                      measured: failures.isEmpty ? "\(samples.count) of \(count)" : "\(samples.count) of \(count); " + failures.joined(separator: " | "),
                      passed: failures.isEmpty && samples.count == count),
                Check(name: "the old leader handed off", expected: "stoppedLeading reason `\(StopReason.handedOff)` in every sample",
                      measured: "\(handedOff) of \(samples.count)"
                          + (handedOff == samples.count ? "" : " (others: \(samples.compactMap(\.leaderStopReason).filter { $0 != StopReason.handedOff.description }.joined(separator: ", ")))"),
                      passed: handedOff == samples.count && !samples.isEmpty),
                Check(name: "candidates stop cleanly on SIGTERM", expected: "\(candidateCount) × exit 0",
                      measured: statuses.joined(separator: ", "), passed: cleanExits == candidateCount),
            ])
    } catch {
        _ = await stopCandidates()
        await probe.close()
        throw error
    }
}
