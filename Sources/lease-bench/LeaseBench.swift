import Foundation

/// The benchmark driver: options, etcd, the scenario list, the report.
enum LeaseBench {
    static func run(_ arguments: [String]) async -> Int32 {
        if arguments.first == "--child" { return await ChildMode.run(Array(arguments.dropFirst())) }
        let options: BenchOptions
        do {
            guard let parsed = try BenchOptions.parse(arguments) else {
                print(BenchOptions.usage)
                return 0
            }
            options = parsed
        } catch {
            log("lease-bench: error: \(error)")
            return 2
        }

        let scenarios = allScenarios(options)
        if options.listOnly {
            for scenario in scenarios { print("\(scenario.id)\t\(scenario.title)") }
            return 0
        }
        let selected = options.filters.isEmpty
            ? scenarios
            : scenarios.filter { scenario in options.filters.contains { scenario.id.contains($0) } }
        guard !selected.isEmpty else {
            log("lease-bench: error: no scenario id contains \(options.filters.joined(separator: " or ")); see --list")
            return 2
        }
        #if DEBUG
        log("lease-bench: warning: this is a debug build; `make bench` builds with -c release")
        #endif
        let below = options.belowMinimums
        if !below.isEmpty { log("lease-bench: note: below the documented configuration (\(below.joined(separator: "; "))): not a comparable run") }

        let goReference: GoClientReference?
        do {
            goReference = try options.goReference.map { path throws(BenchError) in try GoClientReference(executable: path) }
        } catch {
            log("lease-bench: error: \(error)")
            return 2
        }

        let machine = MachineInfo.collect()
        let startedAt = timestamp()
        log("lease-bench: starting etcd …")
        let fixture: EtcdFixture
        do {
            fixture = try await EtcdFixture.start()
        } catch {
            log("lease-bench: error: cannot start etcd: \(error)")
            return 2
        }
        log("lease-bench: etcd \(fixture.server.endpoint) (data on \(fixture.dataFileSystem)), pid \(fixture.server.pid)")

        let serverVersion: String
        do { serverVersion = try await fixture.client.status().version } catch { serverVersion = "unavailable (\(error))" }
        var report = BenchReport(
            startedAt: startedAt, machine: machine,
            versions: VersionInfo.collect(etcdBinary: fixture.server.binaries.etcd, serverVersion: serverVersion),
            configuration: .init(options: options, belowDocumentedMinimums: below, etcdCommandLine: fixture.commandLine,
                                 etcdDataFileSystem: fixture.dataFileSystem,
                                 grpcVerbosity: ProcessInfo.processInfo.environment["GRPC_VERBOSITY"] ?? "unset"))
        let selectedIDs = Set(selected.map(\.id))
        report.notSelected = scenarios.map(\.id).filter { !selectedIDs.contains($0) }

        let context = BenchContext(options: options, etcd: fixture, goReference: goReference, kubernetes: KubernetesFixtureHolder(etcd: fixture))
        for (index, scenario) in selected.enumerated() {
            log("[\(index + 1)/\(selected.count)] \(scenario.id): \(scenario.title) …")
            let started = monotonicNanos()
            do {
                let result = ScenarioResult(scenario, try await scenario.run(context))
                report.scenarios.append(result)
                log("    \(summaryLine(result)) (\(String(format: "%.1f", Double(monotonicNanos() - started) / 1e9)) s)")
                for check in result.checks where !check.passed {
                    log("    FAILED CHECK: \(check.name) = \(check.measured); expected \(check.expected)")
                }
            } catch {
                report.failures.append(.init(scenario: scenario.id, error: "\(error)"))
                log("    FAILED: \(error)")
            }
        }
        await context.kubernetes.stop()
        await fixture.stop()

        report.machine.loadAverageAtEnd = loadAverage()
        report.finishedAt = timestamp()
        report.passed = report.failures.isEmpty && report.scenarios.allSatisfy { $0.checks.allSatisfy(\.passed) }
        print(markdown(report))
        do {
            try writeJSON(report, to: options.output)
            log("lease-bench: wrote \(options.output)")
        } catch {
            log("lease-bench: error: cannot write \(options.output): \(error)")
            return 1
        }
        if !report.passed { log("lease-bench: FAILED (see the failures and checks above)") }
        return report.passed ? 0 : 1
    }

    private static func summaryLine(_ result: ScenarioResult) -> String {
        if let l = result.latency {
            let p = l.medianLatencyMicros
            var line = "p50 \(formatMicros(p.p50)) µs, p90 \(formatMicros(p.p90)), p99 \(formatMicros(p.p99)), max \(formatMicros(p.max))"
            if let r = result.ratioToReference, let reference = result.reference {
                line += "; \(formatRatio(r))× Go (\(formatMicros(reference.p50Micros)) µs, \(reference.measured ? "this run" : "documented"))"
            }
            return line
        }
        if let t = result.transition {
            let p = t.pastLeaseExpiryMillis ?? t.millis
            return (t.pastLeaseExpiryMillis == nil ? "" : "past lease expiry: ")
                + "p50 \(formatMillis(p.p50)) ms, p90 \(formatMillis(p.p90)), p99 \(formatMillis(p.p99)), max \(formatMillis(p.max)) "
                + "over \(t.samples.count) samples; goal (\(t.goal)) \(t.withinGoal ? "met" : "NOT met")"
        }
        if let h = result.leasectlHandOff {
            let p = h.commandMillis
            return "leasectl handoff --wait p50 \(formatMillis(p.p50)) ms, p99 \(formatMillis(p.p99)), max \(formatMillis(p.max)) over "
                + "\(h.samples.count) samples (leasectl --help p50 \(formatMillis(h.noOpMillis.p50)) ms, get p50 \(formatMillis(h.getMillis.p50)) ms); "
                + "goal (\(h.goal)) \(h.withinGoal ? "met" : "NOT met")"
        }
        if let t = result.throughput {
            return "\(String(format: "%.0f", t.medianCallsPerSecond)) calls/s at \(t.concurrency) in flight (p50 \(formatMicros(t.medianLatencyMicros.p50)) µs)"
        }
        return "done"
    }
}

/// Progress and errors go to stderr; stdout carries only the Markdown report.
func log(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
