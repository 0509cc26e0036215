import LeaderElection

/// The shared conformance suite: the checks every ``ResourceLock`` must pass, runnable by any backend —
/// ours or a third party's — from Swift Testing or XCTest.
///
/// Each check runs in a fresh ``Environment`` (a new lock name) made by your factory, and throws a
/// ``ConformanceFailure`` describing what went wrong. Run each check as its own test:
///
/// ```swift
/// let suite = LockConformanceSuite(name: "my-lock") {
///     let name = "conformance-\(UUID())"
///     return .init(
///         makeLock: { identity in try MyLock(name: name, identity: identity) },
///         writeGarbage: { bytes in try MyLock.writeRaw(bytes, name: name) })
/// }
///
/// @Test(arguments: LockConformanceSuite.Check.all)
/// func conformance(_ check: LockConformanceSuite.Check) async throws {
///     try await suite.run(check)
/// }
/// ```
///
/// The **contract** layer checks the rules in the ``ResourceLock`` documentation directly. The
/// **election** layer runs ``LeaderElector``s on a ``ManualClock`` over your lock: time is simulated, the
/// store is real, and nothing sleeps.
public struct LockConformanceSuite: Sendable {
    /// What one check needs from the backend: locks on one fresh lock name, and a way to corrupt it.
    public struct Environment: Sendable {
        /// Returns a new lock on this environment's lock name, writing as `identity`. Called once per
        /// candidate; locks from the same environment must contend for the same record.
        public var makeLock: @Sendable (_ identity: String) async throws -> any ResourceLock
        /// Replaces the stored record with these raw bytes, which do not decode as a record.
        public var writeGarbage: @Sendable (_ bytes: [UInt8]) async throws -> Void
        /// Called when the check is over (successfully or not), to delete the lock and free resources.
        public var tearDown: @Sendable () async throws -> Void

        /// Creates an environment.
        public init(
            makeLock: @escaping @Sendable (_ identity: String) async throws -> any ResourceLock,
            writeGarbage: @escaping @Sendable (_ bytes: [UInt8]) async throws -> Void,
            tearDown: @escaping @Sendable () async throws -> Void = {}
        ) {
            self.makeLock = makeLock
            self.writeGarbage = writeGarbage
            self.tearDown = tearDown
        }
    }

    /// One conformance check.
    public struct Check: Hashable, Sendable, CustomStringConvertible {
        /// Which layer a check belongs to.
        public enum Layer: String, Hashable, Sendable {
            /// The ``ResourceLock`` contract itself.
            case contract
            /// Elections run by ``LeaderElector`` over the lock.
            case election
        }
        /// A stable name, such as `contract.staleUpdateConflicts`.
        public let name: String
        /// The layer.
        public let layer: Layer
        let run: @Sendable (ConformanceContext) async throws -> Void

        public var description: String { name }
        public static func == (lhs: Check, rhs: Check) -> Bool { lhs.name == rhs.name }
        public func hash(into hasher: inout Hasher) { hasher.combine(name) }

        /// Every check: the contract layer, then the election layer.
        public static var all: [Check] { contract + election }
        /// The contract layer.
        public static var contract: [Check] { ContractChecks.all }
        /// The election layer.
        public static var election: [Check] { ElectionChecks.all }
    }

    /// A name for failure messages, such as `FileLock`.
    public let name: String
    private let makeEnvironment: @Sendable () async throws -> Environment

    /// Creates a suite.
    /// - Parameters:
    ///   - name: the backend's name, used in failure messages.
    ///   - makeEnvironment: returns a fresh environment (a new, empty lock name) for each check.
    public init(name: String, makeEnvironment: @escaping @Sendable () async throws -> Environment) {
        self.name = name
        self.makeEnvironment = makeEnvironment
    }

    /// Runs one check.
    /// - Throws: ``ConformanceFailure`` when the lock breaks a rule; errors from the environment factory.
    public func run(_ check: Check) async throws {
        let environment = try await makeEnvironment()
        let context = ConformanceContext(backend: name, check: check.name, environment: environment)
        do {
            try await check.run(context)
        } catch {
            try? await environment.tearDown()
            await context.shutdown()
            if error is ConformanceFailure { throw error }
            throw ConformanceFailure(backend: name, check: check.name, message: "unexpected error: \(error)")
        }
        await context.shutdown()
        try await environment.tearDown()
    }

    /// Runs every check, stopping at the first failure.
    public func runAll() async throws {
        for check in Check.all { try await run(check) }
    }
}

/// A conformance check failed: which backend, which check, and what was observed.
public struct ConformanceFailure: Error, CustomStringConvertible, Sendable {
    /// The backend's name.
    public var backend: String
    /// The check's name.
    public var check: String
    /// What went wrong.
    public var message: String
    /// Where in the suite the failure was detected.
    public var location: String

    /// Creates a failure.
    public init(backend: String, check: String, message: String, fileID: String = #fileID, line: Int = #line) {
        self.backend = backend
        self.check = check
        self.message = message
        self.location = "\(fileID):\(line)"
    }

    public var description: String { "[\(backend)] \(check): \(message) (\(location))" }
}

/// State shared by the steps of one check.
final class ConformanceContext: Sendable {
    let backend: String
    let check: String
    let environment: LockConformanceSuite.Environment
    private let cleanups = LockedList<@Sendable () async -> Void>()

    init(backend: String, check: String, environment: LockConformanceSuite.Environment) {
        self.backend = backend
        self.check = check
        self.environment = environment
    }

    func lock(_ identity: String) async throws -> any ResourceLock {
        try await environment.makeLock(identity)
    }

    func onShutdown(_ body: @escaping @Sendable () async -> Void) { cleanups.append(body) }

    func shutdown() async {
        for body in cleanups.drain().reversed() { await body() }
    }

    func fail(_ message: String, fileID: String = #fileID, line: Int = #line) -> ConformanceFailure {
        ConformanceFailure(backend: backend, check: check, message: message, fileID: fileID, line: line)
    }

    func expect(_ condition: Bool, _ message: @autoclosure () -> String, fileID: String = #fileID, line: Int = #line) throws {
        if !condition { throw fail(message(), fileID: fileID, line: line) }
    }

    /// Expects `body` to throw a ``LeaderElectionError`` with `code`; returns it.
    @discardableResult
    func expectError<T>(
        _ code: LeaderElectionError.Code, _ what: String, fileID: String = #fileID, line: Int = #line,
        _ body: () async throws -> T
    ) async throws -> LeaderElectionError {
        do {
            let value = try await body()
            throw fail("\(what): expected error \(code), got success \(value)", fileID: fileID, line: line)
        } catch let error as LeaderElectionError {
            if error.code != code { throw fail("\(what): expected error \(code), got \(error)", fileID: fileID, line: line) }
            return error
        } catch let failure as ConformanceFailure {
            throw failure
        } catch {
            throw fail("\(what): expected LeaderElectionError(\(code)), got \(type(of: error)): \(error)", fileID: fileID, line: line)
        }
    }
}
