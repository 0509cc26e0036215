/// `metadata` of a Kubernetes object (`meta/v1 ObjectMeta`): the fields lease clients use, plus every
/// other field kept verbatim in ``additionalFields`` so that replacing an object never drops them.
public struct ObjectMeta: Hashable, Sendable, Codable {
    /// The object's name, unique in its namespace.
    public var name: String?
    /// The namespace; `nil` for cluster-scoped objects.
    public var namespace: String?
    /// Set by the server on create; never changes.
    public var uid: String?
    /// The server's optimistic-concurrency token (an etcd revision as a decimal string). A replace must
    /// carry the version it read; the server rejects a stale one with 409 `Conflict`.
    public var resourceVersion: String?
    /// When the object was created (RFC 3339, whole seconds), set by the server.
    public var creationTimestamp: String?
    /// Labels.
    public var labels: [String: String]?
    /// Annotations.
    public var annotations: [String: String]?
    /// Owner references (the kubelet's node lease names its `Node`).
    public var ownerReferences: [OwnerReference]?
    /// Every other metadata field (`managedFields`, `finalizers`, `generation`, …), kept verbatim.
    public var additionalFields: [String: JSONValue]

    /// Creates metadata.
    public init(
        name: String? = nil,
        namespace: String? = nil,
        uid: String? = nil,
        resourceVersion: String? = nil,
        creationTimestamp: String? = nil,
        labels: [String: String]? = nil,
        annotations: [String: String]? = nil,
        ownerReferences: [OwnerReference]? = nil,
        additionalFields: [String: JSONValue] = [:]
    ) {
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.resourceVersion = resourceVersion
        self.creationTimestamp = creationTimestamp
        self.labels = labels
        self.annotations = annotations
        self.ownerReferences = ownerReferences
        self.additionalFields = additionalFields
    }

    private static let known: Set<String> = [
        "name", "namespace", "uid", "resourceVersion", "creationTimestamp", "labels", "annotations", "ownerReferences",
    ]

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: AnyCodingKey.self)
        name = try c.decodeIfPresent(String.self, forKey: AnyCodingKey("name"))
        namespace = try c.decodeIfPresent(String.self, forKey: AnyCodingKey("namespace"))
        uid = try c.decodeIfPresent(String.self, forKey: AnyCodingKey("uid"))
        resourceVersion = try c.decodeIfPresent(String.self, forKey: AnyCodingKey("resourceVersion"))
        creationTimestamp = try c.decodeIfPresent(String.self, forKey: AnyCodingKey("creationTimestamp"))
        labels = try c.decodeIfPresent([String: String].self, forKey: AnyCodingKey("labels"))
        annotations = try c.decodeIfPresent([String: String].self, forKey: AnyCodingKey("annotations"))
        ownerReferences = try c.decodeIfPresent([OwnerReference].self, forKey: AnyCodingKey("ownerReferences"))
        additionalFields = try c.unknownFields(excluding: Self.known)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: AnyCodingKey.self)
        try c.encodeIfPresent(name, "name")
        try c.encodeIfPresent(namespace, "namespace")
        try c.encodeIfPresent(uid, "uid")
        try c.encodeIfPresent(resourceVersion, "resourceVersion")
        try c.encodeIfPresent(creationTimestamp, "creationTimestamp")
        try c.encodeIfPresent(labels, "labels")
        try c.encodeIfPresent(annotations, "annotations")
        try c.encodeIfPresent(ownerReferences, "ownerReferences")
        try c.encodeUnknown(additionalFields)
    }
}

/// A reference from an object to its owner (`meta/v1 OwnerReference`).
public struct OwnerReference: Hashable, Sendable, Codable {
    /// The owner's API version, such as `v1`.
    public var apiVersion: String
    /// The owner's kind, such as `Node`.
    public var kind: String
    /// The owner's name.
    public var name: String
    /// The owner's uid.
    public var uid: String
    /// Whether the owner is the managing controller.
    public var controller: Bool?
    /// Whether deletion of the owner waits for this object.
    public var blockOwnerDeletion: Bool?

    /// Creates an owner reference.
    public init(apiVersion: String, kind: String, name: String, uid: String, controller: Bool? = nil, blockOwnerDeletion: Bool? = nil) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.name = name
        self.uid = uid
        self.controller = controller
        self.blockOwnerDeletion = blockOwnerDeletion
    }
}

/// `metadata` of a list (`meta/v1 ListMeta`).
public struct ListMeta: Hashable, Sendable, Codable {
    /// The revision the list was read at; a watch started from it misses nothing.
    public var resourceVersion: String?
    /// Token for the next page, when the list was limited.
    public var `continue`: String?
    /// How many items remain after this page, when known.
    public var remainingItemCount: Int64?

    /// Creates list metadata.
    public init(resourceVersion: String? = nil, continue: String? = nil, remainingItemCount: Int64? = nil) {
        self.resourceVersion = resourceVersion
        self.continue = `continue`
        self.remainingItemCount = remainingItemCount
    }
}
