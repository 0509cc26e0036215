import Foundation
import Kubernetes

/// A core `v1` ServiceAccount as the server stores it (`<prefix>/serviceaccounts/<ns>/<name>`).
struct ServiceAccountObject: APIObject {
    var apiVersion: String?
    var kind: String?
    var metadata: ObjectMeta
    var secrets: JSONValue?
    var imagePullSecrets: JSONValue?
    var automountServiceAccountToken: Bool?

    static let info = ResourceInfo(
        group: "", version: "v1", resource: "serviceaccounts", kind: "ServiceAccount", listKind: "ServiceAccountList",
        namespaced: true, selectableFields: ["metadata.name", "metadata.namespace"], allowCreateOnUpdate: false,
        unsupportedFieldMessage: { label in "field label not supported: \(label)" }, returnDeletedObject: true)

    func fieldValue(_ field: String) -> String { metadataFieldValue(metadata, field) }

    func validateSpec() -> [FieldError] { [] }

    static func schema(_ generation: LeaseAPIServer.Generation) -> FieldSchema {
        .object([
            "apiVersion": .scalar, "kind": .scalar, "metadata": FieldSchema.objectMeta, "secrets": .any,
            "imagePullSecrets": .any, "automountServiceAccountToken": .scalar,
        ])
    }

    static func placeholder(namespace: String?, name: String) -> ServiceAccountObject {
        ServiceAccountObject(metadata: ObjectMeta(name: name, namespace: namespace))
    }
}

/// An `rbac.authorization.k8s.io/v1` PolicyRule.
struct PolicyRule: Codable, Sendable, Hashable {
    var verbs: [String]?
    var apiGroups: [String]?
    var resources: [String]?
    var resourceNames: [String]?
    var nonResourceURLs: [String]?

    /// `ResourceMatches` and friends of kube's RBAC authorizer (`rbac.go`).
    func allows(_ attributes: RequestAttributes) -> Bool {
        guard attributes.isResourceRequest else { return false }
        let verbs = verbs ?? []
        guard verbs.contains("*") || verbs.contains(attributes.verb) else { return false }
        let groups = apiGroups ?? []
        guard groups.contains("*") || groups.contains(attributes.group) else { return false }
        let combined = attributes.subresource.isEmpty ? attributes.resource : attributes.resource + "/" + attributes.subresource
        let resources = resources ?? []
        guard resources.contains(where: { $0 == "*" || $0 == combined || (!attributes.subresource.isEmpty && $0 == "*/" + attributes.subresource) })
        else { return false }
        let names = resourceNames ?? []
        return names.isEmpty || (!attributes.name.isEmpty && names.contains(attributes.name))
    }
}

/// An `rbac.authorization.k8s.io/v1` Role (`<prefix>/roles/<ns>/<name>`).
struct RoleObject: APIObject {
    var apiVersion: String?
    var kind: String?
    var metadata: ObjectMeta
    var rules: [PolicyRule]?

    static let info = ResourceInfo(
        group: "rbac.authorization.k8s.io", version: "v1", resource: "roles", kind: "Role", listKind: "RoleList",
        namespaced: true, selectableFields: ["metadata.name", "metadata.namespace"], allowCreateOnUpdate: true,
        unsupportedFieldMessage: defaultUnsupportedField)

    func fieldValue(_ field: String) -> String { metadataFieldValue(metadata, field) }

    /// `ValidatePolicyRule` for a namespaced Role.
    func validateSpec() -> [FieldError] {
        var errors: [FieldError] = []
        for (index, rule) in (rules ?? []).enumerated() {
            let path = "rules[\(index)]"
            if (rule.verbs ?? []).isEmpty {
                errors.append(.required("\(path).verbs", "verbs must contain at least one value"))
            }
            if !(rule.nonResourceURLs ?? []).isEmpty {
                errors.append(.invalid("\(path).nonResourceURLs", .raw(goStringSlice(rule.nonResourceURLs ?? [])), "namespaced rules cannot apply to non-resource URLs"))
                continue
            }
            if (rule.apiGroups ?? []).isEmpty {
                errors.append(.required("\(path).apiGroups", "resource rules must supply at least one api group"))
            }
            if (rule.resources ?? []).isEmpty {
                errors.append(.required("\(path).resources", "resource rules must supply at least one resource"))
            }
        }
        return errors
    }

    static func schema(_ generation: LeaseAPIServer.Generation) -> FieldSchema {
        .object([
            "apiVersion": .scalar, "kind": .scalar, "metadata": FieldSchema.objectMeta,
            "rules": .list(.object([
                "verbs": .list(.scalar), "apiGroups": .list(.scalar), "resources": .list(.scalar),
                "resourceNames": .list(.scalar), "nonResourceURLs": .list(.scalar),
            ])),
        ])
    }

