import Foundation
import Kubernetes
import KubernetesLock
import KubernetesTesting
import LeaderElection
import LeaseAPIServer
import Testing

/// Where `strategy`/`preferredHolder` travel: the spec on a 1.31+ server with the `CoordinatedLeaderElection`
/// gate, annotations on a server that drops the spec fields (detected from its answer), and what other
/// writers and readers see either way.
@Suite(.timeLimit(.minutes(1))) struct KubernetesHandoffCarrierTests {
    private func lock(_ env: KubernetesTestEnvironment, _ name: String, _ identity: String, labels: [String: String] = [:]) throws -> KubernetesLock {
        try KubernetesLock(client: env.client, configuration: .init(name: name, namespace: env.namespace, labels: labels), identity: identity)
    }

    private func record(_ holder: String, transitions: Int = 1, preferred: String? = nil) -> LeaderElectionRecord {
        LeaderElectionRecord(
            holderIdentity: holder, leaseDuration: .seconds(15), acquireTime: .now(), renewTime: .now(), leaseTransitions: transitions,
            strategy: preferred.map { _ in handoffStrategy }, preferredHolder: preferred)
    }

    /// The local server answers as the generation asked; a real cluster is whatever it is.
    private static var local: Bool { KubernetesTestEnvironment.localServerTestsRun }

    @Test(.enabled(if: local, "needs the local LeaseAPIServer to choose the server generation"))
    func aServerThatDropsTheFieldsGetsAnnotationsAndTheHandOffSurvives() async throws {
        try await KubernetesTestEnvironment.with(generation: .v1_26) { env in
            let leader = try lock(env, "carried", "a", labels: ["app": "demo"])
            let v1 = try await leader.create(record("a"))
            #expect(!leader.carriesHandoffInAnnotations, "nothing to carry yet")
            // Someone else's annotation and label, which every write must keep.
            var lease = try await env.client.getLease(namespace: env.namespace, name: "carried")
            lease.metadata.annotations = ["note": "kept"]
            lease.metadata.labels?["team"] = "x"
            _ = try await env.client.replaceLease(lease, namespace: env.namespace)

            // A hand-off from another process's lock: its PUT adds only the (dropped) spec fields, so the server
            // answers 200 with the same resourceVersion; the lock must notice and re-write as annotations.
            let operator_ = try lock(env, "carried", "operator")
            let before = try #require(try await operator_.get())
            #expect(before.version != v1)
            let written = try await requestHandoff(on: operator_, to: "b")
            #expect(written.preferredHolder == "b")
            #expect(operator_.carriesHandoffInAnnotations)
            let stored = try await env.client.getLease(namespace: env.namespace, name: "carried")
            #expect(stored.spec?.preferredHolder == nil && stored.spec?.strategy == nil, "the server keeps no spec fields: \(String(describing: stored.spec))")
            #expect(stored.metadata.annotations == [
                "note": "kept",
                KubernetesLock.preferredHolderAnnotation: "b",
                KubernetesLock.strategyAnnotation: handoffStrategy,
                KubernetesLock.handoffTermAnnotation: "1",
            ])
            #expect(stored.metadata.labels == ["app": "demo", "team": "x"])
            #expect(stored.metadata.resourceVersion != before.version.rawValue, "the hand-off is a real write")

            // Every reader sees it: get(), a listing, the record feed.
            let read = try #require(try await leader.get())
            #expect(read.record.preferredHolder == "b" && read.record.strategy == handoffStrategy)
            #expect(KubernetesLock.record(stored)?.preferredHolder == "b")
            let listed = try await KubernetesLeaseDirectory(client: env.client, namespace: env.namespace).list()
            #expect(listed.first { $0.name == "carried" }?.record?.preferredHolder == "b")

            // A release keeping the name (as the elector writes it) goes straight to annotations once learnt,
            // a takeover clearing it removes them, and other metadata stays.
            var released = record("", transitions: 1, preferred: "b")
            released.leaseDuration = .seconds(1)
            let v2 = try await operator_.update(released, expecting: read.version)
            let afterRelease = try await env.client.getLease(namespace: env.namespace, name: "carried")
            #expect(afterRelease.metadata.annotations?[KubernetesLock.preferredHolderAnnotation] == "b")
            let successor = try lock(env, "carried", "b")
            _ = try #require(try await successor.get())
            _ = try await successor.update(record("b", transitions: 2), expecting: v2)
            let taken = try await env.client.getLease(namespace: env.namespace, name: "carried")
            #expect(taken.metadata.annotations == ["note": "kept"], "a cleared hand-off leaves no annotation")
            #expect(taken.metadata.labels == ["app": "demo", "team": "x"])
            #expect(try await leader.get()?.record.preferredHolder == nil)
        }
    }

    @Test(.enabled(if: local, "needs the local LeaseAPIServer to choose the server generation"))
    func aGatedServerKeepsTheSpecFieldsAndNoAnnotationIsWritten() async throws {
        try await KubernetesTestEnvironment.with(generation: .v1_31CoordinatedLeaderElection) { env in
            let leader = try lock(env, "spec", "a")
            _ = try await leader.create(record("a"))
            let operator_ = try lock(env, "spec", "operator")
            _ = try await requestHandoff(on: operator_, to: "b")
            #expect(!operator_.carriesHandoffInAnnotations)
            let stored = try await env.client.getLease(namespace: env.namespace, name: "spec")
            #expect(stored.spec?.preferredHolder == "b" && stored.spec?.strategy == handoffStrategy)
            #expect(try await leader.get()?.record.preferredHolder == "b")
            // The first write did not know yet and carried the annotations too; once the server has shown that it
            // keeps the spec fields, the lock writes only those and removes the annotations.
            _ = try await requestHandoff(on: operator_, to: "c")
            let again = try await env.client.getLease(namespace: env.namespace, name: "spec")
            #expect(again.spec?.preferredHolder == "c")
            #expect(again.metadata.annotations?[KubernetesLock.preferredHolderAnnotation] == nil, "\(String(describing: again.metadata.annotations))")
            #expect(again.metadata.annotations?[KubernetesLock.handoffTermAnnotation] == nil)
            #expect(try await leader.get()?.record.preferredHolder == "c")
        }
    }

    @Test(.enabled(if: local, "needs the local LeaseAPIServer to choose the server generation"))
    func aCreateCarryingAHandOffKeepsItInAnnotations() async throws {
        try await KubernetesTestEnvironment.with(generation: .v1_26) { env in
            let a = try lock(env, "created", "a")
            let version = try await a.create(record("a", preferred: "b"))
            let read = try #require(try await a.get())
            #expect(read.version == version, "create returns the version of the record as finally stored")
            #expect(read.record.preferredHolder == "b" && read.record.strategy == handoffStrategy)
            #expect(a.carriesHandoffInAnnotations)
        }
    }

    @Test(.enabled(if: local, "needs the local LeaseAPIServer to choose the server generation"))
    func theRecordFeedCarriesTheAnnotatedHandOff() async throws {
        try await KubernetesTestEnvironment.with(generation: .v1_26) { env in
            let a = try lock(env, "fed", "a")
            _ = try await a.create(record("a"))
            let follower = try lock(env, "fed", "f")
            let feed = try #require(follower.recordChanges())
            var iterator = feed.makeAsyncIterator()
            _ = await iterator.next()   // the initial list
            _ = try await requestHandoff(on: try lock(env, "fed", "operator"), to: "f")
            var seen: LeaderElectionRecord?
            while let change = await iterator.next() {
                if case .stored(let read) = change, read.record.preferredHolder != nil {
                    seen = read.record
                    break
                }
            }
            #expect(seen?.preferredHolder == "f" && seen?.strategy == handoffStrategy)
        }
    }

    /// A client-go candidate knows nothing of the annotations: it PUTs the object it read with its own spec.
    /// It contends as usual and keeps the annotations while it renews its term; once another term begins
    /// (it took the Lease over), the annotated hand-off no longer applies.
    @Test(.enabled(if: local, "needs the local LeaseAPIServer to choose the server generation"))
    func aWriterThatKnowsNothingOfTheAnnotationsContendsSafely() async throws {
        try await KubernetesTestEnvironment.with(generation: .v1_26) { env in
            let a = try lock(env, "mixed", "a")
            _ = try await a.create(record("go-c", transitions: 3))
            _ = try await requestHandoff(on: try lock(env, "mixed", "operator"), to: "swift-b")
            // client-go's LeaseLock.Update: the cached object with the spec replaced, guarded by its version.
            func clientGoWrite(holder: String, transitions: Int32) async throws -> Lease {
                var lease = try await env.client.getLease(namespace: env.namespace, name: "mixed")
                lease.spec = LeaseSpec(holderIdentity: holder, leaseDurationSeconds: 15, acquireTime: .now(), renewTime: .now(), leaseTransitions: transitions)
                return try await env.client.replaceLease(lease, namespace: env.namespace)
            }
            // go-c renews its term: the annotations stay, and the hand-off still applies.
            let stale = try await env.client.getLease(namespace: env.namespace, name: "mixed")
            let renewed = try await clientGoWrite(holder: "go-c", transitions: 3)
            #expect(renewed.metadata.annotations?[KubernetesLock.preferredHolderAnnotation] == "swift-b")
            #expect(try await a.get()?.record.preferredHolder == "swift-b")
            // Compare-and-swap still protects everyone: a write on an older version conflicts.
            await #expect { _ = try await env.client.replaceLease(stale, namespace: env.namespace) } throws: {
                ($0 as? KubernetesError)?.code == .conflict
            }
            // go-d takes over (a new term) without clearing the annotations: the hand-off is over.
            _ = try await clientGoWrite(holder: "go-d", transitions: 4)
            let read = try #require(try await a.get())
            #expect(read.record.holderIdentity == "go-d" && read.record.preferredHolder == nil && read.record.strategy == nil)
        }
    }
}
