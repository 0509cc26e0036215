#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A wall-clock instant with microsecond precision, the resolution of a Kubernetes `MicroTime`.
///
/// Record timestamps are informational: the elector never compares them with the local clock to
/// decide expiry (see ``LeaderElector``). They are written so that operators, `leasectl get` and
/// other clients (client-go included) can read them.
public struct MicroTime: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Microseconds since 1970-01-01T00:00:00Z.
    public var microsecondsSinceEpoch: Int64

    /// Creates an instant from microseconds since the Unix epoch.
    public init(microsecondsSinceEpoch: Int64) { self.microsecondsSinceEpoch = microsecondsSinceEpoch }

    /// The current time of the system's real-time clock.
    public static func now() -> MicroTime {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return MicroTime(microsecondsSinceEpoch: Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1_000)
    }

    public static func < (lhs: MicroTime, rhs: MicroTime) -> Bool {
        lhs.microsecondsSinceEpoch < rhs.microsecondsSinceEpoch
    }

    /// This instant moved by `duration`, truncated to whole microseconds.
    public func advanced(by duration: Duration) -> MicroTime {
        MicroTime(microsecondsSinceEpoch: microsecondsSinceEpoch + duration.wholeMicroseconds)
    }

    /// The duration from `other` to this instant.
    public func duration(since other: MicroTime) -> Duration {
        .microseconds(microsecondsSinceEpoch - other.microsecondsSinceEpoch)
    }

    /// RFC 3339 in UTC with exactly six fractional digits, as Kubernetes writes a `MicroTime`:
    /// `2006-01-02T15:04:05.000000Z`.
    public var rfc3339: String {
        var out: [UInt8] = []
        out.reserveCapacity(27)
        appendRFC3339(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends ``rfc3339``'s bytes (used by the record encoder on every renewal, without building strings).
    func appendRFC3339(to out: inout [UInt8]) {
        let micros = microsecondsSinceEpoch
        var seconds = micros / 1_000_000
        var fraction = micros % 1_000_000
        if fraction < 0 { fraction += 1_000_000; seconds -= 1 }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 { secondOfDay += 86_400; days -= 1 }
        let (y, m, d) = civilFromDays(days)
        appendDecimal(y, width: 4, to: &out)
        out.append(UInt8(ascii: "-"))
        appendDecimal(m, width: 2, to: &out)
        out.append(UInt8(ascii: "-"))
        appendDecimal(d, width: 2, to: &out)
        out.append(UInt8(ascii: "T"))
        appendDecimal(secondOfDay / 3600, width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendDecimal(secondOfDay / 60 % 60, width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendDecimal(secondOfDay % 60, width: 2, to: &out)
        out.append(UInt8(ascii: "."))
        appendDecimal(fraction, width: 6, to: &out)
        out.append(UInt8(ascii: "Z"))
    }

    public var description: String { rfc3339 }

    /// Parses RFC 3339 (`2006-01-02T15:04:05Z`, optional fraction of up to nine digits — extra digits
    /// beyond microseconds are truncated — and `Z` or a `±hh:mm` offset).
    ///
    /// Returns `nil` for anything else.
    public init?(rfc3339 text: String) {
        let b = Array(text.utf8)
        func num(_ from: Int, _ count: Int) -> Int64? {
            guard from + count <= b.count else { return nil }
            var v: Int64 = 0
            for i in from..<(from + count) {
                let c = b[i]
                guard c >= 48 && c <= 57 else { return nil }
                v = v * 10 + Int64(c - 48)
            }
            return v
        }
        guard b.count >= 20,
              let year = num(0, 4), b[4] == UInt8(ascii: "-"),
              let month = num(5, 2), b[7] == UInt8(ascii: "-"),
              let day = num(8, 2), b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t"),
              let hour = num(11, 2), b[13] == UInt8(ascii: ":"),
              let minute = num(14, 2), b[16] == UInt8(ascii: ":"),
              let second = num(17, 2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysInMonth(year, month),
              hour < 24, minute < 60, second < 61 else { return nil }
        var i = 19
        var micros: Int64 = 0
        if i < b.count && b[i] == UInt8(ascii: ".") {
            i += 1
            var digits = 0
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                if digits < 6 { micros = micros * 10 + Int64(b[i] - 48) }
                digits += 1
                i += 1
            }
            guard digits >= 1, digits <= 9 else { return nil }
            if digits < 6 { for _ in digits..<6 { micros *= 10 } }
        }
        guard i < b.count else { return nil }
        var offsetSeconds: Int64 = 0
        if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
            i += 1
        } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            let sign: Int64 = b[i] == UInt8(ascii: "+") ? 1 : -1
            guard let oh = num(i + 1, 2), i + 3 < b.count, b[i + 3] == UInt8(ascii: ":"),
                  let om = num(i + 4, 2), oh < 24, om < 60 else { return nil }
            offsetSeconds = sign * (oh * 3600 + om * 60)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let days = daysFromCivil(year, month, day)
        let secs = days * 86_400 + hour * 3600 + minute * 60 + min(second, 59) - offsetSeconds
        self.microsecondsSinceEpoch = secs * 1_000_000 + micros
    }
}

extension Duration {
    /// The duration truncated to whole microseconds.
    var wholeMicroseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    }

    /// The duration in seconds as a floating-point value.
    var secondsDouble: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

// Howard Hinnant's civil-calendar algorithms (public domain).
private func daysFromCivil(_ year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let mp = (month + 9) % 12
    let doy = (153 * mp + 2) / 5 + day - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146_097 + doe - 719_468
}

private func civilFromDays(_ days: Int64) -> (Int64, Int64, Int64) {
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
    let y = yoe + era * 400
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    return (m <= 2 ? y + 1 : y, m, d)
}

private func daysInMonth(_ year: Int64, _ month: Int64) -> Int64 {
    switch month {
    case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
    case 4, 6, 9, 11: return 30
    default: return 31
    }
}
