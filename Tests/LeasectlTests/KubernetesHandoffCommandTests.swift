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
                    _ = try await group.handOffFromAToC(lockLabel: url, arguments: kubeconfig)

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
