import Etcd
import Foundation
import Kubernetes
import LeaderElection
import Testing

/// Every row of the observed kube-apiserver table (`kube-apiserver-lease-behaviour.md`), byte for byte in the
/// Status fields, plus the storage contract (resourceVersion = etcd mod_revision).
@Suite struct LeaseRESTTests {
    private let group = "coordination.k8s.io"

    @Test func getOfAMissingLeaseIsNotFound() async throws {
        try await ServerFixture.with { fixture in
            let response = try await fixture.get(leasesPath("default") + "/x")
            #expect(response.status == 404)
            #expect(response.contentType == "application/json")
            #expect(try response.decode(Status.self) == failure(
                404, "NotFound", #"leases.coordination.k8s.io "x" not found"#, .init(name: "x", group: group, kind: "leases")))
            let json = response.json
            #expect(json["kind"] as? String == "Status" && json["apiVersion"] as? String == "v1")
            #expect((json["metadata"] as? [String: Any])?.isEmpty == true)
        }
    }

    @Test func createReturns201WithServerFieldsAndStoresAtTheKubeKey() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let body = leaseJSON("lock", labels: ["app": "demo"], extraMetadata: #""annotations":{"note":"kept"},"finalizers":["example.com/keep"]"#,
                                 extraSpec: #""acquireTime":"2024-05-01T12:00:00.000000+02:00","renewTime":"2024-05-01T10:00:01.500000Z","leaseTransitions":2"#)
            let response = try await fixture.request("POST", leasesPath(namespace), body: body)
            #expect(response.status == 201, "\(response)")
            let lease = try response.decode(Lease.self)
            #expect(lease.apiVersion == "coordination.k8s.io/v1" && lease.kind == "Lease")
            #expect(lease.metadata.name == "lock" && lease.metadata.namespace == namespace)
            let uid = try #require(lease.metadata.uid)
            #expect(UUID(uuidString: uid) != nil)
            let created = try #require(lease.metadata.creationTimestamp)
            #expect(created.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"#, options: .regularExpression) != nil, "\(created)")
            #expect(lease.metadata.labels == ["app": "demo"] && lease.metadata.annotations == ["note": "kept"])
            #expect(lease.metadata.additionalFields["finalizers"] == .array([.string("example.com/keep")]))
            // Spec times come back as MicroTime in UTC: six fractional digits and Z (kube accepts only six digits,
            // but any offset).
            let spec = try #require(response.json["spec"] as? [String: Any])
            #expect(spec["acquireTime"] as? String == "2024-05-01T10:00:00.000000Z")
            #expect(spec["renewTime"] as? String == "2024-05-01T10:00:01.500000Z")
            #expect(spec["leaseDurationSeconds"] as? Int == 15 && spec["leaseTransitions"] as? Int == 2)

            // Stored where kube-apiserver stores it, without resourceVersion; the resourceVersion is the mod revision.
            let kv = try #require(try await fixture.etcdValue("/leases/\(namespace)/lock"))
            #expect(lease.metadata.resourceVersion == String(kv.modRevision))
            let stored = try #require(try JSONSerialization.jsonObject(with: Data(kv.value)) as? [String: Any])
            let storedMetadata = try #require(stored["metadata"] as? [String: Any])
            #expect(storedMetadata["resourceVersion"] == nil)
            #expect(storedMetadata["uid"] as? String == uid)
            #expect(stored["kind"] as? String == "Lease")

            // GET reports the same.
            let read = try await fixture.get(leasesPath(namespace) + "/lock")
            #expect(read.status == 200)
            #expect(try read.decode(Lease.self) == lease)
        }
    }

    @Test func createOfAnExistingLeaseIsAlreadyExists() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            #expect(try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x")).status == 201)
            let response = try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x"))
            #expect(response.status == 409)
            #expect(try response.decode(Status.self) == failure(
                409, "AlreadyExists", #"leases.coordination.k8s.io "x" already exists"#, .init(name: "x", group: group, kind: "leases")))
        }
    }

    @Test func replaceWithTheCurrentVersionSucceedsAndKeepsServerFields() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let created = try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x")).decode(Lease.self)
            let version = try #require(created.metadata.resourceVersion)
            // The client sends another creationTimestamp and no uid: both keep their stored values.
            let body = leaseJSON("x", resourceVersion: version, holder: "holder-b", transitions: 1,
                                 labels: ["role": "leader"],
                                 extraMetadata: #""creationTimestamp":"2001-01-01T00:00:00Z","ownerReferences":[{"apiVersion":"v1","kind":"Node","name":"n1","uid":"u-1"}]"#)
            let response = try await fixture.request("PUT", leasesPath(namespace) + "/x", body: body)
            #expect(response.status == 200, "\(response)")
            let updated = try response.decode(Lease.self)
            #expect(updated.metadata.uid == created.metadata.uid)
            #expect(updated.metadata.creationTimestamp == created.metadata.creationTimestamp)
            #expect(updated.metadata.labels == ["role": "leader"])
            #expect(updated.metadata.ownerReferences == [OwnerReference(apiVersion: "v1", kind: "Node", name: "n1", uid: "u-1")])
            #expect(updated.spec?.holderIdentity == "holder-b" && updated.spec?.leaseTransitions == 1)
            let newVersion = try #require(updated.metadata.resourceVersion.flatMap { Int64($0) })
            #expect(newVersion > Int64(version)!)
            let kv = try #require(try await fixture.etcdValue("/leases/\(namespace)/x"))
            #expect(kv.modRevision == newVersion)
        }
    }

    @Test func replaceWithAStaleVersionIsConflict() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let created = try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x")).decode(Lease.self)
            let version = try #require(created.metadata.resourceVersion)
            let first = try await fixture.request("PUT", leasesPath(namespace) + "/x", body: leaseJSON("x", resourceVersion: version, holder: "b"))
            #expect(first.status == 200)
            let stale = try await fixture.request("PUT", leasesPath(namespace) + "/x", body: leaseJSON("x", resourceVersion: version, holder: "c"))
            #expect(stale.status == 409)
            #expect(try stale.decode(Status.self) == failure(
                409, "Conflict",
                #"Operation cannot be fulfilled on leases.coordination.k8s.io "x": the object has been modified; please apply your changes to the latest version and try again"#,
                .init(name: "x", group: group, kind: "leases")))
            // The stale write changed nothing.
            #expect(try await fixture.get(leasesPath(namespace) + "/x").decode(Lease.self).spec?.holderIdentity == "b")
        }
    }

    @Test func replaceOfAnExistingLeaseWithoutResourceVersionIsInvalid() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            #expect(try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x")).status == 201)
            let response = try await fixture.request("PUT", leasesPath(namespace) + "/x", body: leaseJSON("x", holder: "b"))
            #expect(response.status == 422)
            #expect(try response.decode(Status.self) == failure(
                422, "Invalid",
                #"leases.coordination.k8s.io "x" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"#,
                .init(name: "x", group: group, kind: "leases", causes: [
                    .init(reason: "FieldValueInvalid", message: "Invalid value: 0x0: must be specified for an update", field: "metadata.resourceVersion"),
                ])))
        }
    }

    @Test(arguments: [nil, "12345"])
    func replaceOfAMissingLeaseCreatesIt(resourceVersion: String?) async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let response = try await fixture.request("PUT", leasesPath(namespace) + "/new", body: leaseJSON("new", resourceVersion: resourceVersion))
            #expect(response.status == 201, "\(response)")
            let lease = try response.decode(Lease.self)
            #expect(lease.metadata.uid != nil && lease.metadata.creationTimestamp != nil)
            let kv = try #require(try await fixture.etcdValue("/leases/\(namespace)/new"))
            #expect(lease.metadata.resourceVersion == String(kv.modRevision))
        }
    }

    @Test func validationReportsEveryFieldAsACause() async throws {
        try await ServerFixture.with { fixture in
            let response = try await fixture.request("POST", leasesPath(try await fixture.namespace()), body: leaseJSON("x", duration: 0, transitions: -1))
            #expect(response.status == 422)
            #expect(try response.decode(Status.self) == failure(
                422, "Invalid",
                #"Lease.coordination.k8s.io "x" is invalid: [spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0, spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0]"#,
                .init(name: "x", group: group, kind: "Lease", causes: [
                    .init(reason: "FieldValueInvalid", message: "Invalid value: 0: must be greater than 0", field: "spec.leaseDurationSeconds"),
                    .init(reason: "FieldValueInvalid", message: "Invalid value: -1: must be greater than or equal to 0", field: "spec.leaseTransitions"),
                ])))
        }
    }

    @Test func writesInAMissingNamespaceAreNotFound() async throws {
        try await ServerFixture.with { fixture in
            let missing = uniqueNamespace("missing")
            let created = try await fixture.request("POST", leasesPath(missing), body: leaseJSON("x"))
            #expect(try created.decode(Status.self) == failure(
                404, "NotFound", #"namespaces "\#(missing)" not found"#, .init(name: missing, kind: "namespaces")))
            let replaced = try await fixture.request("PUT", leasesPath(missing) + "/x", body: leaseJSON("x"))
            #expect(replaced.status == 404)
            #expect(try await fixture.get(leasesPath(missing) + "/x").status == 404)
            // The system namespaces exist from the start.
            #expect(try await fixture.request("POST", leasesPath("kube-node-lease"), body: leaseJSON("node-a")).status == 201)
        }
    }

    @Test func gatedFieldsAreUnknownFieldsIn126() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let body = leaseJSON("x", extraSpec: #""preferredHolder":"b","strategy":"OldestEmulationVersion""#)
            let created = try await fixture.request("POST", leasesPath(namespace), body: body)
            #expect(created.status == 201, "\(created)")
            #expect(created.warnings == [#"299 - "unknown field \"spec.preferredHolder\"""#, #"299 - "unknown field \"spec.strategy\"""#])
            let stored = try await fixture.get(leasesPath(namespace) + "/x").decode(Lease.self)
            #expect(stored.spec?.preferredHolder == nil)
            #expect(stored.spec?.strategy == nil)

            let strict = try await fixture.request("POST", leasesPath(namespace) + "?fieldValidation=Strict", body: leaseJSON("y", extraSpec: #""preferredHolder":"b""#))
            #expect(strict.status == 400)
            #expect(try strict.decode(Status.self).message
                == #"Lease in version "v1" cannot be handled as a Lease: strict decoding error: unknown field "spec.preferredHolder""#)
            let ignored = try await fixture.request("POST", leasesPath(namespace) + "?fieldValidation=Ignore", body: leaseJSON("z", extraSpec: #""preferredHolder":"b""#))
            #expect(ignored.status == 201)
            #expect(ignored.warnings.isEmpty)
            let bogus = try await fixture.request("POST", leasesPath(namespace) + "?fieldValidation=strict", body: leaseJSON("w"))
            #expect(bogus.status == 422)
        }
    }

    @Test func validationOfOneFieldHasNoBrackets() async throws {
        try await ServerFixture.with(generation: .v1_31CoordinatedLeaderElection) { fixture in
            let namespace = try await fixture.namespace()
            let preferred = try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x", extraSpec: #""preferredHolder":"b""#))
            #expect(preferred.status == 422)
            #expect(try preferred.decode(Status.self) == failure(
                422, "Invalid", #"Lease.coordination.k8s.io "x" is invalid: spec.preferredHolder: Forbidden: may only be specified if `strategy` is defined"#,
                .init(name: "x", group: group, kind: "Lease", causes: [
                    .init(reason: "FieldValueForbidden", message: "Forbidden: may only be specified if `strategy` is defined", field: "spec.preferredHolder"),
                ])))
            // With a strategy it is fine.
            let withStrategy = try await fixture.request(
                "POST", leasesPath(namespace), body: leaseJSON("y", extraSpec: #""preferredHolder":"b","strategy":"OldestEmulationVersion""#))
            #expect(withStrategy.status == 201, "\(withStrategy)")

            let badName = try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("Bad_Name"))
            #expect(badName.status == 422)
            let status = try badName.decode(Status.self)
            #expect(status.message == #"Lease.coordination.k8s.io "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#)
            #expect(status.details?.causes?.map(\.field) == ["metadata.name"])

            let noName = try await fixture.request("POST", leasesPath(namespace), body: #"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{}}"#)
            #expect(try noName.decode(Status.self) == failure(
                422, "Invalid", #"Lease.coordination.k8s.io "" is invalid: metadata.name: Required value: name or generateName is required"#,
                .init(group: group, kind: "Lease", causes: [
                    .init(reason: "FieldValueRequired", message: "Required value: name or generateName is required", field: "metadata.name"),
                ])))
        }
    }

    @Test func replaceValidatesAndProtectsTheUID() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let created = try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x")).decode(Lease.self)
            let version = try #require(created.metadata.resourceVersion)
            let invalid = try await fixture.request("PUT", leasesPath(namespace) + "/x", body: leaseJSON("x", resourceVersion: version, duration: -3))
            #expect(invalid.status == 422)
            #expect(try invalid.decode(Status.self).message == #"Lease.coordination.k8s.io "x" is invalid: spec.leaseDurationSeconds: Invalid value: -3: must be greater than 0"#)
            let otherUID = try await fixture.request(
                "PUT", leasesPath(namespace) + "/x", body: leaseJSON("x", resourceVersion: version, extraMetadata: #""uid":"not-the-uid""#))
            // kube's DefaultUpdatedObjectInfo makes a sent uid a precondition, checked before validation.
            #expect(otherUID.status == 409)
            let otherStatus = try otherUID.decode(Status.self)
            #expect(otherStatus.reason == "Conflict")
            #expect(otherStatus.message?.hasPrefix(#"Operation cannot be fulfilled on leases.coordination.k8s.io "x": StorageError: invalid object, Code: 4, Key: "#) == true)
            #expect(otherStatus.message?.hasSuffix("AdditionalErrorMsg: Precondition failed: UID in precondition: not-the-uid, UID in object meta: \(created.metadata.uid!)") == true)
            // …so a PUT carrying a uid never re-creates a missing object.
            let missing = try await fixture.request(
                "PUT", leasesPath(namespace) + "/gone", body: leaseJSON("gone", resourceVersion: version, extraMetadata: #""uid":"\#(created.metadata.uid!)""#))
            #expect(missing.status == 409)
            #expect(try missing.decode(Status.self).message?.hasSuffix("Precondition failed: UID in precondition: \(created.metadata.uid!), UID in object meta: ") == true)
            #expect(try await fixture.request("GET", leasesPath(namespace) + "/gone").status == 404)
            let sameUID = try await fixture.request(
                "PUT", leasesPath(namespace) + "/x", body: leaseJSON("x", resourceVersion: version, extraMetadata: #""uid":"\#(created.metadata.uid!)""#))
            #expect(sameUID.status == 200)
        }
    }

    @Test func requestErrorsAreBadRequests() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let mismatch = try await fixture.request("PUT", leasesPath(namespace) + "/x", body: leaseJSON("other"))
            #expect(mismatch.status == 400)
            #expect(try mismatch.decode(Status.self) == failure(400, "BadRequest", "the name of the object (other) does not match the name on the URL (x)"))

            let malformed = try await fixture.request("POST", leasesPath(namespace), body: #"{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"#)
            #expect(malformed.status == 400)
            let status = try malformed.decode(Status.self)
            #expect(status.reason == "BadRequest" && status.code == 400 && status.details == nil)
            #expect(status.message?.hasPrefix("the object provided is unrecognized (must be of type Lease): couldn't get version/kind; json parse error: ") == true,
                    "\(status.message ?? "")")

            let wrongType = try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x", extraSpec: #""renewTime":"yesterday""#))
            #expect(wrongType.status == 400)
            #expect(try wrongType.decode(Status.self).message?.hasPrefix(#"Lease in version "v1" cannot be handled as a Lease: "#) == true)

            let otherNamespace = try await fixture.request(
                "POST", leasesPath(namespace), body: leaseJSON("x", extraMetadata: #""namespace":"elsewhere""#))
            #expect(try otherNamespace.decode(Status.self) == failure(
                400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request"))

            let withVersion = try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x", resourceVersion: "7"))
            #expect(try withVersion.decode(Status.self) == failure(500, nil, "resourceVersion should not be set on objects to be created"))
        }
    }

    @Test func deleteAnswersASuccessStatusWithTheUID() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let created = try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x")).decode(Lease.self)
            let response = try await fixture.request("DELETE", leasesPath(namespace) + "/x")
            #expect(response.status == 200)
            var expected = Status(status: "Success", details: .init(name: "x", group: group, kind: "leases", uid: created.metadata.uid), code: 0)
            expected.code = nil
            #expect(try response.decode(Status.self) == expected)
            #expect(try await fixture.etcdValue("/leases/\(namespace)/x") == nil)
            let again = try await fixture.request("DELETE", leasesPath(namespace) + "/x")
            #expect(try again.decode(Status.self) == failure(
                404, "NotFound", #"leases.coordination.k8s.io "x" not found"#, .init(name: "x", group: group, kind: "leases")))
        }
    }

    @Test func deletePreconditionsAreChecked() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let created = try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x")).decode(Lease.self)
            let wrong = try await fixture.request("DELETE", leasesPath(namespace) + "/x", body: #"{"preconditions":{"uid":"nope"}}"#)
            #expect(wrong.status == 409)
            #expect(try wrong.decode(Status.self).reason == "Conflict")
            let right = try await fixture.request(
                "DELETE", leasesPath(namespace) + "/x",
                body: #"{"preconditions":{"uid":"\#(created.metadata.uid!)","resourceVersion":"\#(created.metadata.resourceVersion!)"}}"#)
            #expect(right.status == 200)
        }
    }

    @Test func aWrongTokenIsUnauthorizedAndNoTokenIsAnonymousAndForbidden() async throws {
        try await ServerFixture.with { fixture in
            let wrong = try await fixture.get(leasesPath("default") + "/x", token: "wrong-token")
            #expect(wrong.status == 401)
            #expect(try wrong.decode(Status.self) == failure(401, "Unauthorized", "Unauthorized"))
            #expect(wrong.json["details"] == nil)
            // kube-apiserver with anonymous authentication and RBAC: no token is `system:anonymous`, refused by RBAC.
            let anonymous = try await fixture.get(leasesPath("default") + "/x", token: nil)
            #expect(try anonymous.decode(Status.self) == failure(
                403, "Forbidden",
                #"leases.coordination.k8s.io "x" is forbidden: User "system:anonymous" cannot get resource "leases" in API group "coordination.k8s.io" in the namespace "default""#,
                .init(name: "x", group: group, kind: "leases")))
            let list = try await fixture.get("/api/v1/namespaces", token: nil)
            #expect(try list.decode(Status.self).message
                == #"namespaces is forbidden: User "system:anonymous" cannot list resource "namespaces" in API group "" at the cluster scope"#)
            // Health and version are public; a wrong token is still refused there.
            #expect(try await fixture.get("/healthz", token: nil).text == "ok")
            #expect(try await fixture.get("/version", token: nil).status == 200)
            #expect(try await fixture.get("/healthz", token: "wrong-token").status == 401)
        }
    }

    @Test func unknownPathsAndMethods() async throws {
        try await ServerFixture.with { fixture in
            let unknown = try await fixture.get("/apis/example.com/v1/widgets")
            #expect(try unknown.decode(Status.self) == failure(404, "NotFound", "the server could not find the requested resource", .init()))
            // PATCH needs a patch media type (kube's 415), and is a 405 on a collection.
            let patch = try await fixture.request("PATCH", leasesPath("default") + "/x", body: "{}")
            #expect(try patch.decode(Status.self) == failure(415, "UnsupportedMediaType", "415: Unsupported Media Type", .init()))
            let collectionPatch = try await fixture.request("PATCH", leasesPath("default"), body: "{}")
            #expect(try collectionPatch.decode(Status.self) == failure(
                405, "MethodNotAllowed", #"patch is not supported on resources of kind "leases.coordination.k8s.io""#,
                .init(group: group, kind: "leases")))
            let clusterPost = try await fixture.request("POST", "/apis/coordination.k8s.io/v1/leases", body: leaseJSON("x"))
            #expect(clusterPost.status == 405)
            let health = try await fixture.get("/readyz")
            #expect(health.status == 200 && health.text == "ok")
            let discovery = try await fixture.get("/apis/coordination.k8s.io/v1")
            #expect((discovery.json["resources"] as? [[String: Any]])?.first?["name"] as? String == "leases")
        }
    }
}
