#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ArgumentParser
import Dispatch
import Foundation
import Synchronization

@main
struct LeaseChaos: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lease-chaos",
        abstract: "Multi-process chaos harness: real backends, fault injection, fenced actions, a safety checker.",
        subcommands: [RunCommand.self, CandidateCommand.self, CheckCommand.self])
}

extension Profile: ExpressibleByArgument {}

/// `lease-chaos run`: starts each backend for real, N candidate processes behind loopback proxies, injects the
/// seeded fault schedule, then checks safety from the logs and reports liveness.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the fault schedule against one or more backends and check safety.",
        discussion: """
            Exit status: 0 when every backend ran with zero safety violations; 1 when the checker found a \
            violation (the report says which, and the logs are kept under OUTPUT/logs-BACKEND); 2 when the \
            harness itself failed (a backend would not start, or no leader emerged for three faults in a row).
            """)

    @Option(help: "file, etcd, etcd-cluster, kubernetes, or all; comma-separated.")
    var backend = "all"

    @Option(help: "Seed of the fault schedule.")
    var seed: UInt64 = 1

    @Option(help: "smoke (a short CI subset) or full (≥ 1,000 induced failovers per backend).")
    var profile: Profile = .full

    @Option(help: "Override the failover target per backend.")
    var failovers: Int?

    @Option(help: "Override the time limit of each backend's fault loop.")
    var duration: DurationArgument?

    @Option(help: "Candidate processes per backend.")
    var candidates = 3

    @Option(help: "Directory for results.json and results.md (and kept logs).")
    var output = "chaos"

    @Option(help: "The lease-apiserver executable. (default: next to this executable)")
    var apiserver: String?

    @Option(help: "Inject only these faults (comma-separated names, as in the report), for reproductions.")
    var only: String?

    @Option(help: "How many backends run at the same time (each with its own candidates, proxies and store).")
    var parallel = 1

    @Flag(help: "Keep every run's logs under OUTPUT/logs-BACKEND, not only those of failed runs.")
    var keepLogs = false

    func validate() throws {
        if candidates < 2 || candidates > 8 { throw ValidationError("--candidates must be between 2 and 8") }
        _ = try backends()
        _ = try onlyFaults()
    }

    func onlyFaults() throws -> Set<FaultKind>? {
        guard let only else { return nil }
        return Set(try only.split(separator: ",").map { name in
            guard let kind = FaultKind(rawValue: String(name)) else {
                throw ValidationError("unknown fault \(name); known: \(FaultKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return kind
        })
    }

    func backends() throws -> [BackendKind] {
        if backend == "all" { return BackendKind.allCases }
        return try backend.split(separator: ",").map { name in
            guard let kind = BackendKind(rawValue: String(name)) else { throw ValidationError("unknown backend \(name)") }
            return kind
        }
    }

    func run() async throws {
        // The proxies write to sockets whose peers may be gone: EPIPE, not death by SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        let interrupt = Interrupt()
        RunSettings.removeAbandonedWorkDirectories()
        let selfPath = selfExecutable()
        let apiServerBinary = apiserver ?? ((selfPath as NSString).deletingLastPathComponent + "/lease-apiserver")
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        let settings = RunSettings(
            seed: seed, profile: profile, candidates: candidates, failovers: failovers, duration: duration?.duration,
            only: try onlyFaults(), keepLogs: keepLogs, output: output, apiServerBinary: apiServerBinary)
        let started = monoNow()
        // Lanes: backends split across `parallel` concurrent lanes, each running its backends one after another.
        let kinds = try backends()
        let laneCount = max(1, min(parallel, kinds.count))
        var lanes = Array(repeating: [BackendKind](), count: laneCount)
        for (index, kind) in kinds.enumerated() { lanes[index % laneCount].append(kind) }
        let outcomes = await withTaskGroup(of: [(BackendResult, Bool)].self) { group in
            for lane in lanes {
                group.addTask {
                    var outcomes: [(BackendResult, Bool)] = []
                    for kind in lane where !interrupt.fired {
                        outcomes.append(await settings.runBackend(kind, interrupt: interrupt))
                    }
                    return outcomes
                }
            }
            var all: [(BackendResult, Bool)] = []
            for await outcome in group { all += outcome }
            return all
        }
        let results = kinds.compactMap { kind in outcomes.first { $0.0.backend == kind.rawValue }?.0 }
        let harnessFailed = outcomes.contains { $0.1 }
        let total = Double((monoNow() - started) / 1_000_000) / 1000
        let report = Report(results: results, seed: seed, profile: profile, totalSeconds: total, command: CommandLine.arguments.joined(separator: " "))
        try report.write(to: output)
        print(report.markdown())
        if results.contains(where: { !$0.passed }) {
            for result in results where !result.passed {
                print("SAFETY VIOLATIONS on \(result.backend) (logs kept in \(result.logs ?? "?")):")
                for violation in result.violations { print("  \(violation)") }
            }
            throw ExitCode(1)
        }
        if harnessFailed || interrupt.fired { throw ExitCode(2) }
    }

}

/// `lease-chaos check DIR`: re-runs the checker on logs kept by `run` (OUTPUT/logs-BACKEND).
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check", abstract: "Re-check the logs of a kept run.")

    @Argument(help: "A directory kept by `run` (actions.log, events.log, faults.json, final.json).")
    var directory: String

    func run() async throws {
        let decoder = JSONDecoder()
        let faults = try decoder.decode([FaultRecord].self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/faults.json")))
        let final = try decoder.decode(FinalRecord.self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/final.json")))
        let identities = (try? decoder.decode([String].self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/identities.json")))) ?? []
        let base = BackendResult(
            backend: directory, seed: 0, profile: "", candidates: 0, timing: Timing(leaseMillis: 0, renewMillis: 0, retryMillis: 0, actionMillis: 0),
            durationSeconds: 0, actions: 0, terms: 0, failovers: 0, inducedFailovers: 0, spontaneousFailovers: 0, maxToken: -1,
            refusedActions: 0, lateLandedActions: 0, faults: [], violations: [], finalRecord: final, notes: [], logs: directory)
        let result = try Checker(actionsPath: directory + "/actions.log", eventsPath: directory + "/events.log")
            .check(faults: faults, finalRecord: final, spawned: Set(identities), base: base)
        print(Report.summary(result))
        for violation in result.violations { print("  \(violation)") }
        if !result.passed { throw ExitCode(1) }
    }
}

/// SIGINT/SIGTERM to the harness: finish the current fault, clean up, report, exit 2.
final class Interrupt: @unchecked Sendable {
    private let flag = Flag()
    private final class Flag: Sendable {
        let value = Mutex(false)
    }
    private var sources: [any DispatchSourceSignal] = []

    init() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [flag] in
                let again = flag.value.withLock { fired in
                    defer { fired = true }
                    return fired
                }
                if again { _exit(130) }   // children die with us (parent-death signal)
                FileHandle.standardError.write(Data("lease-chaos: interrupted; cleaning up (again to quit at once)\n".utf8))
            }
            source.resume()
            sources.append(source)
        }
    }

    var fired: Bool { flag.value.withLock { $0 } }
}

/// What one backend run needs from the command line (Sendable, for concurrent lanes).
struct RunSettings: Sendable {
    var seed: UInt64
    var profile: Profile
    var candidates: Int
    var failovers: Int?
    var duration: Duration?
    var only: Set<FaultKind>?
    var keepLogs: Bool
    var output: String
    var apiServerBinary: String

    /// Runs one backend; returns its result and whether the harness itself failed.
    func runBackend(_ kind: BackendKind, interrupt: Interrupt) async -> (BackendResult, Bool) {
        var result = BackendResult(
            backend: kind.rawValue, seed: seed, profile: profile.rawValue, candidates: candidates, timing: Timing.forBackend(kind),
            durationSeconds: 0, actions: 0, terms: 0, failovers: 0, inducedFailovers: 0, spontaneousFailovers: 0, maxToken: -1,
            refusedActions: 0, lateLandedActions: 0, faults: [], violations: [],
            finalRecord: FinalRecord(decoded: false), notes: [], logs: nil)
        let work: String
        do {
            work = try makeWorkDirectory(kind)
        } catch {
            result.notes.append("harness error: \(error)")
            return (result, true)
        }
        let backendStart = monoNow()
        FileHandle.standardError.write(Data("[\(kind.rawValue)] starting (seed \(seed), profile \(profile.rawValue), work dir \(work))\n".utf8))
        var failed = false
        do {
            let fixture = try await BackendFixture.start(kind, workDirectory: work, apiServerBinary: apiServerBinary)
            let run = try BackendRun(backend: kind, profile: profile, seed: seed, candidates: candidates, workDirectory: work,
                                     fixture: fixture, only: only, interrupted: { interrupt.fired })
            run.failoverTargetOverride = failovers
            run.timeLimitOverride = duration
            var runError: (any Error)?
            do {
                try await run.setUp()
                try await run.runFaults()
            } catch {
                runError = error
            }
            await run.tearDown()
            let final = await fixture.finalRecord()
            run.shutdownProxies()
            await fixture.stop()
            let faults = run.faults
            try? JSONEncoder().encode(faults).write(to: URL(fileURLWithPath: work + "/faults.json"))
            try? JSONEncoder().encode(final).write(to: URL(fileURLWithPath: work + "/final.json"))
            try? JSONEncoder().encode(Array(run.spawnedIdentities)).write(to: URL(fileURLWithPath: work + "/identities.json"))
            result.notes = run.notes
            result = try Checker(actionsPath: run.actionsPath, eventsPath: run.eventsPath)
                .check(faults: faults, finalRecord: final, spawned: run.spawnedIdentities, base: result)
            if let runError {
                failed = true
                result.notes.append("harness error: \(runError)")
            }
            if interrupt.fired { result.notes.append("interrupted") }
        } catch {
            failed = true
            result.notes.append("harness error: \(error)")
        }
        result.durationSeconds = Double((monoNow() - backendStart) / 1_000_000) / 1000
        if !result.passed || failed || keepLogs {
            let kept = output + "/logs-\(kind.rawValue)"
            try? FileManager.default.removeItem(atPath: kept)
            try? FileManager.default.copyItem(atPath: work, toPath: kept)
            result.logs = kept
        }
        try? FileManager.default.removeItem(atPath: work)
        FileHandle.standardError.write(Data(Report.summary(result).utf8))
        return (result, failed)
    }

    static var temporaryBase: String {
        ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
    }

    /// A fresh work directory, marked with this process's pid (see ``removeAbandonedWorkDirectories()``).
    private func makeWorkDirectory(_ kind: BackendKind) throws -> String {
        var template = Array("\(Self.temporaryBase)/lease-chaos-\(kind.rawValue)-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw ChaosError("mkdtemp: \(String(cString: strerror(errno)))")
        }
        let path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        try String(getpid()).write(toFile: path + "/harness.pid", atomically: true, encoding: .utf8)
        return path
    }

    /// Removes work directories left by harness processes that were killed before they could clean up.
    static func removeAbandonedWorkDirectories() {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: temporaryBase) else { return }
        for entry in entries where entry.hasPrefix("lease-chaos-") {
            let path = temporaryBase + "/" + entry
            guard let text = try? String(contentsOfFile: path + "/harness.pid", encoding: .utf8),
                  let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { try? FileManager.default.removeItem(atPath: path) }
        }
    }
}
