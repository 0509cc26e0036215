import CoreMetrics
import Logging
import Synchronization
import Tracing

/// Elects one leader among candidates sharing a ``ResourceLock``, with client-go's semantics, and runs
/// leader-only work in a child task for exactly as long as this candidate leads.
///
/// ```swift
/// let elector = try LeaderElector(lock: lock, configuration: .init(name: "reconciler"), logger: logger)
/// try await elector.run { term in
///     while true {
///         try term.check()                 // guard critical writes
///         try await reconcile(fencingToken: term.fencingToken)
///         try await Task.sleep(for: .seconds(1))
///     }
/// }
/// ```
///
/// ## What it keeps from client-go
/// - Expiry is judged on this process's **monotonic clock** from the moment it last saw the record's
///   version change, never by comparing record timestamps with the local clock. Followers use the lease
///   duration written by the holder.
/// - An empty holder is acquirable at once. Taking over increments `leaseTransitions`; renewing keeps
///   `acquireTime` and `leaseTransitions`.
/// - The leader renews every `retryPeriod` with a blind compare-and-swap on its last version (fast path);
///   on conflict it reads and retries (slow path, counted in `leader_election_slowpath_total`). It gives
///   up when no renew has succeeded within `renewDeadline`.
/// - Release writes an empty holder with a 1 s lease and unchanged `leaseTransitions`, by
///   compare-and-swap, retrying on conflict only while it is still the holder.
///
/// ## What it does better
/// - Leader work is a child task, cancelled the moment leadership is lost; on shutdown it is cancelled
///   and awaited *before* the lease is released (renewals continue while it drains, up to
///   ``LeaderElectionConfiguration/drainTimeout``; if it will not stop, the lease is left to expire).
/// - Each term is a ``LeadershipTerm`` with a strictly increasing fencing token and a ``LeadershipTerm/check()``.
/// - ``events()`` streams new-leader / started / stopped events.
/// - Followers sleep until the earliest of their jittered retry, the instant the observed lease expires,
///   or a change notification from the lock — no polling where the store can tell us. Where the lock's
///   ``ResourceLock/recordChanges()`` carries the records (etcd, Kubernetes, in-memory), a follower of a live
///   lease reads nothing at all between expiries: each renewal it is told about moves its timer on.
/// - A corrupt record is reported and treated as held by an unknown holder: once unchanged for
///   `leaseDuration` it is overwritten by compare-and-swap.
/// - Every write a follower must see changes the record: a renewal writes a `renewTime` strictly after the
///   previous one (by at least 1 µs, even when the wall clock stands still or steps back), an acquisition a higher
///   `leaseTransitions`, a release an empty holder. A store may answer a write of identical data with the same
///   version and no notification (a kube-apiserver does), and a follower's expiry timer moves on only when the
///   version changes.
/// - Targeted hand-off (Kubernetes' coordinated election `preferredHolder`, ``requestHandoff(on:to:maxAttempts:)``): a leader
///   learns of a request as soon as its lock's change feed reports the write (``ResourceLock/recordChanges()``; a
///   ``LockChange/unknown`` element costs it one read), else at its next renewal. A request counts only when the
///   record is this term's (holder and `leaseTransitions` match), so a stale feed element cannot end a term. The
///   leader then drains its work and releases the lease, keeping the name; the others stand back for one
///   `leaseDuration` from when they saw it, the preferred candidate — woken by the release on its own feed —
///   takes over at once, and the others take part again after that if it did not (it may be gone).
///
/// ## What it does not guarantee
/// - Safety assumes clocks advance at similar *rates*; a candidate whose clock runs faster than the
///   leader's by more than `leaseDuration / renewDeadline` could take over early (client-go has the same
///   limit). Absolute clock offsets and wall-clock jumps do not matter.
/// - A paused process can act after ``LeadershipTerm/check()`` passed; downstream systems that must never
///   accept a stale write should check ``LeadershipTerm/fencingToken``.
/// - Fencing tokens come from `leaseTransitions`: deleting the record, or a corrupt record this process never
///   read before, restarts the sequence.
/// - A record held by this candidate's own identity is taken over at once (as in client-go): identities
///   must be unique per process.
public final class LeaderElector<C: Clock>: Sendable where C.Duration == Duration {
    /// The lock this elector campaigns on.
    public let lock: any ResourceLock
    /// The validated configuration.
    public let configuration: LeaderElectionConfiguration
    /// The candidate's identity (the lock's).
    public var identity: String { lock.identity }

    private let clock: C
    private let logger: Logger
    private let metrics: LeaderElectionMetrics
    private let tracer: any Tracer
    private let jitter: @Sendable () -> Double
    private let broadcaster = EventBroadcaster<LeaderElectionEvent>()
    private let wake = WakeSignal()
    private let state = Mutex(ObservedState())

