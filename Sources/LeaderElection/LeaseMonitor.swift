import Logging

/// How a ``LeaseMonitor`` watches a collection.
public struct LeaseMonitorConfiguration: Sendable, Hashable {
    /// How often the collection is listed when nothing wakes the monitor earlier. Default 5 s (the node
    /// lifecycle controller's `--node-monitor-period`). With a change feed, a change wakes it at once.
    public var pollInterval: Duration
    /// How long a member's lease may stay unchanged, as seen by the monitor, before it counts as expired.
    /// `nil` (the default) uses the lease duration written in each member's record (client-go's rule for
    /// followers); set it to model `--node-monitor-grace-period`.
    public var gracePeriod: Duration?
    /// The grace used for a member whose record does not decode (so carries no duration) when
    /// ``gracePeriod`` is `nil`. Default 40 s.
    public var fallbackGracePeriod: Duration

    /// Creates a configuration.
    public init(pollInterval: Duration = .seconds(5), gracePeriod: Duration? = nil, fallbackGracePeriod: Duration = .seconds(40)) {
        self.pollInterval = pollInterval
        self.gracePeriod = gracePeriod
        self.fallbackGracePeriod = fallbackGracePeriod
    }

    /// Checks the values.
    /// - Throws: ``LeaderElectionError/Code/invalidConfiguration`` naming the offending value.
    public func validate() throws {
        guard pollInterval > .zero else { throw LeaderElectionError.invalidConfiguration("lease monitor: pollInterval must be positive") }
        if let gracePeriod, gracePeriod <= .zero {
            throw LeaderElectionError.invalidConfiguration("lease monitor: gracePeriod must be positive")
        }
        guard fallbackGracePeriod > .zero else {
            throw LeaderElectionError.invalidConfiguration("lease monitor: fallbackGracePeriod must be positive")
        }
    }
}

/// A member of a watched collection changing state, as a ``LeaseMonitor`` judges it.
public struct LeaseTransition: Sendable, Hashable, CustomStringConvertible {
    /// The state a member entered.
    public enum State: String, Sendable, Hashable, CustomStringConvertible {
        /// The lease is being renewed: first seen, or seen changing after it had expired.
        case alive
        /// The lease has not changed for the grace period (on the monitor's clock), names no holder, or its
        /// holder is verifiably gone.
        case expired
        /// The lease is no longer listed (deleted).
        case removed

        public var description: String { rawValue }
    }

    /// The lease's name in the collection.
    public var name: String
    /// The state entered.
    public var state: State
    /// The record as last listed (`nil` when it does not decode, or for ``State/removed``).
    public var record: LeaderElectionRecord?
    /// The version last listed.
    public var version: LockVersion
    /// How long the lease had been unchanged, on the monitor's clock, when the transition was decided.
    public var unchangedFor: Duration

    /// Creates a transition.
    public init(name: String, state: State, record: LeaderElectionRecord?, version: LockVersion, unchangedFor: Duration) {
        self.name = name
        self.state = state
        self.record = record
        self.version = version
        self.unchangedFor = unchangedFor
    }

    public var description: String { "\(name): \(state) (unchanged for \(formatDuration(unchangedFor)))" }
}

/// Watches a ``LeaseDirectory`` and streams per-member transitions alive → expired → alive: the node
/// lifecycle controller's view of heartbeat leases (see ``HeartbeatLease``).
///
/// ```swift
/// let monitor = try LeaseMonitor(directory: FileLockDirectory(directory: "/run/members"))
/// for await transition in monitor.transitions() {
///     print(transition)   // "node-a: expired (unchanged for 40s)"
/// }
/// ```
///
/// Expiry is decided on the **monitor's own monotonic clock**, from the moment it last saw a member's
/// version change (client-go's `observedTime`); remote timestamps (`renewTime`) are never compared with the
/// local clock, so clock offsets between hosts do not matter. Consequences:
/// - A member seen for the first time is ``LeaseTransition/State/alive`` (it may be a dead member's
///   leftover lease: it expires one grace period later), unless it names no holder or its holder is known
///   gone, which are ``LeaseTransition/State/expired`` at once.
/// - While listing fails, nothing changes state (the monitor cannot tell renewals from silence); failures
///   are logged. After a long outage, members unchanged since before it expire on the next listing.
///
/// The collection is listed at start, whenever its change feed yields (if it has one), at every
/// member's expiry instant, and at least every ``LeaseMonitorConfiguration/pollInterval``.
public final class LeaseMonitor<C: Clock>: Sendable where C.Duration == Duration {
    /// The collection watched.
    public let directory: any LeaseDirectory
    /// The validated configuration.
    public let configuration: LeaseMonitorConfiguration

    private let clock: C
    private let logger: Logger

    private struct Member {
        var version: LockVersion
        var record: LeaderElectionRecord?
        var observedAt: C.Instant
        var alive: Bool
        var gone: Bool
    }

