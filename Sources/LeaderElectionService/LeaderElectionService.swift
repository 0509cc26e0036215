import LeaderElection
import Logging
import ServiceLifecycle
import Synchronization

/// A swift-service-lifecycle `Service` that campaigns for a lease and runs work — a wrapped `Service` or
/// a closure — only while this process leads.
///
/// ```swift
/// let election = LeaderElectionService(
///     configuration: .init(id: "reconciler", namespace: "prod"),
///     lock: lock,
///     logger: logger
/// ) { term in
///     while true {
///         try term?.check()                       // guard critical writes
///         try await reconcile(fencingToken: term?.fencingToken)
///         try await Task.sleep(for: .seconds(1))
///     }
/// }
/// let group = ServiceGroup(services: [database, election], gracefulShutdownSignals: [.sigterm], logger: logger)
/// try await group.run()
/// ```
///
/// ## Lifecycle
/// - **Leading.** Once elected, the work starts with the ``LeadershipTerm`` (fencing token,
///   ``LeadershipTerm/check()``). Losing the lease cancels it at once; then
///   ``Configuration/onLostLeadership`` decides: ``LostLeadershipBehavior/recampaign`` campaigns again,
///   ``LostLeadershipBehavior/endGroup`` (the default) throws ``LeaderElectionServiceError/Code/leadershipLost``.
/// - **Graceful shutdown.** The work is cancelled and *awaited* (the lease is renewed meanwhile, up to
///   ``Configuration/drainTimeout``); only then is the lease released (``Configuration/releaseOnCancel``),
///   and `run()` returns. A wrapped `Service` also sees the graceful shutdown itself, because it runs in
///   this service's task-local context. Place this service *after* the services the work depends on, so
///   that the group shuts it down before them.
/// - **The work returns or throws.** The lease is released and `run()` returns or rethrows, so the
///   `ServiceGroup` treats it like the wrapped service ending.
/// - **Election disabled** (``Configuration/enabled`` `false`): the work runs at once with a `nil` term,
///   and is cancelled on graceful shutdown.
///
/// - Important: The term passed to the work is `nil` only when election is disabled.
public struct LeaderElectionService: Service {
    /// How a lock is obtained: given, or made by a factory when the service runs.
    private enum LockSource: Sendable {
        case lock(any ResourceLock)
        case factory(@Sendable (Configuration) async throws -> any ResourceLock)
    }

    /// The configuration.
    public let configuration: Configuration
    private let lockSource: LockSource
    private let makeElector: @Sendable (any ResourceLock, LeaderElectionConfiguration, Logger) throws -> any RunnableElector
    private let work: @Sendable (LeadershipTerm?) async throws -> Void
    private let logger: Logger

    // MARK: - Initialisers

    /// Creates a service that runs `work` while leading, on `lock`, measuring time on `clock`.
    ///
    /// - Parameters:
    ///   - configuration: manager-style options; timing is validated when the service runs.
    ///   - lock: the lock to campaign on; its identity is this candidate's.
    ///   - clock: the monotonic clock the elector measures expiry on (a `ManualClock` in tests).
    ///   - logger: where to log; metadata keys are `leader.id`, `leader.identity`, `leader.fencing_token`.
    ///   - work: the leader-only work; receives the term (`nil` when election is disabled).
    public init<C: Clock>(
        configuration: Configuration,
        lock: any ResourceLock,
        clock: C,
        logger: Logger,
        work: @escaping @Sendable (LeadershipTerm?) async throws -> Void
    ) where C.Duration == Duration {
        self.init(configuration: configuration, source: .lock(lock), clock: clock, logger: logger, work: work)
    }

    /// Creates a service that runs `work` while leading, on `lock`.
    ///
    /// - Parameters:
    ///   - configuration: manager-style options; timing is validated when the service runs.
    ///   - lock: the lock to campaign on; its identity is this candidate's.
    ///   - logger: where to log; metadata keys are `leader.id`, `leader.identity`, `leader.fencing_token`.
    ///   - work: the leader-only work; receives the term (`nil` when election is disabled).
    public init(
        configuration: Configuration,
        lock: any ResourceLock,
        logger: Logger,
        work: @escaping @Sendable (LeadershipTerm?) async throws -> Void
    ) {
        self.init(configuration: configuration, source: .lock(lock), clock: ContinuousClock(), logger: logger, work: work)
    }

    /// Creates a service that runs `work` while leading, on a lock made by `lockFactory` from the
    /// configuration (``Configuration/resourceLock``, ``Configuration/namespace``, ``Configuration/id``,
    /// ``Configuration/lockURL``, ``Configuration/labels``) when the service starts. The factory is not
    /// called when election is disabled.
    ///
    /// - Parameters:
    ///   - configuration: manager-style options; timing is validated when the service runs.
    ///   - lockFactory: makes the lock; its errors end ``run()``.
    ///   - logger: where to log.
    ///   - work: the leader-only work; receives the term (`nil` when election is disabled).
    public init(
        configuration: Configuration,
        lockFactory: @escaping @Sendable (Configuration) async throws -> any ResourceLock,
        logger: Logger,
        work: @escaping @Sendable (LeadershipTerm?) async throws -> Void
    ) {
        self.init(configuration: configuration, source: .factory(lockFactory), clock: ContinuousClock(), logger: logger, work: work)
    }