    private struct ObservedState: Sendable {
        var record: LeaderElectionRecord?
        var version: LockVersion?
        var observedAt: C.Instant?
        var corrupt = false
        var reportedLeader: String?
        var maxTransitionsSeen = -1
        var leading: TermControl?
        var running = false
        /// The lock's change feed delivers records (set by its first ``LockChange/stored(_:)``, cleared when it
        /// ends): a follower may rely on it instead of reading.
        var recordFeedLive = false
        /// The feed reported a change without its record (or ended): the next campaign step must read.
        var needsRead = true
    }

    /// Creates an elector.
    ///
    /// - Parameters:
    ///   - lock: the lock, which also supplies the candidate's identity.
    ///   - configuration: timing and behaviour; validated with client-go's rules.
    ///   - clock: the monotonic clock expiry is measured on (inject a ``ManualClock`` in tests).
    ///   - logger: where to log; metadata keys are `leader_election.name`, `.identity`, `.lock`.
    ///   - metricsFactory: where metrics go; defaults to the global `MetricsSystem`.
    ///   - tracer: where spans go (`leader_election.acquire`, `.renew`, `.release`); defaults to the global
    ///     `InstrumentationSystem.tracer` (a no-op until one is bootstrapped).
    ///   - jitter: a source of uniform random numbers in `0..<1` for retry jitter.
    /// - Throws: ``LeaderElectionError/Code/invalidConfiguration`` naming the offending values.
    public init(
        lock: any ResourceLock,
        configuration: LeaderElectionConfiguration = .init(),
        clock: C,
        logger: Logger = Logger(label: "leader-election", factory: { _ in SwiftLogNoOpLogHandler() }),
        metricsFactory: (any MetricsFactory)? = nil,
        tracer: (any Tracer)? = nil,
        jitter: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) throws {
        try configuration.validate(identity: lock.identity)
        self.lock = lock
        self.configuration = configuration
        self.clock = clock
        var logger = logger
        logger[metadataKey: "leader_election.name"] = .string(configuration.name)
        logger[metadataKey: "leader_election.identity"] = .string(lock.identity)
        logger[metadataKey: "leader_election.lock"] = .string(lock.description)
        self.logger = logger
        self.metrics = LeaderElectionMetrics(name: configuration.name, factory: metricsFactory ?? MetricsSystem.factory)
        self.tracer = tracer ?? InstrumentationSystem.tracer
        self.jitter = jitter
    }

    // MARK: - Observation

    /// A new subscription to the elector's events. Subscribe before calling ``run(whileLeading:)`` to see
    /// every event; the stream ends when the elector is deinitialised.
    public func events() -> AsyncStream<LeaderElectionEvent> { broadcaster.subscribe() }

    /// `true` while this candidate holds a term.
    public var isLeader: Bool { state.withLock { $0.leading != nil } }

    /// The holder last observed in the record (informational, as client-go's `GetLeader`), or `nil`.
    public var currentLeader: String? {
        state.withLock { state in
            guard let holder = state.record?.holderIdentity, !holder.isEmpty, !state.corrupt else { return nil }
            return holder
        }
    }

    /// The current term, while leading.
    public var currentTerm: LeadershipTerm? { state.withLock { $0.leading?.term } }

    /// Health check like client-go's `Check(maxTolerableExpiredLease)`: succeeds when not leading (a
    /// follower is healthy), and when leading throws if the last successful renew is older than
    /// `leaseDuration + maxTolerableExpiredLease` — the elector is wedged.
    public func check(maxTolerableExpiredLease: Duration) throws {
        let (leading, observedAt) = state.withLock { ($0.leading, $0.observedAt) }
        guard leading != nil, let observedAt else { return }
        let age = observedAt.duration(to: clock.now)
        if age > configuration.leaseDuration + maxTolerableExpiredLease {
            throw LeaderElectionError.leadershipLost(
                "failed election to renew leadership on lease \(configuration.name) (last renew \(formatDuration(age)) ago)")
        }
    }

    deinit { broadcaster.finish() }

    // MARK: - Running

    /// Campaigns for leadership and runs `work` while leading.
    ///
    /// - Losing leadership cancels `work` at once; after it has stopped, the elector campaigns again.
    /// - When `work` returns or throws, the lease is released and `run` returns its value or rethrows.
    /// - When the calling task is cancelled, `work` is cancelled and awaited (renewing meanwhile, up to the
    ///   drain timeout), then the lease is released if `releaseOnCancel`; `run` returns `nil`.
    ///
    /// - Returns: the value of `work`, or `nil` when cancelled.
    /// - Throws: the error `work` threw, or ``LeaderElectionError/Code/invalidConfiguration`` when the
    ///   elector is already running.
    public func run<R: Sendable>(
        whileLeading work: @escaping @Sendable (LeadershipTerm) async throws -> R
    ) async throws -> R? {
        try state.withLock { state in
            if state.running { throw LeaderElectionError.invalidConfiguration("LeaderElector.run is already running for \(lock.identity)") }
            state.running = true
        }
        defer { state.withLock { $0.running = false } }

        let feed: Task<Void, Never>?
        if let changes = lock.recordChanges() {
            feed = Task {
                for await change in changes { await self.feedDelivered(change) }
                self.state.withLock { state in
                    state.recordFeedLive = false
                    state.needsRead = true
                }
                self.wake.signal()   // the feed ended: back to reading on the retry timer
            }
        } else {
            feed = nil
        }
        defer {
            feed?.cancel()
            state.withLock { state in
                state.recordFeedLive = false
                state.needsRead = true
            }
        }

        logger.debug("campaigning", metadata: ["leader_election.lease_duration": "\(formatDuration(configuration.leaseDuration))"])
        while true {
            guard let control = await campaign() else { return nil }
            switch await lead(control, work: work) {
            case .finished(let result): return try result.get()
            case .cancelled: return nil
            case .lost: continue
            }
        }
    }

