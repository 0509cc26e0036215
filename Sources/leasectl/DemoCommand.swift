import ArgumentParser
import LeaderElectionService
import Foundation

/// `leasectl demo`: leader election among real processes on a file lock, narrated with measured times.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Watch candidate processes elect a leader, hand over gracefully, and survive a crash.",
        discussion: """
            Starts N `leasectl elect` processes on one file lock (lease 4s, renew deadline 3s, retry 500ms) \
            and narrates, with times measured on CLOCK_MONOTONIC: (1) the election; (2) a graceful hand-off, \
            SIGTERM to the leader, which releases the lease; (3) a crash, SIGKILL to the new leader, whose \
            death the kernel reveals by releasing its flock, so another candidate takes over without waiting \
            for the lease to expire. Ends with a summary and a check that leaderships never overlapped. \
            Every step waits at most --step-timeout; all candidates are stopped at the end, and the \
            temporary directory is removed. Exits 1 if a step fails.
            """
    )

    @Option(help: "Directory for the demo's lock, kept afterwards. (default: a new temporary directory, removed afterwards)")
    var dir: String?

    @Option(help: "How many candidate processes to start (2-9).")
    var candidates = 3

    @Option(help: "The longest wait for any one step.")
    var stepTimeout = GoDuration(.seconds(20))

    func validate() throws {
        guard (2...9).contains(candidates) else { throw ValidationError("--candidates must be between 2 and 9") }
        guard stepTimeout.duration > .zero else { throw ValidationError("--step-timeout must be positive") }
    }

    func run() async throws {
        let demo = try DemoRun(lockDirectory: dir, candidates: candidates, stepTimeout: stepTimeout.duration)
        // A second signal exits at once; the candidates must not outlive us.
        let signals = ShutdownSignals(onRepeat: { sig in
            demo.killAllNow()
            _exit(128 + sig)
        })
        let succeeded = await signals.run { await demo.run() }
        withExtendedLifetime(signals) {}
        if !succeeded { throw ExitCode(signals.received.map { 128 + $0 } ?? 1) }
    }
}
