import Foundation
import Kubernetes
import LeaderElection

/// An `events.k8s.io/v1` Event, served at `/apis/events.k8s.io/v1/namespaces/{ns}/events`.
///
/// kube-apiserver keeps both Event APIs in one store (`<prefix>/events/<ns>/<name>`, core `v1` JSON) and
/// converts on the way in and out; so does this type (``storageData()``, ``fromStorage(_:)``):
/// `regarding` ↔ `involvedObject`, `note` ↔ `message`, `reportingController` ↔ `reportingComponent`,
/// `deprecatedSource` ↔ `source`, `deprecatedFirstTimestamp`/`deprecatedLastTimestamp` ↔
/// `firstTimestamp`/`lastTimestamp`, `deprecatedCount` ↔ `count`; `action`, `related`, `series`,
/// `eventTime`, `reason`, `type` and `reportingInstance` keep their names.
struct EventsV1Event: APIObject {
    var apiVersion: String?
    var kind: String?
    var metadata: ObjectMeta
    /// MicroTime text, as sent (checked by ``goFields(_:)``).
    var eventTime: String?
    var series: JSONValue?
    var reportingController: String?
    var reportingInstance: String?
    var action: String?
    var reason: String?
    var regarding: ObjectReference?
    var related: JSONValue?
    var note: String?
    var type: String?
    var deprecatedSource: EventSource?
    var deprecatedFirstTimestamp: String?
    var deprecatedLastTimestamp: String?
    var deprecatedCount: Int32?

    init(metadata: ObjectMeta) {
        self.metadata = metadata
    }

    private enum CodingKeys: String, CodingKey {
        case apiVersion, kind, metadata, eventTime, series, reportingController, reportingInstance, action, reason
        case regarding, related, note, type, deprecatedSource, deprecatedFirstTimestamp, deprecatedLastTimestamp
        case deprecatedCount
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        apiVersion = try c.decodeIfPresent(String.self, forKey: .apiVersion)
        kind = try c.decodeIfPresent(String.self, forKey: .kind)
        metadata = try c.decodeIfPresent(ObjectMeta.self, forKey: .metadata) ?? ObjectMeta()
        eventTime = try c.decodeIfPresent(String.self, forKey: .eventTime)
        series = try c.decodeIfPresent(JSONValue.self, forKey: .series).flatMap { $0 == .null ? nil : $0 }
        reportingController = try c.decodeIfPresent(String.self, forKey: .reportingController)
        reportingInstance = try c.decodeIfPresent(String.self, forKey: .reportingInstance)
        action = try c.decodeIfPresent(String.self, forKey: .action)
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
        regarding = try c.decodeIfPresent(ObjectReference.self, forKey: .regarding)
        related = try c.decodeIfPresent(JSONValue.self, forKey: .related).flatMap { $0 == .null ? nil : $0 }
        note = try c.decodeIfPresent(String.self, forKey: .note)
        type = try c.decodeIfPresent(String.self, forKey: .type)
        deprecatedSource = try c.decodeIfPresent(EventSource.self, forKey: .deprecatedSource)
        deprecatedFirstTimestamp = try c.decodeIfPresent(String.self, forKey: .deprecatedFirstTimestamp)
        deprecatedLastTimestamp = try c.decodeIfPresent(String.self, forKey: .deprecatedLastTimestamp)
        deprecatedCount = try c.decodeIfPresent(Int32.self, forKey: .deprecatedCount)
    }

    /// As Go serializes `events/v1.Event`: empty strings and a zero count left out, `eventTime` and the
    /// deprecated times `null` when unset, `regarding` and `deprecatedSource` always present.
    func encode(to encoder: any Encoder) throws {
        func nonEmpty(_ text: String?) -> String? { (text ?? "").isEmpty ? nil : text }
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(apiVersion, forKey: .apiVersion)
        try c.encodeIfPresent(kind, forKey: .kind)
        try c.encode(metadata, forKey: .metadata)
        if let eventTime { try c.encode(eventTime, forKey: .eventTime) } else { try c.encodeNil(forKey: .eventTime) }
        try c.encodeIfPresent(series, forKey: .series)
        try c.encodeIfPresent(nonEmpty(reportingController), forKey: .reportingController)
        try c.encodeIfPresent(nonEmpty(reportingInstance), forKey: .reportingInstance)
        try c.encodeIfPresent(nonEmpty(action), forKey: .action)
        try c.encodeIfPresent(nonEmpty(reason), forKey: .reason)
        try c.encode(regarding ?? ObjectReference(), forKey: .regarding)
        try c.encodeIfPresent(related, forKey: .related)
        try c.encodeIfPresent(nonEmpty(note), forKey: .note)
        try c.encodeIfPresent(nonEmpty(type), forKey: .type)
        let source = deprecatedSource ?? EventSource()
        try c.encode(EventSource(component: nonEmpty(source.component), host: nonEmpty(source.host)), forKey: .deprecatedSource)
        if let time = deprecatedFirstTimestamp { try c.encode(time, forKey: .deprecatedFirstTimestamp) } else { try c.encodeNil(forKey: .deprecatedFirstTimestamp) }
        if let time = deprecatedLastTimestamp { try c.encode(time, forKey: .deprecatedLastTimestamp) } else { try c.encodeNil(forKey: .deprecatedLastTimestamp) }
        if let count = deprecatedCount, count != 0 { try c.encode(count, forKey: .deprecatedCount) }
    }

