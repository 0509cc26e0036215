#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Etcd
import EtcdTesting
import Foundation

/// The etcd the benchmark runs against: a single member started by `EtcdTesting` (temporary data directory,
/// free loopback ports, killed at the end), one client, and the member's Prometheus counters.
final class EtcdFixture: Sendable {
    let server: EtcdServer
    let client: EtcdClient
    let metrics: EtcdMetrics
    /// `etcd`'s command line as the kernel reports it (`/proc/<pid>/cmdline`), for the report.
    let commandLine: [String]
    /// The file system of etcd's data directory (WAL fsyncs dominate write latency), for the report.
    let dataFileSystem: String

    private init(server: EtcdServer, client: EtcdClient) {
        self.server = server
        self.client = client
        self.metrics = EtcdMetrics(port: server.clientPort)
        self.commandLine = Self.readCommandLine(pid: server.pid)
        self.dataFileSystem = fileSystemType(of: server.dataDirectory)
    }

    /// Starts etcd (fails with `EtcdTesting`'s install instructions when it is missing) and connects.
    static func start() async throws -> EtcdFixture {
        let server = try await EtcdServer.start(name: "lease-bench")
        do {
            let client = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
            let fixture = EtcdFixture(server: server, client: client)
            // One call, so the connection exists before anything is timed.
            _ = try await client.status()
            return fixture
        } catch {
            await server.stop()
            throw error
        }
    }

    /// Closes the client and stops etcd (SIGTERM, then its directory is removed).
    func stop() async {
        client.close()
        await server.stop()
    }

    /// utime + stime of the etcd process in nanoseconds (clock-tick resolution), or `nil` when unreadable.
    func serverCPUNanos() -> UInt64? {
        processCPUNanos(pid: server.pid)
    }

    private static func readCommandLine(pid: Int32) -> [String] {
        guard let text = ProcFS.read("/proc/\(pid)/cmdline") else { return [] }
        return text.split(separator: "\0").map(String.init)
    }
}

/// Reads etcd's Prometheus endpoint (`GET /metrics` on the client port, plain HTTP/1.0 over a loopback socket;
/// not a gRPC call, so scraping does not disturb the counters it reads).
struct EtcdMetrics: Sendable {
    let port: UInt16

    /// `grpc_server_started_total` by `service/method`: every gRPC call the member has started.
    func rpcsStarted() throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for line in try scrape().split(separator: "\n") where line.hasPrefix("grpc_server_started_total{") {
            guard let close = line.lastIndex(of: "}"),
                  let value = Double(line[line.index(after: close)...].trimmingCharacters(in: .whitespaces))
            else { continue }
            let labels = line[..<close]
            func label(_ name: String) -> String {
                guard let r = labels.range(of: name + "=\"") else { return "?" }
                return String(labels[r.upperBound...].prefix { $0 != "\"" })
            }
            counts["\(label("grpc_service"))/\(label("grpc_method"))", default: 0] += Int(value)
        }
        guard !counts.isEmpty else {
            throw BenchError("etcd's /metrics on port \(port) has no grpc_server_started_total counters; cannot count round trips")
        }
        return counts
    }

    /// The text of `GET /metrics`.
    func scrape() throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError("socket(): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw BenchError("cannot connect to etcd's metrics on port \(port): \(String(cString: strerror(errno)))") }
        let request = Array("GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:\(port)\r\n\r\n".utf8)
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw BenchError("cannot send the metrics request: \(String(cString: strerror(errno)))") }
            sent += n
        }
        var response = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { break }
            guard n > 0 else { throw BenchError("cannot read etcd's metrics: \(String(cString: strerror(errno)))") }
            response += buffer[..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard text.hasPrefix("HTTP/1.") , text.split(separator: "\r\n", maxSplits: 1).first?.contains(" 200") == true,
              let body = text.range(of: "\r\n\r\n") else {
            throw BenchError("unexpected answer to GET /metrics: \(text.prefix(200))")
        }
        return String(text[body.upperBound...])
    }
}

/// The file system type of `path` (`stat -f -c %T`: tmpfs, ext2/ext3, overlayfs, xfs, …).
func fileSystemType(of path: String) -> String {
    command("stat", ["-f", "-c", "%T", path])
}

extension EtcdMetrics {
    /// The sum of every series of the counter `name` (e.g. `etcd_network_client_grpc_received_bytes_total`).
    /// Throws when etcd does not export it (so a figure built on it is never silently zero).
    func counterTotal(_ name: String) throws -> Double {
        var total = 0.0
        var found = false
        for line in try scrape().split(separator: "\n") where line.hasPrefix(name + "{") || line.hasPrefix(name + " ") {
            guard let value = Double(line.split(separator: " ").last ?? "") else { continue }
            total += value
            found = true
        }
        guard found else { throw BenchError("etcd's /metrics on port \(port) has no \(name)") }
        return total
    }
}
