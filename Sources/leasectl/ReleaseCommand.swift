import ArgumentParser
import Foundation
import LeaderElection

/// `leasectl release`: an operator's forced release of a lock.
struct ReleaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "release",
        abstract: "Release a lock on behalf of its holder (operator override).",
        discussion: """
            Writes an empty holder (lease duration 1s, transitions unchanged) by compare-and-swap, retrying \
            on conflict, exactly as a leader releasing its own lease does, so any candidate can take the \
            lock at once. The holder notices at its next renewal and stops its work.

            Without --force, a lease that still looks live is refused: the holder may keep acting as leader \
            until its renewal notices (up to its renew deadline) while a new leader has already started. \
            A lease looks live while renewTime + leaseDuration is in the future by this host's clock and the \
            backend has not verified that the holder is gone. --force releases it anyway, and also \
            replaces a record that does not decode.

            The lock is file:///dir/name, etcd://HOST:PORT[,HOST:PORT...]/path/to/key (the etcd key \
            /path/to/key; connect with the --etcd-* options) or kubernetes://NAMESPACE/NAME (the Lease \
            NAME in NAMESPACE; kubernetes:///NAME uses -n, else the kubeconfig context's namespace; \
            connect with --kubeconfig, --context). For etcd the compare-and-swap is a transaction on the \
            key's mod revision; for Kubernetes a PUT carrying the Lease's resourceVersion, as client-go \
            releases (needs get and update on leases.coordination.k8s.io).

            Examples:
              leasectl release --force etcd://127.0.0.1:2379/leader-election/default/cron
              leasectl release kubernetes://kube-system/my-controller
            """
    )

    @Argument(help: ArgumentHelp("The lock to release.", valueName: "url"))
    var url: String

    @Flag(help: "Release a lease that still looks live, and replace a corrupt record.")
    var force = false

    @OptionGroup(title: "etcd connection")
    var etcd: EtcdOptions

    @OptionGroup(title: "Kubernetes connection")
    var kubernetes: KubernetesOptions

    func run() async throws {
        let lockURL = try LockURL(parsing: url)
        // Library warnings (an insecure etcd or Kubernetes connection) go to standard error, never into the output.
        LogLevelArgument.warning.bootstrap()
        let registry = try LockRegistry.oneShot(etcd: etcd, kubernetes: kubernetes)
        try await registry.using { registry in
            let lock = try registry.makeLock(at: lockURL, identity: "leasectl-release_\(UUID().uuidString.lowercased())")
            let outcome: Outcome
            do {
                outcome = try await Self.release(lock, force: force)
            } catch let error as LeaderElectionError {
                throw LeaseCtlError("cannot release lock \(lock): \(registry.describe(error, for: lockURL))")
            }
            Terminal.out(outcome.message(lock: "\(lock)"))
        }
    }

    /// What ``release(_:force:now:)`` did.
    enum Outcome: Sendable, Equatable {
        /// The lock was held by `holder` and is now free.
        case released(holder: String, transitions: Int)
        /// A corrupt record was replaced by a free one.
        case replacedCorrupt
        /// The lock was already free.
        case alreadyFree(transitions: Int)

        func message(lock: String) -> String {
            switch self {
            case .released(let holder, let transitions): "released lock \(lock) (was held by \(holder), transitions \(transitions))"
            case .replacedCorrupt: "released lock \(lock) (replaced a corrupt record)"
            case .alreadyFree(let transitions): "lock \(lock) is already free (transitions \(transitions))"
            }
        }
    }

    /// Releases `lock`: reads it, then writes an empty holder by compare-and-swap, retrying on conflict.
    ///
    /// - Throws: ``LeaseCtlError`` when there is no record, the lease looks live (or the record is corrupt)
    ///   and `force` is off, or compare-and-swap kept conflicting.
    static func release(_ lock: any ResourceLock, force: Bool, now: @Sendable () -> MicroTime = { .now() }) async throws -> Outcome {
        let attempts = 5
        for _ in 0..<attempts {
            let fetched: VersionedRecord
            do {
                guard let current = try await lock.get() else {
                    throw LeaseCtlError("lock \(lock) has no record (nothing to release)")
                }
                fetched = current
            } catch let error as LeaderElectionError where error.code == .corruptRecord {
                guard force else {
                    throw LeaseCtlError("lock \(lock) holds a corrupt record (\(error.message)); use --force to replace it with a free one")
                }
                guard let version = error.version else {
                    throw LeaseCtlError("lock \(lock) holds a corrupt record whose version is unknown; cannot replace it safely")
                }
                let wall = now()
                let free = LeaderElectionRecord(holderIdentity: "", leaseDuration: .seconds(1), acquireTime: wall, renewTime: wall, leaseTransitions: 0)
                do {
                    _ = try await lock.update(free, expecting: version)
                    return .replacedCorrupt
                } catch let error as LeaderElectionError where error.code == .conflict {
                    continue
                }
            }
            let record = fetched.record
            if record.isReleased { return .alreadyFree(transitions: record.leaseTransitions) }
            if !force, !fetched.holderIsKnownGone, let renewed = record.renewTime ?? record.acquireTime {
                let remaining = renewed.advanced(by: record.leaseDuration).duration(since: now())
                if remaining > .zero {
                    let rounded = Duration.milliseconds(Int64((remaining / .milliseconds(100)).rounded(.up)) * 100)
                    throw LeaseCtlError("""
                        lock \(lock) is held by \(record.holderIdentity) and its lease looks live for about \
                        \(formatDuration(rounded)) more; releasing it lets another candidate lead while \
                        \(record.holderIdentity) may still act as leader until its next renewal. Use --force to release it anyway.
                        """)
                }
            }
            let wall = now()
            let free = LeaderElectionRecord(
                holderIdentity: "", leaseDuration: .seconds(1), acquireTime: wall, renewTime: wall,
                leaseTransitions: record.leaseTransitions)
            do {
                _ = try await lock.update(free, expecting: fetched.version)
                return .released(holder: record.holderIdentity, transitions: record.leaseTransitions)
            } catch let error as LeaderElectionError where error.code == .conflict {
                continue   // someone wrote in between (a renewal): read again
            }
        }
        throw LeaseCtlError("could not release lock \(lock): the record changed during each of \(attempts) attempts")
    }
}