    static func placeholder(namespace: String?, name: String) -> RoleObject {
        RoleObject(metadata: ObjectMeta(name: name, namespace: namespace))
    }
}

/// An `rbac.authorization.k8s.io/v1` RoleBinding (`<prefix>/rolebindings/<ns>/<name>`).
struct RoleBindingObject: APIObject {
    struct Subject: Codable, Sendable, Hashable {
        var kind: String?
        var apiGroup: String?
        var name: String?
        var namespace: String?
    }

    struct RoleRef: Codable, Sendable, Hashable {
        var apiGroup: String?
        var kind: String?
        var name: String?
    }

    var apiVersion: String?
    var kind: String?
    var metadata: ObjectMeta
    var subjects: [Subject]?
    var roleRef: RoleRef?

    static let info = ResourceInfo(
        group: "rbac.authorization.k8s.io", version: "v1", resource: "rolebindings", kind: "RoleBinding",
        listKind: "RoleBindingList", namespaced: true, selectableFields: ["metadata.name", "metadata.namespace"],
        allowCreateOnUpdate: true,
        unsupportedFieldMessage: defaultUnsupportedField)

    static var structFields: [String] { ["metadata", "roleRef"] }

    func fieldValue(_ field: String) -> String { metadataFieldValue(metadata, field) }

    /// `ValidateRoleBinding`: the roleRef and each subject.
    func validateSpec() -> [FieldError] {
        var errors: [FieldError] = []
        let ref = roleRef ?? RoleRef()
        if (ref.apiGroup ?? "") != "rbac.authorization.k8s.io" {
            errors.append(.notSupported("roleRef.apiGroup", .string(ref.apiGroup ?? ""), supported: ["rbac.authorization.k8s.io"]))
        }
        if !["Role", "ClusterRole"].contains(ref.kind ?? "") {
            errors.append(.notSupported("roleRef.kind", .string(ref.kind ?? ""), supported: ["Role", "ClusterRole"]))
        }
        if (ref.name ?? "").isEmpty { errors.append(.required("roleRef.name", "")) }
        for (index, subject) in (subjects ?? []).enumerated() {
            let path = "subjects[\(index)]"
            if (subject.name ?? "").isEmpty { errors.append(.required("\(path).name", "")) }
            switch subject.kind ?? "" {
            case "ServiceAccount":
                if let group = subject.apiGroup, !group.isEmpty {
                    errors.append(.notSupported("\(path).apiGroup", .string(group), supported: [""]))
                }
            case "User", "Group":
                if (subject.apiGroup ?? "") != "rbac.authorization.k8s.io" {
                    errors.append(.notSupported("\(path).apiGroup", .string(subject.apiGroup ?? ""), supported: ["rbac.authorization.k8s.io"]))
                }
            default:
                errors.append(.notSupported("\(path).kind", .string(subject.kind ?? ""), supported: ["ServiceAccount", "User", "Group"]))
            }
        }
        return errors
    }

    static func schema(_ generation: LeaseAPIServer.Generation) -> FieldSchema {
        .object([
            "apiVersion": .scalar, "kind": .scalar, "metadata": FieldSchema.objectMeta,
            "subjects": .list(.object(["kind": .scalar, "apiGroup": .scalar, "name": .scalar, "namespace": .scalar])),
            "roleRef": .object(["apiGroup": .scalar, "kind": .scalar, "name": .scalar]),
        ])
    }

    static func placeholder(namespace: String?, name: String) -> RoleBindingObject {
        RoleBindingObject(metadata: ObjectMeta(name: name, namespace: namespace))
    }

    /// Whether the binding names `user` (`appliesTo` of kube's RBAC authorizer). A ServiceAccount subject
    /// without a namespace means the binding's own.
    func appliesTo(_ user: AuthenticatedUser) -> Bool {
        let bindingNamespace = metadata.namespace ?? ""
        return (subjects ?? []).contains { subject in
            switch subject.kind ?? "" {
            case "ServiceAccount":
                let namespace = (subject.namespace ?? "").isEmpty ? bindingNamespace : subject.namespace ?? ""
                return user.serviceAccount.map { $0.namespace == namespace && $0.name == subject.name } ?? false
            case "User":
                return subject.name == user.name
            case "Group":
                return user.groups.contains(subject.name ?? "")
            default:
                return false
            }
        }
    }
}

/// `[]string{"a", "b"}`, as Go prints a string slice with `%#v`.
func goStringSlice(_ values: [String]) -> String {
    "[]string{" + values.map(goQuote).joined(separator: ", ") + "}"
}

/// Who a request is from, once authenticated.
struct AuthenticatedUser: Sendable, Hashable {
    /// `system:serviceaccount:<ns>:<name>`, `system:anonymous`, or the static tokens' admin.
    var name: String
    var groups: [String]
    /// The ServiceAccount a TokenRequest token stands for.
    var serviceAccount: (namespace: String, name: String)? {
        let parts = name.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "system", parts[1] == "serviceaccount" else { return nil }
        return (String(parts[2]), String(parts[3]))
    }

