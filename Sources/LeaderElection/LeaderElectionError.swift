/// The one error type of the leader-election libraries: every ``ResourceLock`` backend and the
/// elector throw it.
///
/// Switch on ``code``; read ``message`` for the backend's explanation.
///
/// ```swift
/// do { _ = try await lock.create(record) }
/// catch let error as LeaderElectionError where error.code == .alreadyExists { … }
/// ```
public struct LeaderElectionError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, as a value users can switch on.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case notFound, alreadyExists, conflict, corruptRecord, unavailable, unauthorized
            case invalidConfiguration, leadershipLost, timeout
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The record (or a server-side object it needs) does not exist.
        public static let notFound = Code(.notFound)
        /// ``ResourceLock/create(_:)`` found a record already stored.
        public static let alreadyExists = Code(.alreadyExists)
        /// ``ResourceLock/update(_:expecting:)`` found a different version stored: the compare-and-swap failed.
        public static let conflict = Code(.conflict)
        /// The stored data cannot be decoded as a record. ``LeaderElectionError/version`` carries the
        /// version of the undecodable data so that it can be overwritten by compare-and-swap.
        public static let corruptRecord = Code(.corruptRecord)
        /// The store could not be reached or failed (I/O error, server down, retryable server error).
        public static let unavailable = Code(.unavailable)
        /// The store refused our credentials or permissions.
        public static let unauthorized = Code(.unauthorized)
        /// A configuration value is invalid; the message names it and the rule it breaks.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// A ``LeadershipTerm`` is no longer guaranteed: its deadline passed or it ended.
        public static let leadershipLost = Code(.leadershipLost)
        /// An operation did not finish within its deadline.
        public static let timeout = Code(.timeout)

        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// A human explanation, including the backend's own message where there is one.
    public var message: String
    /// For ``Code/corruptRecord`` and ``Code/conflict``: the version of the data currently stored, when known.
    public var version: LockVersion?
    /// Where the error was created.
    public var file: String
    /// Where the error was created.
    public var line: Int

    /// Creates an error. Prefer the static factories.
    public init(code: Code, message: String, version: LockVersion? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.version = version
        self.file = file
        self.line = line
    }

    public var description: String { "LeaderElectionError(\(code)): \(message)" }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message && lhs.version == rhs.version
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
        hasher.combine(version)
    }

    /// See ``Code/notFound``.
    public static func notFound(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        .init(code: .notFound, message: message, file: file, line: line)
    }
    /// See ``Code/alreadyExists``.
    public static func alreadyExists(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        .init(code: .alreadyExists, message: message, file: file, line: line)
    }
    /// See ``Code/conflict``.
    public static func conflict(_ message: String, current: LockVersion? = nil, file: String = #fileID, line: Int = #line) -> Self {
        .init(code: .conflict, message: message, version: current, file: file, line: line)
    }
    /// See ``Code/corruptRecord``.
    public static func corruptRecord(_ message: String, version: LockVersion? = nil, file: String = #fileID, line: Int = #line) -> Self {
        .init(code: .corruptRecord, message: message, version: version, file: file, line: line)
    }
    /// See ``Code/unavailable``.
    public static func unavailable(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        .init(code: .unavailable, message: message, file: file, line: line)
    }
    /// See ``Code/unauthorized``.
    public static func unauthorized(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        .init(code: .unauthorized, message: message, file: file, line: line)
    }
    /// See ``Code/invalidConfiguration``.
    public static func invalidConfiguration(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        .init(code: .invalidConfiguration, message: message, file: file, line: line)
    }
    /// See ``Code/leadershipLost``.
    public static func leadershipLost(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        .init(code: .leadershipLost, message: message, file: file, line: line)
    }
    /// See ``Code/timeout``.
    public static func timeout(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        .init(code: .timeout, message: message, file: file, line: line)
    }
}
