#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reads of `/proc` files for the fixtures and the chaos harness.
///
/// Not `String(contentsOfFile:)`: in the Swift 6.3 Foundation on Linux it leaks a 4 KiB buffer on every read of
/// a file whose reported size is 0, which every `/proc` file is (docs/reliability.md, fuzzing finding 4).
public enum ProcFS {
    /// The contents of a small file read with `read(2)` (at most `limit` bytes), or `nil` when it cannot be opened.
    public static func read(_ path: String, limit: Int = 1 << 20) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += chunk[..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The fields of a `/proc/.../stat` line after `(comm)`: `[state, ppid, pgrp, …]` (field 3 onwards).
    public static func statFields(_ path: String) -> [Substring]? {
        guard let stat = read(path), let close = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(after: close)...].split(separator: " ")
    }

    /// `true` when every thread of `pid` is stopped (state `T`/`t`), or the process is gone.
    public static func allThreadsStopped(_ pid: pid_t) -> Bool {
        guard let directory = opendir("/proc/\(pid)/task") else { return true }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name.first?.isNumber == true else { continue }
            guard let state = statFields("/proc/\(pid)/task/\(name)/stat")?.first?.first else { continue }
            if state != "T" && state != "t" { return false }
        }
        return true
    }
}
