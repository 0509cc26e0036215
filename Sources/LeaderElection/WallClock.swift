/// The source of wall-clock time for the informational timestamps in a record.
///
/// Injectable so tests (and the chaos harness) can run candidates whose clocks are offset or jump:
/// the elector's safety must not depend on it.
public struct WallClock: Sendable {
    private let read: @Sendable () -> MicroTime

    /// A wall clock reading `read`.
    public init(_ read: @escaping @Sendable () -> MicroTime) { self.read = read }

    /// The current wall-clock time.
    public func now() -> MicroTime { read() }

    /// The system's real-time clock.
    public static let system = WallClock { MicroTime.now() }

    /// The system clock shifted by `offset` (for example `.seconds(3600)` for a clock one hour fast).
    public static func offset(by offset: Duration) -> WallClock {
        WallClock { MicroTime.now().advanced(by: offset) }
    }
}
