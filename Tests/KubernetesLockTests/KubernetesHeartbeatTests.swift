import Foundation
import Kubernetes
import KubernetesLock
import KubernetesTesting
import LeaderElection
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
            try await heartbeatScenario(lock: lock, directory: directory, name: "node-a")
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

/// The heartbeat scenario every backend runs: a heartbeat creates and renews `name` (driven by a manual
/// clock), the directory lists it, and a monitor on its own manual clock sees it alive → expired (once the
/// heartbeat stops) → alive (once it restarts).
func heartbeatScenario(lock: any ResourceLock, directory: any LeaseDirectory, name: String) async throws {
    let clock = ManualClock()
    let heartbeat = try HeartbeatLease(lock: lock, configuration: .init(leaseDuration: .seconds(40)), clock: clock)
    var beats = heartbeat.events().makeAsyncIterator()
    var running = Task { await heartbeat.run() }
    defer { running.cancel() }

    guard case .renewed(true, let v1, let created)? = await beats.next() else { throw ScenarioFailure("expected a create") }
    #expect(created.holderIdentity == lock.identity && created.leaseDuration == .seconds(40))
    #expect(try await lock.get()?.version == v1)
    #expect(await clock.waitForSleepers(atLeast: 1))
    #expect(clock.nextDeadline == ManualClock.Instant(offset: .seconds(10)))
    clock.advance(by: .seconds(10))
    guard case .renewed(false, let v2, let renewed)? = await beats.next() else { throw ScenarioFailure("expected a renewal") }
    #expect(v2 != v1)
    #expect(renewed.acquireTime == created.acquireTime)
    let stored = try #require(try await lock.get())
    #expect(stored.version == v2 && stored.record.holderIdentity == lock.identity)

    // Listing.
    let listed = try await directory.list()
    #expect(listed.map(\.name) == [name])
    #expect(listed.first?.version == v2 && listed.first?.record?.holderIdentity == lock.identity)

    // The monitor, on its own clock.
    let monitorClock = ManualClock()
    let monitor = try LeaseMonitor(
        directory: directory, configuration: .init(pollInterval: .seconds(5), gracePeriod: .seconds(40)), clock: monitorClock)
    var transitions = monitor.transitions().makeAsyncIterator()
    let first = try #require(await transitions.next())
    #expect(first.name == name && first.state == .alive)

    running.cancel()
    await running.value
    #expect(await monitorClock.waitForSleepers(atLeast: 1))
    monitorClock.advance(by: .seconds(41))
    let expired = try #require(await transitions.next())
    #expect(expired.name == name && expired.state == .expired)
    #expect(expired.unchangedFor >= .seconds(40))

    running = Task { await heartbeat.run() }
    guard case .renewed(false, _, _)? = await beats.next() else { throw ScenarioFailure("expected a renewal after restart") }
    #expect(await monitorClock.waitForSleepers(atLeast: 1))
    monitorClock.advance(by: .seconds(5))   // a poll, unless the change feed woke the monitor already
    let alive = try #require(await transitions.next())
    #expect(alive.name == name && alive.state == .alive)
}

struct ScenarioFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
