/// A `meta/v1 Status`: what the API server sends with every error (and with a successful DELETE).
public struct Status: Hashable, Sendable, Codable {
    /// `Status`.
    public var kind: String?
    /// `v1`.
    public var apiVersion: String?
    /// Always `{}` in practice.
    public var metadata: ListMeta?
    /// `Success` or `Failure`.
    public var status: String?
    /// A human-readable description.
    public var message: String?
    /// A machine-readable reason: `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `Unauthorized`, …
    public var reason: String?
    /// Which object, and for `Invalid`, which fields.
    public var details: Details?
    /// The HTTP status code.
    public var code: Int?

    /// `StatusDetails`.
    public struct Details: Hashable, Sendable, Codable {
        /// The object's name.
        public var name: String?
        /// The API group, such as `coordination.k8s.io`.
        public var group: String?
        /// The resource (`leases`) or, for validation errors, the kind (`Lease`).
        public var kind: String?
        /// The object's uid (on a successful DELETE).
        public var uid: String?
        /// Field-level causes of an `Invalid` error.
        public var causes: [Cause]?
        /// Seconds to wait before retrying, for 429 and some 5xx.
        public var retryAfterSeconds: Int?

        /// Creates details.
        public init(name: String? = nil, group: String? = nil, kind: String? = nil, uid: String? = nil, causes: [Cause]? = nil, retryAfterSeconds: Int? = nil) {
            self.name = name
            self.group = group
            self.kind = kind
            self.uid = uid
            self.causes = causes
            self.retryAfterSeconds = retryAfterSeconds
        }
    }

    /// `StatusCause`: one invalid field.
    public struct Cause: Hashable, Sendable, Codable {
        /// Such as `FieldValueInvalid`, `FieldValueForbidden`, `FieldValueRequired`.
        public var reason: String?
        /// A human-readable description.
        public var message: String?
        /// The field path, such as `spec.leaseDurationSeconds`.
        public var field: String?

        /// Creates a cause.
        public init(reason: String? = nil, message: String? = nil, field: String? = nil) {
            self.reason = reason
            self.message = message
            self.field = field
        }
    }

    /// Creates a Status with `kind: Status`, `apiVersion: v1`, `metadata: {}`.
    public init(status: String, message: String? = nil, reason: String? = nil, details: Details? = nil, code: Int) {
        self.kind = "Status"
        self.apiVersion = "v1"
        self.metadata = ListMeta()
        self.status = status
        self.message = message
        self.reason = reason
        self.details = details
        self.code = code
    }
}
