import Foundation
import Kubernetes
import KubernetesLock
import KubernetesTesting
import LeaderElection
import LeaseAPIServer
import Testing
@testable import leasectl

extension ProcessTests {
    /// `leasectl handoff` on a `kubernetes://` Lease moves leadership to the named candidate on both server
    /// generations: in the spec on 1.31+ with the `CoordinatedLeaderElection` gate, in annotations on a
    /// server that drops the spec fields (issue 13).
    @Suite struct KubernetesHandoffCommandTests {
        @Test(.timeLimit(.minutes(1)), .enabled(if: KubernetesTestEnvironment.localServerTestsRun, "chooses the local server's generation"),
              arguments: LeaseAPIServer.Generation.allCases)
        func handoffMovesLeadershipOnEveryGeneration(_ generation: LeaseAPIServer.Generation) async throws {
            try await KubernetesTestEnvironment.with(generation: generation) { env in
                let directory = try LeasectlHarness.temporaryDirectory()
                defer { LeasectlHarness.cleanUp(directory) }
                let url = "kubernetes://\(env.namespace)/handed"
                let kubeconfig = ["--kubeconfig", env.kubeconfigPath]
                let group = CandidateGroup(
                    lock: url, directory: directory,
                    arguments: kubeconfig + ["--lease-duration", "4s", "--renew-deadline", "3s", "--retry-period", "300ms"])
                do {
                    try group.start("a")
                    let started = try await group.await("a to lead") { $0.event == "startedLeading" }
                    try group.start("b")
                    try group.start("c")
                    try await group.awaitObservers(of: "a", identities: ["b", "c"], after: 0)

                    let mark = group.hub.count
                    let handoff = try await LeasectlHarness.run(["handoff", "--wait", "--timeout", "20s", url, "--to", "c"] + kubeconfig)
                    #expect(handoff.status == .exited(0), "\(handoff)")
                    #expect(handoff.stdout.hasPrefix("requested hand-off of lock \(url) from a to c\nc leads lock"), "\(handoff)")

                    let stopped = try await group.await("a to hand off", after: mark) { $0.event == "stoppedLeading" && $0.identity == "a" }
                    #expect(stopped.reason == "handedOff")
                    let next = try await group.await("c to lead", after: mark) { $0.event == "startedLeading" }
                    #expect(next.identity == "c" && next.fencingToken == started.fencingToken! + 1)
                    await group.stopAll()

                    // The successor cleared the hand-off wherever it was carried.
                    let lease = try await env.client.getLease(namespace: env.namespace, name: "handed")
                    #expect(KubernetesLock.record(lease)?.preferredHolder == nil)
                    #expect(lease.spec?.preferredHolder == nil)
                    #expect(lease.metadata.annotations?[KubernetesLock.preferredHolderAnnotation] == nil)
                } catch {
                    await group.stopAll()
                    Issue.record("candidate logs:\n\(group.logs())")
                    throw error
                }
            }
        }
    }
}
