import Foundation
import Kubernetes
import LeaderElection

/// The names of a resource, as the API and its errors spell them.
struct ResourceInfo: Sendable {
    /// API group; empty for the core group.
    var group: String
    /// `v1`.
    var version: String
    /// The plural resource name, such as `leases` (also the etcd key segment).
    var resource: String
    /// The kind, such as `Lease`.
    var kind: String
    /// The list kind, such as `LeaseList`.
    var listKind: String
    /// Whether objects live in namespaces.
    var namespaced: Bool
    /// Field selector labels this resource supports.
    var selectableFields: [String]
    /// Whether a PUT of a missing object creates it (`AllowCreateOnUpdate`).
    var allowCreateOnUpdate: Bool
    /// The message for an unsupported field selector label.
    var unsupportedFieldMessage: @Sendable (String) -> String
    /// Whether DELETE answers the deleted object instead of a Status (`ReturnDeletedObject`).
    var returnDeletedObject = false
    /// The group validation errors name (`Event "x" is invalid` for both Event APIs: kube validates the
    /// internal core Event); `nil`: ``group``.
    var validationGroup: String? = nil

    /// The group of `… is invalid` errors.
    var invalidGroup: String { validationGroup ?? group }

    /// `coordination.k8s.io/v1`, or `v1` for the core group.
    var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }
    /// `Lease.coordination.k8s.io` (Go's `GroupKind.String()`).
    var qualifiedKind: String { group.isEmpty ? kind : "\(kind).\(group)" }
    /// `leases.coordination.k8s.io` (Go's `GroupResource.String()`).
    var qualifiedResource: String { group.isEmpty ? resource : "\(resource).\(group)" }

    /// Status details naming an object of this resource (kind = the resource, as kube does).
    func details(name: String, uid: String? = nil) -> Status.Details {
        Status.Details(name: name, group: group.isEmpty ? nil : group, kind: resource, uid: uid)
    }
}

/// A stored resource type.
protocol APIObject: Codable, Sendable, Hashable {
    static var info: ResourceInfo { get }
    var apiVersion: String? { get set }
    var kind: String? { get set }
    var metadata: ObjectMeta { get set }
    /// The value of a selectable field (one of ``ResourceInfo/selectableFields``).
    func fieldValue(_ field: String) -> String
    /// Type-specific defaults on create (`PrepareForCreate`).
    mutating func prepareForCreate()
    /// Type-specific validation of a new object (metadata checks are done by the caller).
    func validateSpec() -> [FieldError]
    /// An object with only a name, for a deleted key whose last state cannot be read.
    static func placeholder(namespace: String?, name: String) -> Self
    /// The fields the type knows in `generation`, for `fieldValidation`.
    static func schema(_ generation: LeaseAPIServer.Generation) -> FieldSchema
    /// Clears the fields that `generation` does not know (decoded by the shared model, never stored).
    mutating func dropUnknownFields(_ generation: LeaseAPIServer.Generation)
    /// The fields an empty object of the type serializes besides its metadata (Go structs are never omitted).
    static var bookmarkFields: [String: JSONValue] { get }
    /// Top-level fields that are structs in Go: a body without them decodes them as empty.
    static var structFields: [String] { get }
    /// Validation that needs fields of the request body the model does not keep.
    func validateBody(_ body: [String: JSONValue]) -> [FieldError]
    /// Fields whose Go types decide what a body may hold (path → type and Go's name for the field).
    static func goFields(_ generation: LeaseAPIServer.Generation) -> [String: (type: GoDecoding.FieldType, goField: String)]
    /// Rules of an update beyond the create rules, such as immutable fields.
    func validateChange(from old: Self) -> [FieldError]
    /// The JSON kept in etcd for the object (already with its type meta and without a resourceVersion).
    func storageData() throws -> Data
    /// The object from the JSON kept in etcd.
    static func fromStorage(_ data: Data) throws -> Self
}

extension APIObject {
    static var structFields: [String] { ["metadata"] }
    func validateBody(_ body: [String: JSONValue]) -> [FieldError] { [] }
    static var bookmarkFields: [String: JSONValue] { [:] }
    mutating func prepareForCreate() {}
    static func goFields(_ generation: LeaseAPIServer.Generation) -> [String: (type: GoDecoding.FieldType, goField: String)] { [:] }
    mutating func dropUnknownFields(_ generation: LeaseAPIServer.Generation) {}
    func storageData() throws -> Data { try ServerJSON.encode(self) }
    func validateChange(from old: Self) -> [FieldError] { [] }
    static func fromStorage(_ data: Data) throws -> Self { try KubernetesJSON.decode(Self.self, from: data) }

