#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import Synchronization

/// Serialises ``ChildProcess/spawn(_:environment:standardInput:standardOutput:standardError:newProcessGroup:)``.
private let spawnLock = NSLock()

/// How a child process ended.
enum ProcessExitStatus: Sendable, Hashable, CustomStringConvertible {
    /// It called `exit` with this status.
    case exited(Int32)
    /// A signal killed it.
    case signaled(Int32)

    /// The shell's convention: the exit status, or 128 + the signal number.
    var code: Int32 {
        switch self {
        case .exited(let status): status
        case .signaled(let signal): 128 + signal
        }
    }

    var description: String {
        switch self {
        case .exited(let status): "exit status \(status)"
        case .signaled(let signal): "killed by \(signalName(signal))"
        }
    }
}

/// A signal's conventional name (`SIGTERM`), or `signal N`.
func signalName(_ signal: Int32) -> String {
    switch signal {
    case SIGTERM: "SIGTERM"
    case SIGINT: "SIGINT"
    case SIGKILL: "SIGKILL"
    case SIGHUP: "SIGHUP"
    case SIGQUIT: "SIGQUIT"
    case SIGABRT: "SIGABRT"
    case SIGSEGV: "SIGSEGV"
    case SIGPIPE: "SIGPIPE"
    case SIGUSR1: "SIGUSR1"
    case SIGUSR2: "SIGUSR2"
    default: "signal \(signal)"
    }
}

/// Where one of a child's standard streams goes.
enum ChildIO: Sendable {
    /// The parent's stream.
    case inherit
    /// `/dev/null`.
    case null
    /// Appended to a file, created if missing.
    case append(String)
    /// A new pipe; the parent reads from ``ChildProcess/standardOutput`` / ``ChildProcess/standardError``.
    case pipe
}

/// A child process started with `posix_spawn(2)`, reaped by a dedicated thread.
///
/// Unlike Foundation's `Process` on Linux, the child starts with **every signal disposition reset to
/// the default and an empty signal mask**. That matters because `leasectl` ignores `SIGTERM`/`SIGINT`
/// (to receive them through Dispatch sources), and ignored dispositions survive `exec`: a command
/// launched by `Process` would ignore the `SIGTERM` meant to stop it. By default the child also leads
/// a new process group, so ``signalGroup(_:)`` reaches the processes it forks (such as `sh -c` jobs)
/// and a terminal's Ctrl-C goes to `leasectl`, which stops the command in order.
final class ChildProcess: Sendable {
    /// The child's process id.
    let pid: pid_t
    /// `true` when the child leads its own process group (id = ``pid``).
    let leadsProcessGroup: Bool
    /// The read end of the child's standard output when spawned with ``ChildIO/pipe`` (owned by the caller).
    let standardOutput: Int32?
    /// The read end of the child's standard error when spawned with ``ChildIO/pipe`` (owned by the caller).
    let standardError: Int32?

    private struct State {
        var status: ProcessExitStatus?
        var waiters: [Int: CheckedContinuation<ProcessExitStatus?, Never>] = [:]
        var cancelledWaiters: Set<Int> = []
        var nextWaiter = 0
    }
    private let state = Mutex(State())

    private init(pid: pid_t, leadsProcessGroup: Bool, standardOutput: Int32?, standardError: Int32?) {
        self.pid = pid
        self.leadsProcessGroup = leadsProcessGroup
        self.standardOutput = standardOutput
        self.standardError = standardError
    }

