import ArgumentParser
import Foundation
import LeaderElection
import LeaderElectionService
import Logging

/// `leasectl elect`: campaign for a lock and, while leading, run a command (or just hold the lease).
struct ElectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "elect",
        abstract: "Campaign for a lock and run a command only while leading.",
        discussion: """
            Joins the election on --lock and, each time this candidate becomes leader, runs COMMAND \
            (given after --) with LEASECTL_FENCING_TOKEN, LEASECTL_IDENTITY and LEASECTL_LOCK in its \
            environment. When leadership is lost the command's process group gets SIGTERM, then SIGKILL \
            after --grace-period. When the command exits by itself the lease is released and leasectl \
            campaigns again, or exits with the command's status under --exit-with-command. Without \
            COMMAND, leasectl holds leadership until it is signalled. COMMAND runs in a process group of \
            its own, so that it and the processes it starts are stopped together; it should not read from \
            the terminal.

            SIGTERM or SIGINT stops the command, releases the lease (unless --no-release-on-cancel) and \
            exits 0; a second signal kills the command and exits at once.

            --lock is file:///dir/name (a flock-based lock on this host; a crashed leader is replaced as \
            soon as the kernel drops its flock), etcd://HOST:PORT[,HOST:PORT...]/path/to/key (the etcd \
            key /path/to/key, for candidates on many hosts) or kubernetes://NAMESPACE/NAME (the \
            coordination.k8s.io Lease NAME in NAMESPACE, written exactly as client-go's LeaseLock, so \
            leasectl candidates can contend with Go controllers; kubernetes:///NAME uses -n, else the \
            kubeconfig context's namespace). On etcd and Kubernetes a crashed leader is replaced once \
            --lease-duration has passed without renewal; a Lease stores whole seconds only, so \
            --lease-duration must be a whole number of seconds, at least 1s.

            etcd connections take the --etcd-* options; Kubernetes connections --kubeconfig (else \
            in-cluster in a pod, else $KUBECONFIG, else ~/.kube/config), --context and -n. Each request \
            may take max(1s, --renew-deadline/2) unless --etcd-dial-timeout or --request-timeout says \
            otherwise. Errors reaching the store are noted on stderr while leasectl keeps retrying; \
            rejected credentials (or, on Kubernetes, missing RBAC permissions) at startup end it with \
            status 1. On Kubernetes, leasectl records an Event on the Lease when it becomes leader or \
            stops leading (RBAC: get, create and update on leases.coordination.k8s.io, create on events).

            Examples:
              leasectl elect --lock file:///run/locks/cron --events json -- ./run-jobs.sh
              export ETCD_PASSWORD=...
              leasectl elect --lock etcd://10.0.0.1,10.0.0.2/leader-election/default/cron \\
                --etcd-user cron --etcd-cacert ca.pem -- ./run-jobs.sh
              leasectl elect --lock kubernetes://batch/cron --identity "$POD_NAME" -- ./run-jobs.sh
            """
    )

    @Option(help: ArgumentHelp("The lock to campaign on.", valueName: "url"))
    var lock: String

    @Option(help: "This candidate's identity, unique per process. (default: <hostname>_<uuid>)")
    var identity: String?

    @Option(help: "How long followers wait, after the record last changed, before taking over.")
    var leaseDuration = GoDuration(.seconds(15))

    @Option(help: "How long the leader keeps retrying to renew before it gives up.")
    var renewDeadline = GoDuration(.seconds(10))

    @Option(help: "Interval between renewals, and between a follower's attempts.")
    var retryPeriod = GoDuration(.seconds(2))

    @Flag(inversion: .prefixedNo, help: "Release the lease when stopped by a signal, so a follower takes over at once.")
    var releaseOnCancel = true

    @Option(help: "Event output: text (human lines on stderr) or json (one object per line on stdout).")
    var events: EventOutput.Format = .text

    @Option(help: "How long COMMAND may take to exit after SIGTERM before it is killed.")
    var gracePeriod = GoDuration(.seconds(5))

    @Flag(help: "When COMMAND exits by itself, release the lease and exit with its status instead of campaigning again.")
    var exitWithCommand = false

    @Option(help: "The election's name, for logs and metrics. (default: the lock's name)")
    var name: String?

    @Flag(help: "Create the lock's directory if it does not exist (file locks).")
    var createDirectory = false

    @OptionGroup(title: "etcd connection")
    var etcd: EtcdOptions

    @OptionGroup(title: "Kubernetes connection")
    var kubernetes: KubernetesOptions

    @Option(help: "Level of the elector's own log on stderr.")
    var logLevel: LogLevelArgument = .warning

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command to run while leading, after --.", valueName: "command"))
    var command: [String] = []

    func validate() throws {
        if let identity, identity.isEmpty { throw ValidationError("--identity must not be empty") }
        do {
            try electionConfiguration(name: "validation").validate(identity: identity ?? "placeholder")
        } catch let error as LeaderElectionError {
            throw ValidationError(error.message)
        }
        // What the lock can store (a Lease holds whole seconds), before anything is contacted.
        if let url = try? LockURL(parsing: lock), let backend = try? LockRegistry.standard.backend(for: url) {
            do {
                try backend.validate(electionConfiguration(name: "validation"), for: url)
            } catch let error as LeaseCtlError {
                throw ValidationError(error.message)
            }
        }
        if gracePeriod.duration < .zero { throw ValidationError("--grace-period must not be negative") }
        if exitWithCommand && command.isEmpty { throw ValidationError("--exit-with-command needs a COMMAND after --") }
    }

    /// The elector configuration these options describe.
    func electionConfiguration(name: String) -> LeaderElectionConfiguration {
        LeaderElectionConfiguration(
            name: name,
            leaseDuration: leaseDuration.duration,
            renewDeadline: renewDeadline.duration,
            retryPeriod: retryPeriod.duration,
            releaseOnCancel: releaseOnCancel,
            // Renew while COMMAND drains, for as long as it may take to stop.
            drainTimeout: command.isEmpty ? nil : gracePeriod.duration + .seconds(1)
        )
    }

    func run() async throws {
        logLevel.bootstrap()
        let identity = self.identity ?? Terminal.defaultIdentity()
        let output = EventOutput(format: events, identity: identity)
        let url = try LockURL(parsing: lock)
        let timeout = KubernetesOptions.electTimeout(renewDeadline: renewDeadline.duration)
        let registry = LockRegistry.standard(
            etcd: try etcd.settings(defaultTimeout: EtcdOptions.electTimeout(renewDeadline: renewDeadline.duration)),
            kubernetes: kubernetes.settings(defaultTimeout: timeout))
        let code = try await registry.using { registry in
            try await campaign(url: url, registry: registry, identity: identity, output: output)
        }
        if code != 0 { throw ExitCode(code) }
    }

    /// Campaigns on `url` until signalled (or until COMMAND exits under --exit-with-command); returns the
    /// exit status.
    private func campaign(url: LockURL, registry: LockRegistry, identity: String, output: EventOutput) async throws -> Int32 {
        // kubernetes:///NAME → kubernetes://NAMESPACE/NAME, for messages and LEASECTL_LOCK.
        let url = try registry.resolve(url)
        let leaderCommand = command.isEmpty ? nil : LeaderCommand(
            arguments: command, gracePeriod: gracePeriod.duration, lockDescription: url.description)
        let signals = ShutdownSignals(
            onFirst: { sig in output.note("\(identity): received \(signalName(sig)), stopping") },
            onRepeat: { sig in
                leaderCommand?.current.killNow()
                _exit(128 + sig)
            })

        var resourceLock: any ResourceLock
        do {
            resourceLock = try registry.makeLock(at: url, identity: identity, createDirectory: createDirectory)
        } catch let error as LeaderElectionError {
            var message = error.message
            if error.code == .notFound && !createDirectory {
                // Name the command-line flag rather than the API parameter.
                message = message.replacingOccurrences(of: "pass createDirectory: true", with: "pass --create-directory")
                if !message.contains("--create-directory") { message += " (pass --create-directory to create it)" }
            }
            throw LeaseCtlError("cannot open lock \(url): \(message)")
        }
        if events == .text { output.note("\(identity): campaigning for \(resourceLock)") }
        if url.scheme != "file" {
            // A network store: say when it fails and recovers (the elector retries quietly), and give up at
            // once when it rejects us.
            let reporting = ReportingLock(
                resourceLock, report: { output.note($0) }, describe: { registry.describe($0, for: url) })
            do {
                _ = try await resourceLock.get()
            } catch let error as LeaderElectionError where error.code == .unauthorized || error.code == .invalidConfiguration {
                throw LeaseCtlError("cannot campaign on \(url): \(registry.describe(error, for: url))")
            } catch let error as LeaderElectionError {
                // Unreachable, or a corrupt record: the elector copes, retrying.
                reporting.noteFailure(error)
            }
            resourceLock = reporting
        }
        let session = ElectionSession(
            lock: resourceLock,
            configuration: electionConfiguration(name: name ?? url.lastPathComponent),
            logger: Logger(label: "leasectl.elect"),
            output: output,
            command: leaderCommand,
            exitWithCommand: exitWithCommand)
        let code = await signals.run { await session.run() }
        withExtendedLifetime(signals) {}
        return code
    }
}
