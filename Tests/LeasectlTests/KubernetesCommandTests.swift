import EtcdTesting
import Foundation
import Kubernetes
import KubernetesLock
import KubernetesTesting
import LeaderElection
import Testing
@testable import leasectl

extension ProcessTests {
    /// `leasectl elect`, `get` and `release` on `kubernetes://` Leases, against a ``KubernetesTestEnvironment``
    /// (the local LeaseAPIServer over HTTPS with a bearer token, or the cluster of
    /// `LEADER_ELECTION_TEST_KUBECONFIG`).
    @Suite struct KubernetesCommandTests {
        /// Three `leasectl elect` processes on one Lease: one leader, hand-offs by release, and takeovers after
        /// a SIGKILLed leader's lease expired; never two leaders at once.
        @Test(.timeLimit(.minutes(2)))
        func oneLeaderAtATimeThroughHandOffsAndCrashes() async throws {
            try await KubernetesTestEnvironment.with { env in
                let directory = try LeasectlHarness.temporaryDirectory()
                defer { LeasectlHarness.cleanUp(directory) }
                let lease: Duration = .seconds(2)
                let retry: Duration = .milliseconds(300)
                let group = CandidateGroup(
                    lock: "kubernetes://\(env.namespace)/elect", directory: directory,
                    arguments: ["--kubeconfig", env.kubeconfigPath,
                                "--lease-duration", "2s", "--renew-deadline", "1500ms", "--retry-period", "300ms"])
                let names = ["c1", "c2", "c3"]
                do {
                    let (handOffs, takeovers, leader) = try await group.handOffsAndCrashes(names: names, lease: lease, retry: retry)
                    // The Lease holds client-go's record: the last leader released it, transitions = terms - 1.
                    let stored = try #require(try await env.client.getLease(namespace: env.namespace, name: "elect").spec)
                    #expect(stored.holderIdentity == "" && stored.leaseDurationSeconds == 1, "released on SIGTERM: \(stored)")
                    #expect(stored.leaseTransitions == Int32(try #require(leader.fencingToken)))
                    let ms = ElectMultiProcessTests.ms
                    print("kubernetes graceful hand-off ms: \(handOffs.map(ms).joined(separator: ", "))")
                    print("kubernetes crash takeover ms: \(takeovers.map(ms).joined(separator: ", ")) (leaseDuration 2s, renewDeadline 1500ms, retryPeriod 300ms)")
                } catch {
                    await group.stopAll()
                    Issue.record("candidate logs:\n\(group.logs())")
                    throw error
                }
            }
        }

        /// `get` by namespace (-n, URL, context default) and across namespaces (-A) as a table, JSON and YAML;
        /// a kubelet-style node heartbeat Lease; a missing Lease.
        @Test(.timeLimit(.minutes(1)))
        func getListsLeasesOfANamespaceOrOfAll() async throws {
            try await KubernetesTestEnvironment.with { env in
                let other = "\(env.namespace)-b"
                _ = try await env.client.createNamespace(other)
                do {
                    try await Self.getListsLeases(env, other: other)
                } catch {
                    try? await env.client.deleteNamespace(other)
                    throw error
                }
                try? await env.client.deleteNamespace(other)
            }
        }

