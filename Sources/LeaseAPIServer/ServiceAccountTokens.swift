import Foundation
import Kubernetes
import Synchronization

/// What the server keeps of a token it issued by TokenRequest, at `<prefix>/serviceaccounttokens/<id>` in
/// etcd (kube keeps nothing and signs a JWT instead; a record lets every server on the same etcd check a
/// token, and a deleted ServiceAccount's tokens stop working as kube's do). The record is attached to an etcd
/// lease that ends a minute after the token expires.
struct ServiceAccountTokenRecord: Codable, Sendable {
    var namespace: String
    var serviceAccountName: String
    var serviceAccountUID: String
    var secret: String
    /// Seconds since 1970 (UTC) after which the token is refused.
    var expiresAt: Int64
}

/// kube-apiserver's cache of successful token authentications (`--authentication-token-webhook-cache-ttl`'s
/// sibling for ServiceAccount tokens: 10 s): a token that authenticated keeps authenticating for 10 s, even
/// if its ServiceAccount is deleted meanwhile (recording 10, step 23). Failures are not cached.
final class AuthenticationCache: Sendable {
    /// How long a successful authentication is reused.
    static let ttl: Duration = .seconds(10)
    private let elapsed: @Sendable () -> Duration
    private let entries = Mutex<[String: (user: AuthenticatedUser, until: Duration)]>([:])

    init(clock: any Clock<Duration>) {
        elapsed = Self.stopwatch(clock)
    }

    private static func stopwatch<C: Clock>(_ clock: C) -> @Sendable () -> Duration where C.Duration == Duration {
        let start = clock.now
        return { start.duration(to: clock.now) }
    }

    /// The user a token authenticated as less than ``ttl`` ago.
    func user(for token: String) -> AuthenticatedUser? {
        let now = elapsed()
        return entries.withLock { entries in
            guard let entry = entries[token] else { return nil }
            guard now < entry.until else {
                entries[token] = nil
                return nil
            }
            return entry.user
        }
    }

    func remember(_ token: String, as user: AuthenticatedUser) {
        let until = elapsed() + Self.ttl
        entries.withLock { entries in
            // Drop expired entries so the cache does not grow without bound.
            if entries.count > 1024 { entries = entries.filter { $0.value.until > until - Self.ttl } }
            entries[token] = (user, until)
        }
    }
}

extension APIHandler {
    /// The etcd key of a token record.
    func tokenKey(_ id: String) -> String { "\(store.prefix)/serviceaccounttokens/\(id)" }

    /// A TokenRequest token (`<id>.<secret>`): the ServiceAccount it stands for, if it still exists with the
    /// uid the token was issued for and the token has not expired; `nil` otherwise.
    func serviceAccountUser(forToken token: String) async throws -> AuthenticatedUser? {
        if let cached = authenticationCache.user(for: token) { return cached }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 32, parts[0].allSatisfy(\.isHexDigit) else { return nil }
        guard let kv = try await store.read(tokenKey(String(parts[0]))),
              let record = try? KubernetesJSON.decode(ServiceAccountTokenRecord.self, from: Data(kv.value)),
              constantTimeEquals(record.secret, String(parts[1])),
              Int64(Date().timeIntervalSince1970) < record.expiresAt
        else { return nil }
        let key = store.key(ServiceAccountObject.self, namespace: record.namespace, name: record.serviceAccountName)
        guard let accountKV = try await store.read(key),
              try store.decode(ServiceAccountObject.self, accountKV).metadata.uid == record.serviceAccountUID
        else { return nil }
        let user = AuthenticatedUser.serviceAccount(namespace: record.namespace, name: record.serviceAccountName)
        authenticationCache.remember(token, as: user)
        return user
    }

