#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization

/// Written to a member's log before every launch (etcd appends its JSON lines after it).
private let launchMarker = "=== EtcdTesting: launching etcd"

/// How one `etcd` member is started; fixed for its whole life, so that a restart uses the same ports and data.
struct MemberConfiguration: Sendable {
    var name: String
    var clientPort: UInt16
    var peerPort: UInt16
    var tls: EtcdTLS?
    /// `--initial-cluster`: `name=http://127.0.0.1:peerPort,…`.
    var initialCluster: String
    /// `--initial-cluster-token`: unique per cluster, so members of different test clusters never join up.
    var clusterToken: String
    /// Milliseconds.
    var heartbeatInterval: Int
    /// Milliseconds.
    var electionTimeout: Int
    var extraArguments: [String]

    var clientURL: String { "\(tls == nil ? "http" : "https")://127.0.0.1:\(clientPort)" }
    var peerURL: String { "http://127.0.0.1:\(peerPort)" }

    func etcdArguments(dataDirectory: String) -> [String] {
        var arguments = [
            "--name", name,
            "--data-dir", dataDirectory,
            "--listen-client-urls", clientURL,
            "--advertise-client-urls", clientURL,
            "--listen-peer-urls", peerURL,
            "--initial-advertise-peer-urls", peerURL,
            "--initial-cluster", initialCluster,
            "--initial-cluster-token", clusterToken,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", String(heartbeatInterval),
            "--election-timeout", String(electionTimeout),
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]
        if let tls { arguments += tls.serverFlags }
        return arguments + extraArguments
    }
}

/// A real `etcd` process for tests: one member, listening on free loopback ports, with its data in a fresh
/// temporary directory.
///
/// ```swift
/// try await EtcdServer.withServer { etcd in        // stopped afterwards, also when the body throws
///     try await etcd.etcdctl(["put", "greeting", "hello"])
///     let client = try EtcdClient(configuration: .init(endpoints: [etcd.endpoint]))   // "127.0.0.1:PORT"
///     …
/// }
///
/// let etcd = try await EtcdServer.start()           // or manage it yourself
/// …
/// await etcd.stop()
/// ```
///
/// `start` returns once `etcdctl endpoint health` succeeds (a linearizable read went through raft), so the
/// member has a leader and serves requests. Every server picks its own ports and directory, so tests can start
/// servers in parallel, in one process or many.
///
/// **Lifecycle.** ``kill()`` (`SIGKILL`, data kept) and ``restart(waitUntilHealthy:timeout:)`` (same ports, same
/// data) simulate crashes; ``pause()`` / ``resume()`` (`SIGSTOP` / `SIGCONT`) simulate a hung server. ``stop()``
/// ends it for good: `SIGTERM`, `SIGKILL` after 5 s, then the directory is removed. Call `stop()` at the end of
/// each test; as a safety net, a server dropped without `stop()` is killed and its directory removed, and on
/// Linux every `etcd` dies with the test process (parent-death signal through `setpriv`), and directories
/// left behind by a killed test run are removed by the next run.
///
/// **Files.** ``directory`` holds the member's data directory (``dataDirectory``, etcd's `--data-dir`) and
/// ``logFile`` (etcd's standard output and error, zap JSON lines; the last lines are quoted in start errors).
public final class EtcdServer: Sendable {
    /// The member's name (`--name`).
    public let name: String
    /// `tls` as given to `start`, or `nil` for plain HTTP.
    public let tls: EtcdTLS?
    /// The client port on 127.0.0.1 (stays the same across restarts).
    public let clientPort: UInt16
    /// The peer (raft) port on 127.0.0.1 (stays the same across restarts).
    public let peerPort: UInt16
    /// The temporary directory of this member: ``dataDirectory`` and ``logFile`` live in it; removed by ``stop()``.
    public let directory: String
    /// The binaries in use.
    public let binaries: EtcdBinaries

