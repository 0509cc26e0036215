import Foundation
import LeaderElection
import Synchronization

/// The leader work of `leasectl elect -- COMMAND`: runs COMMAND for one leadership term.
///
/// The command starts when the term starts, with `LEASECTL_FENCING_TOKEN`, `LEASECTL_IDENTITY` and
/// `LEASECTL_LOCK` added to its environment, standard streams inherited, in a process group of its own.
/// When the work is cancelled (leadership lost, or `leasectl` shutting down) the group gets `SIGTERM`,
/// and `SIGKILL` after the grace period; the work returns only once the command has exited, so the
/// elector releases the lease only after the command is gone. Processes the command leaves behind in
/// its group are stopped the same way, even when the command exits by itself.
struct LeaderCommand: Sendable {
    /// COMMAND and its arguments.
    let arguments: [String]
    /// How long the command may take to exit after `SIGTERM` before it is killed.
    let gracePeriod: Duration
    /// The lock's description, passed as `LEASECTL_LOCK`.
    let lockDescription: String
    /// The running command, for a forced exit on a repeated signal.
    let current = CurrentChild()

    /// Runs the command for `term` and returns how it exited.
    ///
    /// - Throws: `CancellationError` if cancelled before it started; ``LeaseCtlError`` if it cannot start.
    func run(for term: LeadershipTerm) async throws -> ProcessExitStatus {
        try Task.checkCancellation()
        var environment = ProcessInfo.processInfo.environment
        environment["LEASECTL_FENCING_TOKEN"] = String(term.fencingToken)
        environment["LEASECTL_IDENTITY"] = term.identity
        environment["LEASECTL_LOCK"] = lockDescription
        let child = try ChildProcess.spawn(arguments, environment: environment)
        current.set(child)
        defer { current.clear() }

        let grace = gracePeriod
        let termination = Mutex<Task<ProcessExitStatus, Never>?>(nil)
        let status = await withTaskCancellationHandler {
            await child.waitUntilExit()
        } onCancel: {
            termination.withLock { task in
                if task == nil { task = Task { await child.terminate(gracePeriod: grace) } }
            }
        }
        if let stopping = termination.withLock({ $0 }) {
            _ = await stopping.value
        } else {
            await child.stopRemainingGroupMembers(gracePeriod: grace)
        }
        return status
    }
}

/// The command currently running as leader work, if any.
final class CurrentChild: Sendable {
    private let child = Mutex<ChildProcess?>(nil)

    func set(_ process: ChildProcess) { child.withLock { $0 = process } }
    func clear() { child.withLock { $0 = nil } }

    /// Kills the running command's process group at once.
    func killNow() {
        child.withLock { $0 }?.signalGroup(SIGKILL)
    }
}