    // MARK: - One store, two APIs

    /// The core `v1` Event this is stored as.
    var coreEvent: CoreEvent {
        var core = CoreEvent(
            metadata: metadata, involvedObject: regarding ?? ObjectReference(), reason: reason, message: note, type: type,
            source: deprecatedSource, firstTimestamp: deprecatedFirstTimestamp, lastTimestamp: deprecatedLastTimestamp,
            count: deprecatedCount, eventTime: eventTime.flatMap { MicroTime(rfc3339: $0) },
            reportingComponent: reportingController, reportingInstance: reportingInstance)
        if let action, !action.isEmpty { core.additionalFields["action"] = .string(action) }
        if let related { core.additionalFields["related"] = related }
        if let series { core.additionalFields["series"] = series }
        return core
    }

    /// The `events.k8s.io/v1` view of a core `v1` Event.
    init(_ core: CoreEvent) {
        metadata = core.metadata
        eventTime = core.eventTime?.rfc3339
        series = core.additionalFields["series"]
        reportingController = core.reportingComponent
        reportingInstance = core.reportingInstance
        action = core.additionalFields["action"]?.stringValue
        reason = core.reason
        regarding = core.involvedObject
        related = core.additionalFields["related"]
        note = core.message
        type = core.type
        deprecatedSource = core.source
        deprecatedFirstTimestamp = core.firstTimestamp
        deprecatedLastTimestamp = core.lastTimestamp
        deprecatedCount = core.count
    }

    func storageData() throws -> Data {
        var core = coreEvent
        core.apiVersion = CoreEvent.info.apiVersion
        core.kind = CoreEvent.info.kind
        return try ServerJSON.encode(core)
    }

    static func fromStorage(_ data: Data) throws -> EventsV1Event {
        var event = EventsV1Event(try KubernetesJSON.decode(CoreEvent.self, from: data))
        event.apiVersion = info.apiVersion
        event.kind = info.kind
        return event
    }

    // MARK: - APIObject

    static let info = ResourceInfo(
        group: "events.k8s.io", version: "v1", resource: "events", kind: "Event", listKind: "EventList", namespaced: true,
        selectableFields: ["metadata.name", "metadata.namespace"], allowCreateOnUpdate: true,
        unsupportedFieldMessage: { label in "\(goQuote(label)) is not a known field selector: only \"metadata.name\", \"metadata.namespace\"" },
        validationGroup: "")

    static var bookmarkFields: [String: JSONValue] {
        [
            "eventTime": .null, "regarding": .object([:]), "deprecatedSource": .object([:]),
            "deprecatedFirstTimestamp": .null, "deprecatedLastTimestamp": .null,
        ]
    }

    func fieldValue(_ field: String) -> String {
        switch field {
        case "metadata.name": metadata.name ?? ""
        case "metadata.namespace": metadata.namespace ?? ""
        default: ""
        }
    }

    static func schema(_ generation: LeaseAPIServer.Generation) -> FieldSchema {
        .object([
            "apiVersion": .scalar, "kind": .scalar, "metadata": FieldSchema.objectMeta, "eventTime": .scalar,
            "series": .object(["count": .scalar, "lastObservedTime": .scalar]), "reportingController": .scalar,
            "reportingInstance": .scalar, "action": .scalar, "reason": .scalar, "regarding": FieldSchema.objectReference,
            "related": FieldSchema.objectReference, "note": .scalar, "type": .scalar,
            "deprecatedSource": .object(["component": .scalar, "host": .scalar]), "deprecatedFirstTimestamp": .scalar,
            "deprecatedLastTimestamp": .scalar, "deprecatedCount": .scalar,
        ])
    }

    static func goFields(_ generation: LeaseAPIServer.Generation) -> [String: (type: GoDecoding.FieldType, goField: String)] {
        [
            "eventTime": (.microTime, "Event.eventTime"),
            "series.lastObservedTime": (.microTime, "EventSeries.series.lastObservedTime"),
            "series.count": (.int32, "EventSeries.series.count"),
            "deprecatedCount": (.int32, "Event.deprecatedCount"),
            "reportingController": (.string, "Event.reportingController"),
            "reportingInstance": (.string, "Event.reportingInstance"),
            "action": (.string, "Event.action"),
            "reason": (.string, "Event.reason"),
            "note": (.string, "Event.note"),
            "type": (.string, "Event.type"),
        ]
    }

