import ArgumentParser
import Foundation
import LeaderElection
import LeaderElectionService

/// `leasectl doctor`: runs the leader-election troubleshooting table against one lock.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check a lock against the leader-election troubleshooting table.",
        discussion: """
            Reads the lock --samples times back to back, then observes it for --observe (re-reading it \
            whenever the store reports a change, and at least every 500 ms), and prints one line per \
            check: OK, WARN, FAIL or SKIP (nothing to judge), what was measured, and what to do.

              store     the store answers, and how fast: p50 and max of the samples. FAIL when it cannot \
            be read, or max > renew-deadline/2 (a renewal cannot be retried within the deadline); WARN when \
            max > renew-deadline/4, or reads failed while observing. (renew failures → check the store's \
            or API server's load)
              holder    who holds the lock, for how long, and whether it renews. Expiry is judged like \
            client-go: from when this process saw the record change, on its monotonic clock, plus the \
            record's leaseDuration. FAIL "no leader" when there is no record, it does not decode, it is \
            free (released, or its holder's process is gone) for longer than candidates need to take it \
            (2.2 × retry-period; plus the lease duration while a hand-off is pending), or the holder's lease \
            expired without anyone taking it: unchanged for the lease duration while observed or, when \
            it did not renew for 2 × retry-period, renewTime older than the lease by this host's clock. \
            WARN when the holder did not renew for 2 × retry-period. A pending hand-off is shown. (no \
            leader → check that candidates run and reach the store)
              flapping  how often the lock changes hands. WARN when a new term is seen while observing \
            (rate per hour extrapolated), or the current term began less than 10 lease durations ago and \
            the lock has changed hands 10 times or more. (frequent switching → check the network)
              clock     the offset between the holder's renewTime and this host's wall clock, bounded from \
            each change seen while observing. Advisory: the elector never compares renewTime with its \
            clock. WARN when more than 1s off. (two leaders → check time sync: chrony/NTP)
              config    --lease-duration > --renew-deadline > 1.2 × --retry-period (client-go's rules), \
            what the backend can store (whole seconds on Kubernetes), and the holder's leaseDuration \
            against --lease-duration (WARN when they differ). Pass the durations the candidates use.

            Exit status: 0 when no check FAILs, 1 when one does (or on an error), 2 with --strict when \
            a check WARNs and none FAILs. -o json prints {"lock", "status", "findings": [{"name", \
            "status", "evidence", "hint"}]}.

            Works on every lock URL: file:///dir/name, etcd://HOST:PORT/path/to/key (with the --etcd-* \
            options) and kubernetes://NAMESPACE/NAME (with --kubeconfig, --context, -n). Requests time out \
            after max(1s, renew-deadline/2), as the candidates' do (--etcd-dial-timeout overrides it for etcd).

            Examples:
              leasectl doctor file:///var/run/my-app/leader
              leasectl doctor --lease-duration 30s kubernetes://kube-system/my-controller
              leasectl doctor -o json --observe 20s etcd://127.0.0.1:2379/le/default/cron
            """
    )

    /// The `-o` formats.
    enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
        case text, json
    }

    @Argument(help: ArgumentHelp("The lock to check.", valueName: "url"))
    var url: String

    @Option(help: "The candidates' lease duration.")
    var leaseDuration = GoDuration(.seconds(15))

    @Option(help: "The candidates' renew deadline.")
    var renewDeadline = GoDuration(.seconds(10))

    @Option(help: "The candidates' retry period.")
    var retryPeriod = GoDuration(.seconds(2))

    @Option(help: "How many back-to-back reads time the store (1 to 100).")
    var samples = 5

    @Option(help: ArgumentHelp(
        "How long to watch the lock after the samples, at most 10m. (default: 2.5 × retry-period, between 1s and 30s)",
        valueName: "duration"))
    var observe: GoDuration?

    @Option(name: .shortAndLong, help: "Output format: text or json.")
    var output: OutputFormat = .text

    @Flag(help: "Exit with status 2 when a check WARNs (and none FAILs).")
    var strict = false

    @OptionGroup(title: "etcd connection")
    var etcd: EtcdOptions

    @OptionGroup(title: "Kubernetes connection")
    var kubernetes: KubernetesOptions

    /// The longest `--observe`.
    static let maximumObservation: Duration = .seconds(600)

    func validate() throws {
        guard (1...100).contains(samples) else { throw ValidationError("--samples must be between 1 and 100 (got \(samples))") }
        if let observe, observe.duration <= .zero || observe.duration > Self.maximumObservation {
            throw ValidationError("--observe must be positive and at most \(formatDuration(Self.maximumObservation)) (got \(observe))")
        }
        // The durations themselves are not rejected here: the config check reports them.
    }

    /// The timing given on the command line.
    var timing: Doctor.Timing {
        Doctor.Timing(leaseDuration: leaseDuration.duration, renewDeadline: renewDeadline.duration, retryPeriod: retryPeriod.duration)
    }

    /// `--observe`, or its default: 2.5 × retry-period (a campaigning candidate retries within 2.2 ×),
    /// between 1 s and 30 s.
    var observation: Duration {
        if let observe { return observe.duration }
        return min(max(retryPeriod.duration * 2.5, .seconds(1)), .seconds(30))
    }

    func run() async throws {
        let lockURL = try LockURL(parsing: url)
        LogLevelArgument.warning.bootstrap()
        let timeout = EtcdOptions.electTimeout(renewDeadline: renewDeadline.duration)
        let registry = LockRegistry.standard(
            etcd: try etcd.settings(defaultTimeout: timeout),
            kubernetes: kubernetes.settings(defaultTimeout: KubernetesOptions.electTimeout(renewDeadline: renewDeadline.duration)))
        let code = try await registry.using { registry in
            let url = try registry.resolve(lockURL)
            let findings = try await diagnose(url, registry: registry)
            let worst = findings.map(\.status).max() ?? .ok
            let status = worst == .skip ? Doctor.Status.ok : worst
            switch output {
            case .text:
                let heading = "leasectl doctor \(url) (lease \(timing.leaseDuration.doctorText), renew deadline \(timing.renewDeadline.doctorText), retry period \(timing.retryPeriod.doctorText); \(samples) sample\(samples == 1 ? "" : "s"), observing \(observation.doctorText))"
                for line in Doctor.textReport(findings, heading: heading) { Terminal.out(line) }
            case .json:
                let document = StructuredValue.object([
                    ("lock", .string(url.description)), ("status", .string(status.rawValue)),
                    ("leaseDuration", .string(formatDuration(timing.leaseDuration))),
                    ("renewDeadline", .string(formatDuration(timing.renewDeadline))),
                    ("retryPeriod", .string(formatDuration(timing.retryPeriod))),
                    ("findings", .array(findings.map(\.structured))),
                ])
                Terminal.out(document.json(pretty: true))
            }
            return Doctor.exitStatus(findings, strict: strict)
        }
        if code != 0 { throw ExitCode(code) }
    }

    /// Opens `url`, measures it and runs every check.
    ///
    /// - Throws: ``LeaseCtlError`` when `url` does not name a single lock.
    private func diagnose(_ url: LockURL, registry: LockRegistry) async throws -> [Doctor.Finding] {
        let timing = self.timing
        let backendProblem: String?
        do {
            try registry.backend(for: url).validate(
                LeaderElectionConfiguration(
                    leaseDuration: timing.leaseDuration, renewDeadline: timing.renewDeadline, retryPeriod: timing.retryPeriod),
                for: url)
            backendProblem = nil
        } catch let error as LeaseCtlError {
            backendProblem = error.message
        }
        let lock: any ResourceLock
        do {
            lock = try registry.makeLock(at: url, identity: "leasectl-doctor_\(UUID().uuidString.lowercased())")
        } catch let error as LeaderElectionError {
            // A store that cannot even be opened (a missing directory): the first check fails with its reason.
            return [
                Doctor.Finding(
                    name: "store", status: .fail, evidence: "cannot open the lock: \(registry.describe(error, for: url))",
                    hint: "check the URL and that the store exists and is reachable from the candidates"),
                Doctor.Finding(name: "holder", status: .skip, evidence: "the lock could not be read"),
                Doctor.Finding(name: "flapping", status: .skip, evidence: "no record read"),
                Doctor.Finding(name: "clock", status: .skip, evidence: "no record read"),
                Doctor.checkConfiguration(timing: timing, backendProblem: backendProblem, record: nil),
            ]
        }
        let probe = DoctorProbe(lock: lock, describe: { registry.describe($0, for: url) })
        let sampled = await probe.sample(samples)
        // An unreachable store: every read would take the request timeout; the report says so without observing.
        let observed = sampled.contains(where: \.answered) ? await probe.observe(for: observation) : []
        let reads = sampled + observed
        return [
            Doctor.checkStore(samples: sampled, observed: observed, timing: timing),
            Doctor.checkHolder(reads: reads, timing: timing),
            Doctor.checkFlapping(reads: reads, timing: timing),
            Doctor.checkClock(reads: reads),
            Doctor.checkConfiguration(
                timing: timing, backendProblem: backendProblem, record: reads.last(where: \.answered)?.record?.record),
        ]
    }
}

