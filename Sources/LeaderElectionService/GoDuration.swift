import ArgumentParser
import LeaderElection

/// A duration written in Go's `time.ParseDuration` notation, as Kubernetes flags take them:
/// `15s`, `1m30s`, `500ms`, `1h`, `1.5s`, `2h45m`, `-1.5h`, `300us`, `0`.
///
/// A duration is a possibly signed sequence of decimal numbers, each with an optional fraction and a
/// unit: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`. As in Go, a unit is required except for `0`, no
/// spaces are allowed, and fractions are exact to the nanosecond.
public struct GoDuration: Hashable, Sendable, CustomStringConvertible, ExpressibleByArgument {
    /// The duration.
    public var duration: Duration

    /// Wraps a duration.
    public init(_ duration: Duration) { self.duration = duration }

    /// Parses Go's notation.
    ///
    /// - Throws: ``LeaderElectionServiceError/Code/invalidDuration`` saying what is wrong, in Go's terms
    ///   (`missing unit in duration "15"`, `unknown unit "x" in duration "15x"`).
    public init(parsing text: String) throws(LeaderElectionServiceError) {
        self.duration = try Self.parse(text)
    }

    /// ArgumentParser's entry point; `nil` for text that is not a Go duration.
    public init?(argument: String) {
        guard let duration = try? Self.parse(argument) else { return nil }
        self.duration = duration
    }

    /// Go's formatting (`15s`, `1m30s`, `500ms`).
    public var description: String { formatDuration(duration) }
    public var defaultValueDescription: String { description }

    private static let units: [(String, Int64)] = [
        ("ns", 1), ("us", 1_000), ("µs", 1_000), ("μs", 1_000), ("ms", 1_000_000),
        ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000),
    ]

    private static func parse(_ text: String) throws(LeaderElectionServiceError) -> Duration {
        func invalid(_ why: String) -> LeaderElectionServiceError {
            .invalidDuration("\(why) in duration \"\(text)\" (expected a Go duration such as 15s, 1m30s or 500ms)")
        }
        var rest = Substring(text).unicodeScalars[...]
        var negative = false
        if let first = rest.first, first == "-" || first == "+" {
            negative = first == "-"
            rest = rest.dropFirst()
        }
        if String(rest) == "0" { return .zero }
        if rest.isEmpty { throw invalid("no number") }
        func isDigit(_ c: Unicode.Scalar) -> Bool { c >= "0" && c <= "9" }
        // Total in nanoseconds, checked for overflow (Go's limit is ~292 years).
        var total: Int64 = 0
        while !rest.isEmpty {
            guard let c = rest.first, isDigit(c) || c == "." else {
                throw invalid("expected a number before \"\(String(rest))\"")
            }
            var whole: Int64 = 0
            var sawDigits = false
            var overflow = false
            while let c = rest.first, isDigit(c) {
                let (m, o1) = whole.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(Int64(c.value - 48))
                overflow = overflow || o1 || o2
                whole = a
                sawDigits = true
                rest = rest.dropFirst()
            }
            var fractionDigits: [Int64] = []
            if rest.first == "." {
                rest = rest.dropFirst()
                while let c = rest.first, isDigit(c) {
                    fractionDigits.append(Int64(c.value - 48))
                    rest = rest.dropFirst()
                }
                sawDigits = sawDigits || !fractionDigits.isEmpty
            }
            guard sawDigits else { throw invalid("a number without digits") }
            var unitText = ""
            while let c = rest.first, !isDigit(c), c != "." {
                unitText.unicodeScalars.append(c)
                rest = rest.dropFirst()
            }
            guard !unitText.isEmpty else { throw invalid("missing unit") }
            guard let scale = units.first(where: { $0.0 == unitText })?.1 else {
                throw invalid("unknown unit \"\(unitText)\"")
            }
            let (wholeNanos, o3) = whole.multipliedReportingOverflow(by: scale)
            // The fraction, exact to the nanosecond (truncated below it, as Go does).
            var fractionNanos: Int64 = 0
            var place = scale
            for digit in fractionDigits {
                place /= 10
                if place == 0 { break }
                fractionNanos += digit * place
            }
            let (sum, o4) = total.addingReportingOverflow(wholeNanos)
            let (sum2, o5) = sum.addingReportingOverflow(fractionNanos)
            if overflow || o3 || o4 || o5 { throw invalid("a value out of range") }
            total = sum2
        }
        let d = Duration.nanoseconds(total)
        return negative ? .zero - d : d
    }
}
