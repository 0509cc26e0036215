#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

@testable import EtcdTesting

/// `true` while a process with this pid exists (zombies included; ours are reaped before `stop()` returns).
func processExists(_ pid: Int32) -> Bool {
    Glibc.kill(pid, 0) == 0 || errno == EPERM
}

/// The process state letter from `/proc/<pid>/stat` (`S`, `R`, `T` for stopped, …), or `nil`.
func processState(_ pid: Int32) -> Character? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    return stat[stat.index(after: close)...].split(separator: " ").first?.first
}

func pathExists(_ path: String) -> Bool {
    FileManager.default.fileExists(atPath: path)
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
func eventually(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// The value of `key` through `etcdctl get --print-value-only`, `nil` when absent.
func value(of key: String, in server: EtcdServer) async throws -> String? {
    let output = try await server.etcdctl(["get", key, "--print-value-only"])
    let trimmed = output.trimmingCharacters(in: .newlines)
    return trimmed.isEmpty ? nil : trimmed
}

/// Listens on `127.0.0.1:port` (taking the port away from etcd) until `close`d.
func listen(onPort port: UInt16) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    var one: Int32 = 1   // the port may have connections in TIME_WAIT from before etcd was killed
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard fd >= 0, bound == 0, Glibc.listen(fd, 1) == 0 else {
        let code = errno
        if fd >= 0 { close(fd) }
        throw EtcdTestingError("cannot listen on 127.0.0.1:\(port): \(String(cString: strerror(code)))")
    }
    return fd
}
