import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL
import Synchronization

/// A minimal Kubernetes API client: Leases (get, create, replace, delete, list, watch, and a
/// list-then-watch informer), core Events, and Namespaces.
///
/// One client holds one AsyncHTTPClient `HTTPClient` (HTTP/1.1, on the shared singleton event loop group)
/// configured from a ``KubernetesConfiguration``: TLS trust, client certificate, bearer token (re-read from
/// its file when rotated) and a deadline of ``KubernetesConfiguration/requestTimeout`` on every unary
/// request. Failures are thrown as ``KubernetesError``; cancelling the calling task cancels the request
/// and throws `CancellationError`.
///
/// ```swift
/// let client = try KubernetesClient(configuration: .automatic(), logger: logger)
/// let lease = try await client.getLease(namespace: client.configuration.namespace, name: "my-controller")
/// try await client.shutdown()
/// ```
///
/// - Important: Call ``shutdown()`` before releasing the client.
public final class KubernetesClient: Sendable {
    /// The configuration the client was created with.
    public let configuration: KubernetesConfiguration

    /// The `User-Agent` header sent with every request.
    public static let userAgent = "swift-leader-election/0.1"

    let logger: Logger
    private let httpClient: HTTPClient
    /// `scheme://host[:port][/prefix]`, without a trailing slash.
    private let baseURL: String
    private let authorization: Authorization
    private let shutDown = Mutex(false)
    private let eventRecorder = Mutex<KubernetesEventRecorder?>(nil)

    /// How many Events ``events`` queues before dropping new ones (client-go's recorder keeps 1000).
    public static let eventQueueCapacity = 1000

    /// The largest response body read for a unary request (a cluster-wide list of node leases in a large
    /// cluster is a few MiB).
    static let maximumResponseBytes = 64 * 1024 * 1024

    private enum Authorization: Sendable {
        case none
        case token(String)
        case file(TokenFileSource)
    }

    /// Creates a client.
    ///
    /// - Parameters:
    ///   - configuration: Where the server is and how to authenticate.
    ///   - logger: Receives a `debug` line per request with `k8s.method`, `k8s.path` and `k8s.status`, and
    ///     a `warning` when the client is created with TLS verification disabled
    ///     (``KubernetesConfiguration/insecureSkipTLSVerify``) or with an `http` server that is not a loopback
    ///     address. Bearer tokens and private keys are never logged, at any level.
    /// - Throws: ``KubernetesError`` with code ``KubernetesError/Code/invalidConfiguration`` when the server URL
    ///   or the TLS material cannot be used.
    public init(configuration: KubernetesConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger

        let endpoint = try Self.endpoint(for: configuration)
        self.baseURL = endpoint.baseURL
        for warning in Self.transportWarnings(for: configuration) {
            logger.warning("\(warning)", metadata: ["k8s.server": "\(configuration.server)"])
        }

        switch configuration.credentials {
        case .none: authorization = .none
        case .bearerToken(let token): authorization = .token(token)
        case .tokenFile(let path): authorization = .file(TokenFileSource(path: path))
        }

        var httpConfiguration = HTTPClient.Configuration(
            tlsConfiguration: try Self.tlsConfiguration(for: configuration),
            redirectConfiguration: .disallow,
            timeout: .init(connect: TimeAmount(configuration.requestTimeout))
        )
        httpConfiguration.httpVersion = .http1Only
        // Fail a request as soon as its connection cannot be made (refused, TLS failure) instead of
        // retrying until the deadline: the caller (the elector, the informer) has its own retry policy.
        httpConfiguration.connectionPool.retryConnectionEstablishment = false
        if let override = endpoint.dnsOverride {
            httpConfiguration.dnsOverride = [override.name: override.address]
        }
        self.httpClient = HTTPClient(
            eventLoopGroup: HTTPClient.defaultEventLoopGroup,
            configuration: httpConfiguration,
            backgroundActivityLogger: logger
        )
    }

