import Logging

/// How a ``HeartbeatLease`` renews: the kubelet's node-lease timing by default.
public struct HeartbeatConfiguration: Sendable, Hashable {
    /// The lease duration written into the record (`leaseDurationSeconds` on Kubernetes). Default 40 s,
    /// the kubelet's `nodeLeaseDurationSeconds`.
    public var leaseDuration: Duration
    /// The interval between successful renewals. `nil` (the default) means ``leaseDuration`` × 0.25, the
    /// kubelet's `nodeLeaseRenewIntervalFraction` (10 s for 40 s).
    public var renewInterval: Duration?
    /// The first delay after a failed attempt; it doubles with every consecutive failure. Default 200 ms.
    public var initialBackoff: Duration
    /// The largest delay between failed attempts. Default 7 s, the kubelet's `maxBackoff`.
    public var maximumBackoff: Duration
    /// How long one attempt (a write, plus the re-read and re-write after a conflict) may take before it
    /// counts as failed. `nil` (the default) means the renew interval.
    public var attemptTimeout: Duration?
    /// How many compare-and-swap writes one attempt makes when they conflict (each after a re-read).
    /// Default 5, the kubelet's `maxUpdateRetries`.
    public var maximumConflictRetries: Int

    /// Creates a configuration.
    public init(
        leaseDuration: Duration = .seconds(40),
        renewInterval: Duration? = nil,
        initialBackoff: Duration = .milliseconds(200),
        maximumBackoff: Duration = .seconds(7),
        attemptTimeout: Duration? = nil,
        maximumConflictRetries: Int = 5
    ) {
        self.leaseDuration = leaseDuration
        self.renewInterval = renewInterval
        self.initialBackoff = initialBackoff
        self.maximumBackoff = maximumBackoff
        self.attemptTimeout = attemptTimeout
        self.maximumConflictRetries = maximumConflictRetries
    }

    /// The renew interval in effect: ``renewInterval``, else ``leaseDuration`` × 0.25.
    public var effectiveRenewInterval: Duration { renewInterval ?? leaseDuration / 4 }

    /// The delay before the next attempt after `consecutiveFailures` (≥ 1) failed attempts:
    /// ``initialBackoff`` × 2^(failures − 1), capped at ``maximumBackoff`` (200 ms, 400 ms, … 6.4 s, 7 s, 7 s).
    public func backoff(afterFailures consecutiveFailures: Int) -> Duration {
        var delay = initialBackoff
        var doublings = max(0, consecutiveFailures - 1)
        while doublings > 0 && delay < maximumBackoff {   // bounded: stops at the cap
            delay *= 2
            doublings -= 1
        }
        return min(delay, maximumBackoff)
    }

    /// Checks the values.
    /// - Throws: ``LeaderElectionError/Code/invalidConfiguration`` naming the offending value.
    public func validate() throws {
        func invalid(_ message: String) -> LeaderElectionError { .invalidConfiguration("heartbeat: \(message)") }
        guard leaseDuration > .zero else { throw invalid("leaseDuration must be positive (got \(formatDuration(leaseDuration)))") }
        let interval = effectiveRenewInterval
        guard interval > .zero else { throw invalid("renewInterval must be positive (got \(formatDuration(interval)))") }
        guard interval < leaseDuration else {
            throw invalid("renewInterval \(formatDuration(interval)) must be shorter than leaseDuration \(formatDuration(leaseDuration))")
        }
        guard initialBackoff > .zero, maximumBackoff >= initialBackoff else {
            throw invalid("backoff must satisfy 0 < initialBackoff ≤ maximumBackoff (got \(formatDuration(initialBackoff)), \(formatDuration(maximumBackoff)))")
        }
        if let attemptTimeout, attemptTimeout <= .zero { throw invalid("attemptTimeout must be positive") }
        guard maximumConflictRetries >= 1 else { throw invalid("maximumConflictRetries must be at least 1") }
    }
}

/// What one heartbeat attempt did.
public enum HeartbeatEvent: Sendable, Hashable, CustomStringConvertible {
    /// The lease was written: `created` when no record existed, with its new version and the record written.
    case renewed(created: Bool, version: LockVersion, record: LeaderElectionRecord)
    /// An attempt failed; the next one follows after `retryIn` (the backoff).
    case failed(LeaderElectionError, consecutiveFailures: Int, retryIn: Duration)

    public var description: String {
        switch self {
        case .renewed(let created, let version, _): created ? "created (version \(version))" : "renewed (version \(version))"
        case .failed(let error, let failures, let retryIn):
            "failed \(failures)× (\(error.message)); retrying in \(formatDuration(retryIn))"
        }
    }
}

