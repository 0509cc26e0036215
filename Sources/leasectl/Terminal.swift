#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Unbuffered output and process-wide facts shared by the commands.
///
/// Lines are written with one `write(2)` each, so lines from concurrent tasks never interleave and a
/// reader on a pipe sees each line as soon as it is printed (no stdio buffering to flush).
enum Terminal {
    /// Writes `line` and a newline to standard output.
    static func out(_ line: String) { writeAll(line + "\n", to: STDOUT_FILENO) }

    /// Writes `line` and a newline to standard error.
    static func err(_ line: String) { writeAll(line + "\n", to: STDERR_FILENO) }

    /// Writes `text` to `fd` completely, retrying on `EINTR` and partial writes.
    static func writeAll(_ text: String, to fd: Int32) {
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += n
            }
        }
    }

    /// `CLOCK_MONOTONIC` in nanoseconds: comparable across processes on one host.
    static func monotonicNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// This host's name, as `gethostname(2)` reports it.
    static func hostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        let name = String(decoding: bytes, as: UTF8.self)
        return name.isEmpty ? "localhost" : name
    }

    /// A candidate identity in controller-runtime's style: `<hostname>_<uuid>`.
    static func defaultIdentity() -> String {
        "\(hostname())_\(UUID().uuidString.lowercased())"
    }

    /// The path of the running executable (`/proc/self/exe` resolved), for spawning more of itself.
    static func executablePath() -> String {
        if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            return resolved
        }
        return CommandLine.arguments[0]
    }
}
