import Foundation
import Kubernetes
import LeaderElection
import NIOHTTP1
import Testing

@Suite("Lease, Event and Namespace requests", .timeLimit(.minutes(1)))
struct LeaseAPITests {
    @Test func getSendsTheStandardHeaders() async throws {
        try await withServerAndClient(handler: { _, writer in
            try await writer.respond(.ok, json: leaseJSON(name: "x", resourceVersion: "42", holder: "node-1"))
        }) { server, client in
            let lease = try await client.getLease(namespace: "kube-system", name: "x")
            #expect(lease.metadata.resourceVersion == "42")
            #expect(lease.spec?.holderIdentity == "node-1")
            #expect(lease.spec?.renewTime?.rfc3339 == "2024-05-01T10:00:05.123456Z")

            let request = try #require(server.requests.first)
            #expect(request.method == .GET)
            #expect(request.uri == "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x")
            #expect(request.headers["Authorization"] == ["Bearer test-token"])
            #expect(request.headers["Accept"] == ["application/json"])
            #expect(request.headers["User-Agent"] == [KubernetesClient.userAgent])
        }
    }

    @Test func createPostsTheLease() async throws {
        try await withServerAndClient(handler: { request, writer in
            var lease = try KubernetesJSON.decode(Lease.self, from: Data(request.body))
            lease.metadata.uid = "new-uid"
            lease.metadata.resourceVersion = "7"
            try await writer.respond(.created, json: String(decoding: try KubernetesJSON.encode(lease), as: UTF8.self))
        }) { server, client in
            var spec = LeaseSpec(holderIdentity: "me", leaseDurationSeconds: 15, leaseTransitions: 0)
            spec.acquireTime = MicroTime(microsecondsSinceEpoch: 1_714_557_600_000_000)
            var lease = Lease(metadata: ObjectMeta(name: "lock"), spec: spec)
            lease.kind = nil
            lease.apiVersion = nil
            let created = try await client.createLease(lease, namespace: "default")
            #expect(created.metadata.resourceVersion == "7")
            #expect(created.metadata.uid == "new-uid")

            let request = try #require(server.requests.first)
            #expect(request.method == .POST)
            #expect(request.uri == "/apis/coordination.k8s.io/v1/namespaces/default/leases")
            #expect(request.headers["Content-Type"] == ["application/json"])
            #expect(request.bodyString.contains(#""kind":"Lease""#), "kind is filled in")
            #expect(request.bodyString.contains(#""apiVersion":"coordination.k8s.io/v1""#))
            #expect(request.bodyString.contains(#""acquireTime":"2024-05-01T10:00:00.000000Z""#))
        }
    }

    @Test func replacePutsToTheNameWithTheResourceVersionAndUnknownFields() async throws {
        let stored = """
            {"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"name":"lock","namespace":"default",\
            "resourceVersion":"10","finalizers":["keep"],"managedFields":[{"manager":"m"}]},"spec":{"holderIdentity":"a"}}
            """
        try await withServerAndClient(handler: { request, writer in
            if request.method == .GET {
                try await writer.respond(.ok, json: stored)
            } else {
                try await writer.respond(.ok, json: leaseJSON(name: "lock", resourceVersion: "11", holder: "b"))
            }
        }) { server, client in
            var lease = try await client.getLease(namespace: "default", name: "lock")
            lease.spec?.holderIdentity = "b"
            let replaced = try await client.replaceLease(lease, namespace: "default")
            #expect(replaced.metadata.resourceVersion == "11")

            let put = try #require(server.requests.last)
            #expect(put.method == .PUT)
            #expect(put.uri == "/apis/coordination.k8s.io/v1/namespaces/default/leases/lock")
            let sent = try KubernetesJSON.decode(Lease.self, from: Data(put.body))
            #expect(sent.metadata.resourceVersion == "10")
            #expect(sent.spec?.holderIdentity == "b")
            #expect(sent.metadata.additionalFields["finalizers"] == .array([.string("keep")]))
            #expect(sent.metadata.additionalFields["managedFields"] != nil)
        }
    }

    @Test func replaceWithoutANameIsRejectedLocally() async throws {
        try await withServerAndClient(handler: { _, writer in
            try await writer.respond(.ok, json: "{}")
        }) { server, client in
            let error = await kubernetesError { _ = try await client.replaceLease(Lease(metadata: ObjectMeta()), namespace: "default") }
            #expect(error?.code == .invalid)
            #expect(server.requests.isEmpty)
        }
    }

