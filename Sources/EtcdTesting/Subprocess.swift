#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Foundation
import Synchronization

/// How a child process ended.
enum ExitStatus: Sendable, Hashable, CustomStringConvertible {
    /// It called `exit` with this status.
    case exited(Int32)
    /// A signal killed it.
    case signaled(Int32)

    var description: String {
        switch self {
        case .exited(let status): "exit status \(status)"
        case .signaled(let signal): "killed by signal \(signal)"
        }
    }

    init(waitStatus raw: Int32) {
        let low = raw & 0x7f
        self = low == 0 ? .exited((raw >> 8) & 0xff) : .signaled(low)
    }
}

/// Where a child's standard output and error go.
enum ChildOutput {
    /// Both appended to the file at this path (created if missing).
    case appendBoth(String)
    /// Standard output to the first descriptor, standard error to the second (the parent's, close-on-exec).
    case descriptors(Int32, Int32)
}

/// The environment for the children: this process's, without the variables `etcd` and `etcdctl` read as
/// flags (`ETCD_*`, `ETCDCTL_*`), which would conflict with the flags we pass.
///
/// - Parameter extra: variables to set (or override) on top.
/// - Returns: `NAME=value` strings, as `posix_spawn(2)` takes them.
public func childEnvironment(adding extra: [String: String] = [:]) -> [String] {
    var environment = ProcessInfo.processInfo.environment.filter { key, _ in
        !key.hasPrefix("ETCD_") && !key.hasPrefix("ETCDCTL_")
    }
    for (key, value) in extra { environment[key] = value }
    return environment.map { "\($0.key)=\($0.value)" }
}

/// Starts `executable` with `arguments` (`argv[0]` is `executable`) through `posix_spawn(2)`.
///
/// The child starts with every signal disposition reset to the default and an empty signal mask (ignored
/// dispositions survive `exec`, and an `etcd` that ignored `SIGTERM` could not be stopped), standard input
/// from `/dev/null`, and no inherited descriptors other than 0, 1 and 2.
func spawnProcess(
    executable: String,
    arguments: [String],
    environment: [String],
    output: ChildOutput,
    newProcessGroup: Bool
) throws(EtcdTestingError) -> pid_t {
    var fileActions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&fileActions)
    defer { posix_spawn_file_actions_destroy(&fileActions) }
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }

    var defaults = sigset_t()
    sigfillset(&defaults)
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    var mask = sigset_t()
    sigemptyset(&mask)
    posix_spawnattr_setsigmask(&attributes, &mask)
    var flags = Int32(POSIX_SPAWN_SETSIGDEF) | Int32(POSIX_SPAWN_SETSIGMASK)
    if newProcessGroup {
        posix_spawnattr_setpgroup(&attributes, 0)
        flags |= Int32(POSIX_SPAWN_SETPGROUP)
    }
    posix_spawnattr_setflags(&attributes, Int16(flags))

    posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
    switch output {
    case .appendBoth(let path):
        posix_spawn_file_actions_addopen(&fileActions, 2, path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&fileActions, 2, 1)
    case .descriptors(let out, let err):
        posix_spawn_file_actions_adddup2(&fileActions, out, 1)
        posix_spawn_file_actions_adddup2(&fileActions, err, 2)
    }
    // Descriptors some other code forgot to mark close-on-exec must not leak into the children (a leaked pipe
    // end held by a long-lived etcd can make someone else's read wait forever).
    if let addClosefrom = posixSpawnAddClosefrom {
        _ = addClosefrom(&fileActions, 3)
    }

    let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
    let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
    defer {
        for pointer in argv { free(pointer) }
        for pointer in envp { free(pointer) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, executable, &fileActions, &attributes, argv, envp)
    guard rc == 0 else {
        throw EtcdTestingError("cannot start \(executable): \(String(cString: strerror(rc)))")
    }
    return pid
}

/// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+), looked up at run time: the Swift overlay does not
/// export it.
private let posixSpawnAddClosefrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
    #if canImport(Glibc)
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
        return nil
    }
    return unsafeBitCast(
        symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    #else
    return nil
    #endif
}()

/// Waits for `pid` to exit (blocking the calling thread), retrying on `EINTR`.
func blockingWait(_ pid: pid_t) -> ExitStatus {
    var raw: Int32 = 0
    while true {
        let r = waitpid(pid, &raw, 0)
        if r == pid { return ExitStatus(waitStatus: raw) }
        if r == -1 && errno == EINTR { continue }
        return .signaled(SIGKILL)   // lost track of the child (ECHILD): report it as killed
    }
}