        private static func getListsLeases(_ env: KubernetesTestEnvironment, other: String) async throws {
            let ns = env.namespace
            let kubeconfig = ["--kubeconfig", env.kubeconfigPath]
            try await createTestLeases(env, other: other)

            // One namespace, named in the URL.
            let table = try await LeasectlHarness.run(["get", "kubernetes://\(ns)/"] + kubeconfig)
            #expect(table.status == .exited(0), "\(table)")
            let rows = Self.rows(table.stdout)
            #expect(rows.first == ["NAME", "HOLDER", "AGE", "TRANSITIONS", "EXPIRES IN"], "\(table)")
            #expect(rows.dropFirst().map(\.first) == ["free", "held", "node-1"], "\(table)")
            #expect(rows.contains(["free", "<none>", "0s", "5", "<none>"]), "\(table)")
            let held = try #require(rows.first { $0.first == "held" }, "\(table)")
            #expect(Array(held.prefix(4)) == ["held", "alice", "3m", "3"])
            #expect(held[4].hasSuffix("s") && held[4] != "expired", "about a minute left: \(held[4])")
            // The node heartbeat: no acquireTime, so AGE counts from the Lease's creation (just now).
            let node = try #require(rows.first { $0.first == "node-1" }, "\(table)")
            #expect(Array(node.prefix(2)) == ["node-1", "node-1"] && node[3] == "0", "\(table)")
            #expect(["0s", "1s", "2s"].contains(node[2]), "AGE since creation: \(node)")
            #expect(node[4].hasSuffix("s") && node[4] != "expired", "renewed just now for 40s: \(node)")

            // -n without a URL; kubernetes:// with -n; the context's namespace without either.
            let byOption = try await LeasectlHarness.run(["get", "-n", ns] + kubeconfig)
            #expect(byOption.status == .exited(0) && Self.rows(byOption.stdout).dropFirst().map(\.first) == ["free", "held", "node-1"], "\(byOption)")
            let byOptionURL = try await LeasectlHarness.run(["get", "--namespace", other, "kubernetes://"] + kubeconfig)
            #expect(byOptionURL.status == .exited(0) && Self.rows(byOptionURL.stdout).dropFirst().map(\.first) == ["other"], "\(byOptionURL)")
            if !env.isExternal {
                // The local environment's kubeconfig context names the test namespace.
                let byContext = try await LeasectlHarness.run(["get", "kubernetes://"] + kubeconfig)
                #expect(byContext.status == .exited(0) && Self.rows(byContext.stdout).dropFirst().map(\.first) == ["free", "held", "node-1"], "\(byContext)")
                let named = try await LeasectlHarness.run(["get", "-o", "json", "kubernetes:///held"] + kubeconfig)
                let object = try #require(try JSONSerialization.jsonObject(with: Data(named.stdout.utf8)) as? [String: Any], "\(named)")
                #expect(object["lock"] as? String == "kubernetes://\(ns)/held")
            }

            // Every namespace: a NAMESPACE column first, sorted by namespace then name (a real cluster has
            // more Leases: keep ours).
            let all = try await LeasectlHarness.run(["get", "-A"] + kubeconfig)
            #expect(all.status == .exited(0), "\(all)")
            let allRows = Self.rows(all.stdout)
            #expect(allRows.first == ["NAMESPACE", "NAME", "HOLDER", "AGE", "TRANSITIONS", "EXPIRES IN"], "\(all)")
            let ours = allRows.dropFirst().filter { $0.first == ns || $0.first == other }
            #expect(ours.map { "\($0[0])/\($0[1])" } == ["\(ns)/free", "\(ns)/held", "\(ns)/node-1", "\(other)/other"], "\(all)")
            #expect(ours.last.map { Array($0.prefix(3)) } == [other, "other", "bob"], "\(all)")
            let star = try await LeasectlHarness.run(["get", "kubernetes://*/"] + kubeconfig)
            #expect(star.status == .exited(0) && Self.rows(star.stdout).first?.first == "NAMESPACE", "\(star)")

            let json = try await LeasectlHarness.run(["get", "-A", "-o", "json"] + kubeconfig)
            #expect(json.status == .exited(0), "\(json)")
            let list = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json)")
            let items = try #require(list["items"] as? [[String: Any]]).filter { [ns, other].contains($0["namespace"] as? String) }
            #expect(items.map { $0["name"] as? String } == ["free", "held", "node-1", "other"])
            #expect(items[1]["namespace"] as? String == ns)
            #expect(items[1]["lock"] as? String == "kubernetes://\(ns)/held")
            #expect(items[1]["holderIdentity"] as? String == "alice")
            #expect(items[1]["leaderTransitions"] as? Int == 3)
            #expect(items[1]["leaseDurationSeconds"] as? Int == 60)
            #expect(items[2]["acquireTime"] == nil && items[2]["renewTime"] is String, "a node heartbeat: \(items[2])")
            #expect(items[2]["creationTimestamp"] is String)
            #expect(items[3]["namespace"] as? String == other)