    /// A static bearer token: cluster-admin, as a member of `system:masters` is.
    static let admin = AuthenticatedUser(name: "lease-apiserver-admin", groups: ["system:masters", "system:authenticated"])
    static let anonymous = AuthenticatedUser(name: "system:anonymous", groups: ["system:unauthenticated"])

    static func serviceAccount(namespace: String, name: String) -> AuthenticatedUser {
        AuthenticatedUser(name: "system:serviceaccount:\(namespace):\(name)",
                          groups: ["system:serviceaccounts", "system:serviceaccounts:\(namespace)", "system:authenticated"])
    }
}

/// kube's `RequestInfo`: what a request does, as the authorizer sees it.
struct RequestAttributes: Sendable, Hashable {
    var isResourceRequest: Bool
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, or the method in
    /// lower case for others.
    var verb: String
    var group: String
    var resource: String
    var subresource: String
    var namespace: String
    var name: String
    var path: String

    init(_ request: HTTPRequest) {
        path = request.path
        var s = request.segments
        group = ""
        resource = ""
        subresource = ""
        namespace = ""
        name = ""
        var isResource = false
        if s.count >= 3 && s[0] == "apis" {
            group = s[1]
            s.removeFirst(3)
            isResource = !s.isEmpty
        } else if s.count >= 2 && s[0] == "api" {
            s.removeFirst(2)
            isResource = !s.isEmpty
        }
        isResourceRequest = isResource
        let watching = request.query["watch"] == "true" || request.query["watch"] == "1"
        guard isResource else {
            verb = request.method.rawValue.lowercased()
            return
        }
        if s[0] == "namespaces" && s.count >= 2 {
            // kube: a namespace (and its status and finalize subresources) is in its own namespace.
            namespace = s[1]
            if s.count >= 3 && !["status", "finalize"].contains(s[2]) { s.removeFirst(2) }
        }
        resource = s[0]
        if s.count >= 2 { name = s[1] }
        if s.count >= 3 { subresource = s[2...].joined(separator: "/") }
        switch request.method {
        case .GET where !name.isEmpty: verb = "get"
        case .GET:
            verb = watching ? "watch" : "list"
            // kube: a list or watch whose field selector requires one name is about that name.
            if let selected = Self.exactName(request.query["fieldSelector"] ?? ""), !selected.contains("/"),
               selected != ".", selected != ".." {
                name = selected
            }
        case .HEAD: verb = "get"
        case .POST: verb = "create"
        case .PUT: verb = "update"
        case .PATCH: verb = "patch"
        case .DELETE: verb = !name.isEmpty ? "delete" : "deletecollection"
        default: verb = request.method.rawValue.lowercased()
        }
    }

    /// The name a field selector requires exactly (`metadata.name=x` or `metadata.name==x` among its terms).
    static func exactName(_ selector: String) -> String? {
        for term in selector.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            for op in ["==", "="] where term.hasPrefix("metadata.name" + op) {
                let value = String(term.dropFirst(("metadata.name" + op).count))
                if !value.hasPrefix("=") && !value.isEmpty { return value }
            }
        }
        return nil
    }

    /// RBAC's 403: `leases.coordination.k8s.io "x" is forbidden: User "u" cannot get resource "leases" in API
    /// group "coordination.k8s.io" in the namespace "ns"` (or `forbidden: User "u" cannot get path "/x"`).
    func forbidden(_ user: AuthenticatedUser) -> APIError {
        let who = "User \(goQuote(user.name))"
        guard isResourceRequest else {
            return APIError(code: 403, reason: "Forbidden", message: "forbidden: \(who) cannot \(verb) path \(goQuote(path))",
                            details: Status.Details())
        }
        let qualified = group.isEmpty ? resource : "\(resource).\(group)"
        let combined = subresource.isEmpty ? resource : "\(resource)/\(subresource)"
        let scope = namespace.isEmpty ? "at the cluster scope" : "in the namespace \(goQuote(namespace))"
        let message = "\(qualified)\(name.isEmpty ? "" : " " + goQuote(name)) is forbidden: \(who) cannot \(verb) resource \(goQuote(combined)) in API group \(goQuote(group)) \(scope)"
        return APIError(code: 403, reason: "Forbidden", message: message,
                        details: Status.Details(name: name.isEmpty ? nil : name, group: group.isEmpty ? nil : group, kind: resource))
    }
}

/// The value of `metadata.name` or `metadata.namespace`, the only field selectors of these objects; "" for any other.
private func metadataFieldValue(_ metadata: ObjectMeta, _ field: String) -> String {
    switch field {
    case "metadata.name": metadata.name ?? ""
    case "metadata.namespace": metadata.namespace ?? ""
    default: ""
    }
}
