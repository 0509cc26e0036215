import EtcdTesting
import Foundation

/// A short command timed as a user at a shell would see it: EtcdTesting's `runCommand` (spawn, then a blocking
/// `waitpid` on a thread of its own; `CommandResult.startNanos` and `endNanos` are `CLOCK_MONOTONIC`, the clock of
/// every process on the machine), with this process's whole environment (`leasectl` reads `ETCD_PASSWORD`).
enum TimedCommand {
    /// Runs `executable` with `arguments`; `SIGKILL`s it after `timeout`.
    static func run(_ executable: String, _ arguments: [String], timeout: Duration) async throws -> CommandResult {
        let environment = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
        return try await runCommand(executable, arguments, environment: environment, timeout: timeout)
    }
}

extension CommandResult {
    /// From just before the spawn to when `waitpid` returned, in milliseconds.
    var millis: Double { Double(endNanos - startNanos) / 1e6 }

    /// One line: the command line, how it ended, its time and the end of what it printed (for a check's text).
    var line: String {
        var text = "`\(command.joined(separator: " "))`: \(timedOut ? "timed out" : "exit \(exitCode)") after \(formatMillis(millis)) ms"
        let o = standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        let e = standardError.trimmingCharacters(in: .whitespacesAndNewlines)
        if !o.isEmpty { text += "; stdout: \(o.suffix(500))" }
        if !e.isEmpty { text += "; stderr: \(e.suffix(500))" }
        return text
    }
}
