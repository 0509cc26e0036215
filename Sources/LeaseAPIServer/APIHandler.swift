import Etcd
import Foundation
import Kubernetes
import LeaderElection
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Synchronization

/// Authenticates, routes and serves one request. Runs in the connection's task, never on an event loop.
final class APIHandler: Sendable {
    let store: Store
    let tokens: Set<String>
    /// Successful TokenRequest-token authentications, reused for 10 s as kube does.
    let authenticationCache: AuthenticationCache
    let logger: Logger
    /// The kube-apiserver generation answered as.
    let generation: LeaseAPIServer.Generation
    /// Where time decides an answer: watch timeouts and bookmarks, the wait for a future resourceVersion,
    /// the authentication cache (``LeaseAPIServer/Configuration/clock``).
    let clock: any Clock<Duration>
    let watches = WatchCounter()
    /// The changes since start, replayed to watches from compacted revisions (kube's watch cache).
    let history = WatchHistory()
    /// The namespaces that exist from the start.
    static let systemNamespaces = ["default", "kube-system", "kube-public", "kube-node-lease"]
    /// Whether the start-up task has created ``systemNamespaces``.
    let systemNamespacesCreated = Mutex(false)
    /// Requests served, by `METHOD` (`GET`, `PUT`, …; `WATCH` for watch requests).
    let requestCounts = Mutex<[String: Int]>([:])
    /// The same, per namespace named in the path (`…/namespaces/<ns>/…`).
    let namespaceRequestCounts = Mutex<[String: [String: Int]]>([:])

    init(store: Store, tokens: Set<String>, generation: LeaseAPIServer.Generation,
         clock: any Clock<Duration> = ContinuousClock(), logger: Logger) {
        self.clock = clock
        self.store = store
        self.tokens = tokens
        self.authenticationCache = AuthenticationCache(clock: clock)
        self.generation = generation
        self.logger = logger
    }

    func handle(_ request: HTTPRequest) async -> HandlerResult {
        let isWatch = request.query["watch"] == "true" || request.query["watch"] == "1"
        let kind = isWatch ? "WATCH" : request.method.rawValue
        requestCounts.withLock { $0[kind, default: 0] += 1 }
        if let namespace = Self.namespace(inPath: request.path) {
            namespaceRequestCounts.withLock { $0[namespace, default: [:]][kind, default: 0] += 1 }
        }
        guard let format = OutputFormat.negotiate(request.headers.first(name: "Accept")) else {
            return .response(Self.statusResponse(OutputFormat.notAcceptable))
        }
        do {
            switch try await route(request) {
            case .response(let response):
                return .response(format.render(response, includeObject: request.query["includeObject"]))
            case .watch(let stream):
                return .watch(stream)
            }
        } catch let error as APIError {
            if format == .yaml { return .response(format.render(Self.statusResponse(error), includeObject: nil)) }
            return .response(Self.statusResponse(error))
        } catch {
            return .response(Self.statusResponse(.etcd(error, "\(request.method.rawValue) \(request.path)")))
        }
    }

    /// The namespace of a `…/namespaces/<ns>/…` path.
    static func namespace(inPath path: String) -> String? {
        let parts = path.split(separator: "/")
        guard let i = parts.firstIndex(of: "namespaces"), i + 1 < parts.count else { return nil }
        return String(parts[i + 1])
    }

    static func statusResponse(_ error: APIError) -> HTTPResponse {
        let body = (try? ServerJSON.encode(error.status)).map(Array.init) ?? Array(#"{"kind":"Status","apiVersion":"v1"}"#.utf8)
        return .json(HTTPResponseStatus(statusCode: error.code), body)
    }

    static func objectResponse<T: Encodable>(_ status: HTTPResponseStatus, _ object: T, warnings: [String] = []) throws -> HTTPResponse {
        var response = HTTPResponse.json(status, Array(try ServerJSON.encode(object)))
        for warning in warnings { response.headers.add(name: "Warning", value: warning) }
        return response
    }

    // MARK: - Authentication

    private enum Identity { case user(AuthenticatedUser), anonymous, rejected }

    /// kube's bearer token authenticators: `Authorization: Bearer <token>` (scheme case-insensitive), a static
    /// token (cluster-admin) or a TokenRequest token (its ServiceAccount).
    private func authenticate(_ request: HTTPRequest) async throws -> Identity {
        guard !tokens.isEmpty else { return .user(.admin) }
        guard let header = request.headers.first(name: "Authorization")?.trimmingCharacters(in: .whitespaces), !header.isEmpty else {
            return .anonymous
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return .anonymous }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        guard !token.isEmpty else { return .anonymous }
        var accepted = false
        for candidate in tokens where constantTimeEquals(candidate, token) { accepted = true }
        if accepted { return .user(.admin) }
        if let user = try await serviceAccountUser(forToken: token) { return .user(user) }
        return .rejected
    }

    /// Non-resource paths every authenticated user may GET (kube's `system:discovery`,
    /// `system:public-info-viewer` and `system:basic-user` ClusterRoles).
    private static func isDiscoveryPath(_ segments: [String]) -> Bool {
        guard let first = segments.first else { return false }
        return ["api", "apis", "healthz", "livez", "readyz", "version", "openapi"].contains(first)
    }

    /// kube's RBAC authorizer: the static tokens' user is `system:masters`; anonymous may read only the public
    /// paths; a ServiceAccount gets discovery and what the RoleBindings of the request's namespace grant.
    private func authorize(_ user: AuthenticatedUser, _ request: HTTPRequest) async throws {
        if user.groups.contains("system:masters") { return }
        let attributes = RequestAttributes(request)
        if !attributes.isResourceRequest {
            if user == .anonymous {
                if Self.publicPaths.contains(request.segments) && attributes.verb == "get" { return }
            } else if attributes.verb == "get" && Self.isDiscoveryPath(request.segments) {
                return
            }
            throw attributes.forbidden(user)
        }
        guard try await rbacAllows(user, attributes) else { throw attributes.forbidden(user) }
        // Escalation prevention, simplified (stricter than kube, which also lets a user create a Role or
        // RoleBinding granting no more than it holds): writing Roles needs `escalate`, RoleBindings `bind`.
        if attributes.group == RoleObject.info.group, ["create", "update", "patch"].contains(attributes.verb) {
            var special = attributes
            special.verb = attributes.resource == "rolebindings" ? "bind" : "escalate"
            special.resource = "roles"
            special.name = ""
            guard try await rbacAllows(user, special) else { throw attributes.forbidden(user) }
        }
    }

    /// Whether a Role bound to `user` in the request's namespace has a rule allowing the request.
    private func rbacAllows(_ user: AuthenticatedUser, _ attributes: RequestAttributes) async throws -> Bool {
        guard !attributes.namespace.isEmpty, user != .anonymous else { return false }
        let bindings = try await store.range(prefix: store.collectionPrefix(RoleBindingObject.self, namespace: attributes.namespace))
        for kv in bindings.kvs {
            guard let binding = try? store.decode(RoleBindingObject.self, kv), binding.appliesTo(user),
                  binding.roleRef?.kind == "Role", let roleName = binding.roleRef?.name, !roleName.isEmpty,
                  let roleKV = try await store.read(store.key(RoleObject.self, namespace: attributes.namespace, name: roleName)),
                  let role = try? store.decode(RoleObject.self, roleKV)
            else { continue }
            if (role.rules ?? []).contains(where: { $0.allows(attributes) }) { return true }
        }
        return false
    }

    func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for index in x.indices { difference |= x[index] ^ y[index] }
        return difference == 0
    }

