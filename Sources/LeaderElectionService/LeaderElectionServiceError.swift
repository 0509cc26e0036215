/// An error of the `LeaderElectionService` module: a lost leadership that ends the service group, or an
/// invalid configuration or command line.
///
/// Switch on ``code``; read ``message`` for the details.
///
/// ```swift
/// do { try await serviceGroup.run() }
/// catch let error as LeaderElectionServiceError where error.code == .leadershipLost { exit(1) }
/// ```
public struct LeaderElectionServiceError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, as a value users can switch on.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case leadershipLost, invalidConfiguration, invalidDuration
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// This candidate lost its lease while leading, and
        /// ``LeaderElectionService/LostLeadershipBehavior/endGroup`` asked for the service to end (client-go's
        /// and controller-runtime's "leader election lost").
        public static let leadershipLost = Code(.leadershipLost)
        /// A configuration value or a combination of command-line options is invalid; the message says which.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// A duration is not in Go's `time.ParseDuration` form (`15s`, `1m30s`, `500ms`).
        public static let invalidDuration = Code(.invalidDuration)

        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// A human explanation.
    public var message: String
    /// Where the error was created.
    public var file: String
    /// Where the error was created.
    public var line: Int

    /// Creates an error. Prefer the static factories.
    public init(code: Code, message: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.file = file
        self.line = line
    }

    /// The message alone, so that command-line tools print it as is.
    public var description: String { message }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code && lhs.message == rhs.message }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
    }

    /// See ``Code/leadershipLost``.
    public static func leadershipLost(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        .init(code: .leadershipLost, message: message, file: file, line: line)
    }
    /// See ``Code/invalidConfiguration``.
    public static func invalidConfiguration(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        .init(code: .invalidConfiguration, message: message, file: file, line: line)
    }
    /// See ``Code/invalidDuration``.
    public static func invalidDuration(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        .init(code: .invalidDuration, message: message, file: file, line: line)
    }
}