    // MARK: - Change feed

    /// One element of the lock's change feed. A follower applies a delivered record as an observation (resetting
    /// its expiry timer exactly as a read would, since the notification comes after the write) and is woken only
    /// when it may be able to act; anything else wakes it to read. A leader looks for a hand-off request.
    private func feedDelivered(_ change: LockChange) async {
        let me = lock.identity
        let leading = state.withLock { state -> TermControl? in
            if case .stored = change { state.recordFeedLive = true } else { state.needsRead = true }
            return state.leading
        }
        if let leading { await leaderFeedDelivered(change, control: leading) }
        guard case .stored(let read) = change else {
            wake.signal()
            return
        }
        // Checked and applied under one lock: a delivery while leading, or racing this candidate's acquisition, is
        // dropped (it may be older than the leader's own latest write).
        observe(read.record, version: read.version, now: clock.now, onlyAsFollower: true)
        let holder = read.record.holderIdentity
        if holder.isEmpty || holder == me || read.holderIsKnownGone || read.record.preferredHolder == me {
            wake.signal()
        }
    }

    /// When the change feed is live and the last observation shows another candidate's lease, the instant it
    /// expires: until then there is nothing to read (the feed reports every renewal).
    private func liveForeignLeaseExpiry() -> C.Instant? {
        let me = lock.identity
        return state.withLock { state -> C.Instant? in
            guard state.recordFeedLive, !state.needsRead, !state.corrupt, let record = state.record, let observedAt = state.observedAt,
                  !record.holderIdentity.isEmpty, record.holderIdentity != me, record.preferredHolder != me else { return nil }
            return observedAt.advanced(by: record.leaseDuration)
        }
    }

    /// While leading, the feed carries hand-off requests (``requestHandoff(on:to:maxAttempts:)`` is a write like
    /// any other): a record of *this term* naming another preferred holder starts the hand-off at once instead of
    /// at the next renewal. ``LockChange/unknown`` costs one read. Anything else — the leader's own renewals, a
    /// stale element of an earlier term, another holder's record — changes nothing here: losing the lease is
    /// still decided only by the renewals' compare-and-swap, so a stale element can neither end a valid term nor
    /// make the leader release a record it no longer holds (the release is a compare-and-swap too).
    private func leaderFeedDelivered(_ change: LockChange, control: TermControl) async {
        guard !control.handingOff, let token = control.term?.fencingToken else { return }
        let seen: VersionedRecord
        switch change {
        case .stored(let read):
            seen = read
        case .unknown:
            // Elements arriving while this read is in flight coalesce in the feed's buffer: at most one more read.
            do {
                let deadline = clock.now.advanced(by: configuration.renewDeadline)
                guard let read = try await withDeadline(deadline, clock: clock, what: "reading \(lock)", { try await self.lock.get() }) else { return }
                seen = read
            } catch {
                logger.debug("could not read the record after a change notification", metadata: ["error": "\(error)"])
                return
            }
        case .deleted:
            return
        }
        let me = lock.identity
        guard seen.record.holderIdentity == me, seen.record.leaseTransitions == token,
              let preferred = Self.otherPreferredHolder(seen.record, me: me) else { return }
        // The request's write is newer than the leader's last one (which could not have succeeded over it without
        // reading it): renewing while the work drains, and the release, compare-and-swap on it.
        state.withLock { state in
            guard state.leading === control else { return }
            state.record = seen.record
            state.version = seen.version
        }
        startHandoff(control, to: preferred, noticedBy: "change feed")
    }

    // MARK: - Campaign (followers)

    private enum AttemptOutcome {
        case acquired(TermControl)
        case wait(expiry: C.Instant?)
        case retrySoon
    }

