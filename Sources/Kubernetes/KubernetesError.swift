import Foundation

/// An error from the Kubernetes client: an API server `Status` (or an HTTP status) or a transport failure,
/// mapped to a code users can switch on.
///
/// The mapping follows apimachinery's `pkg/api/errors`: the HTTP status decides the code, and for `409` the
/// `Status.reason` disambiguates — `AlreadyExists` means ``Code/alreadyExists``; `Conflict`, or any other or
/// missing reason, means ``Code/conflict`` (as `IsConflict` does).
///
/// ```swift
/// do { _ = try await client.createLease(lease, namespace: "default") }
/// catch let error as KubernetesError where error.code == .alreadyExists { … }
/// ```
public struct KubernetesError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, as a value users can switch on.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case notFound, alreadyExists, conflict, invalid, badRequest, unauthorized, forbidden, gone
            case tooManyRequests, serverError, timeout, unavailable, invalidResponse, invalidConfiguration
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// `404`, reason `NotFound`: the object does not exist.
        public static let notFound = Code(.notFound)
        /// `409`, reason `AlreadyExists`: a create found the object already there.
        public static let alreadyExists = Code(.alreadyExists)
        /// `409` with reason `Conflict` (or any reason other than `AlreadyExists`): the optimistic-concurrency
        /// check failed because the object changed since it was read.
        public static let conflict = Code(.conflict)
        /// `422`, reason `Invalid`: validation failed; ``KubernetesError/causes`` lists the fields.
        public static let invalid = Code(.invalid)
        /// `400`, reason `BadRequest` (and other `4xx` codes this client does not name).
        public static let badRequest = Code(.badRequest)
        /// `401`: the credentials were missing, wrong or expired.
        public static let unauthorized = Code(.unauthorized)
        /// `403`: the credentials are valid but not allowed to do this.
        public static let forbidden = Code(.forbidden)
        /// `410`, reason `Expired`/`Gone`: the requested resourceVersion is too old; list again.
        public static let gone = Code(.gone)
        /// `429`: the server asks the client to slow down; see ``KubernetesError/retryAfter``.
        public static let tooManyRequests = Code(.tooManyRequests)
        /// `5xx`: the server (or a proxy in front of it) failed.
        public static let serverError = Code(.serverError)
        /// The request did not complete within the configured
        /// ``KubernetesConfiguration/requestTimeout``.
        public static let timeout = Code(.timeout)
        /// The server could not be reached or the connection failed: refused or reset, TLS failure, or the
        /// connection closed before the whole response arrived.
        public static let unavailable = Code(.unavailable)
        /// The response could not be understood: a body that is not the expected object or `Status`.
        public static let invalidResponse = Code(.invalidResponse)
        /// The client configuration is invalid: a missing or unreadable file, bad YAML or base64, an unknown
        /// context, an unsupported authentication method, …; the message names the file and field.
        public static let invalidConfiguration = Code(.invalidConfiguration)

        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// A human explanation: the server's `Status.message`, or a description of the transport failure or of
    /// the non-`Status` body (with a short excerpt).
    public var message: String
    /// The `Status` the server sent, when the body was one (for a watch `ERROR` event, the event's object).
    public var status: Status?
    /// The HTTP status code of the response, when there was a response.
    public var httpStatus: Int?
    /// How long the server asked the client to wait (`Retry-After` header or `details.retryAfterSeconds`).
    public var retryAfter: Duration?
    /// For a transport failure (``Code/unavailable``, and ``Code/timeout`` when no response arrived): how far
    /// the exchange got. `nil` when the server answered with a status (see ``httpStatus``).
    public var connection: ConnectionFailure?
    /// Where the error was created.
    public var file: String
    /// Where the error was created.
    public var line: Int

    /// How far a request got before its connection failed: whether anything answered at all.
    public enum ConnectionFailure: String, Hashable, Sendable, CustomStringConvertible {
        /// Nothing answered: the connection was refused, reset or closed before any byte of a response, the
        /// host name did not resolve, or the connection could not be made in time.
        case unreachable
        /// The TCP connection was made but the TLS handshake failed (untrusted or mismatched certificate,
        /// no common protocol, a plain-HTTP server on an https URL).
        case tlsHandshake
        /// The server started answering, then the connection ended (or the reply stopped being HTTP) before
        /// the whole response arrived.
        case incompleteResponse
        /// The connection was up and the request sent, but no complete response arrived in time.
        case noResponseInTime
        /// This client was shut down.
        case clientShutDown

        public var description: String { rawValue }
    }

    /// Creates an error. Prefer ``init(status:httpStatus:retryAfter:file:line:)`` for server errors and the
    /// static factories for client-side ones.
    public init(
        code: Code, message: String, status: Status? = nil, httpStatus: Int? = nil, retryAfter: Duration? = nil,
        file: String = #fileID, line: Int = #line
    ) {
        self.code = code
        self.message = message
        self.status = status
        self.httpStatus = httpStatus
        self.retryAfter = retryAfter
        self.file = file
        self.line = line
    }

    /// Creates the error a `Status` describes, as apimachinery classifies it.
    ///
    /// The code comes from `httpStatus` when given, else from `status.code`; `409` is split by reason, and
    /// when the code is not one this client names, the reason decides.
    ///
    /// Use it for a watch's ``WatchEvent/error(_:)`` event: `throw KubernetesError(status: status)`.
    public init(status: Status, httpStatus: Int? = nil, retryAfter: Duration? = nil, file: String = #fileID, line: Int = #line) {
        let effective = httpStatus ?? status.code
        let retry = retryAfter ?? status.details?.retryAfterSeconds.map { Duration.seconds($0) }
        self.init(
            code: Self.classify(httpStatus: effective, reason: status.reason),
            message: status.message ?? status.reason ?? "HTTP \(effective.map(String.init) ?? "status") without a message",
            status: status,
            httpStatus: httpStatus,
            retryAfter: retry,
            file: file,
            line: line
        )
    }

    /// Whether retrying the same request later may succeed: ``Code/tooManyRequests``, ``Code/serverError``,
    /// ``Code/timeout`` and ``Code/unavailable``.
    public var isRetryable: Bool {
        code == .tooManyRequests || code == .serverError || code == .timeout || code == .unavailable
    }

    /// For ``Code/invalid``: the invalid fields (`Status.details.causes`); empty otherwise.
    public var causes: [Status.Cause] { status?.details?.causes ?? [] }

    /// Whether the API server answered the request with an HTTP status (the error is what it said), as
    /// opposed to a failure to reach it or to read its reply.
    public var serverAnswered: Bool { httpStatus != nil }

    public var description: String {
        "KubernetesError(\(code)\(httpStatus.map { ", HTTP \($0)" } ?? "")): \(message)"
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message && lhs.status == rhs.status
            && lhs.httpStatus == rhs.httpStatus && lhs.retryAfter == rhs.retryAfter && lhs.connection == rhs.connection
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
        hasher.combine(status)
        hasher.combine(httpStatus)
        hasher.combine(retryAfter)
        hasher.combine(connection)
    }

    /// See ``Code/invalidConfiguration``.
    public static func invalidConfiguration(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        .init(code: .invalidConfiguration, message: message, file: file, line: line)
    }
    /// See ``Code/timeout``.
    public static func timeout(_ message: String, connection: ConnectionFailure? = nil, file: String = #fileID, line: Int = #line) -> Self {
        var error = Self(code: .timeout, message: message, file: file, line: line)
        error.connection = connection
        return error
    }
    /// See ``Code/unavailable``; `connection` says how far the exchange got.
    public static func unavailable(_ message: String, connection: ConnectionFailure? = nil, file: String = #fileID, line: Int = #line) -> Self {
        var error = Self(code: .unavailable, message: message, file: file, line: line)
        error.connection = connection
        return error
    }
    /// See ``Code/invalidResponse``.
    public static func invalidResponse(_ message: String, httpStatus: Int? = nil, file: String = #fileID, line: Int = #line) -> Self {
        .init(code: .invalidResponse, message: message, httpStatus: httpStatus, file: file, line: line)
    }

    // MARK: - Classification

    /// apimachinery's classification: the code first, the reason for `409` and for codes not named here.
    static func classify(httpStatus: Int?, reason: String?) -> Code {
        switch httpStatus {
        case 400: return .badRequest
        case 401: return .unauthorized
        case 403: return .forbidden
        case 404: return .notFound
        case 409: return reason == "AlreadyExists" ? .alreadyExists : .conflict
        case 410: return .gone
        case 422: return .invalid
        case 429: return .tooManyRequests
        case let code? where (500...599).contains(code): return .serverError
        default: break
        }
        switch reason {
        case "NotFound": return .notFound
        case "AlreadyExists": return .alreadyExists
        case "Conflict": return .conflict
        case "Invalid": return .invalid
        case "BadRequest", "MethodNotAllowed", "NotAcceptable", "UnsupportedMediaType", "RequestEntityTooLarge":
            return .badRequest
        case "Unauthorized": return .unauthorized
        case "Forbidden": return .forbidden
        case "Gone", "Expired": return .gone
        case "TooManyRequests": return .tooManyRequests
        case "InternalError", "ServiceUnavailable", "ServerTimeout", "Timeout": return .serverError
        default: break
        }
        if let code = httpStatus, (400...499).contains(code) { return .badRequest }
        return .invalidResponse
    }

    /// The error for a non-success response: the body decoded as a `Status` when it is one, otherwise
    /// classified by the HTTP code with a short excerpt of the body.
    static func response(httpStatus: Int, retryAfterHeader: String?, body: [UInt8], context: String) -> KubernetesError {
        let headerRetry = retryAfterHeader
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .flatMap { Int($0) }
            .map { Duration.seconds(max(0, $0)) }
        if let status = Status.decodeIfStatus(body) {
            var error = KubernetesError(status: status, httpStatus: httpStatus, retryAfter: headerRetry)
            error.message = "\(context): \(error.message)"
            return error
        }
        let code = classify(httpStatus: httpStatus, reason: nil)
        let excerpt = Self.excerpt(body)
        return KubernetesError(
            code: code,
            message: "\(context): HTTP \(httpStatus) with a body that is not a Status: \(excerpt.isEmpty ? "(empty)" : excerpt)",
            httpStatus: httpStatus,
            retryAfter: headerRetry
        )
    }

    /// At most `limit` characters of a body, for messages.
    static func excerpt(_ body: [UInt8], limit: Int = 200) -> String {
        let text = String(decoding: body.prefix(limit * 4), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        if text.count <= limit { return text }
        return String(text.prefix(limit)) + "…"
    }
}

extension Status {
    /// The body as a `Status`, if it is a JSON object that looks like one (`kind: Status`, or a reason,
    /// message or code); `nil` for anything else.
    static func decodeIfStatus(_ body: [UInt8]) -> Status? {
        guard let status = try? KubernetesJSON.decode(Status.self, from: Data(body)) else { return nil }
        if status.kind == "Status" || status.reason != nil || status.message != nil || status.code != nil {
            return status
        }
        return nil
    }
}