// MARK: - Long-lived children

/// A long-lived child process (an `etcd` member), reaped by a dedicated thread.
///
/// The reaper thread holds only this object, never the ``EtcdServer`` that owns it, so that dropping the server
/// runs its `deinit` (which kills the child and asks, through ``onExit(_:)``, for the data to be removed once
/// the child is gone).
final class ChildProcess: Sendable {
    let pid: pid_t

    private struct State {
        var status: ExitStatus?
        var waiters: [Int: CheckedContinuation<ExitStatus?, Never>] = [:]
        var cancelledWaiters: Set<Int> = []
        var nextWaiter = 0
        var exitActions: [@Sendable () -> Void] = []
    }
    private let state = Mutex(State())

    private init(pid: pid_t) {
        self.pid = pid
    }

    /// Starts the child on the ``SpawnerThread`` (see there why) and starts reaping it.
    static func spawn(
        executable: String,
        arguments: [String],
        environment: [String],
        logFile: String
    ) async throws(EtcdTestingError) -> ChildProcess {
        let result: Result<pid_t, EtcdTestingError> = await SpawnerThread.shared.run {
            Result { () throws(EtcdTestingError) -> pid_t in
                try spawnProcess(
                    executable: executable, arguments: arguments, environment: environment,
                    // Same process group as the tests: a Ctrl-C reaches etcd too (it exits cleanly on SIGINT),
                    // which matters where there is no parent-death signal.
                    output: .appendBoth(logFile), newProcessGroup: false)
            }
        }
        let child = ChildProcess(pid: try result.get())
        let thread = Thread { child.reap() }
        thread.name = "EtcdTesting reaper \(child.pid)"
        thread.stackSize = 512 << 10
        thread.start()
        return child
    }

    private func reap() {
        // Wait *without* reaping first, then reap under the lock: ``signal(_:)`` (also under the lock) can
        // never hit a recycled pid.
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) == -1 && errno == EINTR {}
        let (waiters, actions) = state.withLock { state in
            let status = blockingWait(pid)
            state.status = status
            defer {
                state.waiters = [:]
                state.exitActions = []
            }
            return (Array(state.waiters.values), state.exitActions)
        }
        let status = exitStatus!
        for waiter in waiters { waiter.resume(returning: status) }
        for action in actions { action() }
    }

    /// How the child ended, or `nil` while it runs (or has exited but is not reaped yet).
    var exitStatus: ExitStatus? { state.withLock { $0.status } }

    /// Runs `action` (on the reaper thread) once the child has been reaped, or now if it has been.
    func onExit(_ action: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            if state.status != nil { return true }
            state.exitActions.append(action)
            return false
        }
        if now { action() }
    }

    /// Sends `signal` to the child, unless it has been reaped (its pid may belong to someone else by then).
    func signal(_ signal: Int32) {
        state.withLock { state in
            // Under the lock: the reaper records the status before anything else can reuse the pid.
            if state.status == nil { _ = kill(pid, signal) }
        }
    }

    /// Waits until the child has exited, ignoring task cancellation.
    func waitUntilExit() async -> ExitStatus {
        if let status = exitStatus { return status }
        let id = newWaiterID()
        return await withCheckedContinuation { register(id, $0) } ?? .signaled(SIGKILL)
    }

    /// Waits until the child has exited or `timeout` has passed: `nil` then.
    func waitUntilExit(timeout: Duration) async -> ExitStatus? {
        if let status = exitStatus { return status }
        return await withTaskGroup(of: ExitStatus?.self) { group in
            group.addTask { await self.cancellableWait() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? self.exitStatus
        }
    }

    /// `SIGTERM` (plus `SIGCONT`, in case it is stopped), then `SIGKILL` after `gracePeriod`; waits for the exit.
    /// Runs to completion even when the calling task is cancelled.
    @discardableResult
    func terminate(gracePeriod: Duration) async -> ExitStatus {
        await Task {
            signal(SIGTERM)
            signal(SIGCONT)
            if let status = await waitUntilExit(timeout: gracePeriod) { return status }
            signal(SIGKILL)
            return await waitUntilExit()
        }.value
    }

    /// `SIGKILL`, then waits for the exit (even when the calling task is cancelled).
    @discardableResult
    func forceKill() async -> ExitStatus {
        signal(SIGKILL)
        return await waitUntilExit()
    }

    private func newWaiterID() -> Int {
        state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
    }

    private func cancellableWait() async -> ExitStatus? {
        let id = newWaiterID()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { register(id, $0) }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<ExitStatus?, Never>? in
                if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
                state.cancelledWaiters.insert(id)
                return nil
            }
            waiter?.resume(returning: nil)
        }
    }

    private func register(_ id: Int, _ continuation: CheckedContinuation<ExitStatus?, Never>) {
        enum Now { case status(ExitStatus), cancelled, later }
        let now = state.withLock { state -> Now in
            if let status = state.status { return .status(status) }
            if state.cancelledWaiters.remove(id) != nil { return .cancelled }
            state.waiters[id] = continuation
            return .later
        }
        switch now {
        case .status(let status): continuation.resume(returning: status)
        case .cancelled: continuation.resume(returning: nil)
        case .later: break
        }
    }
}