    /// Loops until this candidate acquires the lock; `nil` when cancelled.
    private func campaign() async -> TermControl? {
        var quickRetries = 0
        while !Task.isCancelled {
            wake.reset()
            // With a live change feed, a follower of a live lease reads nothing: it sleeps until that lease
            // expires, and every renewal the feed reports moves the expiry on (client-go polls instead). A feed
            // that is silently stuck costs one read per lease duration: the expiry then stays put, and the read
            // at the expiry finds the renewed record.
            if let expiry = liveForeignLeaseExpiry(), expiry > clock.now {
                await wake.wait(until: expiry, clock: clock)
                continue
            }
            state.withLock { $0.needsRead = false }
            let outcome = await tryAcquire()
            let wakeAt: C.Instant
            switch outcome {
            case .acquired(let control):
                return control
            case .retrySoon where quickRetries < 1:
                quickRetries += 1
                continue
            case .retrySoon:
                wakeAt = clock.now.advanced(by: jitteredRetry())
            case .wait(let expiry):
                let retry = clock.now.advanced(by: jitteredRetry())
                // No periodic retry while the feed reports every change: wake at the expiry, or when told.
                let feedLive = state.withLock { $0.recordFeedLive }
                wakeAt = expiry.map { feedLive ? $0 : min($0, retry) } ?? retry
            }
            quickRetries = 0
            await wake.wait(until: wakeAt, clock: clock)
        }
        return nil
    }

    private func jitteredRetry() -> Duration {
        configuration.retryPeriod * (1 + max(0, min(1, jitter())) * configuration.jitterFactor)
    }

    /// One acquisition attempt, in a `leader_election.acquire` span.
    private func tryAcquire() async -> AttemptOutcome {
        await tracer.withSpan("leader_election.acquire", ofKind: .internal) { span in
            setCommonAttributes(span)
            let outcome = await tryAcquireUntraced()
            switch outcome {
            case .acquired(let control):
                span.attributes["leader_election.outcome"] = "acquired"
                span.attributes["leader_election.fencing_token"] = control.term?.fencingToken ?? -1
            case .wait: span.attributes["leader_election.outcome"] = "wait"
            case .retrySoon: span.attributes["leader_election.outcome"] = "conflict"
            }
            return outcome
        }
    }

    private func setCommonAttributes(_ span: any Span) {
        span.attributes["leader_election.name"] = configuration.name
        span.attributes["leader_election.identity"] = lock.identity
        span.attributes["leader_election.lock"] = lock.description
    }

    private func tryAcquireUntraced() async -> AttemptOutcome {
        let me = lock.identity
        let wall = configuration.wallClock.now()
        let fetched: VersionedRecord?
        var corruptVersion: LockVersion?
        // A follower's observation is stamped when the read has *returned* (as client-go's
        // setObservedRecord does): the read may have been served after the holder's latest renewal landed, so
        // stamping its start would date that renewal too early and let the lease "expire" early.
        var now = clock.now
        do {
            fetched = try await lock.get()
            now = clock.now
        } catch let error as LeaderElectionError where error.code == .corruptRecord && error.version != nil {
            now = clock.now
            corruptVersion = error.version
            fetched = nil
            noteCorrupt(error, version: error.version!, now: now)
        } catch {
            logger.info("error retrieving resource lock", metadata: ["error": "\(error)"])
            return .wait(expiry: nil)
        }

        if fetched == nil && corruptVersion == nil {
            let token = state.withLock { $0.maxTransitionsSeen } + 1
            let desired = LeaderElectionRecord(
                holderIdentity: me, leaseDuration: configuration.leaseDuration,
                acquireTime: wall, renewTime: wall, leaseTransitions: max(0, token))
            do {
                let writeStart = clock.now   // the term's guarantee counts from before the write
                let version = try await lock.create(desired)
                return .acquired(beginTerm(desired, version: version, at: writeStart))
            } catch let error as LeaderElectionError where error.code == .alreadyExists {
                return .retrySoon
            } catch {
                logger.info("error initially creating leader election record", metadata: ["error": "\(error)"])
                return .wait(expiry: nil)
            }
        }

        let version: LockVersion
        let nextToken: Int
        if let fetched {
            observe(fetched.record, version: fetched.version, now: now)
            let (observedAt, duration) = state.withLock { ($0.observedAt ?? now, $0.record?.leaseDuration ?? configuration.leaseDuration) }
            let expiry = observedAt.advanced(by: duration)
            let holder = fetched.record.holderIdentity
            if !holder.isEmpty && holder != me && expiry > now && !fetched.holderIsKnownGone {
                return .wait(expiry: expiry)
            }
            if let preferred = fetched.record.preferredHolder, !preferred.isEmpty, preferred != me {
                // A hand-off to someone else is under way: leave the lease to them for one lease duration.
                let standBackUntil = observedAt.advanced(by: configuration.leaseDuration)
                if standBackUntil > now { return .wait(expiry: standBackUntil) }
            }
            if fetched.holderIsKnownGone && !holder.isEmpty && holder != me {
                logger.debug("holder verified gone by the lock; taking over", metadata: ["leader_election.holder": "\(holder)"])
            }
            version = fetched.version
            nextToken = max(fetched.record.leaseTransitions, state.withLock { $0.maxTransitionsSeen }) + 1
        } else {
            let (observedAt, duration) = state.withLock { ($0.observedAt ?? now, configuration.leaseDuration) }
            let expiry = observedAt.advanced(by: duration)
            if expiry > now { return .wait(expiry: expiry) }
            version = corruptVersion!
            nextToken = state.withLock { $0.maxTransitionsSeen } + 1
            logger.info("overwriting corrupt record left unchanged for the lease duration", metadata: ["leader_election.version": "\(version)"])
        }

        let desired = LeaderElectionRecord(
            holderIdentity: me, leaseDuration: configuration.leaseDuration,
            acquireTime: wall, renewTime: wall, leaseTransitions: max(0, nextToken))
        do {
            let writeStart = clock.now
            let newVersion = try await lock.update(desired, expecting: version)
            return .acquired(beginTerm(desired, version: newVersion, at: writeStart))
        } catch let error as LeaderElectionError where error.code == .conflict {
            return .retrySoon
        } catch {
            logger.info("failed to acquire lease", metadata: ["error": "\(error)"])
            return .wait(expiry: nil)
        }
    }