    /// Starts `arguments[0]` (looked up in `PATH` unless it contains a `/`) with `arguments`.
    ///
    /// - Parameters:
    ///   - environment: the complete environment; `nil` passes this process's.
    ///   - newProcessGroup: start the child in a new process group that it leads.
    /// - Throws: ``LeaseCtlError`` with exit code 127 (not found) or 126 (not executable).
    static func spawn(
        _ arguments: [String],
        environment: [String: String]? = nil,
        standardInput: ChildIO = .inherit,
        standardOutput: ChildIO = .inherit,
        standardError: ChildIO = .inherit,
        newProcessGroup: Bool = true
    ) throws -> ChildProcess {
        guard let executable = arguments.first, !executable.isEmpty else {
            throw LeaseCtlError("no command to run", exitCode: 127)
        }
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

        // One spawn at a time: a pipe is created before its close-on-exec flag is set.
        spawnLock.lock()
        defer { spawnLock.unlock() }
        var parentEnds: [Int32: Int32] = [:]   // child fd → parent's end
        var childEnds: [Int32] = []
        func cleanupPipes() {
            for fd in childEnds { close(fd) }
            childEnds = []
        }
        for (target, io) in [(Int32(0), standardInput), (1, standardOutput), (2, standardError)] {
            switch io {
            case .inherit:
                break
            case .null:
                posix_spawn_file_actions_addopen(&fileActions, target, "/dev/null", O_RDWR, 0)
            case .append(let path):
                posix_spawn_file_actions_addopen(&fileActions, target, path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            case .pipe:
                var fds: [Int32] = [-1, -1]
                // Close-on-exec, so that no other child inherits this pipe (spawns are serialised below).
                guard pipe(&fds) == 0, fcntl(fds[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(fds[1], F_SETFD, FD_CLOEXEC) == 0 else {
                    let why = String(cString: strerror(errno))
                    cleanupPipes()
                    for fd in parentEnds.values { close(fd) }
                    throw LeaseCtlError("cannot create a pipe: \(why)")
                }
                // The child's end of stdin is the read end; of stdout/stderr the write end.
                let (childEnd, parentEnd) = target == 0 ? (fds[0], fds[1]) : (fds[1], fds[0])
                posix_spawn_file_actions_adddup2(&fileActions, childEnd, target)
                childEnds.append(childEnd)
                parentEnds[target] = parentEnd
            }
        }

        var env: [String] = []
        for (key, value) in environment ?? ProcessInfo.processInfo.environment { env.append("\(key)=\(value)") }
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, executable, &fileActions, &attributes, argv, envp)
        cleanupPipes()
        guard rc == 0 else {
            for fd in parentEnds.values { close(fd) }
            let code: Int32 = rc == ENOENT ? 127 : 126
            throw LeaseCtlError("cannot run \(executable): \(String(cString: strerror(rc)))", exitCode: code)
        }
        let child = ChildProcess(
            pid: pid, leadsProcessGroup: newProcessGroup,
            standardOutput: parentEnds[1], standardError: parentEnds[2])
        if let stdinEnd = parentEnds[0] { close(stdinEnd) }
        Thread.detachNewThread { child.reap() }
        return child
    }

    private func reap() {
        var raw: Int32 = 0
        while true {
            let r = waitpid(pid, &raw, 0)
            if r == pid { break }
            if r == -1 && errno == EINTR { continue }
            raw = 0x7f & SIGKILL   // lost track of the child (ECHILD): report it as killed
            break
        }
        let low = raw & 0x7f
        let status: ProcessExitStatus = low == 0 ? .exited((raw >> 8) & 0xff) : .signaled(low)
        let waiters = state.withLock { state in
            state.status = status
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: status) }
    }

    /// How the child ended, or `nil` while it runs.
    var exitStatus: ProcessExitStatus? { state.withLock { $0.status } }

    /// Waits until the child has exited, ignoring task cancellation.
    func waitUntilExit() async -> ProcessExitStatus {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        // Never cancelled, so never resumed with nil.
        return await withCheckedContinuation { register(id, $0) } ?? .signaled(SIGKILL)
    }

    /// Waits until the child has exited or `timeout` passed (or the task is cancelled): `nil` then.
    func waitUntilExit(timeout: Duration) async -> ProcessExitStatus? {
        if let status = exitStatus { return status }
        return await withTaskGroup(of: ProcessExitStatus?.self) { group in
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

    private func cancellableWait() async -> ProcessExitStatus? {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { register(id, $0) }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<ProcessExitStatus?, Never>? in
                if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
                state.cancelledWaiters.insert(id)
                return nil
            }
            waiter?.resume(returning: nil)
        }
    }

    private func register(_ id: Int, _ continuation: CheckedContinuation<ProcessExitStatus?, Never>) {
        enum Now { case status(ProcessExitStatus), cancelled, later }
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

    /// Sends `signal` to the child itself, unless it has already been reaped.
    func signal(_ signal: Int32) {
        guard exitStatus == nil else { return }
        kill(pid, signal)
    }

    /// Sends `signal` to the child's whole process group (or to the child when it leads none).
    func signalGroup(_ signal: Int32) {
        if leadsProcessGroup {
            kill(-pid, signal)
        } else {
            self.signal(signal)
        }
    }

    /// Stops the child: `SIGTERM` to its process group, `SIGKILL` to the group if the child has not exited
    /// within `gracePeriod`, then waits for the child (ignoring cancellation) and for the rest of the group.
    ///
    /// Runs to completion even when the calling task is cancelled (it is how cancelled work stops).
    @discardableResult
    func terminate(gracePeriod: Duration) async -> ProcessExitStatus {
        await Task { await self.terminateUncancelled(gracePeriod: gracePeriod) }.value
    }

    private func terminateUncancelled(gracePeriod: Duration) async -> ProcessExitStatus {
        let deadline = ContinuousClock.now.advanced(by: gracePeriod)
        signalGroup(SIGTERM)
        let status: ProcessExitStatus
        if let exited = await waitUntilExit(timeout: gracePeriod) {
            status = exited
        } else {
            signalGroup(SIGKILL)
            status = await waitUntilExit()
        }
        await stopGroupMembers(deadline: deadline, alreadySignalled: true)
        return status
    }

    /// After the child exited: stops what is left of its process group (processes it forked that outlived
    /// it), with `SIGTERM` and, after `gracePeriod`, `SIGKILL`. Returns at once when none are left.
    func stopRemainingGroupMembers(gracePeriod: Duration) async {
        let deadline = ContinuousClock.now.advanced(by: gracePeriod)
        await Task { await self.stopGroupMembers(deadline: deadline, alreadySignalled: false) }.value
    }

    private func stopGroupMembers(deadline: ContinuousClock.Instant, alreadySignalled: Bool) async {
        guard leadsProcessGroup, Self.liveMembers(ofGroup: pid) > 0 else { return }
        if !alreadySignalled { kill(-pid, SIGTERM) }
        // Processes that are not our children cannot be awaited: poll, bounded by the deadline.
        for _ in 0..<10_000 {
            if Self.liveMembers(ofGroup: pid) == 0 { return }
            if ContinuousClock.now >= deadline { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        kill(-pid, SIGKILL)
        for _ in 0..<100 {
            if Self.liveMembers(ofGroup: pid) == 0 { return }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// How many processes of group `pgid` are alive (zombies do not count: an init that is slow to reap
    /// orphans must not make us wait).
    static func liveMembers(ofGroup pgid: pid_t) -> Int {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else {
            return kill(-pgid, 0) == 0 ? 1 : 0
        }
        var count = 0
        for entry in entries where entry.first?.isNumber == true {
            guard let stat = readProcFile("/proc/\(entry)/stat"), let close = stat.lastIndex(of: ")") else { continue }
            // After "(comm)": state ppid pgrp ...
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count >= 3, let group = Int32(fields[2]), group == pgid else { continue }
            if fields[0] != "Z" && fields[0] != "X" { count += 1 }
        }
        return count
    }
}

/// A `/proc` file read with `read(2)`. Not `String(contentsOfFile:)`: Swift 6.3's Foundation on Linux leaks 4 KiB
/// per read of a file whose size is reported as 0, as every `/proc` file's is (docs/reliability.md, finding 4).
private func readProcFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : nil
}