    /// The object with its `apiVersion` and `kind` set (single objects and watch events carry them).
    var withTypeMeta: Self {
        var copy = self
        copy.apiVersion = Self.info.apiVersion
        copy.kind = Self.info.kind
        return copy
    }

    /// The object without `apiVersion` and `kind` (list items carry none).
    var withoutTypeMeta: Self {
        var copy = self
        copy.apiVersion = nil
        copy.kind = nil
        return copy
    }

    /// `ValidateObjectMeta` (name, namespace) plus the type's own rules.
    func validateCreate() -> [FieldError] {
        Validation.objectMeta(metadata, namespaced: Self.info.namespaced, nameIsLabel: Self.self == NamespaceObject.self)
            + validateSpec()
    }

    /// The rules of an update: the create rules plus `metadata.uid` immutability.
    func validateUpdate(old: Self) -> [FieldError] {
        var errors = Validation.objectMeta(metadata, namespaced: Self.info.namespaced, nameIsLabel: Self.self == NamespaceObject.self)
        if let uid = metadata.uid, uid != (old.metadata.uid ?? "") {
            errors.append(.invalid("metadata.uid", .string(uid), "field is immutable"))
        }
        return errors + validateSpec() + validateChange(from: old)
    }
}

/// The conversion message of the default field label conversion (`DefaultMetaV1FieldSelectorConversion`).
let defaultUnsupportedField: @Sendable (String) -> String = { label in
    "\(goQuote(label)) is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
}

/// The message of the core group's registered conversions.
private let coreUnsupportedField: @Sendable (String) -> String = { label in
    "field label not supported: \(label)"
}

extension Lease: APIObject {
    static let info = ResourceInfo(
        group: "coordination.k8s.io", version: "v1", resource: "leases", kind: "Lease", listKind: "LeaseList",
        namespaced: true, selectableFields: ["metadata.name", "metadata.namespace"], allowCreateOnUpdate: true,
        unsupportedFieldMessage: defaultUnsupportedField)

    func fieldValue(_ field: String) -> String {
        switch field {
        case "metadata.name": metadata.name ?? ""
        case "metadata.namespace": metadata.namespace ?? ""
        default: ""
        }
    }

    static func schema(_ generation: LeaseAPIServer.Generation) -> FieldSchema { .lease(generation) }

    static var bookmarkFields: [String: JSONValue] { ["spec": .object([:])] }

    static func goFields(_ generation: LeaseAPIServer.Generation) -> [String: (type: GoDecoding.FieldType, goField: String)] {
        var fields: [String: (type: GoDecoding.FieldType, goField: String)] = [
            "spec.holderIdentity": (.string, "LeaseSpec.spec.holderIdentity"),
            "spec.leaseDurationSeconds": (.int32, "LeaseSpec.spec.leaseDurationSeconds"),
            "spec.acquireTime": (.microTime, "LeaseSpec.spec.acquireTime"),
            "spec.renewTime": (.microTime, "LeaseSpec.spec.renewTime"),
            "spec.leaseTransitions": (.int32, "LeaseSpec.spec.leaseTransitions"),
        ]
        if generation == .v1_31CoordinatedLeaderElection {
            fields["spec.strategy"] = (.string, "LeaseSpec.spec.strategy")
            fields["spec.preferredHolder"] = (.string, "LeaseSpec.spec.preferredHolder")
        }
        return fields
    }

    /// In 1.26 `spec.strategy` and `spec.preferredHolder` do not exist: dropped, never stored.
    mutating func dropUnknownFields(_ generation: LeaseAPIServer.Generation) {
        // `spec` is a struct in Go: absent or null, it is `{}`.
        if spec == nil { spec = LeaseSpec() }
        guard generation == .v1_26 else { return }
        spec?.strategy = nil
        spec?.preferredHolder = nil
    }