    let configuration: MemberConfiguration

    private struct State {
        var child: ChildProcess?
        var pid: pid_t = 0
        var paused = false
        var stopped = false
        var stopTask: Task<Void, Never>?
    }
    private let state = Mutex(State())

    /// How long ``stop()`` waits after `SIGTERM` before `SIGKILL`.
    static let gracePeriod: Duration = .seconds(5)

    init(binaries: EtcdBinaries, configuration: MemberConfiguration) throws(EtcdTestingError) {
        self.binaries = binaries
        self.configuration = configuration
        self.name = configuration.name
        self.tls = configuration.tls
        self.clientPort = configuration.clientPort
        self.peerPort = configuration.peerPort
        self.directory = try makeTemporaryDirectory(label: configuration.name)
    }

    deinit {
        // Dropped without stop(): kill the process, and remove the directory once it is gone (removing it
        // before could race with etcd's last writes and leave files behind).
        let (child, stopped) = state.withLock { ($0.child, $0.stopped) }
        guard !stopped else { return }
        let (directory, ports) = (self.directory, [clientPort, peerPort])
        if let child {
            child.signal(SIGKILL)
            child.onExit {
                removeDirectory(directory)
                PortAllocator.release(ports)
            }
        } else {
            removeDirectory(directory)
            PortAllocator.release(ports)
        }
    }

    // MARK: Starting

    /// Starts a single-member etcd on free loopback ports and waits until it is healthy.
    ///
    /// - Parameters:
    ///   - name: the member name (`--name`); also part of the temporary directory's name.
    ///   - tls: serve clients over TLS with these certificates (``EtcdTLS/generate(in:clientCertAuth:)``); with
    ///     ``EtcdTLS/clientCertAuth``, clients must present a certificate signed by its CA.
    ///   - extraArguments: more `etcd` flags, appended last (for example `["--auth-token", "simple"]`,
    ///     `["--auto-compaction-retention", "1"]`).
    ///   - startTimeout: how long to wait for health.
    /// - Throws: ``EtcdTestingError`` when etcd is not installed (with how to install it; worded as a CI
    ///   failure when `CI=true`) or does not become healthy in time (with the tail of its log). A port taken
    ///   by another process between our choice and etcd's `bind` is retried with fresh ports (up to 5 times).
    public static func start(
        name: String = "etcd",
        tls: EtcdTLS? = nil,
        extraArguments: [String] = [],
        startTimeout: Duration = .seconds(20)
    ) async throws -> EtcdServer {
        let binaries = try requireEtcd()
        var attempt = 0
        while true {
            attempt += 1
            let ports = try PortAllocator.allocate(2)
            let configuration = MemberConfiguration(
                name: name, clientPort: ports[0], peerPort: ports[1], tls: tls,
                initialCluster: "\(name)=http://127.0.0.1:\(ports[1])",
                clusterToken: "etcd-testing-\(UUID().uuidString.lowercased())",
                // A single voter cannot see spurious elections: short timings only make its first election
                // (and every restart's) faster.
                heartbeatInterval: 25, electionTimeout: 250,
                extraArguments: extraArguments)
            let server: EtcdServer
            do {
                server = try EtcdServer(binaries: binaries, configuration: configuration)
            } catch {
                PortAllocator.release(ports)
                throw error
            }
            do {
                try await server.launch()
                try await server.waitUntilReady(healthy: true, timeout: startTimeout, what: "start")
                return server
            } catch {
                let retry = attempt < 5 && server.portWasTaken()
                await server.stop()
                if !retry { throw error }
            }
        }
    }

    /// A free loopback TCP port with nothing listening on it, for "unreachable endpoint" tests
    /// (`"127.0.0.1:\(port)"`). It stays reserved for the life of the process: no server of this fixture will
    /// ever listen on it (another process could, in principle).
    public static func freePort() throws -> UInt16 {
        try PortAllocator.allocate(1)[0]
    }

