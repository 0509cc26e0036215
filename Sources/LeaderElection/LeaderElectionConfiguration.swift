/// Timing and behaviour of a ``LeaderElector``, with client-go's defaults.
public struct LeaderElectionConfiguration: Sendable {
    /// A name for logs, metrics (`name` dimension) and health-check messages.
    public var name: String
    /// How long followers wait, from the moment they last saw the record change, before they may take
    /// it over. Default 15 s (client-go `LeaseDuration`).
    public var leaseDuration: Duration
    /// How long the leader keeps retrying to renew before it gives up; also the length of the window
    /// guaranteed by ``LeadershipTerm/check()`` after each successful renew starts. Default 10 s.
    public var renewDeadline: Duration
    /// The interval between renewals, and between a follower's attempts. Default 2 s.
    public var retryPeriod: Duration
    /// Followers retry after `retryPeriod × (1 + random × jitterFactor)`. Default 1.2 (client-go's `JitterFactor`).
    public var jitterFactor: Double
    /// Release the lease (empty holder, by compare-and-swap) when ``LeaderElector/run(whileLeading:)`` is
    /// cancelled, once the leader work has stopped. Default `true`.
    public var releaseOnCancel: Bool
    /// On cancellation, how long to wait for the leader work to stop while still renewing. If the work
    /// has not stopped by then, renewing stops and the lease is left to expire rather than released.
    /// Default: `renewDeadline`.
    public var drainTimeout: Duration?
    /// The wall clock used for the informational `acquireTime` / `renewTime` fields. Expiry never depends on it.
    public var wallClock: WallClock

    /// Creates a configuration; every parameter has client-go's default.
    public init(
        name: String = "leader-election",
        leaseDuration: Duration = .seconds(15),
        renewDeadline: Duration = .seconds(10),
        retryPeriod: Duration = .seconds(2),
        jitterFactor: Double = 1.2,
        releaseOnCancel: Bool = true,
        drainTimeout: Duration? = nil,
        wallClock: WallClock = .system
    ) {
        self.name = name
        self.leaseDuration = leaseDuration
        self.renewDeadline = renewDeadline
        self.retryPeriod = retryPeriod
        self.jitterFactor = jitterFactor
        self.releaseOnCancel = releaseOnCancel
        self.drainTimeout = drainTimeout
        self.wallClock = wallClock
    }

    /// Checks client-go's rules (`NewLeaderElector`): leaseDuration > renewDeadline >
    /// jitterFactor × retryPeriod, every duration > 0, and a non-empty identity.
    ///
    /// - Throws: ``LeaderElectionError/Code/invalidConfiguration`` naming the offending values.
    public func validate(identity: String) throws {
        func fmt(_ d: Duration) -> String { formatDuration(d) }
        if leaseDuration <= renewDeadline {
            throw LeaderElectionError.invalidConfiguration(
                "leaseDuration must be greater than renewDeadline (leaseDuration=\(fmt(leaseDuration)), renewDeadline=\(fmt(renewDeadline)))")
        }
        let jittered = retryPeriod * jitterFactor
        if renewDeadline <= jittered {
            throw LeaderElectionError.invalidConfiguration(
                "renewDeadline must be greater than retryPeriod*JitterFactor (renewDeadline=\(fmt(renewDeadline)), retryPeriod=\(fmt(retryPeriod)), jitterFactor=\(jitterFactor))")
        }
        if leaseDuration <= .zero { throw LeaderElectionError.invalidConfiguration("leaseDuration must be greater than zero (got \(fmt(leaseDuration)))") }
        if renewDeadline <= .zero { throw LeaderElectionError.invalidConfiguration("renewDeadline must be greater than zero (got \(fmt(renewDeadline)))") }
        if retryPeriod <= .zero { throw LeaderElectionError.invalidConfiguration("retryPeriod must be greater than zero (got \(fmt(retryPeriod)))") }
        if !(jitterFactor >= 0) || !jitterFactor.isFinite {
            throw LeaderElectionError.invalidConfiguration("jitterFactor must be a finite number ≥ 0 (got \(jitterFactor))")
        }
        if let drainTimeout, drainTimeout < .zero {
            throw LeaderElectionError.invalidConfiguration("drainTimeout must not be negative (got \(fmt(drainTimeout)))")
        }
        if identity.isEmpty { throw LeaderElectionError.invalidConfiguration("Lock identity is empty") }
    }
}

/// Formats a duration the way Go prints a `time.Duration` (`15s`, `1m30s`, `500ms`, `1.5s`).
public func formatDuration(_ d: Duration) -> String {
    let micros = d.wholeMicroseconds
    if micros == 0 { return "0s" }
    let sign = micros < 0 ? "-" : ""
    let m = abs(micros)
    if m < 1_000 { return "\(sign)\(m)µs" }
    if m < 1_000_000 {
        return sign + trimmed(Double(m) / 1_000) + "ms"
    }
    var rest = m
    let hours = rest / 3_600_000_000
    rest %= 3_600_000_000
    let minutes = rest / 60_000_000
    rest %= 60_000_000
    var out = sign
    if hours > 0 { out += "\(hours)h" }
    if hours > 0 || minutes > 0 { out += "\(minutes)m" }
    out += trimmed(Double(rest) / 1_000_000) + "s"
    return out
}

private func trimmed(_ value: Double) -> String {
    if value.rounded() == value { return String(Int64(value)) }
    var s = String(format6(value))
    while s.hasSuffix("0") { s.removeLast() }
    if s.hasSuffix(".") { s.removeLast() }
    return s
}

private func format6(_ v: Double) -> String {
    let scaled = Int64((v * 1_000_000).rounded())
    let whole = scaled / 1_000_000
    let frac = String(scaled % 1_000_000)
    return "\(whole)." + String(repeating: "0", count: 6 - frac.count) + frac
}

/// Parses a Go-style duration string: a sequence of decimal numbers with units `ns`, `us`/`µs`, `ms`,
/// `s`, `m`, `h` (`15s`, `1m30s`, `500ms`, `1.5h`). Returns `nil` when the text is not such a duration.
public func parseDuration(_ text: String) -> Duration? {
    var s = Substring(text.trimmingCharactersInSpace())
    guard !s.isEmpty else { return nil }
    var negative = false
    if s.first == "-" || s.first == "+" { negative = s.first == "-"; s = s.dropFirst() }
    if s == "0" { return .zero }
    var totalNanos: Double = 0
    var sawAny = false
    while !s.isEmpty {
        var numberText = ""
        while let c = s.first, c.isNumber || c == "." { numberText.append(c); s = s.dropFirst() }
        guard !numberText.isEmpty, let value = Double(numberText) else { return nil }
        var unit = ""
        while let c = s.first, !(c.isNumber || c == ".") { unit.append(c); s = s.dropFirst() }
        let scale: Double
        switch unit {
        case "ns": scale = 1
        case "us", "µs", "μs": scale = 1_000
        case "ms": scale = 1_000_000
        case "s": scale = 1_000_000_000
        case "m": scale = 60_000_000_000
        case "h": scale = 3_600_000_000_000
        default: return nil
        }
        totalNanos += value * scale
        sawAny = true
    }
    guard sawAny, totalNanos.isFinite, totalNanos < 9e18 else { return nil }
    let d = Duration.nanoseconds(Int64(totalNanos.rounded()))
    return negative ? .zero - d : d
}

extension String {
    fileprivate func trimmingCharactersInSpace() -> String {
        var s = Substring(self)
        while s.first?.isWhitespace == true { s = s.dropFirst() }
        while s.last?.isWhitespace == true { s = s.dropLast() }
        return String(s)
    }
}