    private func noteCorrupt(_ error: LeaderElectionError, version: LockVersion, now: C.Instant) {
        let changed = state.withLock { state -> Bool in
            guard state.version != version || !state.corrupt else { return false }
            state.version = version
            state.record = nil
            state.corrupt = true
            state.observedAt = now
            return true
        }
        if changed {
            metrics.corruptRecords.increment()
            logger.warning("lock holds a corrupt record; treating it as held by an unknown holder",
                           metadata: ["error": "\(error.message)", "leader_election.version": "\(version)"])
        }
    }

    /// Records an observation; resets the expiry timer when the version changed and reports new leaders.
    /// - Parameter onlyAsFollower: apply nothing while leading (a change-feed delivery, which may be older than the
    ///   leader's own latest write: applying it would send the next renewal down the slow path).
    private func observe(_ record: LeaderElectionRecord, version: LockVersion, now: C.Instant, onlyAsFollower: Bool = false) {
        let newLeader: String? = state.withLock { state in
            if onlyAsFollower && state.leading != nil { return nil }
            if state.version != version || state.corrupt || state.observedAt == nil {
                state.version = version
                state.record = record
                state.corrupt = false
                state.observedAt = now
            }
            state.maxTransitionsSeen = max(state.maxTransitionsSeen, record.leaseTransitions)
            let holder = record.holderIdentity
            guard !holder.isEmpty, holder != state.reportedLeader else { return nil }
            state.reportedLeader = holder
            return holder
        }
        if let newLeader {
            logger.info("new leader observed", metadata: ["leader_election.leader": "\(newLeader)"])
            broadcaster.send(.newLeader(newLeader))
        }
    }

    private func beginTerm(_ record: LeaderElectionRecord, version: LockVersion, at start: C.Instant) -> TermControl {
        let deadline = start.advanced(by: configuration.renewDeadline)
        let control = TermControl(clock: clock, deadline: deadline)
        let term = LeadershipTerm(
            identity: lock.identity, fencingToken: record.leaseTransitions,
            acquireTime: record.acquireTime ?? configuration.wallClock.now(), state: control.termState)
        control.term = term
        observe(record, version: version, now: start)
        state.withLock { $0.leading = control }
        return control
    }

    // MARK: - Leading

    private enum LeadOutcome<R: Sendable> {
        case finished(Result<R, any Error>)
        case cancelled
        case lost
    }

    private enum Drain<R: Sendable>: Sendable {
        case workStopped(Result<R, any Error>)
        case timedOut
    }

    /// The drain timer of one term: started once, and closed when the term's work has been awaited.
    private enum DrainTimer {
        case idle
        case running(Task<Void, Never>)
        case closed
    }