    /// Creates a service that runs `service` while leading, on `lock`.
    ///
    /// The wrapped service is started anew each time this candidate is elected, so it must support
    /// being run more than once with ``LostLeadershipBehavior/recampaign``.
    public init(
        configuration: Configuration,
        lock: any ResourceLock,
        logger: Logger,
        service: some Service
    ) {
        self.init(configuration: configuration, lock: lock, logger: logger) { _ in try await service.run() }
    }

    /// Creates a service that runs `service` while leading, on a lock made by `lockFactory`.
    public init(
        configuration: Configuration,
        lockFactory: @escaping @Sendable (Configuration) async throws -> any ResourceLock,
        logger: Logger,
        service: some Service
    ) {
        self.init(configuration: configuration, lockFactory: lockFactory, logger: logger) { _ in try await service.run() }
    }

    private init<C: Clock>(
        configuration: Configuration,
        source: LockSource,
        clock: C,
        logger: Logger,
        work: @escaping @Sendable (LeadershipTerm?) async throws -> Void
    ) where C.Duration == Duration {
        self.configuration = configuration
        self.lockSource = source
        self.work = work
        var logger = logger
        logger[metadataKey: "leader.id"] = .string(configuration.id)
        self.logger = logger
        self.makeElector = { lock, electionConfiguration, logger in
            try LeaderElector(lock: lock, configuration: electionConfiguration, clock: clock, logger: logger)
        }
    }

    // MARK: - Running

    /// Campaigns and runs the work while leading, until graceful shutdown, cancellation, the work ending,
    /// or (with ``LostLeadershipBehavior/endGroup``) a lost lease.
    ///
    /// - Throws: ``LeaderElectionServiceError/Code/leadershipLost`` with ``LostLeadershipBehavior/endGroup``;
    ///   the work's error; the lock factory's error; `LeaderElectionError` with code `invalidConfiguration`
    ///   for invalid timing.
    public func run() async throws {
        let work = self.work
        guard configuration.enabled else {
            logger.info("leader election disabled; running the work without a lock")
            try await cancelWhenGracefulShutdown { try await work(nil) }
            return
        }

        let lock: any ResourceLock
        switch lockSource {
        case .lock(let given): lock = given
        case .factory(let factory): lock = try await factory(configuration)
        }
        var logger = self.logger
        logger[metadataKey: "leader.identity"] = .string(lock.identity)
        let elector = try makeElector(lock, configuration.electionConfiguration, logger)

        let endOnLoss = configuration.onLostLeadership == .endGroup
        let (lostTerms, lostContinuation) = AsyncStream.makeStream(of: LeadershipTerm.self, bufferingPolicy: .unbounded)
        let releaseGate = Gate()
        defer {
            releaseGate.open()
            lostContinuation.finish()
        }

        let leaderWork: @Sendable (LeadershipTerm) async throws -> Void = { [logger] term in
            var logger = logger
            logger[metadataKey: "leader.fencing_token"] = .stringConvertible(term.fencingToken)
            logger.info("started leading; starting the work")
            let result: Result<Void, any Error>
            do {
                try await work(term)
                result = .success(())
            } catch {
                result = .failure(error)
            }
            // The elector ends a term that is lost before it cancels the work, so a term that is no longer
            // valid here means the work stopped because leadership was lost (a shutdown keeps renewing).
            guard !term.isValid else {
                logger.info("the work stopped while leading", metadata: ["leader.work_result": "\(result)"])
                return try result.get()
            }
            if endOnLoss {
                logger.info("leadership lost; the work has stopped; ending the service")
                lostContinuation.yield(term)
                // Hold the elector here until run() has cancelled it, so that it cannot campaign again.
                await releaseGate.wait()
            } else {
                logger.info("leadership lost; the work has stopped; campaigning again")
            }
        }

        enum ChildOutcome: Sendable {
            case electionEnded
            case lost(LeadershipTerm)
        }
        try await withThrowingTaskGroup(of: ChildOutcome.self) { group in
            group.addTask {
                _ = try await cancelWhenGracefulShutdown { try await elector.runElection(leaderWork) }
                return .electionEnded
            }
            group.addTask {
                for await term in lostTerms { return .lost(term) }
                return .electionEnded
            }
            let first = try await group.next()
            group.cancelAll()
            // Cancelled first, released second: the elector sees its cancellation before the work returns.
            releaseGate.open()
            lostContinuation.finish()
            while try await group.next() != nil {}
            if case .lost(let term)? = first {
                throw LeaderElectionServiceError.leadershipLost(
                    "leader election lost: \(lock.identity) lost the lease \(configuration.id) (term \(term.fencingToken)) on \(lock)")
            }
        }
    }
}

/// The part of ``LeaderElector`` the service uses, to erase its clock type.
protocol RunnableElector: Sendable {
    func runElection(_ work: @escaping @Sendable (LeadershipTerm) async throws -> Void) async throws
}

extension LeaderElector: RunnableElector {
    func runElection(_ work: @escaping @Sendable (LeadershipTerm) async throws -> Void) async throws {
        _ = try await run(whileLeading: work)
    }
}

/// A one-way gate: ``wait()`` suspends until ``open()`` has been called (ignoring cancellation, which is the
/// point: it holds leader work that has already been cancelled).
final class Gate: Sendable {
    private struct State {
        var isOpen = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    func open() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.isOpen = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if state.isOpen { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }
}
