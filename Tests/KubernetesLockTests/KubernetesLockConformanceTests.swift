import Foundation
import Kubernetes
import KubernetesLock
import KubernetesTesting
import LeaderElection
import LeaseAPIServer
import LockConformance
import Testing

/// KubernetesLock against LeaseAPIServer (HTTPS, bearer token, real etcd) — or the real cluster named by
/// LEADER_ELECTION_TEST_KUBECONFIG — passes the whole shared suite, unchanged, on both server generations:
/// Kubernetes 1.26 (which drops `spec.preferredHolder`/`spec.strategy`, so hand-off travels in annotations)
/// and 1.31+ with the `CoordinatedLeaderElection` gate (which keeps them).
@Suite struct KubernetesLockConformanceTests {
    @Test(arguments: LockConformanceSuite.Check.all, LeaseAPIServer.Generation.allCases)
    func conformance(_ check: LockConformanceSuite.Check, generation: LeaseAPIServer.Generation) async throws {
        try await KubernetesTestEnvironment.with(generation: generation) { env in
            let suite = LockConformanceSuite(name: "KubernetesLock") {
                let configuration = KubernetesLock.Configuration(name: "conformance-\(UUID().uuidString.lowercased())", namespace: env.namespace)
                return .init(
                    makeLock: { identity in try KubernetesLock(client: env.client, configuration: configuration, identity: identity) },
                    writeGarbage: { bytes in try await writeUnusableLease(env, name: configuration.name, holder: String(decoding: bytes, as: UTF8.self)) },
                    tearDown: { try? await env.client.deleteLease(namespace: env.namespace, name: configuration.name) })
            }
            try await suite.run(check)
        }
    }
}

/// "Garbage" as far as the Lease API allows it: a Lease naming a holder but no leaseDurationSeconds, which no
/// elector can honour (the API server itself refuses undecodable JSON, so raw bytes cannot be stored through it).
func writeUnusableLease(_ env: KubernetesTestEnvironment, name: String, holder: String) async throws {
    let spec = LeaseSpec(holderIdentity: holder)
    do {
        var lease = try await env.client.getLease(namespace: env.namespace, name: name)
        lease.spec = spec
        _ = try await env.client.replaceLease(lease, namespace: env.namespace)
    } catch let error as KubernetesError where error.code == .notFound {
        _ = try await env.client.createLease(Lease(metadata: ObjectMeta(name: name), spec: spec), namespace: env.namespace)
    }
}