    private func lead<R: Sendable>(
        _ control: TermControl,
        work: @escaping @Sendable (LeadershipTerm) async throws -> R
    ) async -> LeadOutcome<R> {
        let term = control.term!
        metrics.masterStatus.record(1)
        metrics.transitions.increment()
        metrics.leaseRemaining.record(configuration.renewDeadline.secondsDouble)
        logger.info("successfully acquired lease", metadata: ["leader_election.fencing_token": "\(term.fencingToken)"])
        // Off the critical path: the work and the renewer start without waiting for the event to be recorded
        // (a hung or slow events endpoint must delay neither).
        let eventLock = self.lock
        Task { await eventLock.recordEvent(LockEvent(kind: .becameLeader, identity: eventLock.identity)) }
        broadcaster.send(.startedLeading(term))

        let workTask = Task { try await work(term) }
        let box = OneShot<Drain<R>>()
        let drainTimeout = configuration.drainTimeout ?? configuration.renewDeadline
        let clock = self.clock
        let cancelled = Mutex(false)
        let drainTimer = Mutex<DrainTimer>(.idle)
        // Cancels the work and gives it `drainTimeout` to stop (on cancellation of `run`, or a hand-off).
        let drain: @Sendable () -> Void = {
            workTask.cancel()
            drainTimer.withLock { timer in
                guard case .idle = timer else { return }
                timer = .running(Task {
                    do {
                        try await clock.sleep(until: clock.now.advanced(by: drainTimeout), tolerance: nil)
                        box.offer(.timedOut)
                    } catch {}
                })
            }
        }
        control.whenHandingOff(drain)   // from a renewal or the change feed, whichever sees the request first
        let renewer = Task { await self.renewLoop(control, onLost: { workTask.cancel() }) }

        let watcher = Task {
            let result = await workTask.result
            box.offer(.workStopped(result))
        }
        let drained = await withTaskCancellationHandler {
            await box.value()
        } onCancel: {
            cancelled.withLock { $0 = true }
            drain()
        }
        let handingOff = control.finishWork()   // no hand-off can begin from here on
        drainTimer.withLock { timer in
            if case .running(let task) = timer { task.cancel() }
            timer = .closed
        }
        _ = watcher

        let wasCancelled = cancelled.withLock { $0 } || Task.isCancelled
        renewer.cancel()
        await renewer.value

        let reason: StopReason
        let outcome: LeadOutcome<R>
        if control.lost {
            reason = .lost
            outcome = .lost
        } else {
            switch drained {
            case .timedOut:
                logger.warning("leader work did not stop within the drain timeout; leaving the lease to expire instead of releasing it",
                               metadata: ["leader_election.drain_timeout": "\(formatDuration(drainTimeout))"])
                reason = .cancelled
                outcome = wasCancelled ? .cancelled : .lost
            case .workStopped where handingOff && !wasCancelled:
                let released = await Task(operation: { await self.release(control) }).value
                reason = released ? .handedOff : .cancelled
                outcome = .lost   // campaign again, standing back while the preferred holder takes over
            case .workStopped(let result):
                let shouldRelease = wasCancelled ? configuration.releaseOnCancel : true
                // The calling task may be cancelled: release from a task that is not.
                if shouldRelease, await Task(operation: { await self.release(control) }).value {
                    reason = .released
                } else {
                    reason = .cancelled
                }
                outcome = wasCancelled ? .cancelled : .finished(result)
            }
        }
        control.termState.end()
        state.withLock { $0.leading = nil }
        metrics.masterStatus.record(0)
        metrics.leaseRemaining.record(0)
        logger.info("stopped leading", metadata: ["leader_election.reason": "\(reason)", "leader_election.fencing_token": "\(term.fencingToken)"])
        let lock = self.lock
        await Task { await lock.recordEvent(LockEvent(kind: .stoppedLeading, identity: lock.identity)) }.value
        broadcaster.send(.stoppedLeading(term, reason: reason))
        return outcome
    }

    private enum RenewOutcome {
        case renewed
        case lost(String)
        case failed(any Error)
        case handoff(to: String)
    }

    /// Renews every `retryPeriod` until cancelled (returns) or lost (calls `onLost`, returns). A hand-off request
    /// found by a renewal starts the hand-off and keeps renewing while the work drains.
    private func renewLoop(_ control: TermControl, onLost: @Sendable () -> Void) async {
        var lastAttempt = control.startedAt
        while !Task.isCancelled {
            do {
                // Wake for the next renewal, or at the renew deadline if that comes first (so that a
                // leader whose renewals keep failing gives up exactly when its guarantee ends).
                let next = min(lastAttempt.advanced(by: configuration.retryPeriod), control.deadline)
                try await clock.sleep(until: next, tolerance: nil)
            } catch {
                return
            }
            let attemptStart = clock.now
            lastAttempt = attemptStart
            let deadline = control.deadline
            if attemptStart >= deadline {
                control.markLost()
                logger.info("failed to renew lease: renew deadline passed")
                onLost()
                return
            }
            let outcome: RenewOutcome
            do {
                outcome = try await withDeadline(deadline, clock: clock, what: "renewing \(lock)") {
                    await self.tryRenew(control, attemptStart: attemptStart)
                }
            } catch is CancellationError {
                return
            } catch {
                outcome = .failed(error)
            }
            switch outcome {
            case .renewed:
                let renewDuration = attemptStart.duration(to: clock.now)
                metrics.renewDuration.recordNanoseconds(renewDuration.wholeMicroseconds * 1_000)
                metrics.leaseRemaining.record(control.deadline.duration(to: clock.now) == .zero ? 0 : clock.now.duration(to: control.deadline).secondsDouble)
            case .lost(let why):
                control.markLost()
                logger.info("leadership lost", metadata: ["leader_election.reason": "\(why)"])
                onLost()
                return
            case .handoff(let preferred):
                startHandoff(control, to: preferred, noticedBy: "renewal")
            case .failed(let error):
                if Task.isCancelled { return }
                logger.info("failed to renew lease", metadata: ["error": "\(error)"])
                if clock.now >= control.deadline {
                    control.markLost()
                    logger.info("failed to renew lease within the renew deadline", metadata: ["leader_election.renew_deadline": "\(formatDuration(configuration.renewDeadline))"])
                    onLost()
                    return
                }
            }
        }
    }

