import Etcd
import Foundation
import Kubernetes
import Testing

@Suite struct EventNamespaceTests {
    private func eventJSON(namespace: String, lease: String, name: String? = nil, message: String) -> String {
        let metadata = name.map { #"{"name":"\#($0)"}"# } ?? #"{"generateName":"\#(lease)."}"#
        return """
            {"apiVersion":"v1","kind":"Event","metadata":\(metadata),\
            "involvedObject":{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","namespace":"\(namespace)","name":"\(lease)"},\
            "reason":"LeaderElection","message":"\(message)","type":"Normal","source":{"component":"tests"},\
            "firstTimestamp":"2024-05-01T10:00:00Z","lastTimestamp":"2024-05-01T10:00:00Z","count":1}
            """
    }

    @Test func eventsAreCreatedWithGeneratedNamesAndListedByInvolvedObject() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let path = "/api/v1/namespaces/\(namespace)/events"
            let created = try await fixture.request("POST", path, body: eventJSON(namespace: namespace, lease: "lock", message: "a became leader"))
            #expect(created.status == 201, "\(created)")
            let event = try created.decode(CoreEvent.self)
            let name = try #require(event.metadata.name)
            #expect(name.hasPrefix("lock.") && name.count == "lock.".count + 5)
            #expect(event.metadata.uid != nil && event.metadata.namespace == namespace)
            #expect(event.reason == "LeaderElection" && event.message == "a became leader" && event.count == 1)
            let kv = try #require(try await fixture.etcdValue("/events/\(namespace)/\(name)"))
            #expect(event.metadata.resourceVersion == String(kv.modRevision))

            #expect(try await fixture.request("POST", path, body: eventJSON(namespace: namespace, lease: "other", message: "b became leader")).status == 201)
            #expect(try await fixture.request("POST", path, body: eventJSON(namespace: namespace, lease: "lock", name: "fixed", message: "c")).status == 201)

            let all = try await fixture.get(path).decode(EventList.self)
            #expect(all.kind == "EventList" && all.items.count == 3)
            let forLock = try await fixture.get(path + "?fieldSelector=involvedObject.name%3Dlock,involvedObject.kind%3DLease").decode(EventList.self)
            #expect(Set(forLock.items.compactMap(\.metadata.name)) == [name, "fixed"])
            let fetched = try await fixture.get(path + "/fixed")
            #expect(try fetched.decode(CoreEvent.self).message == "c")

            let mismatch = try await fixture.request("POST", path, body: eventJSON(namespace: "elsewhere", lease: "lock", message: "x"))
            #expect(mismatch.status == 422)
            #expect(try mismatch.decode(Status.self).message?.hasSuffix(#"is invalid: involvedObject.namespace: Invalid value: "elsewhere": does not match event.namespace"#) == true)
            let badField = try await fixture.get(path + "?fieldSelector=spec.foo%3Dbar")
            #expect(try badField.decode(Status.self) == failure(400, "BadRequest", "field label not supported: spec.foo"))
        }
    }

    @Test func namespacesAreCreatedAndTheirDeletionRemovesTheirObjects() async throws {
        try await ServerFixture.with { fixture in
            let name = uniqueNamespace()
            let body = #"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"\#(name)"}}"#
            let created = try await fixture.request("POST", "/api/v1/namespaces", body: body)
            #expect(created.status == 201, "\(created)")
            let namespace = try created.decode(Namespace.self)
            #expect(namespace.metadata.name == name && namespace.metadata.labels?["kubernetes.io/metadata.name"] == name)
            #expect((created.json["status"] as? [String: Any])?["phase"] as? String == "Active")
            let again = try await fixture.request("POST", "/api/v1/namespaces", body: body)
            #expect(try again.decode(Status.self) == failure(409, "AlreadyExists", #"namespaces "\#(name)" already exists"#, .init(name: name, kind: "namespaces")))
            #expect(try await fixture.get("/api/v1/namespaces/\(name)").status == 200)

            // Objects in it, and a namespace whose name starts the same (must survive).
            #expect(try await fixture.request("POST", leasesPath(name), body: leaseJSON("a")).status == 201)
            #expect(try await fixture.request("POST", leasesPath(name), body: leaseJSON("b")).status == 201)
            #expect(try await fixture.request("POST", "/api/v1/namespaces", body: #"{"metadata":{"name":"\#(name)x"}}"#).status == 201)
            #expect(try await fixture.request("POST", leasesPath(name + "x"), body: leaseJSON("c")).status == 201)
            let event = #"{"metadata":{"name":"e"},"involvedObject":{"kind":"Lease","namespace":"\#(name)","name":"a"},"reason":"r"}"#
            #expect(try await fixture.request("POST", "/api/v1/namespaces/\(name)/events", body: event).status == 201)

            let deleted = try await fixture.request("DELETE", "/api/v1/namespaces/\(name)")
            #expect(deleted.status == 200, "\(deleted)")
            #expect((deleted.json["status"] as? [String: Any])?["phase"] as? String == "Terminating")
            #expect(try await fixture.get("/api/v1/namespaces/\(name)").status == 404)
            #expect(try await fixture.etcd.get(prefix: fixture.prefix + "/leases/\(name)/").isEmpty)
            #expect(try await fixture.etcd.get(prefix: fixture.prefix + "/events/\(name)/").isEmpty)
            #expect(try await fixture.get(leasesPath(name + "x") + "/c").status == 200)
            #expect(try await fixture.get(leasesPath(name)).decode(LeaseList.self).items.isEmpty)

            let invalid = try await fixture.request("POST", "/api/v1/namespaces", body: #"{"metadata":{"name":"a.b"}}"#)
            #expect(invalid.status == 422)
            #expect(try invalid.decode(Status.self).details?.kind == "Namespace")
        }
    }

    @Test func systemNamespacesExistAndAreProtected() async throws {
        try await ServerFixture.with { fixture in
            try await eventually("the system namespaces to be created") {
                try await fixture.get("/api/v1/namespaces/kube-node-lease").status == 200
            }
            let list = try await fixture.get("/api/v1/namespaces")
            let names = ((list.json["items"] as? [[String: Any]]) ?? []).compactMap { ($0["metadata"] as? [String: Any])?["name"] as? String }
            #expect(Set(names).isSuperset(of: ["default", "kube-system", "kube-public", "kube-node-lease"]))
            let response = try await fixture.request("DELETE", "/api/v1/namespaces/default")
            #expect(try response.decode(Status.self) == failure(
                403, "Forbidden", #"namespaces "default" is forbidden: this namespace may not be deleted"#, .init(name: "default", kind: "namespaces")))
        }
    }
}
