#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import EtcdTesting
import Foundation

/// The machine the benchmark ran on.
struct MachineInfo: Codable, Sendable {
    /// `uname -a`.
    var uname: String
    /// `nproc` (processors available to this process).
    var nproc: String
    /// Online processors (`sysconf(_SC_NPROCESSORS_ONLN)`).
    var onlineProcessors: Int
    /// `model name` from /proc/cpuinfo.
    var cpuModel: String
    /// `MemTotal` from /proc/meminfo.
    var memTotal: String
    /// /proc/loadavg when the benchmark started and when it ended (the machine is shared and noisy).
    var loadAverageAtStart: String
    var loadAverageAtEnd: String?

    static func collect() -> MachineInfo {
        let cpuinfo = ProcFS.read("/proc/cpuinfo") ?? ""
        let meminfo = ProcFS.read("/proc/meminfo") ?? ""
        func field(_ text: String, _ name: String) -> String? {
            for line in text.split(separator: "\n") where line.hasPrefix(name) {
                if let colon = line.firstIndex(of: ":") {
                    return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                }
            }
            return nil
        }
        return MachineInfo(
            uname: command("uname", ["-a"]),
            nproc: command("nproc", []),
            onlineProcessors: sysconf(Int32(_SC_NPROCESSORS_ONLN)),
            cpuModel: field(cpuinfo, "model name") ?? "unavailable (no \"model name\" in /proc/cpuinfo)",
            memTotal: field(meminfo, "MemTotal") ?? "unavailable",
            loadAverageAtStart: loadAverage())
    }
}

/// The 1, 5 and 15-minute load averages from /proc/loadavg.
func loadAverage() -> String {
    guard let text = ProcFS.read("/proc/loadavg") else { return "unavailable" }
    return text.split(separator: " ").prefix(3).joined(separator: " ")
}

/// Versions of everything measured.
struct VersionInfo: Codable, Sendable {
    /// `swift --version` (the toolchain on PATH; the binary is built by `make bench` with the same one).
    var swift: String
    /// `debug` or `release`: how this binary was compiled.
    var buildConfiguration: String
    /// `etcd --version`.
    var etcd: String
    /// The version the running member reports (Maintenance/Status).
    var etcdServer: String
    /// `dpkg-query -W libgrpc-dev`: the gRPC core the C shim links.
    var grpc: String
    /// `dpkg-query -W libprotobuf-c-dev`.
    var protobufC: String

    static func collect(etcdBinary: String, serverVersion: String) -> VersionInfo {
        #if DEBUG
        let configuration = "debug"
        #else
        let configuration = "release"
        #endif
        return VersionInfo(
            swift: command("swift", ["--version"]),
            buildConfiguration: configuration,
            etcd: command(etcdBinary, ["--version"]),
            etcdServer: serverVersion,
            grpc: command("dpkg-query", ["-W", "libgrpc-dev"]),
            protobufC: command("dpkg-query", ["-W", "libprotobuf-c-dev"]))
    }
}

/// Runs a short informational command (through PATH) and returns its trimmed output, or why it could not.
func command(_ executable: String, _ arguments: [String]) -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [executable] + arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    do {
        try process.run()
    } catch {
        return "unavailable (\(executable): \(error))"
    }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    guard process.terminationStatus == 0 else {
        return "unavailable (`\(([executable] + arguments).joined(separator: " "))` exited with \(process.terminationStatus): \(text.prefix(200)))"
    }
    return text
}
