import EtcdTesting
import Foundation
import Kubernetes
import KubernetesTesting
import LeaderElection
import Testing
@testable import leasectl

extension ProcessTests {
    /// Followers of `leasectl elect kubernetes://…` cost the API server nothing while the leader renews: they
    /// follow the Lease's watch, whose events carry each renewal (issue 13).
    @Suite struct KubernetesFollowerCostTests {
        @Test(.timeLimit(.minutes(2)),
              .enabled(if: KubernetesTestEnvironment.localServerTestsRun, "counts requests at the local LeaseAPIServer"))
        func followersMakeNoRequestsWhileTheLeaderRenews() async throws {
            try await KubernetesTestEnvironment.with { env in
                let server = try #require(env.server)
                let directory = try LeasectlHarness.temporaryDirectory()
                defer { LeasectlHarness.cleanUp(directory) }
                // The followers talk to the API server through a TCP proxy that counts their bytes: a request
                // is bytes from them; the open watch stream only brings bytes to them.
                let proxy = try FaultProxy()
                defer { proxy.shutdown() }
                let proxyPort = try proxy.addProxy(id: 1, upstream: UInt16(server.port))
                let followerKubeconfig = "\(directory)/followers.yaml"
                let kubeconfig = try String(contentsOfFile: env.kubeconfigPath, encoding: .utf8)
                #expect(kubeconfig.contains(server.baseURL))
                try kubeconfig.replacingOccurrences(of: server.baseURL, with: "https://127.0.0.1:\(proxyPort)")
                    .write(toFile: followerKubeconfig, atomically: true, encoding: .utf8)

                let lock = "kubernetes://\(env.namespace)/followed"
                let timing = ["--lease-duration", "4s", "--renew-deadline", "3s", "--retry-period", "300ms"]
                let leaders = CandidateGroup(lock: lock, directory: directory, arguments: ["--kubeconfig", env.kubeconfigPath] + timing)
                let followers = CandidateGroup(lock: lock, directory: directory, arguments: ["--kubeconfig", followerKubeconfig] + timing)
                // Renewals as the API server stores them, from this process's own watch (not through the proxy).
                let renewals = Self.renewTimes(env, name: "followed", holder: "leader")
                var renewed = renewals.makeAsyncIterator()
                do {
                    try leaders.start("leader")
                    _ = try await leaders.await("the leader to lead") { $0.event == "startedLeading" && $0.identity == "leader" }
                    let names = ["f1", "f2"]
                    for name in names { try followers.start(name) }
                    try await followers.awaitObservers(of: "leader", identities: names, after: 0)
                    // Let the followers settle (their watch is open once a renewal or two went by).
                    for _ in 0..<3 { _ = try #require(await renewed.next()) }

                    let bytesBefore = proxy.traffic(proxy: 1)
                    let countsBefore = server.requestCounts(inNamespace: env.namespace)
                    let window = 8
                    for _ in 0..<window { _ = try #require(await renewed.next(), "the leader stopped renewing") }
                    let bytesAfter = proxy.traffic(proxy: 1)
                    let countsAfter = server.requestCounts(inNamespace: env.namespace)

                    let sent = bytesAfter.clientToUpstream - bytesBefore.clientToUpstream
                    let received = bytesAfter.upstreamToClient - bytesBefore.upstreamToClient
                    print("kubernetes followers over \(window) renewals: \(sent) bytes sent (requests), \(received) bytes received (watch events); server counts \(countsBefore) → \(countsAfter)")
                    #expect(sent == 0, "the followers sent \(sent) bytes (requests) while the leader renewed \(window) times")
                    #expect(received > 0, "the followers' watch delivered the renewals")
                    for method in ["GET", "WATCH", "POST", "DELETE"] {
                        #expect(countsAfter[method, default: 0] == countsBefore[method, default: 0], "\(method): \(countsBefore) → \(countsAfter)")
                    }
                    let events = followers.hub.entries.map(\.line)
                    #expect(!events.contains { $0.event == "startedLeading" }, "a follower took over: \(events)")
                } catch {
                    await followers.stopAll()
                    await leaders.stopAll()
                    Issue.record("candidate logs:\n\(followers.logs())")
                    throw error
                }
                await followers.stopAll()
                await leaders.stopAll()
            }
        }

        /// The `renewTime`s of `name` while `holder` holds it, each once, from an informer on the API server.
        static func renewTimes(_ env: KubernetesTestEnvironment, name: String, holder: String) -> AsyncStream<MicroTime> {
            let (stream, continuation) = AsyncStream.makeStream(of: MicroTime.self)
            let notifications = env.client.informLeases(namespace: env.namespace, name: name)
            let task = Task {
                var last: MicroTime?
                do {
                    for try await notification in notifications {
                        guard case .event(let event) = notification else { continue }
                        switch event {
                        case .added(let lease), .modified(let lease):
                            if lease.spec?.holderIdentity == holder, let renewTime = lease.spec?.renewTime, renewTime != last {
                                last = renewTime
                                continuation.yield(renewTime)
                            }
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
}