    // MARK: - Routing

    private static let publicPaths: Set<[String]> = [["healthz"], ["livez"], ["readyz"], ["version"]]

    private func route(_ request: HTTPRequest) async throws -> HandlerResult {
        switch try await authenticate(request) {
        case .user(let user): try await authorize(user, request)
        case .rejected: throw APIError.unauthorized
        case .anonymous:
            // kube with anonymous authentication on and RBAC: `system:anonymous` may read only the public
            // paths, everything else is 403.
            try await authorize(.anonymous, request)
        }
        // HEAD, OPTIONS and other methods are no Kubernetes verbs.
        guard [HTTPMethod.GET, .POST, .PUT, .PATCH, .DELETE].contains(request.method) else {
            throw APIError.methodNotAllowed(request.method.rawValue, nil)
        }
        let s = request.segments
        // A segment that decodes to something with a slash, or to a dot path, names nothing.
        guard !s.contains(where: { $0.contains("/") || $0 == "." || $0 == ".." }) else { throw APIError.pathNotFound }
        switch s.count {
        case 1 where s[0] == "healthz" || s[0] == "livez":
            try requireGet(request)
            return .response(.text(.ok, "ok"))
        case 1 where s[0] == "readyz":
            try requireGet(request)
            return .response(await readiness())
        case 1 where s[0] == "version":
            try requireGet(request)
            return .response(.json(.ok, Array(Discovery.version(generation).utf8)))
        default:
            break
        }
        if let document = Discovery.document(for: s) {
            try requireGet(request)
            return .response(.json(.ok, Array(document.utf8)))
        }
        if s.count >= 3 && s[0] == "apis" && s[1] == "coordination.k8s.io" && s[2] == "v1" {
            let rest = Array(s.dropFirst(3))
            return try await resourceRoute(Lease.self, rest, request)
        }
        if s.count >= 3 && s[0] == "apis" && s[1] == EventsV1Event.info.group && s[2] == "v1" {
            let rest = Array(s.dropFirst(3))
            return try await resourceRoute(EventsV1Event.self, rest, request)
        }
        if s.count >= 3 && s[0] == "apis" && s[1] == RoleObject.info.group && s[2] == "v1" {
            let rest = Array(s.dropFirst(3))
            switch Self.resourceName(rest) {
            case RoleObject.info.resource: return try await resourceRoute(RoleObject.self, rest, request)
            case RoleBindingObject.info.resource: return try await resourceRoute(RoleBindingObject.self, rest, request)
            default: throw APIError.pathNotFound
            }
        }
        if s.count >= 2 && s[0] == "api" && s[1] == "v1" {
            let rest = Array(s.dropFirst(2))
            if rest.first == "namespaces" && (rest.count == 1 || rest.count == 2) {
                return try await namespaceRoute(rest.count == 2 ? rest[1] : nil, request)
            }
            if rest.count == 5 && rest[0] == "namespaces" && rest[2] == ServiceAccountObject.info.resource && rest[4] == "token" {
                guard request.method == .POST else { throw APIError.methodNotAllowed(verb(request.method, collection: false), nil) }
                try await requireNamespace(ServiceAccountObject.self, rest[1])
                return .response(try await tokenRequest(namespace: rest[1], name: rest[3], request))
            }
            if Self.resourceName(rest) == ServiceAccountObject.info.resource {
                return try await resourceRoute(ServiceAccountObject.self, rest, request)
            }
            return try await resourceRoute(CoreEvent.self, rest, request)
        }
        throw APIError.pathNotFound
    }

    /// PATCH: the patch applied to the stored object, then written as an update of the version read.
    private func patch<T: APIObject>(_ type: T.Type, namespace: String?, name: String, _ request: HTTPRequest) async throws -> HTTPResponse {
        guard mediaType(request) != "application/apply-patch+yaml" else {
            // Server-side apply is not implemented.
            throw APIError.unsupportedMediaType("415: Unsupported Media Type", details: Status.Details())
        }
        let key = store.key(T.self, namespace: namespace, name: name)
        guard let kv = try await store.read(key) else { throw APIError.notFound(T.info, name) }
        let current = try store.decode(T.self, kv).withTypeMeta.jsonValue
        let body: JSONValue
        do {
            body = try KubernetesJSON.decode(JSONValue.self, from: Data(request.body.readableBytesView))
        } catch {
            throw APIError.badRequest("error decoding patch: \(FieldScanner.syntaxError(Array(request.body.readableBytesView)))")
        }
        let patched = mediaType(request) == "application/json-patch+json"
            ? try Patch.apply(current, operations: body)
            : Patch.merge(current, body)
        var update = request
        update.body = ByteBuffer(bytes: try ServerJSON.encode(patched))
        update.headers.replaceOrAdd(name: "Content-Type", value: "application/json")
        return try await replace(T.self, namespace: namespace, name: name, update)
    }

    /// The resource a path below a group version names (`leases` in `namespaces/ns/leases/x`).
    static func resourceName(_ rest: [String]) -> String? {
        if rest.count >= 3 && rest[0] == "namespaces" { return rest[2] }
        return rest.first
    }

    private func requireGet(_ request: HTTPRequest) throws {
        guard request.method == .GET else { throw APIError.methodNotAllowed(request.method.rawValue, nil) }
    }