    /// `ValidateLeaseSpec`.
    func validateSpec() -> [FieldError] {
        var errors: [FieldError] = []
        guard let spec else { return errors }
        if let duration = spec.leaseDurationSeconds, duration <= 0 {
            errors.append(.invalid("spec.leaseDurationSeconds", .int(Int64(duration)), "must be greater than 0"))
        }
        if let transitions = spec.leaseTransitions, transitions < 0 {
            errors.append(.invalid("spec.leaseTransitions", .int(Int64(transitions)), "must be greater than or equal to 0"))
        }
        if let strategy = spec.strategy {
            // kube reports the field as `spec.strategy.strategy` (a child of the strategy path); kept as is.
            let field = "spec.strategy.strategy"
            let parts = strategy.split(separator: "/", omittingEmptySubsequences: false)
            if parts.count == 1 {
                if strategy != "OldestEmulationVersion" {
                    errors.append(.notSupported(field, .raw(goQuote(strategy)), supported: ["OldestEmulationVersion"]))
                }
            } else {
                for message in Validation.qualifiedName(strategy) {
                    errors.append(.invalid(field, .raw(goQuote(strategy)), message))
                }
            }
        }
        if let preferred = spec.preferredHolder, !preferred.isEmpty, (spec.strategy ?? "").isEmpty {
            errors.append(.forbidden("spec.preferredHolder", "may only be specified if `strategy` is defined"))
        }
        return errors
    }

    static func placeholder(namespace: String?, name: String) -> Lease {
        Lease(metadata: ObjectMeta(name: name, namespace: namespace))
    }
}

extension CoreEvent: APIObject {
    static let info = ResourceInfo(
        group: "", version: "v1", resource: "events", kind: "Event", listKind: "EventList", namespaced: true,
        selectableFields: [
            "metadata.name", "metadata.namespace", "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
            "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
            "reason", "reportingComponent", "source", "type",
        ],
        allowCreateOnUpdate: true, unsupportedFieldMessage: coreUnsupportedField)

    func fieldValue(_ field: String) -> String {
        switch field {
        case "metadata.name": metadata.name ?? ""
        case "metadata.namespace": metadata.namespace ?? ""
        case "involvedObject.kind": involvedObject.kind ?? ""
        case "involvedObject.namespace": involvedObject.namespace ?? ""
        case "involvedObject.name": involvedObject.name ?? ""
        case "involvedObject.uid": involvedObject.uid ?? ""
        case "involvedObject.apiVersion": involvedObject.apiVersion ?? ""
        case "involvedObject.resourceVersion": involvedObject.resourceVersion ?? ""
        case "reason": reason ?? ""
        case "reportingComponent": reportingComponent ?? ""
        case "source":
            if let component = source?.component, !component.isEmpty { component } else { reportingComponent ?? "" }
        case "type": type ?? ""
        default: ""
        }
    }

    static func schema(_ generation: LeaseAPIServer.Generation) -> FieldSchema { .coreEvent }

    static var structFields: [String] { ["metadata", "involvedObject"] }

    /// `legacyValidateEvent` for an event with `eventTime`: the reporting fields and `action` (which
    /// ``CoreEvent`` does not keep, so it is read from the body) are required.
    func validateBody(_ body: [String: JSONValue]) -> [FieldError] {
        guard eventTime != nil else { return [] }
        var errors: [FieldError] = []
        let namespace = metadata.namespace ?? ""
        if (involvedObject.namespace ?? "").isEmpty && namespace != "default" && namespace != "kube-system" && !namespace.isEmpty {
            errors.append(.invalid("involvedObject.namespace", .string(""), "does not match event.namespace"))
        }
        let component = reportingComponent ?? ""
        if component.isEmpty { errors.append(.required("reportingComponent", "")) }
        for message in Validation.qualifiedName(component) { errors.append(.invalid("reportingComponent", .string(component), message)) }
        let instance = reportingInstance ?? ""
        if instance.isEmpty { errors.append(.required("reportingInstance", "")) }
        if instance.utf8.count > 128 { errors.append(.invalid("reportingInstance", .string(""), "can have at most 128 characters")) }
        let action = body["action"]?.stringValue ?? ""
        if action.isEmpty { errors.append(.required("action", "")) }
        if action.utf8.count > 128 { errors.append(.invalid("action", .string(""), "can have at most 128 characters")) }
        let reason = reason ?? ""
        if reason.isEmpty { errors.append(.required("reason", "")) }
        if reason.utf8.count > 128 { errors.append(.invalid("reason", .string(""), "can have at most 128 characters")) }
        if (message ?? "").utf8.count > 1024 { errors.append(.invalid("message", .string(""), "can have at most 1024 characters")) }
        return errors
    }