/// Makes `leasectl doctor`'s timed reads of one lock.
struct DoctorProbe: Sendable {
    /// The lock read.
    var lock: any ResourceLock
    /// The message for a failed read.
    var describe: @Sendable (any Error) -> String
    /// The monotonic origin of ``Doctor/Read/at``.
    var origin = ContinuousClock.now
    /// The longest wait between two reads while observing.
    var pollInterval: Duration = .milliseconds(500)

    /// Reads the lock once, timing the read on the monotonic clock.
    func read() async -> Doctor.Read {
        let start = ContinuousClock.now
        let state = await LeaseSnapshot.State.read(lock, describe: describe)
        let end = ContinuousClock.now
        return Doctor.Read(at: origin.duration(to: end), latency: start.duration(to: end), wall: .now(), state: state)
    }

    /// Up to `count` back-to-back reads; stops at the first failure (against an unreachable store, each read
    /// would take the whole request timeout).
    func sample(_ count: Int) async -> [Doctor.Read] {
        var reads: [Doctor.Read] = []
        for _ in 0..<count {
            let read = await read()
            reads.append(read)
            if !read.answered { break }
        }
        return reads
    }

    /// Reads the lock whenever its change feed signals and at least every ``pollInterval``, for `duration`
    /// (the last read at its end). At most 10 000 reads.
    func observe(for duration: Duration) async -> [Doctor.Read] {
        let deadline = ContinuousClock.now.advanced(by: duration)
        let (wakeups, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let feed = lock.changes()
        let feedTask = Task {
            guard let feed else { return }
            for await _ in feed { continuation.yield() }
        }
        let interval = pollInterval
        let timerTask = Task {
            while !Task.isCancelled {
                let remaining = ContinuousClock.now.duration(to: deadline)
                if remaining <= .zero { break }
                try? await Task.sleep(for: min(interval, remaining))
                continuation.yield()
            }
            continuation.yield()   // the read at the deadline
            continuation.finish()
        }
        var reads: [Doctor.Read] = []
        var iterator = wakeups.makeAsyncIterator()
        while reads.count < 10_000, await iterator.next() != nil {
            reads.append(await read())
            if ContinuousClock.now >= deadline { break }
        }
        timerTask.cancel()
        feedTask.cancel()
        continuation.finish()
        await feedTask.value
        await timerTask.value
        return reads
    }
}

extension Duration {
    /// The duration as the doctor's report writes it (`0.4ms`, `2.5s`).
    fileprivate var doctorText: String { Doctor.format(self) }
}
