import Foundation
import Kubernetes
import KubernetesLock
import KubernetesTesting
import LeaderElection
import Testing

/// Events are off the critical path (issue 13): an events endpoint that never answers delays neither taking
/// over nor renewing, and the background queue is bounded.
@Suite(.timeLimit(.minutes(1)))
struct HungEventsTests {
    private static func isEventPost(_ request: RecordedRequest) -> Bool {
        request.method == .POST && request.path.hasSuffix("/events")
    }

    /// Runs `body` with a client whose requests go through a proxy that never answers Event POSTs; the proxy
    /// is shut down before the client, so the client's shutdown does not wait on the hung Events.
    private func withHungEvents(
        _ env: KubernetesTestEnvironment, requestTimeout: Duration,
        _ body: (ForwardingProxy, KubernetesClient) async throws -> Void
    ) async throws {
        let proxy = try await ForwardingProxy.start(upstream: env.client, hangs: Self.isEventPost)
        let client = try KubernetesClient(
            configuration: KubernetesConfiguration(server: proxy.url, namespace: env.namespace, credentials: .none, requestTimeout: requestTimeout),
            logger: testLogger)
        do {
            try await body(proxy, client)
        } catch {
            await proxy.shutdown()
            try? await client.shutdown()
            throw error
        }
        await proxy.shutdown()
        try await client.shutdown()
    }

    @Test func aHungEventsEndpointDelaysNeitherTakingOverNorRenewing() async throws {
        try await KubernetesTestEnvironment.with { env in
            // The hung POST would hold a caller for the whole request timeout, far past the renew deadline.
            let requestTimeout: Duration = .seconds(40)
            try await withHungEvents(env, requestTimeout: requestTimeout) { proxy, client in
                let name = "hung-events"
                let lock = try KubernetesLock(client: client, configuration: .init(name: name, namespace: env.namespace), identity: "a")
                var configuration = LeaderElectionConfiguration(name: name)
                // A renew deadline that a loaded machine does not miss (the request timeout is still far beyond it).
                configuration.leaseDuration = .seconds(10)
                configuration.renewDeadline = .seconds(8)
                configuration.retryPeriod = .milliseconds(200)
                let elector = try LeaderElector(lock: lock, configuration: configuration, clock: ContinuousClock())
                let events = elector.events()
                // Renewals as the API server stores them, seen directly (not through the proxy).
                let renewals = renewTimes(env, name: name, holder: "a")
                let run = Task { try await elector.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
                defer { run.cancel() }

                // The "became leader" Event reaches the endpoint and hangs there...
                var hung = proxy.hung.makeAsyncIterator()
                let post = try #require(await hung.next(), "the Event POST never reached the events endpoint")
                #expect(post.bodyString.contains("a became leader"))
                // ...and yet the elector reports leading, and keeps renewing, well inside the request timeout.
                var started = false
                for await event in events {
                    if case .startedLeading = event { started = true; break }
                    if case .stoppedLeading = event { break }
                }
                #expect(started)
                var distinct: Set<MicroTime> = []
                for await renewTime in renewals {
                    distinct.insert(renewTime)
                    if distinct.count >= 6 { break }
                }
                #expect(distinct.count >= 6, "the leader renewed \(distinct.count) times")
                #expect(elector.isLeader)
                // All of that happened while the Event POST was still unanswered: nothing waited for it.
                #expect(proxy.hangingCount == 1, "the Event POST is still open at the events endpoint")
                #expect(client.events.pendingCount >= 1, "the Event is still being sent (later ones wait behind it)")
            }
        }
    }

    @Test func theEventQueueIsBoundedAndDropsWhenFull() async throws {
        try await KubernetesTestEnvironment.with { env in
            try await withHungEvents(env, requestTimeout: .seconds(40)) { proxy, client in
                let lease = Lease(metadata: ObjectMeta(name: "bounded", namespace: env.namespace, uid: "u"))
                let capacity = KubernetesClient.eventQueueCapacity
                var accepted = 0
                for index in 0..<(capacity + 5) {
                    if client.enqueueLeaderElectionEvent(lease: lease, message: "event \(index)", component: "test", instance: "a") { accepted += 1 }
                }
                #expect(accepted == capacity)
                #expect(client.events.droppedCount == 5)
                var hung = proxy.hung.makeAsyncIterator()
                let first = try #require(await hung.next())
                #expect(first.bodyString.contains("event 0"), "the oldest Event is sent first")
            }
        }
    }

    /// The distinct `renewTime`s of `name` while `holder` holds it, from an informer on the API server.
    private func renewTimes(_ env: KubernetesTestEnvironment, name: String, holder: String) -> AsyncStream<MicroTime> {
        let (stream, continuation) = AsyncStream.makeStream(of: MicroTime.self)
        let notifications = env.client.informLeases(namespace: env.namespace, name: name)
        let task = Task {
            do {
                for try await notification in notifications {
                    switch notification {
                    case .event(.added(let lease)), .event(.modified(let lease)):
                        if lease.spec?.holderIdentity == holder, let renewTime = lease.spec?.renewTime { continuation.yield(renewTime) }
                    default:
                        continue
                    }
                }
            } catch {}
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }
}