    /// The fields of a core `v1` Event that ``CoreEvent`` keeps in ``CoreEvent/additionalFields``.
    static let additionalEventFields: Set<String> = ["action", "related", "series"]

    /// Only `action`, `related` and `series` are kept of the fields the model does not name.
    mutating func dropUnknownFields(_ generation: LeaseAPIServer.Generation) {
        additionalFields = additionalFields.filter { Self.additionalEventFields.contains($0.key) }
    }

    /// The namespace rule of `legacyValidateEvent` for events without `eventTime`.
    func validateSpec() -> [FieldError] {
        guard eventTime == nil else { return [] }
        let namespace = metadata.namespace ?? ""
        let involved = involvedObject.namespace ?? ""
        if involved.isEmpty ? (namespace != "" && namespace != "default") : (namespace != involved) {
            return [.invalid("involvedObject.namespace", .string(involved), "does not match event.namespace")]
        }
        return []
    }

    static func placeholder(namespace: String?, name: String) -> CoreEvent {
        CoreEvent(metadata: ObjectMeta(name: name, namespace: namespace), involvedObject: ObjectReference(),
                  reason: nil, message: nil, type: nil)
    }
}

/// A core `v1` Namespace as the server stores it: ``Namespace``'s metadata plus `spec.finalizers` and
/// `status.phase`.
struct NamespaceObject: APIObject {
    struct Spec: Codable, Sendable, Hashable {
        var finalizers: [String]?
    }

    struct NamespaceStatus: Codable, Sendable, Hashable {
        var phase: String?
    }

    var apiVersion: String?
    var kind: String?
    var metadata: ObjectMeta
    var spec: Spec?
    var status: NamespaceStatus?

    static let info = ResourceInfo(
        group: "", version: "v1", resource: "namespaces", kind: "Namespace", listKind: "NamespaceList",
        namespaced: false, selectableFields: ["metadata.name", "status.phase"], allowCreateOnUpdate: false,
        unsupportedFieldMessage: coreUnsupportedField)

    func fieldValue(_ field: String) -> String {
        switch field {
        case "metadata.name": metadata.name ?? ""
        case "status.phase": status?.phase ?? ""
        default: ""
        }
    }

    /// `namespaceStrategy.PrepareForCreate`: phase `Active`, the `kubernetes` finalizer, and the
    /// `kubernetes.io/metadata.name` label.
    mutating func prepareForCreate() {
        status = NamespaceStatus(phase: "Active")
        var finalizers = spec?.finalizers ?? []
        if !finalizers.contains("kubernetes") { finalizers.append("kubernetes") }
        spec = Spec(finalizers: finalizers)
        if let name = metadata.name, !name.isEmpty {
            var labels = metadata.labels ?? [:]
            labels["kubernetes.io/metadata.name"] = name
            metadata.labels = labels
        }
    }

    func validateSpec() -> [FieldError] { [] }

    static func schema(_ generation: LeaseAPIServer.Generation) -> FieldSchema { .namespace }

    static func placeholder(namespace: String?, name: String) -> NamespaceObject {
        NamespaceObject(apiVersion: nil, kind: nil, metadata: ObjectMeta(name: name))
    }
}

/// apimachinery's name and metadata validation.
enum Validation {
    private static let labelFormat = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
    private static let subdomainFormat = labelFormat + "(\\." + labelFormat + ")*"
    private static let qualifiedNameFormat = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"

