import Foundation
import Kubernetes
import LeaderElection
import Testing

@Suite("Model JSON")
struct ModelJSONTests {
    /// A Lease as a real API server returns it, with metadata this client does not model.
    let serverLease = """
        {"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"name":"x","namespace":"default",\
        "uid":"0b5f7c1e","resourceVersion":"4711","generation":3,"creationTimestamp":"2024-05-01T10:00:00Z",\
        "finalizers":["example.com/keep"],"managedFields":[{"manager":"kube-controller-manager","operation":"Update",\
        "apiVersion":"coordination.k8s.io/v1","time":"2024-05-01T10:00:00Z","fieldsType":"FieldsV1",\
        "fieldsV1":{"f:spec":{"f:holderIdentity":{},"f:leaseDurationSeconds":{}}}}]},\
        "spec":{"holderIdentity":"node-1","leaseDurationSeconds":15,"acquireTime":"2024-05-01T10:00:00.000000Z",\
        "renewTime":"2024-05-01T10:00:05.123456Z","leaseTransitions":2}}
        """

    @Test func unknownMetadataFieldsSurviveDecodeAndEncode() throws {
        let lease = try KubernetesJSON.decode(Lease.self, from: Data(serverLease.utf8))
        #expect(lease.metadata.name == "x")
        #expect(lease.metadata.resourceVersion == "4711")
        #expect(lease.metadata.additionalFields["finalizers"] == .array([.string("example.com/keep")]))
        #expect(lease.metadata.additionalFields["generation"] == .number(3))
        #expect(lease.metadata.additionalFields["managedFields"] != nil)

        let encoded = try KubernetesJSON.encode(lease)
        let original = try KubernetesJSON.decode(JSONValue.self, from: Data(serverLease.utf8))
        let roundTripped = try KubernetesJSON.decode(JSONValue.self, from: encoded)
        #expect(original == roundTripped)
        let text = String(decoding: encoded, as: UTF8.self)
        #expect(text.contains("\"apiVersion\":\"coordination.k8s.io/v1\""), "slashes are not escaped")
        #expect(text.contains("\"generation\":3"), "integers stay integers")
    }

    @Test func microTimeIsWrittenWithSixDigitsAndZ() throws {
        var spec = LeaseSpec(holderIdentity: "a", leaseDurationSeconds: 15)
        spec.acquireTime = MicroTime(microsecondsSinceEpoch: 1_714_557_600_000_000)  // 2024-05-01T10:00:00Z
        spec.renewTime = MicroTime(microsecondsSinceEpoch: 1_714_557_605_000_042)
        let lease = Lease(metadata: ObjectMeta(name: "x"), spec: spec)
        let text = String(decoding: try KubernetesJSON.encode(lease), as: UTF8.self)
        #expect(text.contains("\"acquireTime\":\"2024-05-01T10:00:00.000000Z\""))
        #expect(text.contains("\"renewTime\":\"2024-05-01T10:00:05.000042Z\""))
    }

    @Test func pythonStyleOffsetsAreAccepted() throws {
        let json = """
            {"metadata":{"name":"x"},"spec":{"holderIdentity":"py","acquireTime":"2024-05-01T12:00:00.5+02:00",\
            "renewTime":"2024-05-01T10:00:01+00:00"}}
            """
        let lease = try KubernetesJSON.decode(Lease.self, from: Data(json.utf8))
        #expect(lease.spec?.acquireTime?.rfc3339 == "2024-05-01T10:00:00.500000Z")
        #expect(lease.spec?.renewTime?.rfc3339 == "2024-05-01T10:00:01.000000Z")
        #expect(lease.apiVersion == nil, "list items carry no kind/apiVersion; none is invented on decode")
    }

    @Test func missingHolderIdentityReadsAsAbsent() throws {
        let lease = try KubernetesJSON.decode(Lease.self, from: Data(#"{"metadata":{"name":"x"},"spec":{"leaseDurationSeconds":1}}"#.utf8))
        #expect(lease.spec?.holderIdentity == nil)
        #expect(lease.spec?.leaseDurationSeconds == 1)
    }

    @Test func specWithWrongTypesFailsWithATypedError() throws {
        let json = #"{"metadata":{"name":"x"},"spec":{"holderIdentity":"a","leaseDurationSeconds":"fifteen"}}"#
        #expect(throws: DecodingError.self) {
            try KubernetesJSON.decode(Lease.self, from: Data(json.utf8))
        }
        let badTime = #"{"metadata":{"name":"x"},"spec":{"renewTime":"yesterday"}}"#
        #expect(throws: DecodingError.self) {
            try KubernetesJSON.decode(Lease.self, from: Data(badTime.utf8))
        }
    }

    @Test func watchEventsDecode() throws {
        let added = try KubernetesJSON.decode(WatchEvent<Lease>.self, from: Data(#"{"type":"ADDED","object":{"metadata":{"name":"x","resourceVersion":"5"}}}"#.utf8))
        guard case .added(let lease) = added else { Issue.record("not ADDED: \(added)"); return }
        #expect(lease.metadata.resourceVersion == "5")

        let bookmark = try KubernetesJSON.decode(
            WatchEvent<Lease>.self,
            from: Data(#"{"type":"BOOKMARK","object":{"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"resourceVersion":"77"}}}"#.utf8)
        )
        #expect(bookmark == .bookmark(resourceVersion: "77"))

        let error = try KubernetesJSON.decode(
            WatchEvent<Lease>.self,
            from: Data(#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}"#.utf8)
        )
        guard case .error(let status) = error else { Issue.record("not ERROR: \(error)"); return }
        #expect(status.code == 410)
        #expect(KubernetesError(status: status).code == .gone)
    }

    @Test func leaseListItemsWithoutTypeMeta() throws {
        let json = leaseListJSON(resourceVersion: "9", leases: [#"{"metadata":{"name":"a"}}"#, #"{"metadata":{"name":"b"}}"#])
        let list = try KubernetesJSON.decode(LeaseList.self, from: Data(json.utf8))
        #expect(list.metadata.resourceVersion == "9")
        #expect(list.items.map(\.metadata.name) == ["a", "b"])
    }
}