/// One thread that lives as long as the process and starts every `etcd` (and the children of the project's
/// tools that must die with them, such as `lease-bench`'s).
///
/// `etcd` is started through `setpriv --pdeathsig KILL` (``pdeathsigLauncher``), so that it dies with the test
/// process even when that is killed (a crashed or timed-out test run must not leave servers holding ports). The
/// kernel sends that signal when the *thread* that spawned the child exits, not the process — and the threads of
/// Swift's cooperative pool and of Dispatch come and go. Hence a dedicated thread that never exits.
public final class SpawnerThread: Sendable {
    /// The one spawner thread of this process.
    public static let shared = SpawnerThread()

    private let jobs = Mutex<[@Sendable () -> Void]>([])
    private let condition = NSCondition()

    private init() {
        let thread = Thread { [self] in loop() }
        thread.name = "EtcdTesting spawner"
        thread.stackSize = 512 << 10
        thread.start()
    }

    /// Runs `body` on the spawner thread and returns its result, without blocking the calling thread.
    ///
    /// Start the child process inside `body` (for example `Process.run()` or `posix_spawn`); keep it short, every
    /// spawn of the process goes through this one thread.
    public func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            condition.lock()
            jobs.withLock { $0.append { continuation.resume(returning: body()) } }
            condition.signal()
            condition.unlock()
        }
    }

    private func loop() {
        while true {
            condition.lock()
            var next = jobs.withLock { jobs -> [@Sendable () -> Void] in
                defer { jobs = [] }
                return jobs
            }
            while next.isEmpty {
                condition.wait()
                next = jobs.withLock { jobs -> [@Sendable () -> Void] in
                    defer { jobs = [] }
                    return jobs
                }
            }
            condition.unlock()
            for job in next { job() }
        }
    }
}

// MARK: - Short-lived commands

/// What a finished command printed, how it ended and when it ran.
public struct CommandResult: Sendable, CustomStringConvertible {
    /// The command line, for messages.
    public var command: [String]
    /// How it ended: its exit status, or 128 + the signal that killed it.
    public var exitCode: Int32
    /// Everything it wrote to standard output.
    public var standardOutput: String
    /// Everything it wrote to standard error.
    public var standardError: String
    /// `true` when it was killed because it ran past its timeout.
    public var timedOut: Bool
    /// `CLOCK_MONOTONIC` (the clock of every process on the machine), in nanoseconds, just before the spawn.
    public var startNanos: UInt64
    /// `CLOCK_MONOTONIC`, in nanoseconds, when `waitpid(2)` returned the command's exit.
    public var endNanos: UInt64

    /// `true` when it exited with status 0.
    public var succeeded: Bool { exitCode == 0 && !timedOut }

    public var description: String {
        let outcome = timedOut ? "timed out" : "exit code \(exitCode)"
        var text = "`\(command.joined(separator: " "))`: \(outcome)"
        let out = standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        let err = standardError.trimmingCharacters(in: .whitespacesAndNewlines)
        if !out.isEmpty { text += "\nstdout: \(out.suffix(2000))" }
        if !err.isEmpty { text += "\nstderr: \(err.suffix(2000))" }
        return text
    }
}

/// An anonymous temporary file (created, then unlinked at once: nothing to clean up), close-on-exec.
private func anonymousFile() throws(EtcdTestingError) -> Int32 {
    var template = Array((temporaryDirectory() + "/etcd-testing-output.XXXXXX").utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else { throw EtcdTestingError("mkstemp: \(String(cString: strerror(errno)))") }
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
    return fd
}

/// Everything in the file behind `fd` from the start, as UTF-8 (lossy).
private func readAll(_ fd: Int32) -> String {
    lseek(fd, 0, SEEK_SET)
    var data = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 16 << 10)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 {
            data.append(contentsOf: buffer[0..<n])
        } else if n == 0 || errno != EINTR {
            break
        }
    }
    return String(decoding: data, as: UTF8.self)
}

