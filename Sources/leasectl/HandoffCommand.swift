import ArgumentParser
import Foundation
import LeaderElection
import LeaderElectionService

/// `leasectl handoff`: ask the leader to hand over to a named candidate (Kubernetes' `preferredHolder`).
struct HandoffCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handoff",
        abstract: "Ask the current leader to hand leadership to a named candidate.",
        discussion: """
            Writes preferredHolder = ID into the record by compare-and-swap (with a strategy when the record \
            has none, as Kubernetes requires). The leader hears of it through its lock's change feed (at once; \
            without a feed, at its next renewal), stops and drains its work, and releases the lease; the other candidates stand back for one lease duration so that ID \
            takes over, and ID clears the name when it acquires. If ID is not campaigning, the others take \
            part again after that lease duration.

            On kubernetes:// Leases the name goes into spec.preferredHolder where the API server keeps it \
            (Kubernetes 1.31+ with the CoordinatedLeaderElection feature gate); servers that drop that field \
            (earlier versions, or the gate off) are detected from their answer, and the name goes into the \
            annotation leader-election.swift-server.dev/preferred-holder instead.

            With --wait, polls the record every 100 ms until ID holds the lease (or --timeout passes).

            Examples:
              leasectl handoff file:///var/run/my-app/leader --to host-b_1234
              leasectl handoff --wait kubernetes://kube-system/my-controller --to node-2
            """
    )

    @Argument(help: ArgumentHelp("The lock.", valueName: "url"))
    var url: String

    @Option(name: .long, help: ArgumentHelp("The identity that should lead next.", valueName: "id"))
    var to: String

    @Flag(help: "Wait until the named candidate holds the lease.")
    var wait = false

    @Option(help: ArgumentHelp("How long --wait waits (Go duration).", valueName: "duration"))
    var timeout: GoDuration = GoDuration(.seconds(60))

    @OptionGroup(title: "etcd connection")
    var etcd: EtcdOptions

    @OptionGroup(title: "Kubernetes connection")
    var kubernetes: KubernetesOptions

    func validate() throws {
        if to.isEmpty { throw ValidationError("--to must name a candidate identity") }
    }

    func run() async throws {
        let lockURL = try LockURL(parsing: url)
        LogLevelArgument.warning.bootstrap()
        let registry = try LockRegistry.oneShot(etcd: etcd, kubernetes: kubernetes)
        try await registry.using { registry in
            let lock = try registry.makeLock(at: lockURL, identity: "leasectl-handoff_\(UUID().uuidString.lowercased())")
            let start = ContinuousClock.now
            // Subscribed before the request is written, so that the take-over is seen the moment the lock's change
            // feed reports it (a feed that connects late still reports the new holder's next renewal).
            let feed = wait ? lock.recordChanges() : nil
            let written: LeaderElectionRecord
            do {
                written = try await requestHandoff(on: lock, to: to)
            } catch let error as LeaderElectionError {
                throw LeaseCtlError("cannot hand off lock \(lock): \(registry.describe(error, for: lockURL))")
            }
            let from = written.holderIdentity.isEmpty ? "nobody (free)" : written.holderIdentity
            Terminal.out("requested hand-off of lock \(lock) from \(from) to \(to)")
            guard wait else { return }
            let target = to
            let reached = try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    do {
                        return try await Self.awaitHolder(target, on: lock, feed: feed)
                    } catch let error as LeaderElectionError {
                        throw LeaseCtlError("cannot read lock \(lock): \(registry.describe(error, for: lockURL))")
                    }
                }
                group.addTask {
                    try await Task.sleep(until: start.advanced(by: timeout.duration), clock: .continuous)
                    return false
                }
                defer { group.cancelAll() }
                return try await group.next() ?? false
            }
            if reached {
                Terminal.out("\(to) leads lock \(lock) (\(formatDuration(start.duration(to: .now))) after the request)")
                return
            }
            throw LeaseCtlError("\(to) did not take lock \(lock) within \(formatDuration(timeout.duration)); is a candidate with that identity running?")
        }
    }

    /// Returns `true` once `lock` names `target` as holder: read once, then on every change the feed reports
    /// (`.stored` carries the record; anything else costs one read). Without a feed, or once it ends, reads every
    /// 100 ms (an operator's wait). Runs until found or cancelled.
    private static func awaitHolder(_ target: String, on lock: any ResourceLock, feed: AsyncStream<LockChange>?) async throws -> Bool {
        if try await lock.get()?.record.holderIdentity == target { return true }
        if let feed {
            for await change in feed {
                switch change {
                case .stored(let current):
                    if current.record.holderIdentity == target { return true }
                case .deleted:
                    continue
                case .unknown:
                    if try await lock.get()?.record.holderIdentity == target { return true }
                }
            }
        }
        while !Task.isCancelled {
            if try await lock.get()?.record.holderIdentity == target { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }
}