    @Test func deleteAcceptsTheSuccessStatus() async throws {
        try await withServerAndClient(handler: { _, writer in
            try await writer.respond(.ok, json: #"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"lock","group":"coordination.k8s.io","kind":"leases","uid":"u"}}"#)
        }) { server, client in
            try await client.deleteLease(namespace: "default", name: "lock")
            let request = try #require(server.requests.first)
            #expect(request.method == .DELETE)
            #expect(request.uri == "/apis/coordination.k8s.io/v1/namespaces/default/leases/lock")
        }
    }

    @Test func listInANamespaceAndClusterWideWithEncodedSelectors() async throws {
        try await withServerAndClient(handler: { _, writer in
            try await writer.respond(.ok, json: leaseListJSON(resourceVersion: "99", leases: [leaseJSON(name: "a"), leaseJSON(name: "b")]))
        }) { server, client in
            let list = try await client.listLeases(namespace: "default", labelSelector: "app in (web,api),tier!=cache")
            #expect(list.items.count == 2)
            #expect(list.metadata.resourceVersion == "99")
            _ = try await client.listLeases(namespace: nil)

            let requests = server.requests
            #expect(requests[0].path == "/apis/coordination.k8s.io/v1/namespaces/default/leases")
            #expect(requests[0].rawQuery == "labelSelector=app%20in%20%28web%2Capi%29%2Ctier%21%3Dcache")
            #expect(requests[0].query["labelSelector"] == "app in (web,api),tier!=cache")
            #expect(requests[1].uri == "/apis/coordination.k8s.io/v1/leases")
        }
    }

    @Test func leaderElectionEventHasClientGosShape() async throws {
        try await withServerAndClient(handler: { request, writer in
            if request.method == .POST {
                try await writer.respond(.created, json: request.bodyString)
            } else {
                try await writer.respond(.ok, json: #"{"kind":"EventList","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":[]}"#)
            }
        }) { server, client in
            let lease = try KubernetesJSON.decode(Lease.self, from: Data(leaseJSON(name: "lock", namespace: "ops", resourceVersion: "12").utf8))
            let event = try await client.recordLeaderElectionEvent(lease: lease, message: "node-1 became leader", component: "leasectl", instance: "node-1")
            let request = try #require(server.requests.first)
            #expect(request.uri == "/api/v1/namespaces/ops/events")
            #expect(event.type == "Normal")
            #expect(event.reason == "LeaderElection")
            #expect(event.message == "node-1 became leader")
            #expect(event.count == 1)
            #expect(event.source?.component == "leasectl")
            #expect(event.reportingComponent == "leasectl")
            #expect(event.reportingInstance == "node-1")
            #expect(event.involvedObject == ObjectReference(
                apiVersion: "coordination.k8s.io/v1", kind: "Lease", namespace: "ops", name: "lock", uid: "uid-lock", resourceVersion: "12"
            ))
            let name = try #require(event.metadata.name)
            #expect(name.hasPrefix("lock."))
            #expect(name.dropFirst(5).allSatisfy(\.isHexDigit) && name.count > 5)
            let timestamp = try #require(event.firstTimestamp)
            #expect(timestamp == event.lastTimestamp)
            #expect(timestamp.count == 20 && timestamp.hasSuffix("Z") && !timestamp.contains("."))
            #expect(MicroTime(rfc3339: timestamp) != nil)
            #expect(request.bodyString.contains(#""kind":"Event""#))

            _ = try await client.listEvents(namespace: "ops", fieldSelector: "involvedObject.name=lock")
            #expect(server.requests[1].uri == "/api/v1/namespaces/ops/events?fieldSelector=involvedObject.name%3Dlock")
        }
    }

    @Test func namespacesAreCreatedAndDeleted() async throws {
        try await withServerAndClient(handler: { request, writer in
            if request.method == .POST {
                try await writer.respond(.created, json: #"{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"le-test","uid":"u"}}"#)
            } else {
                try await writer.respond(.ok, json: #"{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"le-test"},"status":{"phase":"Terminating"}}"#)
            }
        }) { server, client in
            let namespace = try await client.createNamespace("le-test")
            #expect(namespace.metadata.uid == "u")
            try await client.deleteNamespace("le-test")
            let requests = server.requests
            #expect(requests[0].method == .POST)
            #expect(requests[0].uri == "/api/v1/namespaces")
            #expect(requests[0].bodyString.contains(#""name":"le-test""#))
            #expect(requests[1].method == .DELETE)
            #expect(requests[1].uri == "/api/v1/namespaces/le-test")
        }
    }

    @Test func serverPathPrefixIsKept() async throws {
        try await withServer(handler: { _, writer in
            try await writer.respond(.ok, json: leaseJSON())
        }) { server in
            try await withClient(KubernetesConfiguration(server: server.url + "/k8s/clusters/c-1/")) { client in
                _ = try await client.getLease(namespace: "default", name: "lock")
                #expect(server.requests.first?.uri == "/k8s/clusters/c-1/apis/coordination.k8s.io/v1/namespaces/default/leases/lock")
                #expect(server.requests.first?.headers["Authorization"] == [], "no credentials, no header")
            }
        }
    }

    @Test func requestTimeoutForRenewDeadline() {
        #expect(KubernetesConfiguration.requestTimeout(forRenewDeadline: .seconds(10)) == .seconds(5))
        #expect(KubernetesConfiguration.requestTimeout(forRenewDeadline: .seconds(1)) == .seconds(1))
        #expect(KubernetesConfiguration.requestTimeout(forRenewDeadline: .milliseconds(2500)) == .milliseconds(1250))
    }

    @Test func descriptionRedactsTheToken() {
        let configuration = KubernetesConfiguration(server: "https://k:6443", credentials: .bearerToken("s3cr3t"), clientKeyPEM: "KEY")
        #expect(!configuration.description.contains("s3cr3t"))
        #expect(!configuration.description.contains("KEY"))
    }
}
