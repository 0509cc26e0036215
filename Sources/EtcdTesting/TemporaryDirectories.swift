#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Every directory the fixture creates is `$TMPDIR/etcd-testing-<label>.XXXXXX`, with an `owner` file naming
/// the creating process (pid, its start time, host). Directories whose owner is gone — a test run that was
/// killed before it could call `stop()` — are removed by the next run (``sweepStaleDirectories()``); their
/// `etcd` processes died with the run (parent-death signal).
let directoryPrefix = "etcd-testing-"

/// Creates a fresh, private directory with `mkdtemp` and records this process as its owner.
func makeTemporaryDirectory(label: String) throws(EtcdTestingError) -> String {
    sweepOnce
    let safeLabel = String(label.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" }.prefix(40))
    var template = Array((temporaryDirectory() + "/" + directoryPrefix + safeLabel + ".XXXXXX").utf8CString)
    let path = try template.withUnsafeMutableBufferPointer { buffer throws(EtcdTestingError) -> String in
        guard let result = mkdtemp(buffer.baseAddress!) else {
            throw EtcdTestingError("mkdtemp in \(temporaryDirectory()): \(String(cString: strerror(errno)))")
        }
        return String(cString: result)
    }
    try? ownerRecord.write(toFile: path + "/owner", atomically: false, encoding: .utf8)
    return path
}

/// Removes `path` recursively; errors are ignored (best effort: nothing else can be done about them).
func removeDirectory(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

/// "pid starttime host" of this process.
private let ownerRecord: String = "\(getpid()) \(processStartTime(getpid()) ?? "?") \(hostName())\n"

private func hostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    gethostname(&buffer, buffer.count - 1)
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot): tells a pid apart from its reuse.
private func processStartTime(_ pid: pid_t) -> String? {
    guard let fields = ProcFS.statFields("/proc/\(pid)/stat") else { return nil }
    // After "(comm)": field 3 (state) is fields[0], so field 22 is fields[19].
    return fields.count > 19 ? String(fields[19]) : nil
}

private let sweepOnce: Void = sweepStaleDirectories()

/// Removes fixture directories whose owning process (on this host) no longer exists.
func sweepStaleDirectories() {
    #if os(Linux)
    let root = temporaryDirectory()
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: root) else { return }
    let host = hostName()
    for entry in entries where entry.hasPrefix(directoryPrefix) {
        let path = root + "/" + entry
        guard let record = ProcFS.read(path + "/owner") else { continue }
        let fields = record.split(whereSeparator: \.isWhitespace).map(String.init)
        guard fields.count == 3, let pid = pid_t(fields[0]), fields[2] == host else { continue }
        if pid == getpid() { continue }
        let alive = kill(pid, 0) == 0 || errno == EPERM
        if alive {
            let started = processStartTime(pid)
            if fields[1] == "?" || started == nil || started == fields[1] { continue }
        }
        removeDirectory(path)
    }
    #endif
}
