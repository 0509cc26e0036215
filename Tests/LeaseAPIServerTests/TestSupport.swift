import AsyncHTTPClient
import Etcd
import EtcdTesting
import Foundation
import Kubernetes
import LeaderElection
import LeaseAPIServer
import NIOCore
import NIOFoundationCompat
import Synchronization
import Testing

/// A ``LeaseAPIServer`` on a free port, serving HTTPS with the fixture's test certificate and requiring a
/// bearer token, on a real etcd, plus an HTTP client that trusts the test CA.
///
/// Every fixture uses its own etcd key prefix, so tests sharing one etcd never see each other's objects.
final class ServerFixture: Sendable {
    static let token = "test-token-\(UUID().uuidString)"

    let server: LeaseAPIServer
    let etcd: EtcdClient
    let etcdServer: EtcdServer
    let tls: EtcdTLS
    let http: HTTPClient
    let prefix: String
    /// The server's clock (``LeaseAPIServer/Configuration/clock``): watch timeouts and bookmarks, the wait for a
    /// future resourceVersion, the authentication cache. Time moves only when a test advances it.
    let clock: ManualClock

    private init(
        server: LeaseAPIServer, etcd: EtcdClient, etcdServer: EtcdServer, tls: EtcdTLS, http: HTTPClient, prefix: String,
        clock: ManualClock
    ) {
        self.clock = clock
        self.server = server
        self.etcd = etcd
        self.etcdServer = etcdServer
        self.tls = tls
        self.http = http
        self.prefix = prefix
    }

    /// Runs `body` with a fixture on the shared etcd (or on a fresh etcd of its own, for tests that compact,
    /// kill or restart it), and tears everything down afterwards.
    static func with<T>(
        ownEtcd: Bool = false, generation: LeaseAPIServer.Generation = .v1_26, etcdPrefix: String? = nil,
        _ body: (ServerFixture) async throws -> T
    ) async throws -> T {
        if ownEtcd {
            return try await EtcdServer.withServer(name: "lease-apiserver-tests") { etcdServer in
                try await with(etcdServer, generation, etcdPrefix, body)
            }
        }
        return try await SharedEtcdServer.withServer { etcdServer in
            try await with(etcdServer, generation, etcdPrefix, body)
        }
    }

    private static func with<T>(
        _ etcdServer: EtcdServer, _ generation: LeaseAPIServer.Generation, _ etcdPrefix: String?,
        _ body: (ServerFixture) async throws -> T
    ) async throws -> T {
        let tls = try await EtcdTLS.shared()
        let etcd = try EtcdClient(configuration: .init(endpoints: [etcdServer.endpoint], requestTimeout: .seconds(5)))
        let prefix = etcdPrefix ?? "/test-\(UUID().uuidString.lowercased())/registry"
        let server: LeaseAPIServer
        let clock = ManualClock()
        do {
            server = try await LeaseAPIServer.start(
                configuration: .init(
                    tls: .init(certificateChainFile: tls.serverCertFile, privateKeyFile: tls.serverKeyFile),
                    bearerTokens: [token], etcdPrefix: prefix, generation: generation,
                    clock: clock),
                etcd: etcd)
        } catch {
            etcd.close()
            throw error
        }
        let http = makeHTTPClient(trusting: tls.caFile)
        let fixture = ServerFixture(server: server, etcd: etcd, etcdServer: etcdServer, tls: tls, http: http, prefix: prefix,
                                    clock: clock)
        do {
            let result = try await body(fixture)
            await fixture.tearDown()
            return result
        } catch {
            await fixture.tearDown()
            throw error
        }
    }

    private func tearDown() async {
        await server.shutdown()
        try? await http.shutdown()
        etcd.close()
    }

    /// The fixture's base URL.
    var baseURL: String { server.baseURL }

    /// A request to the server; `token` nil sends no `Authorization` header.
    func request(
        _ method: String, _ path: String, body: String? = nil, token: String? = ServerFixture.token
    ) async throws -> TestResponse {
        try await send(http, method, baseURL + path, body: body, token: token)
    }

