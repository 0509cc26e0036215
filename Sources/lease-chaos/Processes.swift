#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EtcdTesting
import Foundation
import Synchronization

// Every child is started through `setpriv --pdeathsig KILL` (EtcdTesting's `pdeathsigLauncher`) from
// EtcdTesting's `SpawnerThread`, so that every process the harness starts dies with it, however it dies.

/// A child process (a candidate or the API server), reaped by a thread of its own.
final class Child: Sendable {
    let pid: pid_t
    let name: String
    private struct State {
        var status: Int32?
        var stopped = false
    }
    private let state = Mutex(State())

    private init(pid: pid_t, name: String) {
        self.pid = pid
        self.name = name
    }

    /// Starts `executable arguments` with standard input from /dev/null, standard output and error appended to
    /// the given files, default signal dispositions, and (where `setpriv` can) a parent-death SIGKILL.
    static func spawn(name: String, executable: String, arguments: [String], stdout: String, stderr: String) async throws -> Child {
        let environment = ProcessInfo.processInfo.environment.merging(["GRPC_VERBOSITY": "NONE"]) { old, _ in old }
        let result: Result<pid_t, ChaosError> = await SpawnerThread.shared.run {
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
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
            posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&fileActions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            posix_spawn_file_actions_addopen(&fileActions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            var argv = [executable] + arguments
            var program = executable
            if let setpriv = pdeathsigLauncher {
                argv = [setpriv, "--pdeathsig", "KILL", "--"] + argv
                program = setpriv
            }
            let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
            let cEnv: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer {
                for p in cArgs { free(p) }
                for p in cEnv { free(p) }
            }
            var pid: pid_t = 0
            let rc = posix_spawn(&pid, program, &fileActions, &attributes, cArgs, cEnv)
            guard rc == 0 else { return .failure(ChaosError("cannot start \(program): \(String(cString: strerror(rc)))")) }
            return .success(pid)
        }
        let child = Child(pid: try result.get(), name: name)
        let thread = Thread { child.reap() }
        thread.name = "lease-chaos reaper"
        thread.stackSize = 256 << 10
        thread.start()
        return child
    }

    private func reap() {
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) == -1 && errno == EINTR {}
        state.withLock { state in
            var raw: Int32 = 0
            while waitpid(pid, &raw, 0) == -1 && errno == EINTR {}
            state.status = raw
        }
    }

    /// `true` once the child has exited and been reaped.
    var exited: Bool { state.withLock { $0.status != nil } }

    /// `true` between ``stop()`` and ``resume()``.
    var isStopped: Bool { state.withLock { $0.stopped && $0.status == nil } }

    /// The raw wait status, once exited.
    var status: Int32? { state.withLock { $0.status } }

    /// A description of how it ended.
    var exitDescription: String {
        guard let raw = status else { return "running" }
        let low = raw & 0x7f
        return low == 0 ? "exit \((raw >> 8) & 0xff)" : "signal \(low)"
    }

    /// Sends `sig`, unless the child has been reaped (its pid could be someone else's by then).
    func signal(_ sig: Int32) {
        state.withLock { state in
            guard state.status == nil else { return }
            _ = Glibc.kill(pid, sig)
            if sig == SIGSTOP { state.stopped = true }
            if sig == SIGCONT { state.stopped = false }
        }
    }

    /// SIGSTOP, then waits (bounded) until every thread is stopped.
    func stop() {
        signal(SIGSTOP)
        let limit = monoNow() + 2_000_000_000
        while monoNow() < limit && !ProcFS.allThreadsStopped(pid) { usleep(200) }
    }

    func resume() { signal(SIGCONT) }

    /// Waits for the exit (polling every 2 ms); `false` if `timeout` passed first.
    func wait(timeout: Duration) async -> Bool {
        let deadline = monoNow() + timeout.nanos
        while !exited {
            if monoNow() >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(2))
        }
        return true
    }

    /// SIGKILL (and SIGCONT) and wait.
    func kill() async {
        signal(SIGKILL)
        signal(SIGCONT)
        _ = await wait(timeout: .seconds(30))
    }

    /// SIGTERM (and SIGCONT), SIGKILL after `grace`, and wait.
    func terminate(grace: Duration) async {
        signal(SIGCONT)
        signal(SIGTERM)
        if await wait(timeout: grace) { return }
        await kill()
    }
}

