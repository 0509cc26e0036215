#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import Synchronization

/// One run of a short command, timed as a user at a shell would see it: from just before `posix_spawn(2)` to
/// the moment `waitpid(2)` returned its exit (`CLOCK_MONOTONIC`, the clock of every process on the machine).
///
/// The command runs from a thread of its own that does nothing else (spawn, then a blocking `waitpid`), so
/// neither Swift's cooperative pool nor a polling interval adds to the measured time. Its standard output and
/// error go to unlinked temporary files (never a pipe that could fill up), read after it exited.
struct TimedCommand: Sendable {
    /// The command line, for messages.
    var command: [String]
    /// `CLOCK_MONOTONIC` just before the spawn, and when `waitpid` returned.
    var startNanos: UInt64
    var endNanos: UInt64
    /// `exit N`, `signal N`, or `timed out` (killed after the timeout).
    var status: String
    var standardOutput: String
    var standardError: String

    var millis: Double { Double(endNanos - startNanos) / 1e6 }
    var succeeded: Bool { status == "exit 0" }

    /// Runs `executable` with `arguments` (this process's environment plus `environment`); SIGKILLs it after
    /// `timeout`.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                    timeout: Duration) async throws -> TimedCommand {
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        let envp = env.map { "\($0.key)=\($0.value)" }
        let out = try anonymousFile(), err = try anonymousFile()
        defer { close(out); close(err) }
        let flags = RunFlags()
        // The watchdog: the commands measured here take milliseconds to seconds and carry their own timeouts.
        let watchdog = Task {
            try await Task.sleep(for: timeout)
            let pid = flags.pid.load(ordering: .acquiring)
            if pid > 0 && !flags.finished.load(ordering: .acquiring) {
                flags.killed.store(true, ordering: .releasing)
                _ = kill(pid, SIGKILL)
            }
        }
        defer { watchdog.cancel() }
        let result: Result<(UInt64, UInt64, String), BenchError> = await withCheckedContinuation { continuation in
            let thread = Thread {
                let t0 = monotonicNanos()
                let spawnResult = spawn(executable, arguments, envp, out: out, err: err)
                guard case .success(let pid) = spawnResult else {
                    if case .failure(let error) = spawnResult { continuation.resume(returning: .failure(error)) }
                    return
                }
                flags.pid.store(pid, ordering: .releasing)
                var raw: Int32 = 0
                var waited: Int32
                repeat { waited = waitpid(pid, &raw, 0) } while waited == -1 && errno == EINTR
                let t1 = monotonicNanos()
                flags.finished.store(true, ordering: .releasing)
                let status: String
                if waited != pid {
                    status = "lost (waitpid: \(String(cString: strerror(errno))))"
                } else if raw & 0x7f == 0 {
                    status = "exit \((raw >> 8) & 0xff)"
                } else {
                    status = "signal \(raw & 0x7f)"
                }
                continuation.resume(returning: .success((t0, t1, status)))
            }
            thread.name = "lease-bench timed command"
            thread.stackSize = 256 << 10
            thread.start()
        }
        let (t0, t1, rawStatus) = try result.get()
        let timedOut = flags.killed.load(ordering: .acquiring)
        return TimedCommand(command: [executable] + arguments, startNanos: t0, endNanos: t1, status: timedOut ? "timed out" : rawStatus,
                            standardOutput: readAll(out), standardError: readAll(err))
    }

    /// The command line, how it ended and what it printed (for an error message).
    var description: String {
        var text = "`\(command.joined(separator: " "))`: \(status) after \(formatMillis(millis)) ms"
        let o = standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        let e = standardError.trimmingCharacters(in: .whitespacesAndNewlines)
        if !o.isEmpty { text += "; stdout: \(o.suffix(500))" }
        if !e.isEmpty { text += "; stderr: \(e.suffix(500))" }
        return text
    }
}

/// The spawned pid, and whether it has been reaped or killed by the watchdog.
private final class RunFlags: Sendable {
    let pid = Atomic<Int32>(0)
    let finished = Atomic<Bool>(false)
    let killed = Atomic<Bool>(false)
}

/// `posix_spawn` with stdin from /dev/null, stdout and stderr to `out` and `err`, default signal dispositions and
/// an empty mask, and no other inherited descriptor.
private func spawn(_ executable: String, _ arguments: [String], _ environment: [String], out: Int32, err: Int32) -> Result<pid_t, BenchError> {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var defaults = sigset_t()
    sigfillset(&defaults)
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    var mask = sigset_t()
    sigemptyset(&mask)
    posix_spawnattr_setsigmask(&attributes, &mask)
    posix_spawnattr_setflags(&attributes, Int16(Int32(POSIX_SPAWN_SETSIGDEF) | Int32(POSIX_SPAWN_SETSIGMASK)))
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, out, 1)
    posix_spawn_file_actions_adddup2(&actions, err, 2)
    if let closeFrom = posixSpawnAddClosefrom { _ = closeFrom(&actions, 3) }
    let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
    let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
    defer {
        for pointer in argv { free(pointer) }
        for pointer in envp { free(pointer) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
    guard rc == 0 else { return .failure(BenchError("cannot start \(executable): \(String(cString: strerror(rc)))")) }
    return .success(pid)
}

/// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+), looked up at run time (the overlay does not export it).
private let posixSpawnAddClosefrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
}()

/// An unlinked temporary file, close-on-exec.
private func anonymousFile() throws -> Int32 {
    var template = Array((NSTemporaryDirectory() + "/lease-bench-output.XXXXXX").utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else { throw BenchError("mkstemp: \(String(cString: strerror(errno)))") }
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
    return fd
}

/// The whole file behind `fd`, from its start.
private func readAll(_ fd: Int32) -> String {
    lseek(fd, 0, SEEK_SET)
    var data = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 16 << 10)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 { data.append(contentsOf: buffer[0..<n]) } else if n == 0 || errno != EINTR { break }
    }
    return String(decoding: data, as: UTF8.self)
}