    /// One renewal, in a `leader_election.renew` span.
    private func tryRenew(_ control: TermControl, attemptStart: C.Instant) async -> RenewOutcome {
        await tracer.withSpan("leader_election.renew", ofKind: .internal) { span in
            setCommonAttributes(span)
            span.attributes["leader_election.fencing_token"] = control.term?.fencingToken ?? -1
            let outcome = await tryRenewUntraced(control, attemptStart: attemptStart)
            switch outcome {
            case .renewed: span.attributes["leader_election.outcome"] = "renewed"
            case .lost(let why):
                span.attributes["leader_election.outcome"] = "lost"
                span.setStatus(SpanStatus(code: .error, message: why))
            case .failed(let error):
                span.attributes["leader_election.outcome"] = "failed"
                span.recordError(error)
                span.setStatus(SpanStatus(code: .error, message: "\(error)"))
            case .handoff(let preferred):
                span.attributes["leader_election.outcome"] = "handoff"
                span.attributes["leader_election.preferred_holder"] = preferred
            }
            return outcome
        }
    }

    private func tryRenewUntraced(_ control: TermControl, attemptStart: C.Instant) async -> RenewOutcome {
        let me = lock.identity
        let (observed, version) = state.withLock { ($0.record, $0.version) }
        guard var desired = observed, let version, desired.holderIdentity == me else {
            return .lost("observed record is not held by \(me)")
        }
        if let preferred = Self.otherPreferredHolder(desired, me: me), !control.handingOff { return .handoff(to: preferred) }
        desired.renewTime = renewTime(after: desired.renewTime)
        desired.leaseDuration = configuration.leaseDuration
        do {
            let newVersion = try await lock.update(desired, expecting: version)
            renewed(control, desired, version: newVersion, attemptStart: attemptStart)
            return .renewed
        } catch let error as LeaderElectionError where error.code == .conflict {
            metrics.slowpath.increment()
            logger.debug("optimistic renew conflicted; reading the record", metadata: ["error": "\(error.message)"])
        } catch let error as LeaderElectionError where error.code == .notFound {
            return .lost("the record was deleted")
        } catch {
            return .failed(error)
        }
        // Slow path: read, then write only if the record is still ours.
        do {
            guard let fetched = try await lock.get() else { return .lost("the record was deleted") }
            observe(fetched.record, version: fetched.version, now: clock.now)
            guard fetched.record.holderIdentity == me, fetched.record.leaseTransitions == control.term?.fencingToken else {
                return .lost(fetched.record.holderIdentity.isEmpty
                    ? "the lease was released by someone else"
                    : "the lease is held by \(fetched.record.holderIdentity)")
            }
            if let preferred = Self.otherPreferredHolder(fetched.record, me: me), !control.handingOff {
                return .handoff(to: preferred)
            }
            var slow = fetched.record
            slow.renewTime = renewTime(after: fetched.record.renewTime)
            slow.leaseDuration = configuration.leaseDuration
            let newVersion = try await lock.update(slow, expecting: fetched.version)
            renewed(control, slow, version: newVersion, attemptStart: attemptStart)
            return .renewed
        } catch let error as LeaderElectionError where error.code == .corruptRecord {
            return .lost("the record became corrupt: \(error.message)")
        } catch {
            return .failed(error)
        }
    }

    /// The wall clock, but strictly after `previous` (by at least a `MicroTime`'s 1 µs) even when the wall clock
    /// stands still or has stepped back: every renewal then changes the record. A store may answer a write of
    /// identical data with the same version and no notification (a kube-apiserver does), and followers move their
    /// expiry timers on only when the version changes — an unchanged renewal would look like a dead leader.
    private func renewTime(after previous: MicroTime?) -> MicroTime {
        let wall = configuration.wallClock.now()
        guard let previous else { return wall }
        return max(wall, previous.advanced(by: .microseconds(1)))
    }

    /// Starts the hand-off of `control`'s term to `preferred` (once): the installed drain cancels the work; the
    /// renewals go on until it has stopped, then the lease is released keeping the name.
    private func startHandoff(_ control: TermControl, to preferred: String, noticedBy source: String) {
        guard control.beginHandoff(to: preferred) else { return }
        logger.info("another candidate is the preferred holder; draining work to hand the lease over", metadata: [
            "leader_election.preferred_holder": "\(preferred)", "leader_election.handoff_noticed_by": "\(source)",
        ])
    }

    /// The record's preferred holder when it names a candidate other than `me`.
    private static func otherPreferredHolder(_ record: LeaderElectionRecord, me: String) -> String? {
        guard let preferred = record.preferredHolder, !preferred.isEmpty, preferred != me else { return nil }
        return preferred
    }

    private func renewed(_ control: TermControl, _ record: LeaderElectionRecord, version: LockVersion, attemptStart: C.Instant) {
        state.withLock { state in
            state.record = record
            state.version = version
            state.corrupt = false
            state.observedAt = attemptStart
        }
        control.extend(to: attemptStart.advanced(by: configuration.renewDeadline))
    }

    /// Writes an empty holder by compare-and-swap, retrying while this candidate is still the holder; in a
    /// `leader_election.release` span.
    private func release(_ control: TermControl) async -> Bool {
        await tracer.withSpan("leader_election.release", ofKind: .internal) { span in
            setCommonAttributes(span)
            span.attributes["leader_election.fencing_token"] = control.term?.fencingToken ?? -1
            let released = await releaseUntraced(control)
            span.attributes["leader_election.outcome"] = released ? "released" : "not released"
            return released
        }
    }

