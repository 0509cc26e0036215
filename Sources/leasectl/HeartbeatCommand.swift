import ArgumentParser
import Foundation
import LeaderElection
import LeaderElectionService
import Logging

/// `leasectl heartbeat`: keep a heartbeat lease (the kubelet's node-lease pattern) until signalled.
struct HeartbeatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "heartbeat",
        abstract: "Keep a heartbeat lease for an identity renewed until interrupted (like a kubelet's node lease).",
        discussion: """
            Writes the lock at URL with holderIdentity = --identity, renewTime = now and \
            leaseDurationSeconds = --lease-duration, then renews it every --renew-interval (default: a \
            quarter of the lease duration, so 40s / 10s as the kubelet). A failed renewal is retried after \
            200ms, doubling up to 7s. This is a liveness heartbeat, not an election: the lease is this \
            identity's own (one lock per member, such as kubernetes://kube-node-lease/NODE or \
            file:///run/members/NODE), and a record naming someone else is overwritten.

            SIGTERM or SIGINT stops renewing and exits 0; the lease is left as it is and expires, as a \
            kubelet's does. Watch members with `leasectl get` on the collection (file:///run/members/, \
            kubernetes://NAMESPACE/, etcd://HOST/PREFIX/).

            Events: text (human lines on stderr) or json (one object per line on stdout: event created, \
            renewed or failed, with time, monotonicNanos, identity, lock and version, or error, \
            consecutiveFailures and retryInMillis).

            Examples:
              leasectl heartbeat file:///run/members/node-a --create-directory
              leasectl heartbeat kubernetes://kube-node-lease/node-a --identity node-a --events json
              leasectl heartbeat etcd://127.0.0.1:2379/leader-election/members/node-a --lease-duration 20s
            """
    )

    @Argument(help: ArgumentHelp("The lock holding this identity's lease.", valueName: "url"))
    var url: String

    @Option(help: "The identity written as holder. (default: the lock's name, as a node lease is named after its node)")
    var identity: String?

    @Option(help: "The lease duration written into the record.")
    var leaseDuration = GoDuration(.seconds(40))

    @Option(help: "Interval between renewals. (default: --lease-duration × 0.25)")
    var renewInterval: GoDuration?

    @Option(help: "Event output: text (human lines on stderr) or json (one object per line on stdout).")
    var events: EventOutput.Format = .text

    @Flag(help: "Create the lock's directory if it does not exist (file locks).")
    var createDirectory = false

    @OptionGroup(title: "etcd connection")
    var etcd: EtcdOptions

    @OptionGroup(title: "Kubernetes connection")
    var kubernetes: KubernetesOptions

    @Option(help: "Level of the heartbeat's own log on stderr.")
    var logLevel: LogLevelArgument = .warning

    /// The heartbeat configuration these options describe.
    var heartbeatConfiguration: HeartbeatConfiguration {
        HeartbeatConfiguration(leaseDuration: leaseDuration.duration, renewInterval: renewInterval?.duration)
    }

    func validate() throws {
        if let identity, identity.isEmpty { throw ValidationError("--identity must not be empty") }
        do {
            try heartbeatConfiguration.validate()
        } catch let error as LeaderElectionError {
            throw ValidationError(error.message)
        }
        if let parsed = try? LockURL(parsing: url), let backend = try? LockRegistry.standard.backend(for: parsed) {
            do {
                try backend.validate(LeaderElectionConfiguration(name: "heartbeat", leaseDuration: leaseDuration.duration), for: parsed)
            } catch let error as LeaseCtlError {
                throw ValidationError(error.message)
            }
        }
    }

    func run() async throws {
        logLevel.bootstrap()
        let parsed = try LockURL(parsing: url)
        let interval = heartbeatConfiguration.effectiveRenewInterval
        let registry = LockRegistry.standard(
            etcd: try etcd.settings(defaultTimeout: EtcdOptions.electTimeout(renewDeadline: interval)),
            kubernetes: kubernetes.settings(defaultTimeout: KubernetesOptions.electTimeout(renewDeadline: interval)))
        try await registry.using { registry in
            try await beat(url: parsed, registry: registry)
        }
    }

    private func beat(url: LockURL, registry: LockRegistry) async throws {
        let url = try registry.resolve(url)
        let identity = self.identity ?? url.lastPathComponent
        guard !identity.isEmpty else { throw LeaseCtlError("\(url) does not name a lock; pass --identity") }
        let output = EventOutput(format: events, identity: identity)
        let lock: any ResourceLock
        do {
            lock = try registry.makeLock(at: url, identity: identity, createDirectory: createDirectory)
        } catch let error as LeaderElectionError {
            var message = error.message
            if error.code == .notFound && !createDirectory && !message.contains("--create-directory") {
                message += " (pass --create-directory to create it)"
            }
            throw LeaseCtlError("cannot open lock \(url): \(message)")
        }
        // Rejected credentials or permissions end the command at once; anything else is retried.
        do {
            _ = try await lock.get()
        } catch let error as LeaderElectionError where error.code == .unauthorized {
            throw LeaseCtlError("cannot keep a heartbeat on \(url): \(registry.describe(error, for: url))")
        } catch {}
        let heartbeat = try HeartbeatLease(lock: lock, configuration: heartbeatConfiguration, logger: Logger(label: "leasectl.heartbeat"))
        if events == .text {
            output.note("\(identity): heartbeat on \(lock) every \(formatDuration(heartbeatConfiguration.effectiveRenewInterval)) (lease duration \(formatDuration(leaseDuration.duration)))")
        }
        let stream = heartbeat.events()
        let format = events
        let lockDescription = url.description
        let printer = Task {
            for await event in stream {
                switch format {
                case .json: Terminal.out(Self.jsonLine(for: event, identity: identity, lock: lockDescription, time: .now(), monotonicNanos: Terminal.monotonicNanos()))
                case .text: Terminal.err("leasectl: \(identity): \(event)")
                }
            }
        }
        let signals = ShutdownSignals(onFirst: { sig in output.note("\(identity): received \(signalName(sig)), stopping (the lease is left to expire)") })
        await signals.run { await heartbeat.run() }
        withExtendedLifetime(signals) {}
        printer.cancel()
        _ = await printer.value
    }

    /// The JSON line for `event` (without the newline).
    static func jsonLine(for event: HeartbeatEvent, identity: String, lock: String, time: MicroTime, monotonicNanos: UInt64) -> String {
        var fields: [(String, StructuredValue)] = [
            ("time", .string(time.rfc3339)),
            ("monotonicNanos", .int(monotonicNanos)),
            ("identity", .string(identity)),
            ("lock", .string(lock)),
        ]
        switch event {
        case .renewed(let created, let version, let record):
            fields += [("event", .string(created ? "created" : "renewed")), ("version", .string(version.rawValue))]
            if let renewTime = record.renewTime { fields.append(("renewTime", .string(renewTime.rfc3339))) }
        case .failed(let error, let failures, let retryIn):
            fields += [
                ("event", .string("failed")), ("error", .string(error.message)), ("code", .string(error.code.description)),
                ("consecutiveFailures", .int(failures)), ("retryInMillis", .int(retryIn.wholeMilliseconds)),
            ]
        }
        return StructuredValue.object(fields).json()
    }
}

extension Duration {
    /// The duration truncated to whole milliseconds.
    fileprivate var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000 + attoseconds / 1_000_000_000_000_000
    }
}