    /// The background sender of this client's Events (created on first use): see ``KubernetesEventRecorder``.
    public var events: KubernetesEventRecorder {
        eventRecorder.withLock { recorder in
            if let recorder { return recorder }
            let created = KubernetesEventRecorder(capacity: Self.eventQueueCapacity, logger: logger) { [weak self] event, namespace in
                guard let self else { throw KubernetesError.unavailable("the client has been released", connection: .clientShutDown) }
                try await self.createEvent(event, namespace: namespace)
            }
            recorder = created
            return created
        }
    }

    /// Closes the client's connections. In-flight requests fail. Events still queued in ``events`` get up to
    /// one ``KubernetesConfiguration/requestTimeout`` to be sent first; the rest are dropped. Call it exactly once.
    public func shutdown() async throws {
        if let recorder = eventRecorder.withLock({ $0 }) {
            await recorder.shutdown(grace: configuration.requestTimeout)
        }
        shutDown.withLock { $0 = true }
        try await httpClient.shutdown()
    }

    /// Whether ``shutdown()`` was called.
    var isShutDown: Bool { shutDown.withLock { $0 } }

    // MARK: - Endpoint and TLS

    private struct Endpoint {
        var baseURL: String
        var dnsOverride: (name: String, address: String)?
    }

    /// The base URL; with `tlsServerName`, the URL names that host (so SNI and certificate verification use
    /// it) and a DNS override sends the connection to the configured host.
    private static func endpoint(for configuration: KubernetesConfiguration) throws -> Endpoint {
        let server = configuration.server
        guard let components = URLComponents(string: server),
              let scheme = components.scheme?.lowercased(), scheme == "https" || scheme == "http",
              var host = components.host, !host.isEmpty
        else {
            throw KubernetesError.invalidConfiguration("server is not an http(s) URL: \(server)")
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        var path = components.percentEncodedPath
        while path.hasSuffix("/") { path.removeLast() }
        func authority(_ host: String) -> String {
            let bracketed = host.contains(":") ? "[\(host)]" : host
            return components.port.map { "\(bracketed):\($0)" } ?? bracketed
        }
        if let name = configuration.tlsServerName, !name.isEmpty, name != host, scheme == "https" {
            return Endpoint(baseURL: "\(scheme)://\(authority(name))\(path)", dnsOverride: (name, host))
        }
        return Endpoint(baseURL: "\(scheme)://\(authority(host))\(path)", dnsOverride: nil)
    }

    /// Why `configuration` does not protect its credentials and requests in transit, if it does not: TLS
    /// verification disabled, or plain HTTP to a server that is not a loopback address.
    static func transportWarnings(for configuration: KubernetesConfiguration) -> [String] {
        guard let components = URLComponents(string: configuration.server), let host = components.host else { return [] }
        let token = configuration.credentials == .none ? "" : "the bearer token and "
        if components.scheme?.lowercased() == "http" {
            if isLoopbackHost(host) { return [] }
            return ["Kubernetes client over plain HTTP to \(configuration.server), not a loopback address: \(token)every request "
                + "cross the network unencrypted; use an https server"]
        }
        if configuration.insecureSkipTLSVerify {
            return ["Kubernetes client with TLS verification disabled (insecure-skip-tls-verify): anyone on the network "
                + "path can impersonate the API server \(configuration.server)\(token.isEmpty ? "" : " and read the bearer token"); "
                + "configure its CA instead"]
        }
        return []
    }

    /// `true` when `host` can only mean this machine: `localhost` and `*.localhost`, `127.0.0.0/8`, `::1`.
    static func isLoopbackHost(_ host: String) -> Bool {
        var name = host.lowercased()
        if name.hasPrefix("["), name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
        if name == "localhost" || name == "localhost." || name.hasSuffix(".localhost") || name.hasSuffix(".localhost.") { return true }
        var v4 = in_addr()
        if name.withCString({ inet_pton(AF_INET, $0, &v4) }) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        if name.withCString({ inet_pton(AF_INET6, $0, &v6) }) == 1 {
            let bytes = withUnsafeBytes(of: v6) { Array($0) }
            return bytes[0..<15].allSatisfy { $0 == 0 } && bytes[15] == 1
        }
        return false
    }

    private static func tlsConfiguration(for configuration: KubernetesConfiguration) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let ca = configuration.caPEM {
            let certificates: [NIOSSLCertificate]
            do {
                certificates = try NIOSSLCertificate.fromPEMBytes(Array(ca.utf8))
            } catch {
                throw KubernetesError.invalidConfiguration("the CA certificate is not valid PEM: \(error)")
            }
            guard !certificates.isEmpty else {
                throw KubernetesError.invalidConfiguration("the CA certificate PEM holds no certificate")
            }
            tls.trustRoots = .certificates(certificates)
        }
        switch (configuration.clientCertificatePEM, configuration.clientKeyPEM) {
        case (nil, nil):
            break
        case (let certificatePEM?, let keyPEM?):
            do {
                let chain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8))
                guard !chain.isEmpty else {
                    throw KubernetesError.invalidConfiguration("the client certificate PEM holds no certificate")
                }
                tls.certificateChain = chain.map { .certificate($0) }
            } catch let error as KubernetesError {
                throw error
            } catch {
                throw KubernetesError.invalidConfiguration("the client certificate is not valid PEM: \(error)")
            }
            do {
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
            } catch {
                throw KubernetesError.invalidConfiguration("the client key is not a valid PEM private key: \(error)")
            }
        default:
            throw KubernetesError.invalidConfiguration("a client certificate needs both clientCertificatePEM and clientKeyPEM")
        }
        if configuration.insecureSkipTLSVerify {
            tls.certificateVerification = .none
        }
        return tls
    }

    // MARK: - Requests

    /// A fully read response.
    struct RawResponse: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
    }

    /// Builds a request with the URL, the standard headers and the current credentials.
    func makeRequest(_ method: HTTPMethod, _ path: String, query: [(String, String)], body: [UInt8]?) async throws -> HTTPClientRequest {
        var url = baseURL + path
        if !query.isEmpty {
            url += "?" + query.map { "\(Self.percentEncode($0.0))=\(Self.percentEncode($0.1))" }.joined(separator: "&")
        }
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "User-Agent", value: Self.userAgent)
        request.headers.add(name: "Accept", value: "application/json")
        switch authorization {
        case .none: break
        case .token(let token): request.headers.add(name: "Authorization", value: "Bearer \(token)")
        case .file(let source): request.headers.add(name: "Authorization", value: "Bearer \(try await source.token())")
        }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(body)
        }
        return request
    }

    /// How long after the request timeout the task-side backstop deadline of a unary request fires (the
    /// transport's own deadline, at the request timeout, normally ends the request first).
    static let deadlineBackstopGrace: Duration = .seconds(1)

    /// Sends a unary request and reads the whole response, within ``KubernetesConfiguration/requestTimeout``.
    func perform(_ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: [UInt8]? = nil) async throws -> RawResponse {
        let timeout = configuration.requestTimeout
        let context = "\(method.rawValue) \(path)"
        var logger = self.logger
        logger[metadataKey: "k8s.method"] = "\(method.rawValue)"
        logger[metadataKey: "k8s.path"] = "\(path)"
        let started = ContinuousClock.now
        do {
            let request = try await makeRequest(method, path, query: query, body: body)
            let client = httpClient
            let requestLogger = logger
            let headReceived = Flag()
            let response: RawResponse
            do {
                // The transport's deadline decides: it runs on the connection's event loop, after the network
                // events that arrived before it (a reply, or the server closing the connection), so a busy machine
                // cannot turn an answer into a timeout. The task deadline is only a backstop, a little later.
                response = try await Self.withDeadline(timeout + Self.deadlineBackstopGrace, context) {
                    let response = try await client.execute(request, deadline: .now() + TimeAmount(timeout), logger: requestLogger)
                    headReceived.set()
                    let body = try await response.body.collect(upTo: Self.maximumResponseBytes)
                    return RawResponse(status: Int(response.status.code), headers: response.headers, body: Array(buffer: body))
                }
            } catch {
                throw mapTransportError(error, context: context, responseStarted: headReceived.isSet)
            }
            logger[metadataKey: "k8s.status"] = "\(response.status)"
            logger.debug("Kubernetes request", metadata: ["k8s.duration": "\(ContinuousClock.now - started)"])
            return response
        } catch {
            let mapped = mapTransportError(error, context: context)
            logger.debug("Kubernetes request failed", metadata: ["k8s.error": "\(mapped)"])
            throw mapped
        }
    }

    /// Sends a unary request and decodes a 2xx body as `Response`; any other status is thrown as the
    /// ``KubernetesError`` its body describes.
    func send<Response: Decodable>(
        _ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: [UInt8]? = nil, as type: Response.Type
    ) async throws -> Response {
        let response = try await perform(method, path, query: query, body: body)
        return try Self.decode(response, as: Response.self, context: "\(method.rawValue) \(path)")
    }

    /// ``send(_:_:query:body:as:)`` with the response's `Warning` headers.
    func sendReportingWarnings<Response: Decodable & Sendable>(
        _ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: [UInt8]? = nil, as type: Response.Type
    ) async throws -> KubernetesResponse<Response> {
        let response = try await perform(method, path, query: query, body: body)
        let object = try Self.decode(response, as: Response.self, context: "\(method.rawValue) \(path)")
        return KubernetesResponse(object: object, warnings: APIWarning.parse(headerValues: response.headers["Warning"]))
    }

    /// A 2xx body decoded as `Response`; any other status thrown as the ``KubernetesError`` its body describes.
    static func decode<Response: Decodable>(_ response: RawResponse, as type: Response.Type, context: String) throws -> Response {
        try checkSuccess(response, context: context)
        do {
            return try KubernetesJSON.decode(Response.self, from: Data(response.body))
        } catch {
            throw KubernetesError.invalidResponse(
                "\(context): the response is not a valid \(Response.self): \(describe(decodingError: error)); body: \(KubernetesError.excerpt(response.body))",
                httpStatus: response.status
            )
        }
    }

    /// Throws the error a non-2xx response describes.
    static func checkSuccess(_ response: RawResponse, context: String) throws {
        guard (200...299).contains(response.status) else {
            throw KubernetesError.response(
                httpStatus: response.status,
                retryAfterHeader: response.headers.first(name: "Retry-After"),
                body: response.body,
                context: context
            )
        }
    }

    /// Encodes a request body.
    static func encodeBody(_ value: some Encodable) throws -> [UInt8] {
        do {
            return Array(try KubernetesJSON.encode(value))
        } catch {
            throw KubernetesError(code: .invalid, message: "cannot encode the request body: \(error)")
        }
    }

    /// Starts a streaming GET (a watch) with no overall deadline (the connection attempt has the request
    /// timeout) and hands every newline-delimited JSON line of the body to `onLine`.
    func streamLines(
        _ path: String, query: [(String, String)], onLine: (_ line: [UInt8]) async throws -> Void
    ) async throws {
        let context = "GET \(path) (watch)"
        var logger = self.logger
        logger[metadataKey: "k8s.method"] = "GET"
        logger[metadataKey: "k8s.path"] = "\(path)"
        let response: HTTPClientResponse
        do {
            let request = try await makeRequest(.GET, path, query: query, body: nil)
            response = try await httpClient.execute(request, deadline: .distantFuture, logger: logger)
        } catch {
            throw mapTransportError(error, context: context)
        }
        logger[metadataKey: "k8s.status"] = "\(response.status.code)"
        guard response.status.code == 200 else {
            let body: ByteBuffer
            do {
                body = try await Self.withDeadline(configuration.requestTimeout, context) {
                    try await response.body.collect(upTo: 1024 * 1024)
                }
            } catch {
                throw mapTransportError(error, context: context, responseStarted: true)
            }
            let raw = RawResponse(status: Int(response.status.code), headers: response.headers, body: Array(buffer: body))
            logger.debug("Kubernetes watch refused")
            try Self.checkSuccess(raw, context: context)
            throw KubernetesError.invalidResponse("\(context): unexpected HTTP \(raw.status) for a watch", httpStatus: raw.status)
        }
        logger.debug("Kubernetes watch started")
        var splitter = JSONLineSplitter()
        do {
            for try await chunk in response.body {
                for line in try splitter.append(chunk) {
                    try await onLine(line)
                }
            }
        } catch {
            throw mapTransportError(error, context: context, responseStarted: true)
        }
        if let rest = splitter.finish() {
            try await onLine(rest)
        }
        logger.debug("Kubernetes watch ended by the server")
    }

    // MARK: - Errors

    /// Maps AsyncHTTPClient, NIO and TLS errors to ``KubernetesError``; keeps `KubernetesError` and
    /// cancellation as they are. `responseStarted` says whether the response head had arrived, which decides
    /// whether a closed connection means "nothing answered" (``KubernetesError/ConnectionFailure/unreachable``)
    /// or "the answer broke off" (``KubernetesError/ConnectionFailure/incompleteResponse``).
    func mapTransportError(_ error: any Error, context: String, responseStarted: Bool = false) -> any Error {
        if error is KubernetesError || error is CancellationError { return error }
        let server = configuration.server
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .writeTimeout, .getConnectionFromPoolTimeout:
                return KubernetesError.timeout("\(context): no response within \(configuration.requestTimeout)", connection: .noResponseInTime)
            case .cancelled, .requestStreamCancelled:
                if Task.isCancelled { return CancellationError() }
                return KubernetesError.unavailable("\(context): the request was cancelled", connection: .incompleteResponse)
            case .connectTimeout:
                return KubernetesError.unavailable(
                    "\(context): could not connect to \(server) within \(configuration.requestTimeout) (\(error))", connection: .unreachable)
            case .tlsHandshakeTimeout:
                return KubernetesError.unavailable(
                    "\(context): TLS failure with \(server): no TLS handshake within \(configuration.requestTimeout)", connection: .tlsHandshake)
            case .remoteConnectionClosed:
                if responseStarted {
                    return KubernetesError.unavailable(
                        "\(context): the server closed the connection before the response was complete", connection: .incompleteResponse)
                }
                return KubernetesError.unavailable(
                    "\(context): cannot reach \(server): the connection was closed before any response", connection: .unreachable)
            case .bodyLengthMismatch:
                return KubernetesError.unavailable(
                    "\(context): the connection ended before the whole response body arrived", connection: .incompleteResponse)
            case .alreadyShutdown:
                return KubernetesError.unavailable("\(context): the client has been shut down", connection: .clientShutDown)
            default:
                return KubernetesError.unavailable("\(context): \(error)", connection: responseStarted ? .incompleteResponse : .unreachable)
            }
        }
        if error is NIOSSLError || error is BoringSSLError {
            return KubernetesError.unavailable("\(context): TLS failure with \(server): \(error)", connection: .tlsHandshake)
        }
        if let error = error as? HTTPParserError {
            if case .invalidEOFState = error {
                return KubernetesError.unavailable(
                    "\(context): the server closed the connection before the response was complete", connection: .incompleteResponse)
            }
            return KubernetesError.invalidResponse("\(context): the server's reply is not valid HTTP: \(error)")
        }
        if error is NIOTooManyBytesError {
            return KubernetesError.invalidResponse("\(context): the response exceeds \(Self.maximumResponseBytes) bytes")
        }
        if Task.isCancelled { return CancellationError() }
        if responseStarted {
            return KubernetesError.unavailable(
                "\(context): the connection failed before the whole response arrived: \(error)", connection: .incompleteResponse)
        }
        return KubernetesError.unavailable("\(context): cannot reach \(server): \(error)", connection: .unreachable)
    }

    /// Runs `operation`, throwing ``KubernetesError/Code/timeout`` (and cancelling it) when it takes longer
    /// than `timeout`.
    ///
    /// When the deadline passes, the operation is cancelled and its own outcome awaited: an operation that had
    /// already finished (a response, or a failure such as a closed connection, decided on the network thread
    /// before the deadline) reports that outcome, not a timeout, so the result does not depend on which of
    /// two ready tasks a busy machine happens to run first. Only an operation that was still waiting reports
    /// the timeout.
    static func withDeadline<T: Sendable>(
        _ timeout: Duration, _ context: String, _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let timedOut = KubernetesError.timeout("\(context): no complete response within \(timeout)", connection: .noResponseInTime)
        return try await withThrowingTaskGroup(of: DeadlineRace<T>.self) { group in
            group.addTask { .finished(try await operation()) }
            group.addTask {
                try await Task.sleep(for: timeout)
                return .deadline
            }
            defer { group.cancelAll() }
            guard let first = try await group.next() else { throw CancellationError() }
            switch first {
            case .finished(let value):
                return value
            case .deadline:
                group.cancelAll()
                do {
                    guard case .finished(let value)? = try await group.next() else { throw timedOut }
                    return value
                } catch let error as KubernetesError {
                    throw error
                } catch is CancellationError {
                    if Task.isCancelled { throw CancellationError() }
                    throw timedOut
                } catch let error as HTTPClientError where error == .cancelled || error == .deadlineExceeded {
                    throw timedOut   // cancelled by the deadline: it was still waiting
                } catch {
                    throw error   // it had already failed on its own (a closed connection, …): report that
                }
            }
        }
    }

    /// A flag set once, readable from any task.
    private final class Flag: Sendable {
        private let value = Mutex(false)
        func set() { value.withLock { $0 = true } }
        var isSet: Bool { value.withLock { $0 } }
    }

    private enum DeadlineRace<T: Sendable>: Sendable {
        case finished(T)
        case deadline
    }

    /// A one-line description of a `DecodingError`, with the coding path.
    static func describe(decodingError error: any Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return keys.isEmpty ? "(root)" : keys.joined(separator: ".")
        }
        switch error {
        case .typeMismatch(let type, let context): return "\(path(context)): expected \(type): \(context.debugDescription)"
        case .valueNotFound(let type, let context): return "\(path(context)): missing \(type)"
        case .keyNotFound(let key, let context): return "\(path(context)): missing field \(key.stringValue)"
        case .dataCorrupted(let context): return "\(path(context)): \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    // MARK: - Paths

    /// Percent-encodes everything but RFC 3986 unreserved characters (for path segments and query values).
    static func percentEncode(_ text: String) -> String {
        var result = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                result += "%"
                result.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                result.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0x0F)]))
            }
        }
        return result
    }

    /// `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases[/{name}]`, or `/apis/coordination.k8s.io/v1/leases`
    /// for all namespaces.
    static func leasesPath(namespace: String?, name: String? = nil) -> String {
        var path = "/apis/coordination.k8s.io/v1"
        if let namespace { path += "/namespaces/\(percentEncode(namespace))" }
        path += "/leases"
        if let name { path += "/\(percentEncode(name))" }
        return path
    }

    /// `/api/v1/namespaces/{ns}/events`.
    static func eventsPath(namespace: String) -> String {
        "/api/v1/namespaces/\(percentEncode(namespace))/events"
    }

    /// `/api/v1/namespaces[/{name}]`.
    static func namespacesPath(name: String? = nil) -> String {
        "/api/v1/namespaces" + (name.map { "/\(percentEncode($0))" } ?? "")
    }
}

extension TimeAmount {
    /// The duration in nanoseconds (saturating).
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        self = .nanoseconds(overflow ? .max : product.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue)
    }
}
