import Foundation
import Kubernetes
import KubernetesLock
import KubernetesTesting
import LeaderElection
import LockConformance
import Testing

@Suite(.timeLimit(.minutes(2))) struct KubernetesHeartbeatTests {
    @Test func heartbeatListingAndMonitor() async throws {
        try await KubernetesTestEnvironment.with { env in
            let selector = "heartbeat-test=\(UUID().uuidString.prefix(8).lowercased())"
            let label = selector.split(separator: "=").map(String.init)
            let lock = try KubernetesLock(
                client: env.client, configuration: .init(name: "node-a", namespace: env.namespace, labels: [label[0]: label[1]]),
                identity: "node-a")
            let directory = KubernetesLeaseDirectory(client: env.client, namespace: env.namespace, labelSelector: selector)
            try await HeartbeatConformance.run(lock: lock, directory: directory, name: "node-a", backend: "KubernetesLock")
        }
    }

    @Test func ownerReferencesAreWrittenAndKept() async throws {
        try await KubernetesTestEnvironment.with { env in
            let node = OwnerReference(apiVersion: "v1", kind: "Node", name: "node-b", uid: "6f1c2a4e-0000-4000-8000-000000000001")
            let lock = try KubernetesLock(
                client: env.client, configuration: .init(name: "node-b", namespace: env.namespace, ownerReferences: [node]),
                identity: "node-b")
            let clock = ManualClock()
            let heartbeat = try HeartbeatLease(lock: lock, clock: clock)
            var beats = heartbeat.events().makeAsyncIterator()
            let running = Task { await heartbeat.run() }
            defer { running.cancel() }
            guard case .renewed(true, _, _)? = await beats.next() else { throw ScenarioFailure("expected a create") }
            #expect(try await env.client.getLease(namespace: env.namespace, name: "node-b").metadata.ownerReferences == [node])

            // Another owner added by someone else survives renewals; ours is not duplicated.
            var lease = try await env.client.getLease(namespace: env.namespace, name: "node-b")
            let other = OwnerReference(apiVersion: "apps/v1", kind: "Deployment", name: "d", uid: "6f1c2a4e-0000-4000-8000-000000000002", controller: true)
            lease.metadata.ownerReferences = [other, node]
            _ = try await env.client.replaceLease(lease, namespace: env.namespace)
            #expect(await clock.waitForSleepers(atLeast: 1))
            clock.advance(by: .seconds(10))
            guard case .renewed(false, _, _)? = await beats.next() else { throw ScenarioFailure("expected a renewal") }
            #expect(try await env.client.getLease(namespace: env.namespace, name: "node-b").metadata.ownerReferences == [other, node])

            // A Lease created without them gets them on the next write (the kubelet's SetNodeOwnerFunc).
            try await env.client.deleteLease(namespace: env.namespace, name: "node-b")
            _ = try await env.client.createLease(
                Lease(metadata: ObjectMeta(name: "node-b", namespace: env.namespace),
                      spec: LeaseSpec(holderIdentity: "node-b", leaseDurationSeconds: 40)),
                namespace: env.namespace)
            #expect(await clock.waitForSleepers(atLeast: 1))
            clock.advance(by: .seconds(10))
            guard case .renewed(false, _, _)? = await beats.next() else { throw ScenarioFailure("expected a renewal") }
            #expect(try await env.client.getLease(namespace: env.namespace, name: "node-b").metadata.ownerReferences == [node])
        }
    }

    @Test func directoryListsTheNamespaceWithASelector() async throws {
        try await KubernetesTestEnvironment.with { env in
            for (name, labels) in [("x", ["role": "member"]), ("y", ["role": "other"]), ("w", ["role": "member"])] {
                _ = try await KubernetesLock(client: env.client, configuration: .init(name: name, namespace: env.namespace, labels: labels), identity: name)
                    .create(LeaderElectionRecord(holderIdentity: name, leaseDuration: .seconds(40)))
            }
            let all = try await KubernetesLeaseDirectory(client: env.client, namespace: env.namespace).list()
            #expect(Set(["w", "x", "y"]).isSubset(of: Set(all.map(\.name))))
            let members = try await KubernetesLeaseDirectory(client: env.client, namespace: env.namespace, labelSelector: "role=member").list()
            #expect(members.map(\.name) == ["w", "x"])
            #expect(members.allSatisfy { $0.record?.leaseDuration == .seconds(40) })
        }
    }
}

struct ScenarioFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