    /// `ValidateEventCreate` for `events.k8s.io/v1`: `legacyValidateEvent`, then the strict rules
    /// (`eventTime` required, `type` Normal or Warning, the deprecated fields unset, a valid series).
    func validateSpec() -> [FieldError] {
        var errors: [FieldError] = []
        let namespace = metadata.namespace ?? ""
        let involved = regarding?.namespace ?? ""
        if eventTime == nil {
            if involved.isEmpty ? (namespace != "" && namespace != "default") : (namespace != involved) {
                errors.append(.invalid("involvedObject.namespace", .string(involved), "does not match event.namespace"))
            }
        } else {
            if involved.isEmpty && namespace != "default" && namespace != "kube-system" {
                errors.append(.invalid("involvedObject.namespace", .string(involved), "does not match event.namespace"))
            }
            let controller = reportingController ?? ""
            if controller.isEmpty { errors.append(.required("reportingController", "")) }
            for message in Validation.qualifiedName(controller) {
                errors.append(.invalid("reportingController", .string(controller), message))
            }
            let instance = reportingInstance ?? ""
            if instance.isEmpty { errors.append(.required("reportingInstance", "")) }
            if instance.utf8.count > 128 { errors.append(.invalid("reportingInstance", .string(""), "can have at most 128 characters")) }
            let action = action ?? ""
            if action.isEmpty { errors.append(.required("action", "")) }
            if action.utf8.count > 128 { errors.append(.invalid("action", .string(""), "can have at most 128 characters")) }
            let reason = reason ?? ""
            if reason.isEmpty { errors.append(.required("reason", "")) }
            if reason.utf8.count > 128 { errors.append(.invalid("reason", .string(""), "can have at most 128 characters")) }
            if (note ?? "").utf8.count > 1024 { errors.append(.invalid("message", .string(""), "can have at most 1024 characters")) }
        }
        if case .object(let fields)? = series {
            if (fields["count"].flatMap { if case .number(let n) = $0 { n } else { nil } } ?? 0) < 2 {
                errors.append(.invalid("series.count", .string(""), "should be at least 2"))
            }
            if (fields["lastObservedTime"]?.stringValue ?? "").isEmpty {
                errors.append(.required("series.lastObservedTime", ""))
            }
        }
        if eventTime == nil { errors.append(.required("eventTime", "")) }
        let type = type ?? ""
        if type != "Normal" && type != "Warning" { errors.append(.invalid("type", .string(""), "has invalid value: \(type)")) }
        if deprecatedFirstTimestamp != nil { errors.append(.invalid("firstTimestamp", .string(""), "needs to be unset")) }
        if deprecatedLastTimestamp != nil { errors.append(.invalid("lastTimestamp", .string(""), "needs to be unset")) }
        if (deprecatedCount ?? 0) != 0 { errors.append(.invalid("count", .string(""), "needs to be unset")) }
        if !(deprecatedSource?.component ?? "").isEmpty || !(deprecatedSource?.host ?? "").isEmpty {
            errors.append(.invalid("source", .string(""), "needs to be unset"))
        }
        return errors
    }

    /// `ValidateEventUpdate` for `events.k8s.io/v1`: every field but the metadata and the series is immutable.
    func validateChange(from old: EventsV1Event) -> [FieldError] {
        var errors: [FieldError] = []
        func immutable<V: Equatable>(_ path: String, _ new: V, _ old: V, _ shown: String) {
            if new != old { errors.append(.invalid(path, .raw(shown), "field is immutable")) }
        }
        let new = coreEvent
        let previous = old.coreEvent
        immutable("involvedObject", new.involvedObject, previous.involvedObject, "core.ObjectReference{…}")
        immutable("reason", new.reason ?? "", previous.reason ?? "", goQuote(new.reason ?? ""))
        immutable("message", new.message ?? "", previous.message ?? "", goQuote(new.message ?? ""))
        immutable("source", new.source ?? EventSource(), previous.source ?? EventSource(), "core.EventSource{…}")
        immutable("firstTimestamp", new.firstTimestamp ?? "", previous.firstTimestamp ?? "", goQuote(new.firstTimestamp ?? ""))
        immutable("lastTimestamp", new.lastTimestamp ?? "", previous.lastTimestamp ?? "", goQuote(new.lastTimestamp ?? ""))
        immutable("count", new.count ?? 0, previous.count ?? 0, String(new.count ?? 0))
        immutable("type", new.type ?? "", previous.type ?? "", goQuote(new.type ?? ""))
        immutable("eventTime", new.eventTime, previous.eventTime, goQuote(new.eventTime?.rfc3339 ?? ""))
        immutable("action", action ?? "", old.action ?? "", goQuote(action ?? ""))
        immutable("related", related, old.related, "&core.ObjectReference{…}")
        immutable("reportingController", new.reportingComponent ?? "", previous.reportingComponent ?? "", goQuote(new.reportingComponent ?? ""))
        immutable("reportingInstance", new.reportingInstance ?? "", previous.reportingInstance ?? "", goQuote(new.reportingInstance ?? ""))
        return errors
    }

    static func placeholder(namespace: String?, name: String) -> EventsV1Event {
        EventsV1Event(metadata: ObjectMeta(name: name, namespace: namespace))
    }
}