    /// `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`: a TokenRequest, answered with a token that
    /// authenticates as `system:serviceaccount:{ns}:{name}`.
    func tokenRequest(namespace: String, name: String, _ request: HTTPRequest) async throws -> HTTPResponse {
        let info = ResourceInfo(
            group: "authentication.k8s.io", version: "v1", resource: "tokenrequests", kind: "TokenRequest",
            listKind: "TokenRequestList", namespaced: true, selectableFields: [], allowCreateOnUpdate: false,
            unsupportedFieldMessage: { $0 })
        let body: JSONValue
        do {
            body = try KubernetesJSON.decode(JSONValue.self, from: Data(request.body.readableBytesView))
        } catch {
            throw APIError.badRequest("the object provided is unrecognized (must be of type TokenRequest): couldn't get version/kind; json parse error: \(FieldScanner.syntaxError(Array(request.body.readableBytesView)))")
        }
        guard case .object(let fields) = body else {
            throw APIError.badRequest("the object provided is unrecognized (must be of type TokenRequest)")
        }
        if let apiVersion = fields["apiVersion"]?.stringValue, !apiVersion.isEmpty, apiVersion != info.apiVersion {
            throw APIError.badRequest("the API version in the data (\(apiVersion)) does not match the expected API version (\(info.apiVersion))")
        }
        var spec: [String: JSONValue] = [:]
        if case .object(let sent)? = fields["spec"] { spec = sent }
        let expiration: Int64
        switch spec["expirationSeconds"] {
        case nil, .null?: expiration = 3600
        case .number(let value)? where value == value.rounded() && abs(value) < 1e18: expiration = Int64(value)
        case let other?:
            throw APIError.badRequest("TokenRequest in version \"v1\" cannot be handled as a TokenRequest: json: cannot unmarshal \(other) into Go struct field TokenRequestSpec.spec.expirationSeconds of type int64")
        }
        var errors: [FieldError] = []
        if expiration < 600 {
            errors.append(.invalid("spec.expirationSeconds", .int(expiration), "may not specify a duration less than 10 minutes"))
        } else if expiration > 1 << 32 {
            errors.append(.invalid("spec.expirationSeconds", .int(expiration), "may not specify a duration larger than 2^32 seconds"))
        }
        guard errors.isEmpty else { throw APIError.invalid(kind: info.kind, group: info.group, name: name, errors) }
        let accountKey = store.key(ServiceAccountObject.self, namespace: namespace, name: name)
        guard let accountKV = try await store.read(accountKey) else { throw APIError.notFound(ServiceAccountObject.info, name) }
        let account = try store.decode(ServiceAccountObject.self, accountKV)
        var generator = SystemRandomNumberGenerator()
        func hex(_ bytes: Int) -> String {
            (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        }
        let id = hex(16)
        let secret = hex(32)
        let now = Int64(Date().timeIntervalSince1970)
        let record = ServiceAccountTokenRecord(
            namespace: namespace, serviceAccountName: name, serviceAccountUID: account.metadata.uid ?? "", secret: secret,
            expiresAt: now + expiration)
        // The record goes when the token expires: it is attached to an etcd lease of the token's lifetime.
        let lease = try await store.call("granting an etcd lease for a token") { try await store.etcd.grantLease(ttl: expiration + 60) }
        guard try await store.createIfAbsent(tokenKey(id), Array(try ServerJSON.encode(record)), lease: lease.id) != nil else {
            throw APIError.internalError("a token id was issued twice")
        }
        var managed = ManagedFields()
        managed.update(manager: ManagedFields.manager(request), apiVersion: info.apiVersion, time: Self.timestampNow(),
                       old: [:], new: ManagedFields.fields(of: .object(["spec": .object(spec)])))
        for index in managed.entries.indices { managed.entries[index].extra["subresource"] = .string("token") }
        var metadata: [String: JSONValue] = [
            "name": .string(name), "namespace": .string(namespace), "creationTimestamp": .string(Self.timestampNow()),
        ]
        if let json = managed.json { metadata["managedFields"] = json }
        let expires = Date(timeIntervalSince1970: TimeInterval(now + expiration))
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        let response: JSONValue = .object([
            "kind": .string(info.kind), "apiVersion": .string(info.apiVersion), "metadata": .object(metadata),
            "spec": .object([
                "audiences": spec["audiences"].flatMap { $0 == .null ? nil : $0 } ?? .array([.string("https://kubernetes.default.svc")]),
                "expirationSeconds": .number(Double(expiration)),
                "boundObjectRef": spec["boundObjectRef"] ?? .null,
            ]),
            "status": .object(["token": .string("\(id).\(secret)"), "expirationTimestamp": .string(formatter.string(from: expires))]),
        ])
        return try Self.objectResponse(.created, response)
    }
}