    /// Starts a server (see ``start(name:tls:extraArguments:startTimeout:)``), runs `body` with it, and stops it
    /// — also when `body` throws.
    public static func withServer<T>(
        name: String = "etcd",
        tls: EtcdTLS? = nil,
        extraArguments: [String] = [],
        _ body: (EtcdServer) async throws -> T
    ) async throws -> T {
        let server = try await start(name: name, tls: tls, extraArguments: extraArguments)
        do {
            let result = try await body(server)
            await server.stop()
            return result
        } catch {
            await server.stop()
            throw error
        }
    }

    /// Spawns etcd with the member's configuration (appending to the log).
    func launch() async throws(EtcdTestingError) {
        let (stopped, running) = state.withLock { ($0.stopped, $0.child?.exitStatus == nil && $0.child != nil) }
        guard !stopped else { throw EtcdTestingError("etcd member \(name) has been stopped") }
        guard !running else { throw EtcdTestingError("etcd member \(name) is already running") }
        var arguments = configuration.etcdArguments(dataDirectory: dataDirectory)
        var executable = binaries.etcd
        if let setpriv = pdeathsigLauncher {
            arguments = ["--pdeathsig", "KILL", "--", executable] + arguments
            executable = setpriv
        }
        var extra: [String: String] = [:]
        #if arch(arm64)
        extra["ETCD_UNSUPPORTED_ARCH"] = "arm64"   // etcd 3.4 refuses to run on arm64 without it
        #endif
        let line = "\(launchMarker) (\(Date()), \(configuration.clientURL), peer \(configuration.peerURL)) ===\n"
        let fd = open(logFile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        if fd >= 0 {
            _ = line.utf8CString.withUnsafeBytes { write(fd, $0.baseAddress, $0.count - 1) }
            close(fd)
        }
        let child = try await ChildProcess.spawn(
            executable: executable, arguments: arguments, environment: childEnvironment(adding: extra),
            logFile: logFile)
        let stoppedMeanwhile = state.withLock { state -> Bool in
            if state.stopped { return true }
            state.child = child
            state.pid = child.pid
            state.paused = false
            return false
        }
        if stoppedMeanwhile {
            await child.forceKill()
            throw EtcdTestingError("etcd member \(name) was stopped while starting")
        }
    }

    /// Waits until the member serves clients: `etcdctl endpoint health` succeeds (`healthy`; needs a raft leader,
    /// hence a quorum) or `etcdctl endpoint status` answers (any running member).
    func waitUntilReady(
        healthy: Bool,
        timeout: Duration,
        deadline: ContinuousClock.Instant? = nil,
        what: String
    ) async throws(EtcdTestingError) {
        let deadline = deadline ?? ContinuousClock.now.advanced(by: timeout)
        var lastFailure = ""
        while true {
            guard let child = state.withLock({ $0.child }) else {
                throw EtcdTestingError("etcd member \(name) is not running")
            }
            if let status = child.exitStatus {
                throw EtcdTestingError(
                    "etcd member \(name) (\(clientURL)) exited during \(what) (\(status))\(portWasTaken() ? "; its port was taken" : "")."
                        + logExcerpt())
            }
            if ContinuousClock.now >= deadline { break }
            if acceptsConnections(port: clientPort) {
                let remaining = deadline - ContinuousClock.now
                let commandTimeout = max(min(remaining, .seconds(2)), .milliseconds(500))
                let seconds = String(format: "%.3fs", Double(commandTimeout.components.seconds)
                    + Double(commandTimeout.components.attoseconds) / 1e18)
                let arguments = healthy
                    ? ["endpoint", "health", "--command-timeout", seconds, "--dial-timeout", seconds]
                    : ["endpoint", "status", "--command-timeout", seconds, "--dial-timeout", seconds]
                let result = try await runEtcdctl(arguments, timeout: commandTimeout + .seconds(5))
                if result.succeeded { return }
                lastFailure = "\nlast check: \(result)"
                try? await Task.sleep(for: .milliseconds(50))
            } else {
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        throw EtcdTestingError(
            "etcd member \(name) (\(clientURL)) did not become \(healthy ? "healthy" : "ready") within \(timeout) "
                + "(\(what)).\(lastFailure)" + logExcerpt())
    }

    /// `true` when etcd's log says, since the last launch, that one of its ports was in use.
    func portWasTaken() -> Bool {
        let tail = logTail(maxBytes: 64 << 10)
        let sinceLaunch = tail.range(of: launchMarker, options: .backwards).map { tail[$0.upperBound...] } ?? tail[...]
        return sinceLaunch.contains("address already in use")
    }

    /// The end of the log file since the last launch, introduced, for an error message.
    func logExcerpt() -> String {
        var tail = logTail(maxBytes: 6000)
        if let marker = tail.range(of: launchMarker, options: .backwards) { tail = String(tail[marker.lowerBound...]) }
        guard !tail.isEmpty else { return " (its log, \(logFile), is empty)" }
        return "\nlast lines of \(logFile):\n" + tail
    }

    /// At most the last `maxBytes` of the log, starting at a line boundary.
    public func logTail(maxBytes: Int = 6000) -> String {
        guard let handle = FileHandle(forReadingAtPath: logFile) else { return "" }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        let start = size > UInt64(maxBytes) ? size - UInt64(maxBytes) : 0
        try? handle.seek(toOffset: start)
        let data = (try? handle.readToEnd()) ?? Data()
        var text = String(decoding: data, as: UTF8.self)
        if start > 0, let newline = text.firstIndex(of: "\n") { text = String(text[text.index(after: newline)...]) }
        return text
    }

    // MARK: Addresses and files

    /// The client URL: `http://127.0.0.1:PORT`, or `https://…` with TLS.
    public var clientURL: String { configuration.clientURL }
    /// The peer URL: `http://127.0.0.1:PORT` (peers never use TLS here).
    public var peerURL: String { configuration.peerURL }
    /// `127.0.0.1:PORT`, the client endpoint without a scheme (what gRPC clients and `etcdctl --endpoints` take).
    public var endpoint: String { "127.0.0.1:\(clientPort)" }
    /// etcd's `--data-dir` (inside ``directory``); kept by ``kill()`` and ``restart(waitUntilHealthy:timeout:)``.
    public var dataDirectory: String { directory + "/data" }
    /// etcd's standard output and error, appended across restarts.
    public var logFile: String { directory + "/etcd.log" }

    // MARK: Lifecycle

    /// The pid of the current `etcd` process (after ``kill()``, of the one that was killed).
    public var pid: Int32 { state.withLock { $0.pid } }

    /// `true` while an `etcd` process for this member exists (also while it is paused).
    public var isRunning: Bool {
        state.withLock { state in state.child.map { $0.exitStatus == nil } ?? false }
    }

    /// How the current (or last) `etcd` process ended, `nil` while it runs.
    var exitStatus: ExitStatus? { state.withLock { $0.child?.exitStatus } }

    /// `true` between ``pause()`` and ``resume()``.
    public var isPaused: Bool { state.withLock { $0.paused && $0.child?.exitStatus == nil } }

    /// Stops the member for good: `SIGTERM` (and `SIGCONT`, should it be paused), `SIGKILL` if it has not exited
    /// within 5 s, waits for it, then removes ``directory`` and frees the ports.
    ///
    /// Idempotent; concurrent and later calls wait for the first one. Runs to completion even when the calling
    /// task is cancelled. A stopped server cannot be restarted.
    public func stop() async {
        await stop(gracePeriod: Self.gracePeriod)
    }

    /// ``stop()`` with another grace period (`.zero`: `SIGKILL` at once).
    func stop(gracePeriod: Duration) async {
        let task = state.withLock { state -> Task<Void, Never> in
            if let task = state.stopTask { return task }
            state.stopped = true
            let child = state.child
            let task = Task { [directory, clientPort, peerPort] in
                if let child {
                    if gracePeriod > .zero {
                        await child.terminate(gracePeriod: gracePeriod)
                    } else {
                        await child.forceKill()
                    }
                }
                removeDirectory(directory)
                PortAllocator.release([clientPort, peerPort])
            }
            state.stopTask = task
            return task
        }
        await task.value
    }

    /// Kills the member with `SIGKILL` (a crash) and waits until it is gone. The data directory and the ports
    /// are kept for ``restart(waitUntilHealthy:timeout:)``. Does nothing when it is not running.
    public func kill() async {
        guard let child = state.withLock({ $0.stopped ? nil : $0.child }) else { return }
        await child.forceKill()
    }

    /// Starts the member again with the same name, ports, data directory and flags, and waits until it serves.
    ///
    /// A running member is stopped first (`SIGTERM`, `SIGKILL` after 5 s). If another process grabbed one of the
    /// ports meanwhile, retries until `timeout`.
    ///
    /// - Parameters:
    ///   - waitUntilHealthy: wait for `etcdctl endpoint health` (the member has a leader; in a cluster this
    ///     needs a quorum). With `false`, waits only until the member answers `endpoint status` — use that to
    ///     restart a member of a cluster that has lost its quorum.
    ///   - timeout: how long to wait.
    /// - Throws: ``EtcdTestingError`` after ``stop()``, or when the member does not come back in time.
    public func restart(waitUntilHealthy: Bool = true, timeout: Duration = .seconds(20)) async throws {
        let (child, stopped) = state.withLock { ($0.child, $0.stopped) }
        guard !stopped else { throw EtcdTestingError("etcd member \(name) has been stopped; it cannot restart") }
        if let child, child.exitStatus == nil { await child.terminate(gracePeriod: Self.gracePeriod) }
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while true {
            try await launch()
            do {
                try await waitUntilReady(healthy: waitUntilHealthy, timeout: timeout, deadline: deadline, what: "restart")
                return
            } catch {
                let current = state.withLock { $0.child }
                if let current { await current.forceKill() }
                guard portWasTaken(), ContinuousClock.now < deadline else { throw error }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// Freezes the member with `SIGSTOP`: it keeps its ports but answers nothing (a hung server; its peers
    /// elect a new leader). Does nothing when it is not running.
    ///
    /// `SIGSTOP` takes effect asynchronously (a thread running on another core can still answer a request
    /// for a moment), so this waits (bounded, 2 s) until every thread of the process is stopped.
    public func pause() {
        let pid: Int32? = state.withLock { state in
            guard !state.stopped, let child = state.child else { return nil }
            child.signal(SIGSTOP)
            state.paused = true
            return child.pid
        }
        guard let pid else { return }
        let limit = ContinuousClock.now + .seconds(2)
        while ContinuousClock.now < limit && !ProcFS.allThreadsStopped(pid) {
            usleep(200)
        }
    }

    /// Lets a paused member run again (`SIGCONT`).
    public func resume() {
        state.withLock { state in
            guard let child = state.child else { return }
            child.signal(SIGCONT)
            state.paused = false
        }
    }

    // MARK: etcdctl

    /// Runs `etcdctl --endpoints <clientURL> [TLS flags] <arguments>` and returns its standard output.
    ///
    /// With ``tls``, the flags are ``EtcdTLS/etcdctlFlags`` (trust the CA, present the client certificate).
    /// - Throws: ``EtcdTestingError`` with the command's output when it fails or runs past `timeout`.
    @discardableResult
    public func etcdctl(_ arguments: [String], timeout: Duration = .seconds(20)) async throws -> String {
        let result = try await runEtcdctl(arguments, timeout: timeout)
        guard result.succeeded else { throw EtcdTestingError("etcdctl failed: \(result)") }
        return result.standardOutput
    }

    /// Runs `etcdctl --endpoints <clientURL> [TLS flags] <arguments>` and returns how it went (it does not
    /// throw when etcdctl fails). `tlsFlags: false` omits ``EtcdTLS/etcdctlFlags``, for tests that pass their own
    /// (`--cacert <wrong CA>`, a client certificate the server must reject, …).
    public func runEtcdctl(
        _ arguments: [String],
        tlsFlags: Bool = true,
        timeout: Duration = .seconds(20)
    ) async throws(EtcdTestingError) -> CommandResult {
        try await runEtcdctlCommand(
            binaries: binaries, endpoints: [clientURL], tls: tlsFlags ? tls : nil, arguments: arguments,
            timeout: timeout)
    }

    /// The member's view of the cluster, from `etcdctl endpoint status` (answered locally; no quorum needed).
    public func status(timeout: Duration = .seconds(2)) async throws -> EtcdMemberStatus {
        let seconds = "\(max(1, timeout.components.seconds))s"
        let result = try await runEtcdctl(
            ["endpoint", "status", "-w", "json", "--command-timeout", seconds, "--dial-timeout", seconds],
            timeout: timeout + .seconds(5))
        guard result.succeeded else { throw EtcdTestingError("etcdctl endpoint status failed: \(result)") }
        guard let status = try? JSONDecoder().decode([EndpointStatusJSON].self, from: Data(result.standardOutput.utf8)).first
        else { throw EtcdTestingError("cannot parse `etcdctl endpoint status -w json` output: \(result.standardOutput)") }
        return EtcdMemberStatus(
            memberID: status.Status.header.member_id ?? 0,
            leaderID: status.Status.leader ?? 0,
            raftTerm: status.Status.raftTerm ?? status.Status.header.raft_term ?? 0,
            revision: status.Status.header.revision ?? 0,
            version: status.Status.version ?? "")
    }
}

/// One member's answer to `etcdctl endpoint status`.
public struct EtcdMemberStatus: Sendable, Hashable {
    /// This member's id.
    public var memberID: UInt64
    /// The id of the member it believes leads (0: none).
    public var leaderID: UInt64
    /// Its raft term.
    public var raftTerm: UInt64
    /// The store revision it has applied.
    public var revision: Int64
    /// The server version, such as `3.4.23`.
    public var version: String

    /// `true` when the member believes it is the leader.
    public var isLeader: Bool { memberID != 0 && memberID == leaderID }
}

// swiftlint:disable identifier_name
/// `etcdctl endpoint status -w json`: `[{"Endpoint": …, "Status": {"header": {…}, "leader": …, …}}]`. Zero
/// values are omitted by the protobuf JSON encoding, hence the optionals.
struct EndpointStatusJSON: Decodable {
    struct Header: Decodable {
        var member_id: UInt64?
        var revision: Int64?
        var raft_term: UInt64?
    }
    struct Status: Decodable {
        var header: Header
        var version: String?
        var leader: UInt64?
        var raftTerm: UInt64?
    }
    var Endpoint: String
    var Status: Status
}
// swiftlint:enable identifier_name

/// Runs `etcdctl --endpoints <endpoints> [tls flags] <arguments>` (API v3).
func runEtcdctlCommand(
    binaries: EtcdBinaries,
    endpoints: [String],
    tls: EtcdTLS?,
    arguments: [String],
    timeout: Duration
) async throws(EtcdTestingError) -> CommandResult {
    let global = ["--endpoints", endpoints.joined(separator: ",")] + (tls?.etcdctlFlags ?? [])
    return try await runCommand(
        binaries.etcdctl, global + arguments, environment: childEnvironment(adding: ["ETCDCTL_API": "3"]),
        timeout: timeout)
}
