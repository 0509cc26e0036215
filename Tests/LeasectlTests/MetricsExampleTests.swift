import FileLock
import Foundation
import LeaderElection
import Testing
@testable import leasectl

extension ProcessTests {
    /// `Examples/metrics-worker` end to end: it leads on a file lock, serves the elector's metrics for Prometheus, and
    /// on SIGTERM drains its work, releases the lease and exits 0.
    @Suite struct MetricsExampleTests {
        static var executable: String {
            URL(fileURLWithPath: LeasectlHarness.executable).deletingLastPathComponent().appendingPathComponent("metrics-worker-example").path
        }

        @Test(.timeLimit(.minutes(1)))
        func servesMetricsWhileLeadingAndReleasesOnSIGTERM() async throws {
            try #require(FileManager.default.isExecutableFile(atPath: Self.executable), "\(Self.executable) is not built")
            let directory = try LeasectlHarness.temporaryDirectory()
            defer { LeasectlHarness.cleanUp(directory) }
            let process = try ChildProcess.spawn(
                [Self.executable, "--leader-elect-lock-url", "file://\(directory)/worker", "--identity", "example-1",
                 "--metrics-port", "0", "--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s",
                 "--leader-elect-retry-period", "500ms"],
                environment: ProcessInfo.processInfo.environment, standardInput: .null, standardOutput: .pipe, standardError: .pipe)
            let stderr = LeasectlHarness.collect(process.standardError!)
            let (lines, continuation) = AsyncStream.makeStream(of: String.self)
            let stdout = process.standardOutput!
            Thread.detachNewThread {
                LineReader.forEachLine(of: stdout) { continuation.yield($0) }
                close(stdout)
                continuation.finish()
            }
            do {
                var address: String?
                for await line in lines where line.hasPrefix("metrics: http://") {
                    address = String(line.dropFirst("metrics: http://".count).prefix { $0 != "/" })
                    break
                }
                let hostPort = try #require(address, "the example printed no metrics address")
                let port = try #require(UInt16(hostPort.split(separator: ":").last ?? ""))
                let lock = try FileLock(directory: directory, name: "worker", identity: "reader")
                // Woken by the lock's own change feed (inotify), subscribed before the first read.
                var changes = try #require(lock.changes()).makeAsyncIterator()
                while try await lock.get()?.record.holderIdentity != "example-1" {
                    guard await changes.next() != nil else { break }
                }
                #expect(try await lock.get()?.record.holderIdentity == "example-1")
                let metrics = try await httpGet(port: port, path: "/metrics")
                #expect(metrics.hasPrefix("HTTP/1.1 200"), "\(metrics.prefix(200))")
                #expect(metrics.contains(#"leader_election_master_status{name="worker"} 1"#), "\(metrics)")
                #expect(metrics.contains("leader_election_renew_duration_seconds"))
                let missing = try await httpGet(port: port, path: "/nothing")
                #expect(missing.hasPrefix("HTTP/1.1 404"))

                process.signal(SIGTERM)
                let status = await process.waitUntilExit(timeout: .seconds(20))
                let errors = await stderr.value
                #expect(status == .exited(0), "\(String(describing: status)); stderr: \(errors)")
                let record = try await lock.get()?.record
                #expect(record?.holderIdentity == "", "the lease was not released: \(String(describing: record))")
            } catch {
                process.signal(SIGKILL)
                _ = await process.waitUntilExit()
                throw error
            }
        }
    }
}

/// `GET path` on 127.0.0.1:`port` over plain HTTP/1.1, the whole response as text (on a thread of its own).
private func httpGet(port: UInt16, path: String) async throws -> String {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<String, any Error>) in
        Thread.detachNewThread {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return continuation.resume(throwing: LeaseCtlError("socket failed")) }
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { return continuation.resume(throwing: LeaseCtlError("connect to port \(port) failed")) }
            let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
            _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            var response: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 16384)
            while response.count < 4 << 20 {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard n > 0 else { break }
                response += buffer[..<n]
            }
            continuation.resume(returning: String(decoding: response, as: UTF8.self))
        }
    }
}