    private func releaseUntraced(_ control: TermControl) async -> Bool {
        let me = lock.identity
        let deadline = clock.now.advanced(by: configuration.renewDeadline)
        guard var (base, version) = state.withLock({ state -> (LeaderElectionRecord, LockVersion)? in
            guard let r = state.record, let v = state.version else { return nil }
            return (r, v)
        }) else { return false }
        for _ in 0..<8 {
            // Only a record this candidate holds is released, so a release always changes it (holder → ""): a
            // release is never written over a released record, and followers always see it.
            guard base.holderIdentity == me else { return false }
            let now = renewTime(after: base.renewTime)
            // A pending hand-off (strategy + preferredHolder) survives the release, so the others stand back.
            let released = LeaderElectionRecord(
                holderIdentity: "", leaseDuration: .seconds(1), acquireTime: now, renewTime: now,
                leaseTransitions: base.leaseTransitions, strategy: base.strategy, preferredHolder: base.preferredHolder)
            do {
                let expected = version
                let newVersion = try await withDeadline(deadline, clock: clock, what: "releasing \(lock)") {
                    try await self.lock.update(released, expecting: expected)
                }
                observe(released, version: newVersion, now: clock.now)
                logger.info("released lease")
                return true
            } catch let error as LeaderElectionError where error.code == .conflict {
                do {
                    guard let fetched = try await withDeadline(deadline, clock: clock, what: "reading \(lock)", {
                        try await self.lock.get()
                    }) else { return false }
                    observe(fetched.record, version: fetched.version, now: clock.now)
                    base = fetched.record
                    version = fetched.version
                } catch {
                    logger.info("failed to release lease", metadata: ["error": "\(error)"])
                    return false
                }
            } catch {
                logger.info("failed to release lease", metadata: ["error": "\(error)"])
                return false
            }
        }
        return false
    }

    /// Mutable state of one term, shared by the renewer, the lead task and the ``LeadershipTerm``.
    private final class TermControl: Sendable {
        private struct Inner {
            var deadline: C.Instant
            var lost = false
            var handoff: String?
            var onHandoff: (@Sendable () -> Void)?
            var workFinished = false
            var term: LeadershipTerm?
        }
        private let inner: LockedBox<Inner>
        let startedAt: C.Instant
        let termState: TermState

        init(clock: C, deadline: C.Instant) {
            let inner = LockedBox(Inner(deadline: deadline))
            self.inner = inner
            self.startedAt = clock.now
            self.termState = TermState { clock.now.duration(to: inner.withLock { $0.deadline }) }
        }

        var deadline: C.Instant { inner.withLock { $0.deadline } }
        var lost: Bool { inner.withLock { $0.lost } }
        var term: LeadershipTerm? {
            get { inner.withLock { $0.term } }
            set { inner.withLock { $0.term = newValue } }
        }
        var handingOff: Bool { inner.withLock { $0.handoff != nil } }
        /// Installs what a hand-off does (drain the work); runs it at once if a hand-off has already begun.
        func whenHandingOff(_ action: @escaping @Sendable () -> Void) {
            let begun = inner.withLock { inner in
                inner.onHandoff = action
                return inner.handoff != nil
            }
            if begun { action() }
        }
        /// Records a hand-off request and runs the installed action; `true` the first time, while the term's work
        /// runs and the term is not lost.
        func beginHandoff(to preferred: String) -> Bool {
            let action = inner.withLock { inner -> (@Sendable () -> Void)?? in
                guard inner.handoff == nil, !inner.lost, !inner.workFinished else { return nil }
                inner.handoff = preferred
                return .some(inner.onHandoff)
            }
            guard let action else { return false }
            action?()
            return true
        }
        /// The term's work has been awaited: no hand-off begins any more. Returns whether one had begun.
        func finishWork() -> Bool {
            inner.withLock { inner in
                inner.workFinished = true
                inner.onHandoff = nil
                return inner.handoff != nil
            }
        }
        func extend(to deadline: C.Instant) { inner.withLock { $0.deadline = max($0.deadline, deadline) } }
        func markLost() {
            inner.withLock { $0.lost = true }
            termState.end()
        }
    }
}

extension LeaderElector where C == ContinuousClock {
    /// Creates an elector on the system's monotonic clock.
    ///
    /// - Throws: ``LeaderElectionError/Code/invalidConfiguration`` naming the offending values.
    public convenience init(
        lock: any ResourceLock,
        configuration: LeaderElectionConfiguration = .init(),
        logger: Logger = Logger(label: "leader-election", factory: { _ in SwiftLogNoOpLogHandler() }),
        metricsFactory: (any MetricsFactory)? = nil,
        tracer: (any Tracer)? = nil
    ) throws {
        try self.init(lock: lock, configuration: configuration, clock: ContinuousClock(), logger: logger, metricsFactory: metricsFactory, tracer: tracer)
    }
}