    /// Creates a namespace with a unique name (the server enforces namespaces, as kube-apiserver does).
    func namespace(_ label: String = "ns") async throws -> String {
        let name = uniqueNamespace(label)
        let response = try await request("POST", "/api/v1/namespaces", body: #"{"metadata":{"name":"\#(name)"}}"#)
        guard response.status == 201 else { throw FixtureError("cannot create namespace \(name): \(response)") }
        return name
    }

    /// `GET`.
    func get(_ path: String, token: String? = ServerFixture.token) async throws -> TestResponse {
        try await request("GET", path, token: token)
    }

    /// Opens a watch (`GET path` with `watch=true` added) and collects its lines in the background.
    func watch(_ path: String) async throws -> WatchLines {
        let separator = path.contains("?") ? "&" : "?"
        return try await WatchLines.open(http, baseURL + path + separator + "watch=true", token: ServerFixture.token)
    }

    /// Reads a key straight from etcd.
    func etcdValue(_ key: String) async throws -> EtcdKeyValue? {
        try await etcd.get(prefix + key)
    }
}

/// A fixture that could not be set up.
struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// An HTTP client that trusts only `caFile`. (It retries a refused connection until `connectTimeout`.)
func makeHTTPClient(trusting caFile: String, connectTimeout: TimeAmount = .seconds(10)) -> HTTPClient {
    var configuration = HTTPClient.Configuration()
    configuration.tlsConfiguration = .makeClientConfiguration()
    configuration.tlsConfiguration?.trustRoots = .file(caFile)
    configuration.timeout = .init(connect: connectTimeout, read: .seconds(30))
    return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
}

/// Sends one request and reads the whole response.
func send(_ http: HTTPClient, _ method: String, _ url: String, body: String? = nil, token: String?) async throws -> TestResponse {
    var request = HTTPClientRequest(url: url)
    request.method = .init(rawValue: method)
    if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
    if let body {
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body))
    }
    let response = try await http.execute(request, timeout: .seconds(30))
    let bytes = try await response.body.collect(upTo: 16 << 20)
    return TestResponse(
        status: Int(response.status.code), contentType: response.headers.first(name: "Content-Type") ?? "",
        body: Data(buffer: bytes), warnings: response.headers["Warning"])
}

/// A complete response.
struct TestResponse: Sendable, CustomStringConvertible {
    var status: Int
    var contentType: String
    var body: Data
    /// The `Warning` headers, in order.
    var warnings: [String] = []

    var text: String { String(decoding: body, as: UTF8.self) }

    /// The body decoded as `T`.
    func decode<T: Decodable>(_ type: T.Type = T.self, sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
        do {
            return try KubernetesJSON.decode(T.self, from: body)
        } catch {
            Issue.record("cannot decode \(T.self) from \(status) \(text): \(error)", sourceLocation: sourceLocation)
            throw error
        }
    }

    /// The body as a JSON object.
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
    }

    var description: String { "\(status) \(text)" }
}

/// The Status a kube-apiserver sends: `kind: Status`, `apiVersion: v1`, `metadata: {}`.
func failure(_ code: Int, _ reason: String?, _ message: String, _ details: Status.Details? = nil) -> Status {
    Status(status: "Failure", message: message, reason: reason, details: details, code: code)
}