    /// `namespaces/{ns}/<resource>[/{name}]` and the cluster-wide `<resource>`.
    private func resourceRoute<T: APIObject>(_ type: T.Type, _ rest: [String], _ request: HTTPRequest) async throws -> HandlerResult {
        let resource = T.info.resource
        if rest.count == 1 && rest[0] == resource {
            guard request.method == .GET else { throw APIError.methodNotAllowed(verb(request.method, collection: true), T.info) }
            return try await listOrWatch(T.self, namespace: nil, request)
        }
        guard rest.count >= 3, rest[0] == "namespaces", rest[2] == resource, rest.count <= 4 else { throw APIError.pathNotFound }
        let namespace = rest[1]
        if rest.count == 3 {
            switch request.method {
            case .GET: return try await listOrWatch(T.self, namespace: namespace, request)
            case .POST: return .response(try await create(T.self, namespace: namespace, request))
            case .DELETE: return .response(try await deleteCollection(T.self, namespace: namespace, request))
            default: throw APIError.methodNotAllowed(verb(request.method, collection: true), T.info)
            }
        }
        let name = rest[3]
        switch request.method {
        case .POST: throw APIError.methodNotAllowed("create", nil)
        case .PATCH where !Self.patchMediaTypes.contains(mediaType(request)):
            throw APIError.unsupportedMediaType("415: Unsupported Media Type", details: Status.Details())
        case .PATCH: return .response(try await patch(T.self, namespace: namespace, name: name, request))
        case .GET: return .response(try await get(T.self, namespace: namespace, name: name, request))
        case .PUT: return .response(try await replace(T.self, namespace: namespace, name: name, request))
        case .DELETE: return .response(try await delete(T.self, namespace: namespace, name: name, request))
        default: throw APIError.methodNotAllowed(verb(request.method, collection: false), T.info)
        }
    }

    private func namespaceRoute(_ name: String?, _ request: HTTPRequest) async throws -> HandlerResult {
        guard let name else {
            switch request.method {
            case .GET: return try await listOrWatch(NamespaceObject.self, namespace: nil, request)
            case .POST: return .response(try await create(NamespaceObject.self, namespace: nil, request))
            default: throw APIError.methodNotAllowed(verb(request.method, collection: true), NamespaceObject.info)
            }
        }
        switch request.method {
        case .GET: return .response(try await get(NamespaceObject.self, namespace: nil, name: name, request))
        case .DELETE: return .response(try await deleteNamespace(name))
        default: throw APIError.methodNotAllowed(verb(request.method, collection: false), NamespaceObject.info)
        }
    }

    /// The API verb of a method, for `MethodNotAllowed` messages.
    private func verb(_ method: HTTPMethod, collection: Bool) -> String {
        switch method {
        case .GET: collection ? "list" : "get"
        case .POST: "create"
        case .PUT: "update"
        case .PATCH: "patch"
        case .DELETE: collection ? "deletecollection" : "delete"
        default: method.rawValue
        }
    }

    private func readiness() async -> HTTPResponse {
        do {
            _ = try await store.etcd.status()
            return .text(.ok, "ok")
        } catch {
            logger.debug("readiness check failed", metadata: ["error.message": "\(error)"])
            return .text(.internalServerError, "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n")
        }
    }

    // MARK: - Reading request bodies

    /// A decoded request body and the `Warning` headers its decoding produced.
    struct DecodedBody<T: APIObject> {
        var object: T
        /// `299 - "unknown field \"spec.foo\""`, one per unknown or duplicated field, in body order.
        var warnings: [String]
        /// The body's top-level fields, for validation of fields the model does not keep.
        var fields: [String: JSONValue] = [:]
    }

    /// Decodes a request body as kube's create and update handlers do, with their error messages, applying
    /// the request's `fieldValidation` (`options`: `CreateOptions` or `UpdateOptions`, for its error).
    func decodeBody<T: APIObject>(_ type: T.Type, _ request: HTTPRequest, options: String) throws -> DecodedBody<T> {
        let validation = try FieldValidation.parse(request.query["fieldValidation"], options: options)
        let info = T.info
        var data = Data(request.body.readableBytesView)
        switch mediaType(request) {
        case "", "application/json":
            break
        case "application/yaml":
            data = try YAMLSubset.json(from: data)
        default:
            throw APIError.unsupportedMediaType(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf")
        }
        // JSON `null` decodes as an empty object.
        if String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "null" { data = Data("{\"metadata\":{}}".utf8) }
        let json: JSONValue
        do {
            json = try KubernetesJSON.decode(JSONValue.self, from: data)
        } catch {
            throw APIError.badRequest(
                "the object provided is unrecognized (must be of type \(info.kind)): couldn't get version/kind; json parse error: "
                    + "\(FieldScanner.syntaxError(Array(data))) (\(summarize(data)))")
        }
        guard case .object(let fields) = json else {
            throw APIError.badRequest(
                "the object provided is unrecognized (must be of type \(info.kind)): couldn't get version/kind; json parse error: "
                    + "json: cannot unmarshal \(jsonTypeName(json)) into Go value of type struct { APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" } (\(summarize(data)))")
        }
        let apiVersion = fields["apiVersion"]?.stringValue ?? ""
        let kind = fields["kind"]?.stringValue ?? ""
        let version = (apiVersion.isEmpty ? info.apiVersion : apiVersion).split(separator: "/").last.map(String.init) ?? info.version
        let scheme = " in scheme \"kubernetes/pkg/api/legacyscheme/scheme.go:30\""
        if !apiVersion.isEmpty && apiVersion != info.apiVersion {
            if Self.registeredGroupVersions.contains(apiVersion) {
                throw APIError.badRequest("the API version in the data (\(apiVersion)) does not match the expected API version (\(info.apiVersion))")
            }
            let named = kind.isEmpty ? info.kind : kind
            throw APIError.badRequest(
                "\(named) in version \(goQuote(version)) cannot be handled as a \(info.kind): no kind \(goQuote(named)) is registered for version \(goQuote(apiVersion))" + scheme)
        }
        if !kind.isEmpty && kind != info.kind {
            throw APIError.badRequest(
                "\(kind) in version \(goQuote(version)) cannot be handled as a \(info.kind): no kind \(goQuote(kind)) is registered for version \(goQuote(apiVersion.isEmpty ? info.apiVersion : apiVersion))" + scheme)
        }
        let (problems, scalars) = FieldScanner.scan(Array(data), schema: T.schema(generation))
        if let error = GoDecoding.firstError(scalars, fields: T.goFields(generation)) {
            throw APIError.badRequest("\(info.kind) in version \(goQuote(version)) cannot be handled as a \(info.kind): \(error)")
        }
        let missing = T.structFields.filter { fields[$0] == nil || fields[$0] == .null }
        if !missing.isEmpty, var object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            // Struct fields in Go (`metadata`, an Event's `involvedObject`): absent, they are empty.
            for field in missing { object[field] = [String: Any]() }
            data = (try? JSONSerialization.data(withJSONObject: object)) ?? data
        }
        var object: T
        if problems.contains(where: { $0.kind == .duplicate }),
           let lastWins = try? JSONSerialization.data(withJSONObject: JSONSerialization.jsonObject(with: data)) {
            // Go's decoder keeps the last of duplicated keys.
            data = lastWins
        }
        do {
            object = try KubernetesJSON.decode(T.self, from: data)
        } catch {
            throw APIError.badRequest("\(info.kind) in version \(goQuote(version)) cannot be handled as a \(info.kind): \(describeDecodingError(error))")
        }
        object.dropUnknownFields(generation)
        // Unknown metadata fields are dropped too (the model keeps every field it does not know).
        if case .object(let known) = FieldSchema.objectMeta {
            object.metadata.additionalFields = object.metadata.additionalFields.filter { known[$0.key] != nil }
        }
        guard validation != .ignore else { return DecodedBody(object: object, warnings: [], fields: fields) }
        guard !problems.isEmpty else { return DecodedBody(object: object, warnings: [], fields: fields) }
        if validation == .strict {
            throw APIError.badRequest(
                "\(info.kind) in version \(goQuote(version)) cannot be handled as a \(info.kind): strict decoding error: "
                    + problems.map(\.message).joined(separator: ", "))
        }
        return DecodedBody(object: object, warnings: problems.map { "299 - " + goQuote($0.message) }, fields: fields)
    }