    /// `RegexError`.
    static func regexError(_ message: String, _ format: String, _ examples: [String]) -> String {
        guard !examples.isEmpty else { return "\(message) (regex used for validation is '\(format)')" }
        var text = message + " (e.g. "
        for (index, example) in examples.enumerated() {
            if index > 0 { text += " or " }
            text += "'\(example)', "
        }
        return text + "regex used for validation is '\(format)')"
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    /// Matches `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
    static func matchesLabel<S: BidirectionalCollection>(_ bytes: S) -> Bool where S.Element == UInt8 {
        guard let first = bytes.first, let last = bytes.last, isAlphanumeric(first), isAlphanumeric(last) else { return false }
        return bytes.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "-") }
    }

    /// Matches a DNS-1123 subdomain's pattern (labels joined by dots).
    static func matchesSubdomain(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard !bytes.isEmpty else { return false }
        return bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).allSatisfy { matchesLabel($0) }
    }

    /// `IsDNS1123Subdomain`.
    static func dns1123Subdomain(_ value: String) -> [String] {
        var errors: [String] = []
        if value.utf8.count > 253 { errors.append("must be no more than 253 characters") }
        if !matchesSubdomain(value) {
            errors.append(regexError(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                subdomainFormat, ["example.com"]))
        }
        return errors
    }

    /// `IsDNS1123Label`.
    static func dns1123Label(_ value: String) -> [String] {
        var errors: [String] = []
        if value.utf8.count > 63 { errors.append("must be no more than 63 characters") }
        if !matchesLabel(Array(value.utf8)) {
            errors.append(regexError(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
                labelFormat, ["my-name", "123-abc"]))
        }
        return errors
    }

    /// `IsQualifiedName`: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters.
    static func qualifiedName(_ value: String) -> [String] {
        let parts = value.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let qualifiedMessage = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        var errors: [String] = []
        let name: String
        switch parts.count {
        case 1:
            name = parts[0]
        case 2:
            let prefix = parts[0]
            name = parts[1]
            if prefix.isEmpty {
                errors.append("prefix part must be non-empty")
            } else {
                errors += dns1123Subdomain(prefix).map { "prefix part \($0)" }
            }
        default:
            return ["a qualified name " + regexError(qualifiedMessage, qualifiedNameFormat, ["MyName", "my.name", "123-abc"])
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
        }
        if name.isEmpty {
            errors.append("name part must be non-empty")
        } else if name.utf8.count > 63 {
            errors.append("name part must be no more than 63 characters")
        }
        let bytes = Array(name.utf8)
        func isAlnum(_ b: UInt8) -> Bool {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(b)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b)
        }
        let matches = bytes.first.map(isAlnum) == true && bytes.last.map(isAlnum) == true
            && bytes.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }
        if !matches {   // an empty name does not match the regex either
            errors.append("name part " + regexError(qualifiedMessage, qualifiedNameFormat, ["MyName", "my.name", "123-abc"]))
        }
        return errors
    }

    /// `IsValidLabelValue`.
    static func labelValue(_ value: String) -> [String] {
        var errors: [String] = []
        if value.utf8.count > 63 { errors.append("must be no more than 63 characters") }
        let bytes = Array(value.utf8)
        func isAlnum(_ b: UInt8) -> Bool {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(b)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b)
        }
        if let first = bytes.first, let last = bytes.last,
           !(isAlnum(first) && isAlnum(last) && bytes.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }) {
            errors.append(regexError(
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", ["MyValue", "my_value", "12345"]))
        }
        return errors
    }

    /// `ValidateObjectMeta`: the name (a DNS subdomain, or a DNS label for namespaces) and the namespace.
    static func objectMeta(_ metadata: ObjectMeta, namespaced: Bool, nameIsLabel: Bool) -> [FieldError] {
        var errors: [FieldError] = []
        let name = metadata.name ?? ""
        if name.isEmpty {
            errors.append(.required("metadata.name", "name or generateName is required"))
        } else {
            for message in nameIsLabel ? dns1123Label(name) : dns1123Subdomain(name) {
                errors.append(.invalid("metadata.name", .string(name), message))
            }
        }
        for key in (metadata.labels ?? [:]).keys.sorted() {
            for message in qualifiedName(key) { errors.append(.invalid("metadata.labels", .string(key), message)) }
            let value = metadata.labels?[key] ?? ""
            for message in labelValue(value) { errors.append(.invalid("metadata.labels", .string(value), message)) }
        }
        for key in (metadata.annotations ?? [:]).keys.sorted() {
            for message in qualifiedName(key.lowercased()) { errors.append(.invalid("metadata.annotations", .string(key), message)) }
        }
        let namespace = metadata.namespace ?? ""
        if namespaced {
            if namespace.isEmpty {
                errors.append(.required("metadata.namespace", ""))
            } else {
                for message in dns1123Label(namespace) {
                    errors.append(.invalid("metadata.namespace", .string(namespace), message))
                }
            }
        } else if !namespace.isEmpty {
            errors.append(.forbidden("metadata.namespace", "not allowed on this type"))
        }
        return errors
    }
}