            let single = try await LeasectlHarness.run(["get", "-o", "json", "kubernetes://\(ns)/held"] + kubeconfig)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(single.stdout.utf8)) as? [String: Any], "\(single)")
            #expect(object["name"] as? String == "held" && object["namespace"] as? String == ns)
            #expect((object["version"] as? String)?.isEmpty == false)
            let yaml = try await LeasectlHarness.run(["get", "-o", "yaml", "kubernetes://\(ns)/node-1"] + kubeconfig)
            #expect(yaml.status == .exited(0), "\(yaml)")
            #expect(yaml.stdout.contains("namespace: \(ns)\n") && yaml.stdout.contains("holderIdentity: node-1\n"), "\(yaml)")
            #expect(yaml.stdout.contains("leaseDurationSeconds: 40\n"), "\(yaml)")

            let missing = try await LeasectlHarness.run(["get", "kubernetes://\(ns)/nothing"] + kubeconfig)
            #expect(missing.status == .exited(1), "\(missing)")
            #expect(missing.stderr.contains("lock kubernetes://\(ns)/nothing not found"), "\(missing)")
            let empty = try await LeasectlHarness.run(["get", "kubernetes://\(ns)-empty/"] + kubeconfig)
            #expect(empty.status == .exited(0) && empty.stderr.contains("No locks found in kubernetes://\(ns)-empty/."), "\(empty)")
        }

        /// `held` (alice, 60 s, acquired 190 s ago, 3 transitions), `free` (released, 5 transitions) and a
        /// kubelet-style node heartbeat `node-1` in the test namespace; `other` (bob) in `other`.
        private static func createTestLeases(_ env: KubernetesTestEnvironment, other: String) async throws {
            let now = MicroTime.now()
            func lease(_ name: String, _ spec: LeaseSpec) -> Lease { Lease(metadata: ObjectMeta(name: name), spec: spec) }
            _ = try await env.client.createLease(lease("held", LeaseSpec(
                holderIdentity: "alice", leaseDurationSeconds: 60, acquireTime: now.advanced(by: .seconds(-190)),
                renewTime: now, leaseTransitions: 3)), namespace: env.namespace)
            _ = try await env.client.createLease(lease("free", LeaseSpec(
                holderIdentity: "", leaseDurationSeconds: 1, acquireTime: now, renewTime: now, leaseTransitions: 5)), namespace: env.namespace)
            // As the kubelet writes it: holder = node name, 40 s, renewTime only.
            _ = try await env.client.createLease(
                lease("node-1", LeaseSpec(holderIdentity: "node-1", leaseDurationSeconds: 40, renewTime: now)), namespace: env.namespace)
            _ = try await env.client.createLease(lease("other", LeaseSpec(
                holderIdentity: "bob", leaseDurationSeconds: 30, acquireTime: now, renewTime: now, leaseTransitions: 1)), namespace: other)
        }

        /// `release` refuses a live Lease and forces it free; `get -w` follows a Lease and a namespace through
        /// the informer as they change.
        @Test(.timeLimit(.minutes(1)))
        func releaseAndWatch() async throws {
            try await KubernetesTestEnvironment.with { env in
                let ns = env.namespace
                let kubeconfig = ["--kubeconfig", env.kubeconfigPath]
                let now = MicroTime.now()
                _ = try await env.client.createLease(Lease(metadata: ObjectMeta(name: "held"), spec: LeaseSpec(
                    holderIdentity: "alice", leaseDurationSeconds: 60, acquireTime: now, renewTime: now, leaseTransitions: 3)),
                    namespace: ns)

                let watcher = try OutputLines(["get", "-w", "kubernetes://\(ns)/held"] + kubeconfig)
                let namespaceWatcher = try OutputLines(["get", "-w", "-o", "json", "kubernetes://\(ns)/"] + kubeconfig)
                #expect(await watcher.next(timeout: .seconds(10))?.hasPrefix("NAME") == true)
                #expect(await watcher.next(timeout: .seconds(10))?.contains("alice") == true)
                let firstEvent = await namespaceWatcher.next(timeout: .seconds(10))
                #expect(firstEvent?.contains(#""holderIdentity":"alice""#) == true, "\(firstEvent ?? "nothing")")

                let refused = try await LeasectlHarness.run(["release", "kubernetes://\(ns)/held"] + kubeconfig)
                #expect(refused.status == .exited(1), "\(refused)")
                #expect(refused.stderr.contains("is held by alice") && refused.stderr.contains("--force"), "\(refused)")
                let released = try await LeasectlHarness.run(["release", "--force", "kubernetes://\(ns)/held"] + kubeconfig)
                #expect(released.status == .exited(0), "\(released)")
                #expect(released.stdout == "released lock kubernetes://\(ns)/held (was held by alice, transitions 3)\n", "\(released)")
                let changed = await watcher.next(timeout: .seconds(10))
                #expect(changed?.contains("<none>") == true, "\(changed ?? "nothing")")
                let releasedEvent = await namespaceWatcher.next(timeout: .seconds(10))
                #expect(releasedEvent?.contains(#""holderIdentity":"""#) == true, "\(releasedEvent ?? "nothing")")
                let spec = try #require(try await env.client.getLease(namespace: ns, name: "held").spec)
                #expect(spec.holderIdentity == "" && spec.leaseTransitions == 3 && spec.leaseDurationSeconds == 1)
                let again = try await LeasectlHarness.run(["release", "kubernetes://\(ns)/held"] + kubeconfig)
                #expect(again.stdout == "lock kubernetes://\(ns)/held is already free (transitions 3)\n", "\(again)")

                // A Lease created later shows up in the namespace's watch; a deleted one is reported missing.
                _ = try await env.client.createLease(Lease(metadata: ObjectMeta(name: "late"), spec: LeaseSpec(
                    holderIdentity: "carol", leaseDurationSeconds: 15, acquireTime: .now(), renewTime: .now(), leaseTransitions: 0)),
                    namespace: ns)
                let late = await namespaceWatcher.next(timeout: .seconds(10))
                #expect(late?.contains(#""name":"late""#) == true && late?.contains(#""holderIdentity":"carol""#) == true, "\(late ?? "nothing")")
                try await env.client.deleteLease(namespace: ns, name: "late")
                let deleted = await namespaceWatcher.next(timeout: .seconds(10))
                #expect(deleted?.contains(#""name":"late""#) == true && deleted?.contains(#""error":"not found""#) == true, "\(deleted ?? "nothing")")

                #expect(await watcher.stop() == .exited(0))
                #expect(await namespaceWatcher.stop() == .exited(0))
                let missing = try await LeasectlHarness.run(["release", "kubernetes://\(ns)/nothing"] + kubeconfig)
                #expect(missing.status == .exited(1) && missing.stderr.contains("has no record"), "\(missing)")
            }
        }

        /// A sub-second --lease-duration cannot be stored in a Lease: rejected before any request.
        @Test(.timeLimit(.minutes(1)))
        func electRejectsASubSecondLeaseDuration() async throws {
            try await KubernetesTestEnvironment.with { env in
                let rejected = try await LeasectlHarness.run([
                    "elect", "--lock", "kubernetes://\(env.namespace)/fast", "--kubeconfig", env.kubeconfigPath,
                    "--lease-duration", "800ms", "--renew-deadline", "500ms", "--retry-period", "100ms",
                ])
                #expect(rejected.status == .exited(64), "a usage error: \(rejected)")
                #expect(rejected.stderr.contains("--lease-duration 800ms cannot be used with kubernetes://\(env.namespace)/fast"), "\(rejected)")
                #expect(rejected.stderr.contains("whole seconds"), "\(rejected)")
                await #expect(throws: KubernetesError.self, "nothing was written") {
                    try await env.client.getLease(namespace: env.namespace, name: "fast")
                }
            }
        }

        /// A wrong token: every command fails at once with the 401 and what to check, exit status 1.
        @Test(.timeLimit(.minutes(1)), .enabled(if: KubernetesTestEnvironment.localServerTestsRun,
                                                 "rewrites the local API server's kubeconfig"))
        func wrongTokenIsReportedAsRejectedCredentials() async throws {
            try await KubernetesTestEnvironment.with { env in
                let directory = try LeasectlHarness.temporaryDirectory()
                defer { LeasectlHarness.cleanUp(directory) }
                let token = try #require(env.token)
                let text = try String(contentsOfFile: env.kubeconfigPath, encoding: .utf8)
                #expect(text.contains("token: \(token)"))
                let wrong = "\(directory)/wrong-token.yaml"
                try text.replacingOccurrences(of: "token: \(token)", with: "token: not-the-token").write(toFile: wrong, atomically: true, encoding: .utf8)
                let ns = env.namespace
                let server = env.configuration.server

                let get = try await LeasectlHarness.run(["get", "--kubeconfig", wrong, "kubernetes://\(ns)/"])
                #expect(get.status == .exited(1), "\(get)")
                #expect(get.stderr.contains("the Kubernetes API server at \(server) rejected the credentials (HTTP 401)"), "\(get)")
                #expect(get.stderr.contains("from kubeconfig \(wrong) is missing, wrong or expired"), "\(get)")

                let elect = try await LeasectlHarness.run(
                    ["elect", "--lock", "kubernetes://\(ns)/x", "--kubeconfig", wrong, "--events", "json"], timeout: .seconds(15))
                #expect(elect.status == .exited(1), "a candidate the API server rejects gives up at once: \(elect)")
                #expect(elect.stderr.contains("cannot campaign on kubernetes://\(ns)/x"), "\(elect)")
                #expect(elect.stderr.contains("rejected the credentials (HTTP 401)"), "\(elect)")

                let release = try await LeasectlHarness.run(["release", "--kubeconfig", wrong, "kubernetes://\(ns)/x"])
                #expect(release.status == .exited(1), "\(release)")
                #expect(release.stderr.contains("cannot release lock kubernetes://\(ns)/x") && release.stderr.contains("HTTP 401"), "\(release)")

                let watch = try await LeasectlHarness.run(["get", "-w", "--kubeconfig", wrong, "kubernetes://\(ns)/"], timeout: .seconds(15))
                #expect(watch.status == .exited(1), "a watch with nothing left to follow ends: \(watch)")
                #expect(watch.stderr.contains("HTTP 401"), "\(watch)")
            }
        }

        /// Nothing listens at the kubeconfig's server: `get` fails with a clear message; `elect` says so and
        /// keeps campaigning until stopped.
        @Test(.timeLimit(.minutes(1)))
        func unreachableAPIServerIsReported() async throws {
            let directory = try LeasectlHarness.temporaryDirectory()
            defer { LeasectlHarness.cleanUp(directory) }
            let port = try EtcdServer.freePort()
            let kubeconfig = "\(directory)/kubeconfig"
            try """
                apiVersion: v1
                kind: Config
                clusters:
                - name: nowhere
                  cluster:
                    server: https://127.0.0.1:\(port)
                users:
                - name: u
                  user:
                    token: t
                contexts:
                - name: c
                  context:
                    cluster: nowhere
                    user: u
                    namespace: apps
                current-context: c

                """.write(toFile: kubeconfig, atomically: true, encoding: .utf8)

            let get = try await LeasectlHarness.run(["get", "--kubeconfig", kubeconfig, "kubernetes:///"])
            #expect(get.status == .exited(1), "\(get)")
            #expect(get.stderr.contains("Error: kubernetes://apps/: cannot reach the Kubernetes API server at https://127.0.0.1:\(port)"), "\(get)")
            #expect(get.stderr.contains("is the API server running there?"), "\(get)")
            let release = try await LeasectlHarness.run(["release", "--kubeconfig", kubeconfig, "kubernetes:///x"])
            #expect(release.status == .exited(1), "\(release)")
            #expect(release.stderr.contains("cannot release lock kubernetes://apps/x: cannot reach the Kubernetes API server"), "\(release)")

            let candidate = try OutputLines(
                ["elect", "--lock", "kubernetes:///x", "--kubeconfig", kubeconfig, "--identity", "lonely",
                 "--lease-duration", "2s", "--renew-deadline", "1500ms", "--retry-period", "300ms"],
                stream: .standardError)
            let note = await candidate.first(timeout: .seconds(10)) { $0.contains("cannot reach") }
            #expect(note?.hasPrefix("leasectl: lonely: cannot reach the Kubernetes API server at https://127.0.0.1:\(port)") == true, "\(note ?? "no note")")
            #expect(note?.hasSuffix("; retrying") == true, "\(note ?? "no note")")
            #expect(candidate.process.exitStatus == nil, "still campaigning")
            #expect(await candidate.stop(signal: SIGTERM) == .exited(0))

            // No kubeconfig at all.
            let none = try await LeasectlHarness.run(
                ["get", "kubernetes://"], environment: ["KUBECONFIG": "\(directory)/absent", "KUBERNETES_SERVICE_HOST": nil])
            #expect(none.status == .exited(1), "\(none)")
            #expect(none.stderr.contains("cannot load the Kubernetes client configuration: kubeconfig: file \(directory)/absent does not exist"), "\(none)")
        }

        /// The table rows of `get` output, split into cells.
        static func rows(_ output: String) -> [[String]] {
            output.split(separator: "\n").map { $0.split(separator: "   ").map { $0.trimmingCharacters(in: .whitespaces) } }
        }
    }
}
