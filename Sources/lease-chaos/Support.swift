#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ArgumentParser
import Foundation
import LeaderElection

/// Nanoseconds of `CLOCK_MONOTONIC`: one clock for every process on the host, so the timestamps that
/// candidates write to the shared logs can be compared. (Swift's `ContinuousClock`, which the electors use,
/// reads `CLOCK_BOOTTIME` on Linux: the same rate, offset only by time spent suspended, which does not
/// happen during a run.)
@inline(__always)
func monoNow() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

extension Duration {
    /// Whole nanoseconds (saturating).
    var nanos: Int64 {
        let (s, atto) = components
        return s &* 1_000_000_000 &+ atto / 1_000_000_000
    }

    /// Seconds as a Double.
    var seconds: Double { Double(nanos) / 1e9 }

    /// `self × factor`.
    func scaled(_ factor: Double) -> Duration { .nanoseconds(Int64((Double(nanos) * factor).rounded())) }
}

/// A Go-style duration on the command line (`800ms`, `1s`, `-1h`).
struct DurationArgument: ExpressibleByArgument, Sendable, CustomStringConvertible {
    var duration: Duration
    init(_ duration: Duration) { self.duration = duration }
    init?(argument: String) {
        guard let d = parseDuration(argument) else { return nil }
        duration = d
    }
    var description: String { formatDuration(duration) }
    var defaultValueDescription: String { description }
}

/// Milliseconds with one decimal, for reports.
func ms(_ nanos: Int64) -> Double { (Double(nanos) / 1e5).rounded() / 10 }

/// Writes `text` to `fd` with one `write(2)` (retrying only on EINTR): appended lines from many processes
/// never interleave.
@discardableResult
func writeAll(_ fd: Int32, _ text: String) -> Bool {
    var text = text
    return text.withUTF8 { buffer in
        while true {
            let n = write(fd, buffer.baseAddress, buffer.count)
            if n == buffer.count { return true }
            if n < 0 && errno == EINTR { continue }
            return false
        }
    }
}

/// A JSON string literal (identities and reasons are plain ASCII here, but stay correct anyway).
func jsonString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                out += String(format: "\\u%04x", scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

/// A small, seedable PRNG (SplitMix64): the fault schedule is a function of the seed.
struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func between(_ a: Double, _ b: Double) -> Double { a + (b - a) * unit() }
}

/// Errors of the harness itself (not safety violations).
struct ChaosError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Reads lines appended to a file by other processes, from where the last call stopped.
final class LineTailer {
    let path: String
    private var fd: Int32 = -1
    private var pending: [UInt8] = []

    init(path: String) { self.path = path }
    deinit { if fd >= 0 { close(fd) } }

    /// Complete lines appended since the last call.
    func readLines() -> [String] {
        if fd < 0 {
            fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd < 0 { return [] }
        }
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                pending.append(contentsOf: buffer[0..<n])
                if n < buffer.count { break }
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                break
            }
        }
        guard let lastNewline = pending.lastIndex(of: UInt8(ascii: "\n")) else { return [] }
        let complete = pending[...lastNewline]
        let lines = complete.split(separator: UInt8(ascii: "\n")).map { String(decoding: $0, as: UTF8.self) }
        pending.removeSubrange(...lastNewline)
        return lines
    }
}

/// The path of this executable.
func selfExecutable() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    if n > 0 { return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    return CommandLine.arguments[0]
}