/// Keeps one lease alive for an identity: the kubelet's node-lease heartbeat over any ``ResourceLock``.
///
/// A heartbeat is **not** an election. The lease belongs to one identity (one key per member, like a
/// node's Lease in `kube-node-lease`); ``run()`` writes `holderIdentity = identity`, `renewTime = now` and
/// the lease duration every ``HeartbeatConfiguration/effectiveRenewInterval`` (default 40 s / 10 s), so that
/// a ``LeaseMonitor`` watching the collection sees the member alive.
///
/// ```swift
/// let lock = try FileLock(directory: "/run/members", name: "node-a", identity: "node-a")
/// let heartbeat = try HeartbeatLease(lock: lock, logger: logger)
/// let task = Task { await heartbeat.run() }   // cancel to stop; the lease is left to expire
/// ```
///
/// ## Each attempt
/// 1. Fast path: a compare-and-swap on the version this heartbeat last wrote (one round trip, as the
///    kubelet updates from its `latestLease` without a GET).
/// 2. Otherwise (first beat, conflict, missing record): read; create the record when none exists, else
///    compare-and-swap over whatever is stored — a record naming **another** holder is overwritten (the
///    key is this identity's; two writers on one key are a misconfiguration, logged as a warning), and an
///    undecodable record is replaced by its version. A conflict re-reads and retries, at most
///    ``HeartbeatConfiguration/maximumConflictRetries`` writes per attempt.
///
/// `acquireTime` is set when this identity starts writing the key and kept while it renews;
/// `leaseTransitions` is kept, and incremented when the stored record named another holder. Every renewal writes
/// a `renewTime` strictly after the previous one (by at least 1 µs, even when the wall clock stands still or steps
/// back), so the record — and its version, which monitors watch — always changes.
///
/// ## Failures
/// A failed attempt (any error, including a timeout after ``HeartbeatConfiguration/attemptTimeout``) is
/// reported as ``HeartbeatEvent/failed(_:consecutiveFailures:retryIn:)`` and retried after a backoff of
/// 200 ms doubling to at most 7 s, as the kubelet does; the first success returns to the renew interval.
/// Every error is retried (a heartbeat has nothing better to do): callers that want to give up on, say,
/// ``LeaderElectionError/Code/unauthorized`` watch ``events()`` and cancel.
///
/// ## Stopping
/// Cancel the task running ``run()``. Nothing is deleted or released: like the kubelet's, the lease
/// simply stops being renewed and monitors see it expire.
///
/// Time (the interval, the backoff and the attempt deadline) is measured on the injected clock; inject a
/// ``ManualClock`` in tests. The wall clock only writes the informational `renewTime`/`acquireTime`.
public final class HeartbeatLease<C: Clock>: Sendable where C.Duration == Duration {
    /// The lock holding this identity's lease.
    public let lock: any ResourceLock
    /// The validated configuration.
    public let configuration: HeartbeatConfiguration
    /// The identity renewing (the lock's).
    public var identity: String { lock.identity }

    private let clock: C
    private let wallClock: WallClock
    private let logger: Logger
    private let broadcaster = EventBroadcaster<HeartbeatEvent>()
    /// The version and record this heartbeat last wrote (the fast path's base).
    private let last = LockedBox<VersionedRecord?>(nil)

    /// Creates a heartbeat.
    ///
    /// - Parameters:
    ///   - lock: the lock of this identity's lease; its ``ResourceLock/identity`` is written as holder.
    ///   - configuration: timing; validated.
    ///   - clock: the clock the interval, backoff and attempt deadline are measured on.
    ///   - wallClock: the source of `renewTime`/`acquireTime`.
    ///   - logger: where to log; metadata keys are `heartbeat.identity` and `heartbeat.lock`.
    /// - Throws: ``LeaderElectionError/Code/invalidConfiguration`` naming the offending value.
    public init(
        lock: any ResourceLock,
        configuration: HeartbeatConfiguration = .init(),
        clock: C,
        wallClock: WallClock = .system,
        logger: Logger = Logger(label: "leader-election.heartbeat", factory: { _ in SwiftLogNoOpLogHandler() })
    ) throws {
        try configuration.validate()
        guard !lock.identity.isEmpty else { throw LeaderElectionError.invalidConfiguration("heartbeat: the lock's identity is empty") }
        self.lock = lock
        self.configuration = configuration
        self.clock = clock
        self.wallClock = wallClock
        var logger = logger
        logger[metadataKey: "heartbeat.identity"] = .string(lock.identity)
        logger[metadataKey: "heartbeat.lock"] = .string(lock.description)
        self.logger = logger
    }

    /// A new subscription to the outcome of every attempt. Subscribe before ``run()`` to see them all;
    /// the stream ends when the heartbeat is deinitialised.
    public func events() -> AsyncStream<HeartbeatEvent> { broadcaster.subscribe() }

    /// The version and record this heartbeat last wrote, if any.
    public var lastWritten: VersionedRecord? { last.withLock { $0 } }

