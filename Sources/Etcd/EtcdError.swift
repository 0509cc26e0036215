/// An error from the etcd client: a gRPC status mapped to a code users can switch on.
public struct EtcdError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case unavailable, deadlineExceeded, unauthenticated, permissionDenied, notFound, compacted
            case invalidArgument, cancelled, resourceExhausted, failedPrecondition, invalidResponse, closed, other
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        /// No member could be reached, or the connection broke (gRPC UNAVAILABLE). Retryable.
        public static let unavailable = Code(.unavailable)
        /// The call's deadline passed (gRPC DEADLINE_EXCEEDED).
        public static let deadlineExceeded = Code(.deadlineExceeded)
        /// The auth token is missing, invalid or expired (gRPC UNAUTHENTICATED).
        public static let unauthenticated = Code(.unauthenticated)
        /// The user lacks permission (gRPC PERMISSION_DENIED).
        public static let permissionDenied = Code(.permissionDenied)
        /// Something (typically a lease) does not exist (gRPC NOT_FOUND).
        public static let notFound = Code(.notFound)
        /// The requested revision has been compacted (gRPC OUT_OF_RANGE, or a watch cancelled for compaction).
        public static let compacted = Code(.compacted)
        /// The request was invalid — too large, bad credentials, … (gRPC INVALID_ARGUMENT).
        public static let invalidArgument = Code(.invalidArgument)
        /// The call was cancelled.
        public static let cancelled = Code(.cancelled)
        /// A message exceeded a size limit (gRPC RESOURCE_EXHAUSTED).
        public static let resourceExhausted = Code(.resourceExhausted)
        /// The server refused the request in its current state (gRPC FAILED_PRECONDITION).
        public static let failedPrecondition = Code(.failedPrecondition)
        /// The server's reply could not be decoded.
        public static let invalidResponse = Code(.invalidResponse)
        /// The client was closed.
        public static let closed = Code(.closed)
        /// Any other gRPC status.
        public static let other = Code(.other)
        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// The gRPC status code (0 when the error did not come from gRPC).
    public var grpcStatus: Int32
    /// The server's or transport's message.
    public var message: String
    /// For ``Code/compacted``: the oldest revision still available, when known.
    public var compactRevision: Int64?

    /// Creates an error.
    public init(code: Code, grpcStatus: Int32 = 0, message: String, compactRevision: Int64? = nil) {
        self.code = code
        self.grpcStatus = grpcStatus
        self.message = message
        self.compactRevision = compactRevision
    }

    /// Maps a gRPC status code and message.
    init(grpcStatus status: Int32, message: String) {
        let code: Code
        switch status {
        case 1: code = .cancelled
        case 3: code = .invalidArgument
        case 4: code = .deadlineExceeded
        case 5: code = .notFound
        case 7: code = .permissionDenied
        case 8: code = .resourceExhausted
        case 9: code = .failedPrecondition
        case 11: code = .compacted
        case 14: code = .unavailable
        case 16: code = .unauthenticated
        default: code = .other
        }
        self.init(code: code, grpcStatus: status, message: message)
    }

    public var description: String {
        "EtcdError(\(code)\(grpcStatus != 0 ? ", grpc \(grpcStatus)" : "")): \(message)"
    }
}
