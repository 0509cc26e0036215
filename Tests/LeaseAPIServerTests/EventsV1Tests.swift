import Foundation
import Kubernetes
import Testing

/// `events.k8s.io/v1`: one store with core `v1` Events, converted on the way in and out, and its own
/// validation.
@Suite(.timeLimit(.minutes(2))) struct EventsV1Tests {
    private func v1Events(_ namespace: String) -> String { "/apis/events.k8s.io/v1/namespaces/\(namespace)/events" }
    private func coreEvents(_ namespace: String) -> String { "/api/v1/namespaces/\(namespace)/events" }

    private func v1Event(_ name: String, _ namespace: String, note: String = "a became leader") -> String {
        #"{"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"\#(name)"},"eventTime":"2026-01-02T03:04:05.123456Z","reportingController":"example.com/ctl","reportingInstance":"ctl-a","action":"LeaderElection","reason":"LeaderElection","regarding":{"kind":"Lease","namespace":"\#(namespace)","name":"l"},"related":{"kind":"Pod","name":"p"},"note":"\#(note)","type":"Normal"}"#
    }

    @Test func anEventCreatedThroughEventsV1KeepsEveryFieldThroughCoreV1() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let created = try await fixture.request("POST", v1Events(namespace), body: v1Event("e", namespace))
            #expect(created.status == 201, "\(created)")
            #expect(created.json["apiVersion"] as? String == "events.k8s.io/v1")
            #expect(created.json["deprecatedSource"] as? [String: Any] != nil && created.json["deprecatedCount"] == nil)

            let core = try await fixture.get(coreEvents(namespace) + "/e")
            #expect(core.status == 200)
            #expect(core.json["action"] as? String == "LeaderElection")
            #expect(core.json["message"] as? String == "a became leader")
            #expect(core.json["reportingComponent"] as? String == "example.com/ctl")
            #expect((core.json["related"] as? [String: Any])?["name"] as? String == "p")
            #expect((core.json["involvedObject"] as? [String: Any])?["name"] as? String == "l")

            // A core/v1 client writing the event back (the shared model) loses nothing.
            var event = try core.decode(CoreEvent.self)
            event.metadata.labels = ["x": "y"]
            let body = String(decoding: try KubernetesJSON.encode(event), as: UTF8.self)
            let updated = try await fixture.request("PUT", coreEvents(namespace) + "/e", body: body)
            #expect(updated.status == 200, "\(updated)")
            let again = try await fixture.get(v1Events(namespace) + "/e")
            #expect(again.json["action"] as? String == "LeaderElection")
            #expect((again.json["related"] as? [String: Any])?["kind"] as? String == "Pod")
            #expect((again.json["metadata"] as? [String: Any])?["labels"] as? [String: String] == ["x": "y"])

            let list = try await fixture.get(v1Events(namespace))
            #expect(list.json["kind"] as? String == "EventList" && list.json["apiVersion"] as? String == "events.k8s.io/v1")
            let items = try #require(list.json["items"] as? [[String: Any]])
            #expect(items.count == 1 && items.first?["note"] as? String == "a became leader")
        }
    }

    @Test func aCoreEventReadThroughEventsV1IsConverted() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let body = #"{"metadata":{"name":"c"},"involvedObject":{"kind":"Lease","namespace":"\#(namespace)","name":"l"},"reason":"LeaderElection","message":"m","source":{"component":"ctl"},"firstTimestamp":"2026-01-02T03:04:05Z","lastTimestamp":"2026-01-02T03:04:06Z","count":3,"type":"Normal"}"#
            #expect(try await fixture.request("POST", coreEvents(namespace), body: body).status == 201)
            let event = try await fixture.get(v1Events(namespace) + "/c")
            #expect(event.status == 200)
            #expect(event.json["deprecatedCount"] as? Int == 3)
            #expect(event.json["deprecatedFirstTimestamp"] as? String == "2026-01-02T03:04:05Z")
            #expect((event.json["deprecatedSource"] as? [String: Any])?["component"] as? String == "ctl")
            #expect(event.json["note"] as? String == "m")
            #expect(event.json["eventTime"] is NSNull)
            #expect(event.json["reportingController"] == nil)
        }
    }

    @Test func eventsV1FieldsAreImmutable() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let created = try await fixture.request("POST", v1Events(namespace), body: v1Event("e", namespace))
            let version = try #require((created.json["metadata"] as? [String: Any])?["resourceVersion"] as? String)
            var changed = v1Event("e", namespace, note: "changed")
            changed = changed.replacingOccurrences(of: #""name":"e"}"#, with: #""name":"e","resourceVersion":"\#(version)"}"#)
            let response = try await fixture.request("PUT", v1Events(namespace) + "/e", body: changed)
            #expect(response.status == 422, "\(response)")
            #expect(try response.decode(Status.self).message == #"Event "e" is invalid: message: Invalid value: "changed": field is immutable"#)
        }
    }

    @Test func eventsV1ValidatesTheDeprecatedFieldsAndTheSeries() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            var body = v1Event("e", namespace)
            body = body.replacingOccurrences(of: #""type":"Normal"}"#, with: #""type":"Warning","deprecatedSource":{"component":"x"},"series":{"count":1}}"#)
            let response = try await fixture.request("POST", v1Events(namespace), body: body)
            #expect(response.status == 422)
            #expect(try response.decode(Status.self).message
                == #"Event "e" is invalid: [series.count: Invalid value: "": should be at least 2, series.lastObservedTime: Required value, source: Invalid value: "": needs to be unset]"#)
        }
    }
}