    /// Renews the lease until the calling task is cancelled: one attempt at once, then one every renew
    /// interval, backing off after failures. Returns when cancelled; leaves the lease as it is.
    public func run() async {
        var failures = 0
        let timeout = configuration.attemptTimeout ?? configuration.effectiveRenewInterval
        logger.debug("heartbeat started", metadata: [
            "heartbeat.lease_duration": .string(formatDuration(configuration.leaseDuration)),
            "heartbeat.renew_interval": .string(formatDuration(configuration.effectiveRenewInterval)),
        ])
        while !Task.isCancelled {
            let delay: Duration
            do {
                let deadline = clock.now.advanced(by: timeout)
                let (created, written) = try await withDeadline(deadline, clock: clock, what: "heartbeat on \(lock)") {
                    try await self.beat()
                }
                failures = 0
                broadcaster.send(.renewed(created: created, version: written.version, record: written.record))
                delay = configuration.effectiveRenewInterval
            } catch is CancellationError {
                break
            } catch {
                if Task.isCancelled { break }
                failures += 1
                let failure = (error as? LeaderElectionError) ?? .unavailable("\(lock): \(error)")
                delay = configuration.backoff(afterFailures: failures)
                logger.warning("heartbeat failed", metadata: [
                    "heartbeat.failures": .stringConvertible(failures),
                    "heartbeat.retry_in": .string(formatDuration(delay)),
                    "error": .string(failure.description),
                ])
                broadcaster.send(.failed(failure, consecutiveFailures: failures, retryIn: delay))
            }
            do { try await clock.sleep(for: delay) } catch { break }
        }
        logger.debug("heartbeat stopped")
    }

    /// One attempt: write this identity's record, by the fast path or by read-and-write.
    /// - Returns: whether the record was created, and what was written.
    private func beat() async throws -> (Bool, VersionedRecord) {
        let now = wallClock.now()
        if let previous = last.withLock({ $0 }) {
            let record = renewal(of: previous.record, now: now)
            do {
                let version = try await lock.update(record, expecting: previous.version)
                return remember(created: false, record, version)
            } catch let error as LeaderElectionError where error.code == .conflict || error.code == .notFound {
                logger.debug("fast-path renew failed; re-reading", metadata: ["error": .string(error.description)])
            }
        }
        var attempts = 0
        while true {
            attempts += 1
            let stored: VersionedRecord?
            var storedVersion: LockVersion?
            do {
                stored = try await lock.get()
                storedVersion = stored?.version
            } catch let error as LeaderElectionError where error.code == .corruptRecord && error.version != nil {
                logger.warning("replacing an undecodable record", metadata: ["error": .string(error.description)])
                stored = nil
                storedVersion = error.version
            }
            do {
                if let storedVersion {
                    if let holder = stored?.record.holderIdentity, !holder.isEmpty, holder != identity {
                        logger.warning("the lease names another holder; overwriting it (one heartbeat per key)", metadata: [
                            "heartbeat.other_holder": .string(holder),
                        ])
                    }
                    let record = stored.map { renewal(of: $0.record, now: now) } ?? fresh(now: now)
                    let version = try await lock.update(record, expecting: storedVersion)
                    return remember(created: false, record, version)
                } else {
                    let record = fresh(now: now)
                    let version = try await lock.create(record)
                    return remember(created: true, record, version)
                }
            } catch let error as LeaderElectionError
                where (error.code == .conflict || error.code == .alreadyExists || error.code == .notFound)
                && attempts < configuration.maximumConflictRetries {
                logger.debug("heartbeat write raced; re-reading", metadata: ["error": .string(error.description)])
                try Task.checkCancellation()
            }
        }
    }

    private func fresh(now: MicroTime) -> LeaderElectionRecord {
        LeaderElectionRecord(holderIdentity: identity, leaseDuration: configuration.leaseDuration, acquireTime: now, renewTime: now)
    }

    private func renewal(of stored: LeaderElectionRecord, now: MicroTime) -> LeaderElectionRecord {
        var record = stored
        if stored.holderIdentity != identity {
            record.acquireTime = now
            if !stored.holderIdentity.isEmpty { record.leaseTransitions += 1 }
        }
        // Strictly after this identity's previous renewal (by at least 1 µs) even when the wall clock stands still
        // or stepped back: a store may keep the version of an identical write, and monitors see a renewal only as a
        // new version.
        let previous = stored.holderIdentity == identity ? stored.renewTime : nil
        record.renewTime = previous.map { max(now, $0.advanced(by: .microseconds(1))) } ?? now
        record.holderIdentity = identity
        record.leaseDuration = configuration.leaseDuration
        record.acquireTime = record.acquireTime ?? now
        return record
    }

    private func remember(created: Bool, _ record: LeaderElectionRecord, _ version: LockVersion) -> (Bool, VersionedRecord) {
        let written = VersionedRecord(record: record, version: version)
        last.withLock { $0 = written }
        return (created, written)
    }

    deinit { broadcaster.finish() }
}

extension HeartbeatLease where C == ContinuousClock {
    /// Creates a heartbeat on the system's monotonic clock.
    /// - Throws: ``LeaderElectionError/Code/invalidConfiguration`` naming the offending value.
    public convenience init(
        lock: any ResourceLock,
        configuration: HeartbeatConfiguration = .init(),
        logger: Logger = Logger(label: "leader-election.heartbeat", factory: { _ in SwiftLogNoOpLogHandler() })
    ) throws {
        try self.init(lock: lock, configuration: configuration, clock: ContinuousClock(), logger: logger)
    }
}