/// JSON for a Lease.
func leaseJSON(
    _ name: String, resourceVersion: String? = nil, holder: String? = "holder-a", duration: Int? = 15,
    transitions: Int? = nil, labels: [String: String]? = nil, extraMetadata: String = "", extraSpec: String = ""
) -> String {
    var metadata = [#""name":"\#(name)""#]
    if let resourceVersion { metadata.append(#""resourceVersion":"\#(resourceVersion)""#) }
    if let labels {
        let pairs = labels.sorted { $0.key < $1.key }.map { #""\#($0.key)":"\#($0.value)""# }.joined(separator: ",")
        metadata.append(#""labels":{\#(pairs)}"#)
    }
    if !extraMetadata.isEmpty { metadata.append(extraMetadata) }
    var spec: [String] = []
    if let holder { spec.append(#""holderIdentity":"\#(holder)""#) }
    if let duration { spec.append(#""leaseDurationSeconds":\#(duration)"#) }
    if let transitions { spec.append(#""leaseTransitions":\#(transitions)"#) }
    if !extraSpec.isEmpty { spec.append(extraSpec) }
    return #"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{\#(metadata.joined(separator: ","))},"spec":{\#(spec.joined(separator: ","))}}"#
}

/// The path of a namespace's leases.
func leasesPath(_ namespace: String) -> String { "/apis/coordination.k8s.io/v1/namespaces/\(namespace)/leases" }

/// A fresh namespace name.
func uniqueNamespace(_ label: String = "ns") -> String { "\(label)-\(UUID().uuidString.prefix(8).lowercased())" }

/// Wakes up waiters when something changed; a version number makes a change between "check" and "wait"
/// impossible to miss.
final class ChangeNotifier: Sendable {
    private struct State {
        var version = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var cancelled: Set<Int> = []
        var nextID = 0
    }
    private let state = Mutex(State())

    /// The number of changes so far.
    var version: Int { state.withLock { $0.version } }

    /// Records a change and wakes every waiter.
    func notify() {
        let waiters = state.withLock { state in
            state.version += 1
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once the version differs from `seen`, or at `deadline`.
    func wait(after seen: Int, until deadline: ContinuousClock.Instant) async {
        let id = state.withLock { state -> Int in
            defer { state.nextID += 1 }
            return state.nextID
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let resumeNow = self.state.withLock { state -> Bool in
                            if state.cancelled.remove(id) != nil || state.version != seen { return true }
                            state.waiters[id] = continuation
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                        if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
                        state.cancelled.insert(id)
                        return nil
                    }
                    waiter?.resume()
                }
            }
            group.addTask { try? await Task.sleep(until: deadline) }
            await group.next()
            group.cancelAll()
        }
    }

    /// Waits until `condition` holds (checked after every change) or `timeout` passes; returns whether it held.
    func wait(timeout: Duration, until condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while true {
            let seen = version
            if condition() { return true }
            if ContinuousClock.now >= deadline { return false }
            await wait(after: seen, until: deadline)
        }
    }
}

/// Lines of a watch response, collected by a background task; tests wait for them with a bound.
final class WatchLines: Sendable {
    private struct State {
        var lines: [String] = []
        var ended = false
        var failure: String?
    }
    private let state = Mutex(State())
    private let changes = ChangeNotifier()
    private let task = Mutex<Task<Void, Never>?>(nil)
    /// The response status and headers.
    let head: Mutex<(status: Int, headers: [String: String])?> = Mutex(nil)

    /// Sends the request and starts reading; returns once the response head has arrived.
    static func open(_ http: HTTPClient, _ url: String, token: String) async throws -> WatchLines {
        let lines = WatchLines()
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        let response = try await http.execute(request, timeout: .seconds(300))
        var headers: [String: String] = [:]
        for (name, value) in response.headers { headers[name.lowercased()] = value }
        lines.head.withLock { $0 = (Int(response.status.code), headers) }
        lines.startReading(response)
        return lines
    }

    /// Reads `response`'s body in the background, one line at a time.
    func startReading(_ response: HTTPClientResponse) {
        let lines = self
        let task = Task {
            var pending: [UInt8] = []
            do {
                for try await chunk in response.body {
                    pending.append(contentsOf: chunk.readableBytesView)
                    while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                        lines.append(String(decoding: pending[..<newline], as: UTF8.self))
                        pending.removeSubrange(...newline)
                    }
                }
                if !pending.isEmpty { lines.append(String(decoding: pending, as: UTF8.self)) }
                lines.finish(nil)
            } catch {
                lines.finish("\(error)")
            }
        }
        lines.task.withLock { $0 = task }
    }

    private func append(_ line: String) {
        state.withLock { $0.lines.append(line) }
        changes.notify()
    }

    private func finish(_ failure: String?) {
        state.withLock { state in
            state.ended = true
            state.failure = failure
        }
        changes.notify()
    }

    /// Every line so far.
    var lines: [String] { state.withLock { $0.lines } }
    /// Whether the response has ended.
    var ended: Bool { state.withLock { $0.ended } }
    /// How it ended, when it failed.
    var failure: String? { state.withLock { $0.failure } }

    /// Disconnects (the client goes away).
    func cancel() {
        task.withLock { $0 }?.cancel()
    }

    /// Waits for `count` lines; records an issue and returns what arrived when they do not come.
    func first(_ count: Int, timeout: Duration = .seconds(20), sourceLocation: SourceLocation = #_sourceLocation) async -> [String] {
        let ok = await changes.wait(timeout: timeout) { state.withLock { $0.lines.count >= count || $0.ended } }
        let (lines, ended, failure) = state.withLock { ($0.lines, $0.ended, $0.failure) }
        if !ok || lines.count < count {
            Issue.record("expected \(count) watch lines, got \(lines.count) (ended: \(ended) \(failure ?? "")):\n\(lines.joined(separator: "\n"))",
                         sourceLocation: sourceLocation)
        }
        return Array(lines.prefix(count))
    }

    /// Waits until at least `count` lines arrived or the response ended; returns whether that happened in time.
    func waitForCount(_ count: Int, timeout: Duration) async -> Bool {
        await changes.wait(timeout: timeout) { state.withLock { $0.lines.count >= count || $0.ended } }
    }

    /// Waits until the response ends; returns whether it did within `timeout`.
    func waitForEnd(timeout: Duration = .seconds(20)) async -> Bool {
        await changes.wait(timeout: timeout) { ended }
    }
}

/// One decoded watch line.
struct WatchLine: Decodable {
    var type: String
    var object: Lease?
    var status: Status?

    private enum CodingKeys: String, CodingKey { case type, object }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        type = try container.decode(String.self, forKey: .type)
        if type == "ERROR" {
            status = try container.decode(Status.self, forKey: .object)
        } else {
            object = try container.decode(Lease.self, forKey: .object)
        }
    }

    static func parse(_ line: String) throws -> WatchLine {
        try KubernetesJSON.decode(WatchLine.self, from: Data(line.utf8))
    }

    /// `TYPE name@rv`, for compact assertions.
    var summary: String {
        if let status { return "\(type) \(status.code ?? 0)" }
        return "\(type) \(object?.metadata.name ?? "?")@\(object?.metadata.resourceVersion ?? "?")"
    }
}

/// Waits until `condition` returns true, checking every 50 ms, for at most `timeout`.
func eventually(
    timeout: Duration = .seconds(20), _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return }
        if ContinuousClock.now >= deadline {
            Issue.record("timed out after \(timeout) waiting for \(what)", sourceLocation: sourceLocation)
            return
        }
        try await Task.sleep(for: .milliseconds(50))
    }
}
