#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Etcd
import EtcdTesting
import EtcdLock
import FileLock
import Foundation
import Kubernetes
import KubernetesLock
import LeaderElection
import Logging
import Synchronization

// `lease-bench --child MODE …`: this binary as a separate process, for what cannot be measured in the bench's
// own process — a leader that is SIGKILLed (*.takeover.crash on flock, etcd and Kubernetes), the RSS of an idle
// elector (memory.idle), and the CPU and RSS of a process holding 10,000 heartbeat leases (*.scale.heartbeats).
//
// Every child dies with the bench: it is started through `setpriv --pdeathsig KILL` (EtcdTesting's
// `pdeathsigLauncher`, where util-linux has it) from EtcdTesting's `SpawnerThread`, a thread that lives as long as
// the process (the kernel sends the parent-death signal when the *thread* that spawned the child exits, and the
// threads of Swift's pool come and go). A reporting child also exits when its stdout pipe breaks.

/// The lines a reporting child writes on its stdout, read by a thread of their own.
final class ChildLines: Sendable {
    private struct State { var lines: [String] = []; var partial: [UInt8] = []; var ended = false }
    private let state = Mutex(State())

    /// Reads `fd` until EOF (then closes it).
    init(reading fd: Int32) {
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                state.withLock { state in
                    for byte in buffer[0..<n] {
                        if byte == UInt8(ascii: "\n") {
                            state.lines.append(String(decoding: state.partial, as: UTF8.self))
                            state.partial = []
                        } else {
                            state.partial.append(byte)
                        }
                    }
                }
            }
            close(fd)
            state.withLock { $0.ended = true }
        }
        thread.name = "lease-bench child stdout"
        thread.stackSize = 256 << 10
        thread.start()
    }

    /// Every complete line so far.
    var lines: [String] { state.withLock { $0.lines } }
    /// Whether the child's stdout reached EOF (every line it wrote has been read).
    var ended: Bool { state.withLock { $0.ended } }
}

/// A child process running this binary with `--child`; stdout goes to /dev/null (or, with `reportLines`, to a
/// pipe read into ``lines``), stderr is inherited.
final class ChildProcess: @unchecked Sendable {
    let pid: Int32
    private let process: Process
    /// The child's stdout, line by line (`spawn(…, reportLines: true)` only).
    let lines: ChildLines?

    private init(process: Process, lines: ChildLines?) {
        self.process = process
        self.lines = lines
        pid = process.processIdentifier
    }

    static func spawn(_ arguments: [String], environment: [String: String] = [:], reportLines: Bool = false) async throws -> ChildProcess {
        try await spawn(executable: benchExecutable, ["--child"] + arguments, environment: environment, reportLines: reportLines)
    }