    private func jsonTypeName(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool: "bool"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    /// The patch types kube-apiserver takes (`Content-Type` of a PATCH).
    static let patchMediaTypes: Set<String> = [
        "application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ]

    /// The request's `Content-Type` without parameters, lower case.
    func mediaType(_ request: HTTPRequest) -> String {
        request.headers.first(name: "Content-Type")?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
    }

    /// Group versions kube-apiserver's scheme knows (a body naming another is "no kind registered").
    static let registeredGroupVersions: Set<String> = [
        "v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v1", "autoscaling/v2", "networking.k8s.io/v1",
        "rbac.authorization.k8s.io/v1", "storage.k8s.io/v1", "coordination.k8s.io/v1", "coordination.k8s.io/v1beta1",
        "events.k8s.io/v1", "events.k8s.io/v1beta1", "authentication.k8s.io/v1", "authorization.k8s.io/v1",
        "apiextensions.k8s.io/v1", "admissionregistration.k8s.io/v1", "discovery.k8s.io/v1", "node.k8s.io/v1",
        "scheduling.k8s.io/v1", "certificates.k8s.io/v1",
    ]

    /// apiserver's `summarizeData`: the body, or its hex, cut to 30 bytes.
    private func summarize(_ data: Data) -> String {
        guard let first = data.first else { return "<empty>" }
        let head = data.prefix(30)
        let ellipsis = data.count > 30 ? " ..." : ""
        if first == UInt8(ascii: "{") {
            return String(decoding: head, as: UTF8.self) + ellipsis
        }
        return head.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() + ellipsis
    }

    /// `EnsureObjectNamespaceMatchesRequestNamespace`.
    private func ensureNamespace(_ metadata: inout ObjectMeta, _ namespace: String?) throws {
        let requested = namespace ?? ""
        let actual = metadata.namespace ?? ""
        if actual == requested { return }
        if actual.isEmpty {
            metadata.namespace = requested
        } else if requested.isEmpty {
            metadata.namespace = nil
        } else {
            throw APIError.badRequest("the namespace of the provided object does not match the namespace sent on the request")
        }
    }

    // MARK: - Verbs

    private func get<T: APIObject>(_ type: T.Type, namespace: String?, name: String, _ request: HTTPRequest) async throws -> HTTPResponse {
        if let requested = request.query["resourceVersion"], !requested.isEmpty, requested != "0" {
            _ = try await notNewerThanStore(requested)   // then served from the newest state, as the watch cache does
        }
        let key = store.key(T.self, namespace: namespace, name: name)
        guard let kv = try await store.read(key) else { throw APIError.notFound(T.info, name) }
        return try Self.objectResponse(.ok, try store.decode(T.self, kv).withTypeMeta)
    }

    /// `dryRun`: `All` runs a request without storing anything; anything else is kube's 422 on the options.
    private func dryRun(_ request: HTTPRequest, options: String = "CreateOptions") throws -> Bool {
        guard let value = request.query["dryRun"] else { return false }
        guard value == "All" else {
            throw APIError.invalid(kind: options, group: "meta.k8s.io", name: "",
                                   [.notSupported("dryRun", .raw("[]string{\(goQuote(value))}"), supported: ["All"])])
        }
        return true
    }

    /// `NamespaceLifecycle` admission: creating in a namespace that does not exist is 404 `namespaces "x" not found`.
    private func requireNamespace<T: APIObject>(_ type: T.Type, _ namespace: String?) async throws {
        guard T.info.namespaced, let namespace, !namespace.isEmpty else { return }
        let key = store.key(NamespaceObject.self, namespace: nil, name: namespace)
        guard try await store.read(key) == nil else { return }
        if Self.systemNamespaces.contains(namespace) && !systemNamespacesCreated.withLock({ $0 }) {
            // The start-up task has not created it yet: the system namespaces exist from the start.
            var object = NamespaceObject(apiVersion: nil, kind: nil, metadata: ObjectMeta(name: namespace))
            prepareForCreate(&object)
            _ = try await store.createIfAbsent(key, try store.encodeForStorage(object))
            return
        }
        throw APIError.notFound(NamespaceObject.info, namespace)
    }

    /// Sets `metadata.managedFields` for an `Update` by the request's manager that turns `old` (nil on a
    /// create) into `object`. Sent managedFields, when there are any, replace the stored ones as the base.
    private func manage<T: APIObject>(_ object: inout T, old: T?, _ request: HTTPRequest) {
        let stored = old.flatMap { ManagedFields($0.metadata.additionalFields["managedFields"]) }
        var managed = ManagedFields(object.metadata.additionalFields["managedFields"]) ?? stored ?? ManagedFields()
        // kube's `IgnoreManagedFieldsTimestampsTransformer`: an entry sent back unchanged but for its time
        // keeps the stored time.
        if let stored { managed.keepTimes(of: stored) }
        object.metadata.additionalFields["managedFields"] = nil
        managed.update(
            manager: ManagedFields.manager(request), apiVersion: T.info.apiVersion, time: Self.timestampNow(),
            // A create changes the fields that differ from the type's empty object.
            old: ManagedFields.fields(of: old?.jsonValue ?? GoShape.event(T.placeholder(namespace: nil, name: "").withTypeMeta.jsonValue)),
            new: ManagedFields.fields(of: object.jsonValue))
        object.metadata.additionalFields["managedFields"] = managed.json
    }

    /// `rest.BeforeCreate` + `FillObjectMetaSystemFields`: uid, creation time, a generated name, and the
    /// fields a client may not set.
    private func prepareForCreate<T: APIObject>(_ object: inout T) {
        object.metadata.uid = UUID().uuidString.lowercased()
        object.metadata.creationTimestamp = Self.timestampNow()
        for field in ["deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "generation"] {
            object.metadata.additionalFields.removeValue(forKey: field)
        }
        if (object.metadata.name ?? "").isEmpty, let base = object.metadata.additionalFields["generateName"]?.stringValue, !base.isEmpty {
            object.metadata.name = Self.generateName(base)
        }
        object.prepareForCreate()
    }

    /// A creation timestamp: RFC 3339, whole seconds, UTC.
    static func timestampNow() -> String {
        let now = MicroTime.now()
        let seconds = MicroTime(microsecondsSinceEpoch: now.microsecondsSinceEpoch - ((now.microsecondsSinceEpoch % 1_000_000 + 1_000_000) % 1_000_000))
        return seconds.rfc3339.replacingOccurrences(of: ".000000Z", with: "Z")
    }

    /// `SimpleNameGenerator`: the base (cut to 58 characters) and five random characters.
    static func generateName(_ base: String) -> String {
        let alphabet = Array("bcdfghjklmnpqrstvwxz2456789")
        return String(base.prefix(58)) + String((0..<5).map { _ in alphabet.randomElement()! })
    }

    private func create<T: APIObject>(_ type: T.Type, namespace: String?, _ request: HTTPRequest) async throws -> HTTPResponse {
        let decoded = try decodeBody(T.self, request, options: "CreateOptions")
        var object = decoded.object
        try ensureNamespace(&object.metadata, namespace)
        try await requireNamespace(T.self, namespace)
        let generated = (object.metadata.name ?? "").isEmpty && !(object.metadata.additionalFields["generateName"]?.stringValue ?? "").isEmpty
        var attempts = 0
        while true {
            var candidate = object
            prepareForCreate(&candidate)
            let errors = candidate.validateCreate() + candidate.validateBody(decoded.fields)
            guard errors.isEmpty else {
                throw APIError.invalid(kind: T.info.kind, group: T.info.invalidGroup, name: candidate.metadata.name ?? "", errors)
            }
            if let version = candidate.metadata.resourceVersion, !version.isEmpty {
                // The etcd3 store's plain error, which the apiserver reports as a 500 without a reason.
                throw APIError(code: 500, reason: nil, message: "resourceVersion should not be set on objects to be created")
            }
            let name = candidate.metadata.name ?? ""
            let key = store.key(T.self, namespace: candidate.metadata.namespace, name: name)
            manage(&candidate, old: nil, request)
            if try dryRun(request) {
                // Everything but the write: the answer has a uid but no resourceVersion.
                return try Self.objectResponse(.created, candidate.withTypeMeta, warnings: decoded.warnings)
            }
            if let revision = try await store.createIfAbsent(key, try store.encodeForStorage(candidate)) {
                candidate.metadata.resourceVersion = String(revision)
                return try Self.objectResponse(.created, candidate.withTypeMeta, warnings: decoded.warnings)
            }
            attempts += 1
            guard generated, attempts < 8 else { throw APIError.alreadyExists(T.info, name) }
        }
    }

    private func replace<T: APIObject>(_ type: T.Type, namespace: String?, name: String, _ request: HTTPRequest) async throws -> HTTPResponse {
        let decoded = try decodeBody(T.self, request, options: "UpdateOptions")
        var object = decoded.object
        try ensureNamespace(&object.metadata, namespace)
        // `checkName`.
        let bodyName = object.metadata.name ?? ""
        guard !bodyName.isEmpty else {
            throw APIError.badRequest("the name of the object (\(name) based on URL) was undeterminable: name parameter required")
        }
        guard bodyName == name else {
            throw APIError.badRequest("the name of the object (\(bodyName)) does not match the name on the URL (\(name))")
        }
        let key = store.key(T.self, namespace: namespace, name: name)
        // kube's `defaultUpdatedObjectInfo.Preconditions()`: a uid in the body is a precondition, checked by
        // `GuaranteedUpdate` before anything else — against an empty object when none is stored, so a PUT
        // carrying a uid never re-creates a deleted object.
        let uidPrecondition = (object.metadata.uid ?? "").isEmpty ? nil : object.metadata.uid
        func uidPreconditionFailed(_ stored: String, revision: Int64) -> APIError {
            .conflict(T.info, name, "StorageError: invalid object, Code: 4, Key: \(key), ResourceVersion: \(revision), AdditionalErrorMsg: Precondition failed: UID in precondition: \(uidPrecondition ?? ""), UID in object meta: \(stored)")
        }
        while true {
            guard let kv = try await store.read(key) else {
                if uidPrecondition != nil { throw uidPreconditionFailed("", revision: 0) }
                guard T.info.allowCreateOnUpdate else { throw APIError.notFound(T.info, name) }
                try await requireNamespace(T.self, namespace)
                var candidate = object
                candidate.metadata.resourceVersion = nil
                prepareForCreate(&candidate)
                let errors = candidate.validateCreate() + candidate.validateBody(decoded.fields)
                guard errors.isEmpty else { throw APIError.invalid(kind: T.info.kind, group: T.info.invalidGroup, name: name, errors) }
                manage(&candidate, old: nil, request)
                if let revision = try await store.createIfAbsent(key, try store.encodeForStorage(candidate)) {
                    candidate.metadata.resourceVersion = String(revision)
                    return try Self.objectResponse(.created, candidate.withTypeMeta, warnings: decoded.warnings)
                }
                continue   // created meanwhile: update it (which checks the resourceVersion)
            }
            if let uidPrecondition {
                let storedUID = try store.decode(T.self, kv).metadata.uid ?? ""
                if storedUID != uidPrecondition { throw uidPreconditionFailed(storedUID, revision: 0) }
            }
            let sent = object.metadata.resourceVersion ?? ""
            let version: UInt64
            if sent.isEmpty {
                version = 0
            } else if let parsed = UInt64(sent) {
                version = parsed
            } else {
                // The etcd3 store's plain error, which the apiserver reports as a 500 without a reason.
                throw APIError(code: 500, reason: nil, message: "strconv.ParseUint: parsing \(goQuote(sent)): invalid syntax")
            }
            guard version != 0 else {
                // The registry store reports this with the resource as the kind.
                throw APIError.invalid(kind: T.info.resource, group: T.info.group, name: name,
                                       [.invalid("metadata.resourceVersion", .raw("0x0"), "must be specified for an update")])
            }
            guard Int64(clamping: version) == kv.modRevision else { throw APIError.conflict(T.info, name) }
            let old = try store.decode(T.self, kv)
            var candidate = object
            // `BeforeUpdate`: keep the uid when none is sent, and the creation time and generation always.
            if (candidate.metadata.uid ?? "").isEmpty { candidate.metadata.uid = old.metadata.uid }
            candidate.metadata.creationTimestamp = old.metadata.creationTimestamp
            for field in ["generation", "deletionTimestamp", "deletionGracePeriodSeconds"] {
                candidate.metadata.additionalFields[field] = old.metadata.additionalFields[field]
            }
            let errors = candidate.validateUpdate(old: old) + candidate.validateBody(decoded.fields)
            guard errors.isEmpty else { throw APIError.invalid(kind: T.info.kind, group: T.info.invalidGroup, name: name, errors) }
            manage(&candidate, old: old, request)
            // A no-op update is not a write: the stored object, its resourceVersion unchanged, and no event.
            var unchanged = candidate.withTypeMeta
            unchanged.metadata.resourceVersion = old.metadata.resourceVersion
            if unchanged == old.withTypeMeta {
                return try Self.objectResponse(.ok, old.withTypeMeta, warnings: decoded.warnings)
            }
            let finalizers = candidate.metadata.additionalFields["finalizers"]?.arrayValue ?? []
            if candidate.metadata.additionalFields["deletionTimestamp"] != nil && finalizers.isEmpty {
                // The last finalizer is gone from an object being deleted: it is deleted now, and the answer
                // is the object as updated, with its old resourceVersion.
                guard try await store.delete(key, ifModRevision: kv.modRevision) != nil else { throw APIError.conflict(T.info, name) }
                candidate.metadata.additionalFields["finalizers"] = nil
                candidate.metadata.resourceVersion = old.metadata.resourceVersion
                return try Self.objectResponse(.ok, candidate.withTypeMeta, warnings: decoded.warnings)
            }
            guard let revision = try await store.replace(key, try store.encodeForStorage(candidate), ifModRevision: kv.modRevision) else {
                throw APIError.conflict(T.info, name)
            }
            candidate.metadata.resourceVersion = String(revision)
            return try Self.objectResponse(.ok, candidate.withTypeMeta, warnings: decoded.warnings)
        }
    }

    /// `DeleteOptions`, when a body is sent.
    private struct DeleteOptions: Decodable {
        struct Preconditions: Decodable {
            var uid: String?
            var resourceVersion: String?
        }
        var preconditions: Preconditions?
        var propagationPolicy: String?
        var gracePeriodSeconds: Int64?
        var dryRun: [String]?
    }

    /// Reads and validates the DELETE body and `dryRun`.
    private func deleteOptions(_ request: HTTPRequest) throws -> (options: DeleteOptions, dryRun: Bool) {
        var options = DeleteOptions()
        if request.body.readableBytes > 0 {
            do {
                options = try KubernetesJSON.decode(DeleteOptions.self, from: Data(request.body.readableBytesView))
            } catch {
                throw APIError.badRequest("the body of the request was in an unknown format - accepted media types include: application/json")
            }
        }
        if let policy = options.propagationPolicy, !["Foreground", "Background", "Orphan"].contains(policy) {
            throw APIError.invalid(kind: "DeleteOptions", group: "meta.k8s.io", name: "",
                                   [.notSupported("propagationPolicy", .string(policy), supported: ["Foreground", "Background", "Orphan", "nil"])])
        }
        var dryRun = try self.dryRun(request, options: "DeleteOptions")
        if let values = options.dryRun, !values.isEmpty {
            guard values == ["All"] else {
                throw APIError.invalid(kind: "DeleteOptions", group: "meta.k8s.io", name: "",
                                       [.notSupported("dryRun", .raw("[]string{" + values.map(goQuote).joined(separator: ", ") + "}"), supported: ["All"])])
            }
            dryRun = true
        }
        return (options, dryRun)
    }

    /// The finalizers a propagation policy leaves on an object being deleted (`shouldUpdateFinalizers`).
    private static func finalizers(_ current: [String], policy: String?) -> [String] {
        var result = current
        switch policy {
        case "Foreground":
            result.removeAll { $0 == "orphan" }
            if !result.contains("foregroundDeletion") { result.append("foregroundDeletion") }
        case "Orphan":
            result.removeAll { $0 == "foregroundDeletion" }
            if !result.contains("orphan") { result.append("orphan") }
        case "Background":
            result.removeAll { $0 == "orphan" || $0 == "foregroundDeletion" }
        default:
            break
        }
        return result
    }

    private func delete<T: APIObject>(_ type: T.Type, namespace: String?, name: String, _ request: HTTPRequest) async throws -> HTTPResponse {
        let (options, dryRun) = try deleteOptions(request)
        let key = store.key(T.self, namespace: namespace, name: name)
        while true {
            guard let kv = try await store.read(key) else { throw APIError.notFound(T.info, name) }
            let old = try store.decode(T.self, kv)
            if let preconditions = options.preconditions {
                func failed(_ detail: String) -> APIError {
                    APIError(code: 409, reason: "Conflict",
                             message: "Operation cannot be fulfilled on \(T.info.qualifiedKind) \(goQuote(name)): \(detail)",
                             details: Status.Details(name: name, group: T.info.group.isEmpty ? nil : T.info.group, kind: T.info.kind))
                }
                if let uid = preconditions.uid, uid != (old.metadata.uid ?? "") {
                    throw failed("the UID in the precondition (\(uid)) does not match the UID in record (\(old.metadata.uid ?? "")). The object might have been deleted and then recreated")
                }
                if let version = preconditions.resourceVersion, version != String(kv.modRevision) {
                    throw failed("the ResourceVersion in the precondition (\(version)) does not match the ResourceVersion in record (\(kv.modRevision)). The object might have been modified")
                }
            }
            // `BeforeDelete` / `updateForGracefulDeletionAndFinalizers`: an object with finalizers is only
            // marked (deletionTimestamp, grace period 0) and stays until they are removed.
            let current = old.metadata.additionalFields["finalizers"]?.arrayValue?.compactMap(\.stringValue) ?? []
            let finalizers = Self.finalizers(current, policy: options.propagationPolicy)
            let beingDeleted = old.metadata.additionalFields["deletionTimestamp"] != nil
            if !finalizers.isEmpty {
                if beingDeleted && finalizers == current { return try Self.objectResponse(.ok, old.withTypeMeta) }
                var marked = old
                marked.metadata.additionalFields["finalizers"] = .array(finalizers.map(JSONValue.string))
                if !beingDeleted {
                    marked.metadata.additionalFields["deletionTimestamp"] = .string(Self.timestampNow())
                    marked.metadata.additionalFields["deletionGracePeriodSeconds"] = .number(0)
                }
                if dryRun { return try Self.objectResponse(.ok, marked.withTypeMeta) }
                guard let revision = try await store.replace(key, try store.encodeForStorage(marked), ifModRevision: kv.modRevision) else {
                    continue
                }
                marked.metadata.resourceVersion = String(revision)
                return try Self.objectResponse(.ok, marked.withTypeMeta)
            }
            var deletedAt = kv.modRevision
            if !dryRun {
                guard let revision = try await store.delete(key, ifModRevision: kv.modRevision) else { continue }
                deletedAt = revision
            }
            if T.info.returnDeletedObject {
                // `ReturnDeletedObject` registries answer the object, at the deletion's revision.
                var deleted = old
                deleted.metadata.resourceVersion = String(deletedAt)
                return try Self.objectResponse(.ok, deleted.withTypeMeta)
            }
            var status = Status(status: "Success", details: T.info.details(name: name, uid: old.metadata.uid), code: 200)
            status.code = nil   // the registry store's Status carries no code
            return try Self.objectResponse(.ok, status)
        }
    }

    /// `DELETE` on a collection: deletes every matching object and answers the list of what it deleted.
    private func deleteCollection<T: APIObject>(_ type: T.Type, namespace: String, _ request: HTTPRequest) async throws -> HTTPResponse {
        let (_, dryRun) = try deleteOptions(request)
        let selectors = try Selectors(query: request.query, info: T.info)
        let prefix = store.collectionPrefix(T.self, namespace: namespace)
        let response = try await store.range(prefix: prefix)
        var items: [T] = []
        for kv in response.kvs {
            let object = try store.decode(T.self, kv)
            guard selectors.matches(object) else { continue }
            if !dryRun {
                guard try await store.delete(kv.keyString, ifModRevision: kv.modRevision) != nil else { continue }
            }
            items.append(object.withoutTypeMeta)
        }
        let list = KubernetesList(kind: T.info.listKind, apiVersion: T.info.apiVersion,
                                  metadata: ListMeta(resourceVersion: String(response.header.revision)), items: items)
        return try Self.objectResponse(.ok, list)
    }

    private static let undeletableNamespaces: Set<String> = ["default", "kube-system", "kube-public"]

    /// Deletes a namespace with its leases and events, in one transaction.
    private func deleteNamespace(_ name: String) async throws -> HTTPResponse {
        if Self.undeletableNamespaces.contains(name) {
            throw APIError.forbidden(NamespaceObject.info, name, "this namespace may not be deleted")
        }
        let key = store.key(NamespaceObject.self, namespace: nil, name: name)
        while true {
            guard let kv = try await store.read(key) else { throw APIError.notFound(NamespaceObject.info, name) }
            var namespace = try store.decode(NamespaceObject.self, kv)
            let contents = [
                store.collectionPrefix(Lease.self, namespace: name), store.collectionPrefix(CoreEvent.self, namespace: name),
                store.collectionPrefix(ServiceAccountObject.self, namespace: name), store.collectionPrefix(RoleObject.self, namespace: name),
                store.collectionPrefix(RoleBindingObject.self, namespace: name),
            ]
            guard let revision = try await store.delete(key, ifModRevision: kv.modRevision, alsoPrefixes: contents) else { continue }
            namespace.metadata.resourceVersion = String(revision)
            namespace.metadata.additionalFields["deletionTimestamp"] = .string(Self.timestampNow())
            namespace.status = NamespaceObject.NamespaceStatus(phase: "Terminating")
            return try Self.objectResponse(.ok, namespace.withTypeMeta)
        }
    }

    /// Creates `default`, `kube-system`, `kube-public` and `kube-node-lease` when absent; retries until etcd
    /// answers (or the task is cancelled). Returns the store's revision afterwards (`nil` when cancelled).
    @discardableResult
    func ensureSystemNamespaces() async -> Int64? {
        var pending = Self.systemNamespaces
        var backoff = Duration.milliseconds(200)
        while !pending.isEmpty && !Task.isCancelled {
            do {
                while let name = pending.first {
                    var namespace = NamespaceObject(apiVersion: nil, kind: nil, metadata: ObjectMeta(name: name))
                    prepareForCreate(&namespace)
                    let key = store.key(NamespaceObject.self, namespace: nil, name: name)
                    _ = try await store.createIfAbsent(key, try store.encodeForStorage(namespace))
                    pending.removeFirst()
                }
                systemNamespacesCreated.withLock { $0 = true }
                return try await store.etcd.status().header.revision
            } catch {
                logger.debug("cannot create the system namespaces yet", metadata: ["error.message": "\(error)"])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
        return nil
    }

    // MARK: - Lists

    /// A resourceVersion no newer than the store's: kube's watch cache waits up to 3 s (on ``clock``) for a
    /// newer one, then answers 504 `Too large resource version`.
    func notNewerThanStore(_ requested: String) async throws -> Int64 {
        guard let version = Int64(requested), version > 0 else {
            throw APIError.badRequest("resourceVersion: Invalid value: \(goQuote(requested)): strconv.ParseUint: parsing \(goQuote(requested)): invalid syntax")
        }
        var current = try await store.call("reading the revision") { try await store.etcd.status().header.revision }
        if version > current {
            try await clock.sleep(for: .seconds(3))
            current = try await store.call("reading the revision") { try await store.etcd.status().header.revision }
        }
        guard version <= current else {
            throw APIError(code: 504, reason: "Timeout", message: "Timeout: Too large resource version: \(version), current: \(current)",
                           details: Status.Details(causes: [Status.Cause(reason: "ResourceVersionTooLarge", message: "Too large resource version")],
                                                   retryAfterSeconds: 1))
        }
        return version
    }

    /// Decodes a `continue` token, with kube's errors.
    static func continueToken(_ text: String) throws -> ContinueToken {
        let prefix = "invalid continue token: continue key is not valid: "
        guard let data = Data(base64URLEncoded: text) else {
            throw APIError.badRequest(prefix + "illegal base64 data at input byte 0")
        }
        guard let token = try? JSONDecoder().decode(ContinueToken.self, from: data) else {
            let first = data.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
            let character = first.map { byte -> String in
                if byte >= 0x20 && byte < 0x7F { return String(Character(UnicodeScalar(byte))) }
                let scalar = byte < 0x80 ? Int(byte) : Int(byte)
                return String(format: "\\u%04x", scalar)
            } ?? ""
            throw APIError.badRequest(prefix + "invalid character '\(character)' looking for beginning of value")
        }
        guard token.v == "meta.k8s.io/v1", token.rv > 0 || token.rv == -1 else {
            throw APIError.badRequest(prefix + "incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
        }
        return token
    }

    /// A `continue` token: kube's format (base64url of `{"v":"meta.k8s.io/v1","rv":N,"start":"<key suffix>"}`).
    struct ContinueToken: Codable {
        var v: String
        var rv: Int64
        var start: String
    }

    private func listOrWatch<T: APIObject>(_ type: T.Type, namespace: String?, _ request: HTTPRequest) async throws -> HandlerResult {
        if let watch = request.query["watch"], try parseBool(watch, "watch") {
            return try await startWatch(T.self, namespace: namespace, request)
        }
        return .response(try await list(T.self, namespace: namespace, request))
    }

    func parseBool(_ text: String, _ name: String) throws -> Bool {
        switch text {
        case "1", "t", "T", "true", "TRUE", "True": return true
        case "", "0", "f", "F", "false", "FALSE", "False": return false
        default: throw APIError.badRequest("invalid value for \(name): \(goQuote(text)): strconv.ParseBool: parsing \(goQuote(text)): invalid syntax")
        }
    }

    private func list<T: APIObject>(_ type: T.Type, namespace: String?, _ request: HTTPRequest) async throws -> HTTPResponse {
        let selectors = try Selectors(query: request.query, info: T.info)
        var limit: Int?
        if let text = request.query["limit"], !text.isEmpty {
            guard let value = Int(text) else {
                throw APIError.badRequest("limit: Invalid value: \(goQuote(text)): strconv.ParseInt: parsing \(goQuote(text)): invalid syntax")
            }
            if value > 0 { limit = value }
        }
        let requested = request.query["resourceVersion"] ?? ""
        let match = request.query["resourceVersionMatch"] ?? ""
        if !match.isEmpty && requested.isEmpty {
            throw APIError.invalid(kind: "ListOptions", group: "meta.k8s.io", name: "",
                                   [.forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided")])
        }
        if !match.isEmpty && match != "Exact" && match != "NotOlderThan" {
            throw APIError.invalid(kind: "ListOptions", group: "meta.k8s.io", name: "",
                                   [.notSupported("resourceVersionMatch", .string(match), supported: ["Exact", "NotOlderThan"])])
        }
        // `resourceVersion=0` is served from the watch cache, which ignores `limit`.
        if requested == "0" && request.query["continue"] == nil { limit = nil }
        let prefix = store.collectionPrefix(T.self, namespace: namespace)
        var start: String?
        var revision: Int64 = 0
        if !requested.isEmpty && requested != "0" {
            let version = try await notNewerThanStore(requested)
            // Exact, or a resourceVersion with a limit (and no NotOlderThan), is read from etcd at that
            // revision; otherwise the watch cache serves its newest state.
            if match == "Exact" || (limit != nil && match != "NotOlderThan") { revision = version }
        }
        if let text = request.query["continue"], !text.isEmpty {
            let token = try Self.continueToken(text)
            start = prefix + token.start
            // rv -1 is the token a 410 offered: it continues at the newest revision.
            if token.rv != -1 { revision = token.rv }
        }
        let response: EtcdRangeResponse
        do {
            let prefixBytes = Array(prefix.utf8)
            response = try await store.etcd.range(
                start.map { Array($0.utf8) } ?? prefixBytes, rangeEnd: etcdPrefixEnd(prefixBytes), revision: revision)
        } catch let error as EtcdError where revision != 0 && error.code == .compacted {
            if let start {
                // The expired continue token: 410, offering a token that continues inconsistently.
                let token = ContinueToken(v: "meta.k8s.io/v1", rv: -1, start: String(start.dropFirst(prefix.count)))
                var status = APIError.expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.").status
                status.metadata = ListMeta(continue: try ServerJSON.encode(token).base64URLEncodedString())
                return .json(.gone, Array(try ServerJSON.encode(status)))
            }
            throw APIError.expired("The resourceVersion for the provided list is too old.")
        } catch {
            throw APIError.etcd(error, "listing \(prefix)")
        }
        let listRevision = revision != 0 ? revision : response.header.revision
        var items: [T] = []
        var lastKey = ""
        var remaining: Int64 = 0
        for kv in response.kvs {
            let object = try store.decode(T.self, kv)
            guard selectors.matches(object) else { continue }
            if let limit, items.count >= limit {
                remaining += 1
                continue
            }
            items.append(object.withoutTypeMeta)
            lastKey = kv.keyString
        }
        var metadata = ListMeta(resourceVersion: String(listRevision))
        if remaining > 0 {
            let token = ContinueToken(v: "meta.k8s.io/v1", rv: listRevision, start: String(lastKey.dropFirst(prefix.count)) + "\u{0}")
            metadata.continue = try ServerJSON.encode(token).base64URLEncodedString()
            if selectors.isEmpty { metadata.remainingItemCount = remaining }
        }
        let list = KubernetesList(kind: T.info.listKind, apiVersion: T.info.apiVersion, metadata: metadata, items: items)
        return try Self.objectResponse(.ok, list)
    }
}

/// How many watch streams are open.
final class WatchCounter: Sendable {
    private let value = Mutex(0)
    var count: Int { value.withLock { $0 } }
    func increment() { value.withLock { $0 += 1 } }
    func decrement() { value.withLock { $0 -= 1 } }
}

extension Data {
    /// Decodes unpadded base64url (Go's `base64.RawURLEncoding`), also accepting padding.
    init?(base64URLEncoded text: String) {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        self.init(base64Encoded: base64)
    }

    /// Unpadded base64url.
    func base64URLEncodedString() -> String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