/// `CLOCK_MONOTONIC` in nanoseconds.
private func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// A running command that the timeout watchdog may kill only until it has been reaped: after that its pid may
/// name another process.
private final class RunningCommand: Sendable {
    let pid: pid_t
    /// Whether it has been reaped, and whether the watchdog killed it.
    private let state = Mutex<(reaped: Bool, killed: Bool)>((false, false))

    init(pid: pid_t) {
        self.pid = pid
    }

    /// `SIGKILL`, unless the command has been reaped.
    func killUnlessReaped() {
        state.withLock { state in
            guard !state.reaped else { return }
            _ = kill(pid, SIGKILL)
            state.killed = true
        }
    }

    /// Blocks until the command exits and reaps it: its status, `CLOCK_MONOTONIC` when `waitpid` returned, and
    /// whether the watchdog killed it.
    func wait() -> (status: ExitStatus, endNanos: UInt64, killed: Bool) {
        // Wait *without* reaping first, then reap under the lock, so that ``killUnlessReaped()`` (also under the
        // lock) never hits a recycled pid.
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) == -1 && errno == EINTR {}
        return state.withLock { state in
            let status = blockingWait(pid)
            let end = monotonicNanos()
            state.reaped = true
            return (status, end, state.killed)
        }
    }
}

/// Runs a command to completion, blocking the calling thread in `waitpid(2)`; a watchdog kills it (`SIGKILL`)
/// after `timeout`.
///
/// Output goes to unlinked temporary files, so a chatty command can never block on a full pipe.
func runCommandBlocking(
    _ executable: String,
    _ arguments: [String],
    environment: [String] = childEnvironment(),
    timeout: Duration
) throws(EtcdTestingError) -> CommandResult {
    let out = try anonymousFile()
    defer { close(out) }
    let err = try anonymousFile()
    defer { close(err) }
    let start = monotonicNanos()
    let command = RunningCommand(pid: try spawnProcess(
        executable: executable, arguments: arguments, environment: environment,
        output: .descriptors(out, err), newProcessGroup: false))

    // The watchdog runs on Dispatch's threads, not Swift's cooperative pool: a caller blocking a pool thread in
    // here cannot keep it from firing.
    let watchdog = DispatchWorkItem { command.killUnlessReaped() }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout / .seconds(1), execute: watchdog)
    let (status, end, killed) = command.wait()
    watchdog.cancel()

    let exitCode: Int32 = switch status {
    case .exited(let code): code
    case .signaled(let signal): 128 + signal
    }
    return CommandResult(
        command: [executable] + arguments, exitCode: exitCode,
        standardOutput: readAll(out), standardError: readAll(err), timedOut: killed,
        startNanos: start, endNanos: end)
}

/// Runs a command to completion on a thread of its own that does nothing else (spawn, then a blocking
/// `waitpid(2)`), so that waiting for it never occupies a thread of Swift's (small) cooperative pool, and neither
/// that pool nor a polling interval adds to ``CommandResult/startNanos`` … ``CommandResult/endNanos``.
///
/// The command gets standard input from `/dev/null`, default signal dispositions, an empty signal mask and no
/// inherited descriptor but 0, 1 and 2; its standard output and error go to unlinked temporary files (never a
/// pipe that could fill up), read once it has exited.
///
/// - Parameters:
///   - executable: the path of the program (`argv[0]`).
///   - arguments: the rest of its command line.
///   - environment: `NAME=value` strings; by default ``childEnvironment(adding:)``.
///   - timeout: after this, the command is killed (`SIGKILL`) and ``CommandResult/timedOut`` is `true`.
/// - Returns: what it printed, how it ended and when.
/// - Throws: ``EtcdTestingError`` when it cannot be started.
public func runCommand(
    _ executable: String,
    _ arguments: [String],
    environment: [String] = childEnvironment(),
    timeout: Duration
) async throws(EtcdTestingError) -> CommandResult {
    let result: Result<CommandResult, EtcdTestingError> = await withCheckedContinuation { continuation in
        let thread = Thread {
            continuation.resume(returning: Result { () throws(EtcdTestingError) -> CommandResult in
                try runCommandBlocking(executable, arguments, environment: environment, timeout: timeout)
            })
        }
        thread.name = "EtcdTesting command"
        thread.stackSize = 512 << 10
        thread.start()
    }
    return try result.get()
}

/// `$TMPDIR` without a trailing slash, or `/tmp`.
func temporaryDirectory() -> String {
    var path = ProcessInfo.processInfo.environment["TMPDIR"] ?? ""
    while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
    return path.isEmpty ? "/tmp" : path
}
