import LeaderElection

/// A core `v1` Event, as client-go's event recorder writes it for leader election: type `Normal`, reason
/// `LeaderElection`, message `"<identity> became leader"`, involvedObject = the Lease.
public struct CoreEvent: Hashable, Sendable, Codable {
    /// `v1`.
    public var apiVersion: String?
    /// `Event`.
    public var kind: String?
    /// Metadata; the name is usually `<lease name>.<unique suffix>`.
    public var metadata: ObjectMeta
    /// The object the event is about.
    public var involvedObject: ObjectReference
    /// `LeaderElection`.
    public var reason: String?
    /// `"<identity> became leader"` / `"<identity> stopped leading"`.
    public var message: String?
    /// `Normal` or `Warning`.
    public var type: String?
    /// Who reported it.
    public var source: EventSource?
    /// First occurrence (RFC 3339, whole seconds).
    public var firstTimestamp: String?
    /// Last occurrence (RFC 3339, whole seconds).
    public var lastTimestamp: String?
    /// How many times it occurred.
    public var count: Int32?
    /// When it was observed, with microseconds.
    public var eventTime: MicroTime?
    /// The reporting controller, such as `leasectl`.
    public var reportingComponent: String?
    /// The reporting instance (the candidate identity).
    public var reportingInstance: String?
    /// Fields this model does not name (`action`, `related`, `series`, …), kept as they were decoded so that
    /// an event read and written back loses nothing. Empty by default.
    public var additionalFields: [String: JSONValue] = [:]

    /// Creates an event.
    public init(
        metadata: ObjectMeta, involvedObject: ObjectReference, reason: String?, message: String?, type: String?,
        source: EventSource? = nil, firstTimestamp: String? = nil, lastTimestamp: String? = nil, count: Int32? = nil,
        eventTime: MicroTime? = nil, reportingComponent: String? = nil, reportingInstance: String? = nil
    ) {
        self.apiVersion = "v1"
        self.kind = "Event"
        self.metadata = metadata
        self.involvedObject = involvedObject
        self.reason = reason
        self.message = message
        self.type = type
        self.source = source
        self.firstTimestamp = firstTimestamp
        self.lastTimestamp = lastTimestamp
        self.count = count
        self.eventTime = eventTime
        self.reportingComponent = reportingComponent
        self.reportingInstance = reportingInstance
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case apiVersion, kind, metadata, involvedObject, reason, message, type, source, firstTimestamp, lastTimestamp
        case count, eventTime, reportingComponent, reportingInstance
    }

    /// Any key, for ``additionalFields``.
    private struct OtherKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        apiVersion = try c.decodeIfPresent(String.self, forKey: .apiVersion)
        kind = try c.decodeIfPresent(String.self, forKey: .kind)
        metadata = try c.decode(ObjectMeta.self, forKey: .metadata)
        involvedObject = try c.decode(ObjectReference.self, forKey: .involvedObject)
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
        message = try c.decodeIfPresent(String.self, forKey: .message)
        type = try c.decodeIfPresent(String.self, forKey: .type)
        source = try c.decodeIfPresent(EventSource.self, forKey: .source)
        firstTimestamp = try c.decodeIfPresent(String.self, forKey: .firstTimestamp)
        lastTimestamp = try c.decodeIfPresent(String.self, forKey: .lastTimestamp)
        count = try c.decodeIfPresent(Int32.self, forKey: .count)
        if let text = try c.decodeIfPresent(String.self, forKey: .eventTime) {
            guard let time = MicroTime(rfc3339: text) else {
                throw DecodingError.dataCorruptedError(forKey: .eventTime, in: c, debugDescription: "eventTime is not an RFC 3339 time: \(text)")
            }
            eventTime = time
        } else {
            eventTime = nil
        }
        reportingComponent = try c.decodeIfPresent(String.self, forKey: .reportingComponent)
        reportingInstance = try c.decodeIfPresent(String.self, forKey: .reportingInstance)
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        let others = try decoder.container(keyedBy: OtherKey.self)
        for key in others.allKeys where !known.contains(key.stringValue) {
            let value = try others.decode(JSONValue.self, forKey: key)
            if value != .null { additionalFields[key.stringValue] = value }
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(apiVersion, forKey: .apiVersion)
        try c.encodeIfPresent(kind, forKey: .kind)
        try c.encode(metadata, forKey: .metadata)
        try c.encode(involvedObject, forKey: .involvedObject)
        try c.encodeIfPresent(reason, forKey: .reason)
        try c.encodeIfPresent(message, forKey: .message)
        try c.encodeIfPresent(type, forKey: .type)
        try c.encodeIfPresent(source, forKey: .source)
        try c.encodeIfPresent(firstTimestamp, forKey: .firstTimestamp)
        try c.encodeIfPresent(lastTimestamp, forKey: .lastTimestamp)
        try c.encodeIfPresent(count, forKey: .count)
        try c.encodeIfPresent(eventTime?.rfc3339, forKey: .eventTime)
        try c.encodeIfPresent(reportingComponent, forKey: .reportingComponent)
        try c.encodeIfPresent(reportingInstance, forKey: .reportingInstance)
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        var others = encoder.container(keyedBy: OtherKey.self)
        for (key, value) in additionalFields where !known.contains(key) {
            try others.encode(value, forKey: OtherKey(stringValue: key))
        }
    }
}

/// `EventList`.
public typealias EventList = KubernetesList<CoreEvent>

/// A reference to an object (`core/v1 ObjectReference`).
public struct ObjectReference: Hashable, Sendable, Codable {
    /// Such as `coordination.k8s.io/v1`.
    public var apiVersion: String?
    /// Such as `Lease`.
    public var kind: String?
    /// The object's namespace.
    public var namespace: String?
    /// The object's name.
    public var name: String?
    /// The object's uid.
    public var uid: String?
    /// The object's resourceVersion when the event happened.
    public var resourceVersion: String?

    /// Creates a reference.
    public init(apiVersion: String? = nil, kind: String? = nil, namespace: String? = nil, name: String? = nil, uid: String? = nil, resourceVersion: String? = nil) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.resourceVersion = resourceVersion
    }
}

/// The reporter of an event (`core/v1 EventSource`).
public struct EventSource: Hashable, Sendable, Codable {
    /// The component, such as `leasectl`.
    public var component: String?
    /// The host.
    public var host: String?

    /// Creates a source.
    public init(component: String? = nil, host: String? = nil) {
        self.component = component
        self.host = host
    }
}

/// A core `v1` Namespace, with only its metadata (used by tests to create and remove a namespace).
public struct Namespace: Hashable, Sendable, Codable {
    /// `v1`.
    public var apiVersion: String?
    /// `Namespace`.
    public var kind: String?
    /// Metadata.
    public var metadata: ObjectMeta

    /// Creates a namespace object.
    public init(name: String, labels: [String: String]? = nil) {
        self.apiVersion = "v1"
        self.kind = "Namespace"
        self.metadata = ObjectMeta(name: name, labels: labels)
    }
}