    /// Creates a monitor.
    ///
    /// - Parameters:
    ///   - directory: the collection to watch.
    ///   - configuration: polling and grace; validated.
    ///   - clock: the monotonic clock expiry is judged on (inject a ``ManualClock`` in tests).
    ///   - logger: where to log; metadata key `lease_monitor.directory`.
    /// - Throws: ``LeaderElectionError/Code/invalidConfiguration`` naming the offending value.
    public init(
        directory: any LeaseDirectory,
        configuration: LeaseMonitorConfiguration = .init(),
        clock: C,
        logger: Logger = Logger(label: "leader-election.lease-monitor", factory: { _ in SwiftLogNoOpLogHandler() })
    ) throws {
        try configuration.validate()
        self.directory = directory
        self.configuration = configuration
        self.clock = clock
        var logger = logger
        logger[metadataKey: "lease_monitor.directory"] = .string(directory.description)
        self.logger = logger
    }

    /// A new, independent watch of the collection: its transitions until the consumer stops iterating.
    public func transitions() -> AsyncStream<LeaseTransition> {
        let (stream, continuation) = AsyncStream.makeStream(of: LeaseTransition.self)
        let task = Task {
            await self.run { continuation.yield($0) }
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    /// Watches the collection until the calling task is cancelled, calling `onTransition` for every
    /// transition in the order decided.
    public func run(_ onTransition: @Sendable (LeaseTransition) async -> Void) async {
        let wake = WakeSignal()
        let feed: Task<Void, Never>? = directory.changes().map { changes in
            Task { for await _ in changes { wake.signal() } }
        }
        defer { feed?.cancel() }
        var members: [String: Member] = [:]
        var failing = false
        while !Task.isCancelled {
            wake.reset()
            var listed: [ListedLease]?
            do {
                listed = try await directory.list()
                if failing { logger.info("listing recovered") }
                failing = false
            } catch {
                if Task.isCancelled { break }
                if !failing { logger.warning("listing failed; no member changes state until it recovers", metadata: ["error": .string("\(error)")]) }
                failing = true
            }
            let now = clock.now
            if let listed {
                for transition in update(&members, with: listed, at: now) { await onTransition(transition) }
            }
            var wakeAt = now.advanced(by: configuration.pollInterval)
            if !failing {
                for member in members.values where member.alive {
                    wakeAt = min(wakeAt, member.observedAt.advanced(by: grace(member.record)))
                }
            }
            await wake.wait(until: wakeAt, clock: clock)
        }
    }

    private func grace(_ record: LeaderElectionRecord?) -> Duration {
        configuration.gracePeriod ?? record?.leaseDuration ?? configuration.fallbackGracePeriod
    }

    /// Applies one listing taken at `now`; returns the transitions, sorted by name.
    private func update(_ members: inout [String: Member], with listed: [ListedLease], at now: C.Instant) -> [LeaseTransition] {
        var transitions: [LeaseTransition] = []
        var seen = Set<String>()
        for lease in listed {
            guard seen.insert(lease.name).inserted else { continue }
            let unheld = lease.holderIsKnownGone || (lease.record?.isReleased ?? false)
            if var member = members[lease.name] {
                if member.version != lease.version {
                    member.version = lease.version
                    member.record = lease.record
                    member.observedAt = now
                }
                member.gone = unheld
                let expired = unheld || member.observedAt.advanced(by: grace(member.record)) <= now
                if member.alive == expired {
                    member.alive = !expired
                    transitions.append(LeaseTransition(
                        name: lease.name, state: expired ? .expired : .alive, record: member.record,
                        version: member.version, unchangedFor: member.observedAt.duration(to: now)))
                }
                members[lease.name] = member
            } else {
                members[lease.name] = Member(version: lease.version, record: lease.record, observedAt: now, alive: !unheld, gone: unheld)
                transitions.append(LeaseTransition(
                    name: lease.name, state: unheld ? .expired : .alive, record: lease.record, version: lease.version, unchangedFor: .zero))
            }
        }
        for name in members.keys.sorted() where !seen.contains(name) {
            let member = members.removeValue(forKey: name)!
            transitions.append(LeaseTransition(
                name: name, state: .removed, record: nil, version: member.version, unchangedFor: member.observedAt.duration(to: now)))
        }
        return transitions.sorted { $0.name < $1.name }
    }
}

extension LeaseMonitor where C == ContinuousClock {
    /// Creates a monitor on the system's monotonic clock.
    /// - Throws: ``LeaderElectionError/Code/invalidConfiguration`` naming the offending value.
    public convenience init(
        directory: any LeaseDirectory,
        configuration: LeaseMonitorConfiguration = .init(),
        logger: Logger = Logger(label: "leader-election.lease-monitor", factory: { _ in SwiftLogNoOpLogHandler() })
    ) throws {
        try self.init(directory: directory, configuration: configuration, clock: ContinuousClock(), logger: logger)
    }
}
