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
            let before: LeaderElectionRecord?
            do {
                before = try await lock.get()?.record
                try await requestHandoff(on: lock, to: to)
            } catch let error as LeaderElectionError {
                throw LeaseCtlError("cannot hand off lock \(lock): \(registry.describe(error, for: lockURL))")
            }
            let from = before.map { $0.holderIdentity.isEmpty ? "nobody (free)" : $0.holderIdentity } ?? "nobody"
            Terminal.out("requested hand-off of lock \(lock) from \(from) to \(to)")
            guard wait else { return }
            let deadline = start.advanced(by: timeout.duration)
            while ContinuousClock.now < deadline {
                let current: LeaderElectionRecord?
                do {
                    current = try await lock.get()?.record
                } catch let error as LeaderElectionError {
                    throw LeaseCtlError("cannot read lock \(lock): \(registry.describe(error, for: lockURL))")
                }
                if current?.holderIdentity == to {
                    Terminal.out("\(to) leads lock \(lock) (\(formatDuration(start.duration(to: .now))) after the request)")
                    return
                }
                try await Task.sleep(for: .milliseconds(100))   // an operator's wait: polling is fine here
            }
            throw LeaseCtlError("\(to) did not take lock \(lock) within \(formatDuration(timeout.duration)); is a candidate with that identity running?")
        }
    }
}