    /// This binary (`/proc/self/exe`).
    static var benchExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Starts `executable` (another program, such as `leasectl`) with `arguments`, dying with the bench as the
    /// `--child` processes do.
    static func spawn(executable: String, _ arguments: [String], environment: [String: String] = [:],
                      reportLines: Bool = false) async throws -> ChildProcess {
        let process = Process()
        if let setpriv = pdeathsigLauncher {
            process.executableURL = URL(fileURLWithPath: setpriv)
            process.arguments = ["--pdeathsig", "KILL", "--", executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        process.standardInput = FileHandle.nullDevice
        // A pipe of our own, both ends close-on-exec (pipe2 is not visible to Swift: pipe + fcntl) (no other child inherits them; the child gets the write
        // end as its fd 1 through dup2), so that the reader sees EOF when this child is gone.
        var ends: [Int32] = [-1, -1]
        if reportLines {
            guard pipe(&ends) == 0 else { throw BenchError("pipe: \(String(cString: strerror(errno)))") }
            for fd in ends { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            process.standardOutput = FileHandle(fileDescriptor: ends[1], closeOnDealloc: false)
        } else {
            process.standardOutput = FileHandle.nullDevice
        }
        let started = UncheckedBox(process)
        let launched: Result<Void, any Error> = await SpawnerThread.shared.run { Result { try started.value.run() } }
        do {
            try launched.get()
        } catch {
            if reportLines { close(ends[0]); close(ends[1]) }
            throw error
        }
        var lines: ChildLines?
        if reportLines {
            close(ends[1])
            lines = ChildLines(reading: ends[0])
        }
        return ChildProcess(process: process, lines: lines)
    }

    func kill(_ signal: Int32) { _ = Glibc.kill(pid, signal) }

    /// Waits (polling every 20 ms) until the child has exited: `exit N` or `signal N`; after `timeoutSeconds`
    /// the child is SIGKILLed and `timed out` is returned.
    func waitForExit(timeoutSeconds: Double = 30) async -> String {
        let deadline = monotonicNanos() + UInt64(timeoutSeconds * 1e9)
        while process.isRunning {
            if monotonicNanos() > deadline {
                kill(SIGKILL)
                while process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
                return "timed out"
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationReason == .uncaughtSignal ? "signal \(process.terminationStatus)" : "exit \(process.terminationStatus)"
    }
}

private final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// One line a reporting child (`--child elector --report stdout`) writes on stdout for every write of its lock,
/// timestamps in CLOCK_MONOTONIC ns (one clock for every process on the machine):
/// - `attempt START` when an update (a renewal, or the acquisition of a released lease) is about to be sent;
/// - `wrote START END VERSION` when an update or create that names this child as the holder has succeeded
///   (START: when it was sent — the leader's guarantee counts from there; END: when it returned).
enum ChildReport: Equatable {
    case attempt(start: UInt64)
    case wrote(start: UInt64, end: UInt64, version: String)

    init?(_ line: String) {
        let fields = line.split(separator: " ")
        switch fields.first {
        case "attempt" where fields.count == 2:
            guard let start = UInt64(fields[1]) else { return nil }
            self = .attempt(start: start)
        case "wrote" where fields.count == 4:
            guard let start = UInt64(fields[1]), let end = UInt64(fields[2]) else { return nil }
            self = .wrote(start: start, end: end, version: String(fields[3]))
        default:
            return nil
        }
    }

    var line: String {
        switch self {
        case .attempt(let start): "attempt \(start)\n"
        case .wrote(let start, let end, let version): "wrote \(start) \(end) \(version)\n"
        }
    }
}

/// The child's lock, reporting its writes on stdout (see ``ChildReport``). A write is one `write(2)` of a short
/// line to a pipe (atomic), made before `update` is sent and after it returned. If the pipe is gone (the bench
/// died) the child exits.
private final class ReportingLock: ResourceLock {
    let inner: any ResourceLock
    var identity: String { inner.identity }
    var description: String { inner.description }

    init(_ inner: any ResourceLock) { self.inner = inner }

    private func report(_ report: ChildReport) {
        let bytes = Array(report.line.utf8)
        let n = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        if n < 0 && errno == EPIPE || n == 0 { exit(0) }
    }

    func get() async throws -> VersionedRecord? { try await inner.get() }

    func create(_ record: LeaderElectionRecord) async throws -> LockVersion {
        let start = monotonicNanos()
        let version = try await inner.create(record)
        if record.holderIdentity == identity { report(.wrote(start: start, end: monotonicNanos(), version: version.rawValue)) }
        return version
    }

    func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion {
        let start = monotonicNanos()
        if record.holderIdentity == identity { report(.attempt(start: start)) }
        let newVersion = try await inner.update(record, expecting: version)
        if record.holderIdentity == identity { report(.wrote(start: start, end: monotonicNanos(), version: newVersion.rawValue)) }
        return newVersion
    }

    func recordEvent(_ event: LockEvent) async { await inner.recordEvent(event) }
    func changes() -> AsyncStream<Void>? { inner.changes() }
    func recordChanges() -> AsyncStream<LockChange>? { inner.recordChanges() }
}

/// What `--child heartbeats` writes to `--result`.
struct HeartbeatResult: Codable, Sendable {
    var leases: Int
    var created: Int
    var createSeconds: Double
    var measuredSeconds: Double
    /// Renewals scheduled in the window (each one's lag and latency is a sample), and those of them that failed.
    var renewals: Int
    var failedRenewals: Int
    /// Successful renewals that *completed* inside the window, per second of the window (the achieved rate).
    var renewRate: Double
    /// Renewals scheduled in the window that completed more than one interval late.
    var lateByMoreThanInterval: Int
    /// Completion − scheduled time of each renewal in the window, ms.
    var lagMillis: Percentiles
    /// Duration of each update(expecting:), ms.
    var latencyMillis: Percentiles
    var cpuCores: Double
    var rssMaxMiB: Double
    var rssPeakMiB: Double
    /// Failed renewals in the window by error (the first 120 characters of its description).
    var failuresByError: [String: Int] = [:]
}

enum ChildMode {
    static func run(_ arguments: [String]) async -> Int32 {
        guard let mode = arguments.first else { log("lease-bench --child: no mode"); return 2 }
        var flags: [String: String] = [:]
        var rest = arguments.dropFirst().makeIterator()
        while let flag = rest.next() {
            guard flag.hasPrefix("--"), let value = rest.next() else { log("lease-bench --child: bad argument \(flag)"); return 2 }
            flags[String(flag.dropFirst(2))] = value
        }
        do {
            switch mode {
            case "idle":
                while true { try await Task.sleep(for: .seconds(3600)) }
            case "elector":
                try await elector(flags)
                return 0
            case "heartbeats":
                try await heartbeats(flags)
                return 0
            default:
                log("lease-bench --child: unknown mode \(mode)")
                return 2
            }
        } catch {
            log("lease-bench --child \(mode): error: \(error)")
            return 1
        }
    }

    private static func flag(_ flags: [String: String], _ name: String) throws -> String {
        guard let value = flags[name] else { throw BenchError("--child needs --\(name)") }
        return value
    }

    private static func milliseconds(_ flags: [String: String], _ name: String) throws -> Duration {
        guard let ms = Int(try flag(flags, name)) else { throw BenchError("--\(name) needs an integer") }
        return .milliseconds(ms)
    }

    private static func kubernetesClient(_ flags: [String: String], requestTimeout: Duration) throws -> KubernetesClient {
        guard let token = ProcessInfo.processInfo.environment["LEASE_BENCH_K8S_TOKEN"] else { throw BenchError("LEASE_BENCH_K8S_TOKEN is not set") }
        var configuration = KubernetesConfiguration(
            server: try flag(flags, "server"), namespace: flags["namespace"] ?? "lease-bench", credentials: .bearerToken(token),
            caPEM: try String(contentsOfFile: try flag(flags, "ca"), encoding: .utf8))
        configuration.requestTimeout = requestTimeout
        return try KubernetesClient(configuration: configuration, logger: Logger(label: "lease-bench", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    /// One elector that campaigns until the process is killed.
    private static func elector(_ flags: [String: String]) async throws {
        let configuration = LeaderElectionConfiguration(
            name: "lease-bench-child", leaseDuration: try milliseconds(flags, "lease-ms"),
            renewDeadline: try milliseconds(flags, "renew-ms"), retryPeriod: try milliseconds(flags, "retry-ms"))
        let name = try flag(flags, "name"), identity = try flag(flags, "identity")
        let lock: any ResourceLock
        switch try flag(flags, "backend") {
        case BackendKind.file.rawValue:
            lock = try FileLock(directory: try flag(flags, "dir"), name: name, identity: identity)
        case BackendKind.etcd.rawValue:
            let client = try EtcdClient(configuration: .init(endpoints: [try flag(flags, "endpoint")]))
            lock = try EtcdLock(client: client, configuration: .init(name: name, namespace: "lease-bench"), identity: identity)
        case BackendKind.kubernetes.rawValue:
            let client = try kubernetesClient(flags, requestTimeout: KubernetesConfiguration.requestTimeout(forRenewDeadline: configuration.renewDeadline))
            lock = try KubernetesLock(client: client, configuration: .init(name: name, namespace: flags["namespace"] ?? "lease-bench"), identity: identity)
        case let other:
            throw BenchError("unknown backend \(other)")
        }
        let reported: any ResourceLock = flags["report"] == "stdout" ? ReportingLock(lock) : lock
        let elector = try LeaderElector(lock: reported, configuration: configuration, clock: ContinuousClock())
        _ = try await elector.run { _ in try await Task.sleep(for: .seconds(86_400)) }
    }

    /// The node-heartbeat pattern: `count` leases, each renewed every `interval-ms` with renewTime = now
    /// (update(expecting:) on its own lock), start times spread evenly over the interval.
    private static func heartbeats(_ flags: [String: String]) async throws {
        guard let count = Int(try flag(flags, "count")), count > 0, let seconds = Int(try flag(flags, "seconds")) else {
            throw BenchError("--count and --seconds need integers")
        }
        let interval = try milliseconds(flags, "interval-ms")
        let leaseDuration = try milliseconds(flags, "lease-ms")
        let namespace = try flag(flags, "namespace")
        let resultPath = try flag(flags, "result")
        let backend = try flag(flags, "backend")
        var locks: [any ResourceLock] = []
        locks.reserveCapacity(count)
        var close: () async -> Void = {}
        switch backend {
        case BackendKind.etcd.rawValue:
            let client = try EtcdClient(configuration: .init(endpoints: [try flag(flags, "endpoint")]))
            for i in 0..<count {
                locks.append(try EtcdLock(client: client, configuration: .init(name: "node-\(i)", namespace: namespace), identity: "node-\(i)"))
            }
            close = { client.close() }
        case BackendKind.kubernetes.rawValue:
            let client = try kubernetesClient(flags, requestTimeout: .seconds(30))
            for i in 0..<count {
                locks.append(try KubernetesLock(client: client, configuration: .init(name: "node-\(i)", namespace: namespace, recordsEvents: false),
                                                identity: "node-\(i)"))
            }
            close = { try? await client.shutdown() }
        case let other:
            throw BenchError("heartbeats: unsupported backend \(other)")
        }
        let allLocks = locks

        // Create every lease, 64 in flight.
        let createStart = monotonicNanos()
        var versions = [LockVersion?](repeating: nil, count: count)
        try await withThrowingTaskGroup(of: (Int, LockVersion).self) { group in
            var next = 0
            func add() {
                let i = next
                next += 1
                group.addTask {
                    let now = MicroTime.now()
                    let record = LeaderElectionRecord(holderIdentity: "node-\(i)", leaseDuration: leaseDuration, acquireTime: now,
                                                      renewTime: now, leaseTransitions: 0)
                    return (i, try await allLocks[i].create(record))
                }
            }
            while next < min(64, count) { add() }
            while let (i, version) = try await group.next() {
                versions[i] = version
                if next < count { add() }
            }
        }
        let createSeconds = Double(monotonicNanos() - createStart) / 1e9
        let created = versions.compactMap { $0 }.count

        // Renew: lease i at start + i·interval/count + k·interval. The window opens after one interval.
        final class Samples: Sendable {
            struct State { var lags: [Double] = []; var latencies: [Double] = []; var failed = 0; var errors: [String: Int] = [:]; var completedInWindow = 0 }
            let state = Mutex(State())
        }
        let samples = Samples()
        let intervalNanos = UInt64(interval.components.seconds) * 1_000_000_000 + UInt64(interval.components.attoseconds / 1_000_000_000)
        let start = monotonicNanos() + 200_000_000
        let windowStart = start + intervalNanos
        let windowEnd = windowStart + UInt64(seconds) * 1_000_000_000
        let clock = ContinuousClock()
        let clockStart = clock.now.advanced(by: .nanoseconds(Int64(start) - Int64(monotonicNanos())))
        let initialVersions = versions
        let renewers = Task {
            await withTaskGroup(of: Void.self) { group in
                for i in 0..<count {
                    guard let initial = initialVersions[i] else { continue }
                    group.addTask {
                        let lock = allLocks[i]
                        var version = initial
                        let offset = intervalNanos * UInt64(i) / UInt64(count)
                        var k: UInt64 = 0
                        var record = LeaderElectionRecord(holderIdentity: "node-\(i)", leaseDuration: leaseDuration, acquireTime: MicroTime.now(),
                                                          renewTime: MicroTime.now(), leaseTransitions: 0)
                        while true {
                            let scheduled = start + offset + k * intervalNanos
                            k += 1
                            if scheduled >= windowEnd { return }
                            do {
                                try await clock.sleep(until: clockStart.advanced(by: .nanoseconds(Int64(scheduled - start))))
                            } catch { return }
                            let t0 = monotonicNanos()
                            record.renewTime = MicroTime.now()
                            do {
                                version = try await lock.update(record, expecting: version)
                                let t1 = monotonicNanos()
                                if t1 >= windowStart && t1 < windowEnd { samples.state.withLock { $0.completedInWindow += 1 } }
                                if scheduled >= windowStart {
                                    samples.state.withLock {
                                        $0.lags.append(Double(t1 - scheduled) / 1e6)
                                        $0.latencies.append(Double(t1 - t0) / 1e6)
                                    }
                                }
                            } catch {
                                let text = String("\(error)".prefix(120))
                                if scheduled >= windowStart { samples.state.withLock { $0.failed += 1; $0.errors[text, default: 0] += 1 } }
                                if let current = try? await lock.get() { version = current.version }
                            }
                        }
                    }
                }
            }
        }
        // Sample CPU and RSS over the window.
        while monotonicNanos() < windowStart { try await Task.sleep(for: .milliseconds(50)) }
        let cpu0 = processCPUNanos(), t0 = monotonicNanos()
        var rssMax = 0.0
        while monotonicNanos() < windowEnd {
            if let rss = residentMemoryMiB() { rssMax = max(rssMax, rss.rss) }
            try await Task.sleep(for: .seconds(1))
        }
        let cpu1 = processCPUNanos(), t1 = monotonicNanos()
        await renewers.value
        let peak = residentMemoryMiB()?.peak ?? 0
        await close()
        let measured = Double(t1 - t0) / 1e9
        let s = samples.state.withLock { $0 }
        let windowSeconds = Double(windowEnd - windowStart) / 1e9
        let result = HeartbeatResult(
            leases: count, created: created, createSeconds: createSeconds, measuredSeconds: windowSeconds,
            renewals: s.lags.count, failedRenewals: s.failed, renewRate: Double(s.completedInWindow) / windowSeconds,
            lateByMoreThanInterval: s.lags.filter { $0 > Double(intervalNanos) / 1e6 }.count,
            lagMillis: Percentiles(samples: s.lags), latencyMillis: Percentiles(samples: s.latencies),
            cpuCores: Double(cpu1 - cpu0) / 1e9 / measured, rssMaxMiB: rssMax, rssPeakMiB: peak, failuresByError: s.errors)
        try JSONEncoder().encode(result).write(to: URL(fileURLWithPath: resultPath))
    }
}

/// Where a `--child elector` leads: the backend's flags and environment, and what removes the files made for it.
struct ChildBackendArguments: Sendable {
    var arguments: [String]
    var environment: [String: String] = [:]
    var cleanup: @Sendable () -> Void = {}
}

/// The child's flags for `kind`: flock `--dir`; etcd `--endpoint`; Kubernetes `--server`, `--ca` (the test CA,
/// written to a temporary file), `--namespace`, and the bearer token in `LEASE_BENCH_K8S_TOKEN`.
func childBackendArguments(_ kind: BackendKind, _ context: BenchContext, directory: String?) async throws -> ChildBackendArguments {
    switch kind {
    case .file:
        guard let directory else { throw BenchError("no flock directory") }
        return ChildBackendArguments(arguments: ["--dir", directory])
    case .etcd:
        return ChildBackendArguments(arguments: ["--endpoint", context.etcd.server.endpoint])
    case .kubernetes:
        let fixture = try await context.kubernetes.fixture()
        guard case .bearerToken(let token) = fixture.configuration.credentials else { throw BenchError("fixture has no bearer token") }
        let path = NSTemporaryDirectory() + "/lease-bench-ca-\(getpid())-\(randomHex(6)).pem"
        try (fixture.configuration.caPEM ?? "").write(toFile: path, atomically: true, encoding: .utf8)
        return ChildBackendArguments(
            arguments: ["--server", fixture.configuration.server, "--ca", path, "--namespace", fixture.namespace],
            environment: ["LEASE_BENCH_K8S_TOKEN": token],
            cleanup: { try? FileManager.default.removeItem(atPath: path) })
    }
}
