#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import EtcdTesting
import Foundation
import Kubernetes
import Synchronization
import Testing

/// The built `lease-apiserver` binary, run as a separate process.
@Suite struct ExecutableTests {
    @Test func servesOverTLSAndExitsCleanlyOnSIGTERM() async throws {
        try await SharedEtcdServer.withServer { etcd in
            let tls = try await EtcdTLS.shared()
            let process = try ServerProcess.start([
                "--etcd-endpoints", etcd.endpoint, "--port", "0", "--bind-address", "127.0.0.1",
                "--tls-cert-file", tls.serverCertFile, "--tls-private-key-file", tls.serverKeyFile,
                "--token", "first-token", "--token", "second-token",
                "--etcd-prefix", "/exe-\(UUID().uuidString.lowercased())", "--log-level", "warning",
            ])
            defer { process.kill() }
            let line = try #require(await process.firstLine(timeout: .seconds(30)), "no listening line; stderr: \(process.standardError)")
            let prefix = "lease-apiserver listening on "
            #expect(line.hasPrefix(prefix + "https://127.0.0.1:"), "\(line)")
            let url = String(line.dropFirst(prefix.count))
            let http = makeHTTPClient(trusting: tls.caFile)
            do {
                let health = try await send(http, "GET", url + "/healthz", token: nil)
                #expect(health.status == 200 && health.text == "ok")
                #expect(try await send(http, "GET", url + leasesPath("default") + "/x", token: "second-token").status == 404)
                #expect(try await send(http, "GET", url + leasesPath("default") + "/x", token: "third-token").status == 401)
                let created = try await send(http, "POST", url + leasesPath("default"), body: leaseJSON("x"), token: "first-token")
                #expect(created.status == 201, "\(created)")
            } catch {
                try? await http.shutdown()
                throw error
            }
            try await http.shutdown()
            process.signal(SIGTERM)
            let status = await process.waitForExit(timeout: .seconds(20))
            #expect(status == 0, "stderr: \(process.standardError)")
        }
    }

    @Test func theCoordinatedLeaderElectionGenerationIsChosenKubeStyle() async throws {
        try await SharedEtcdServer.withServer { etcd in
            // The gate does not exist before 1.31.
            let refused = try ServerProcess.start(["--etcd-endpoints", etcd.endpoint, "--port", "0", "--feature-gates", "CoordinatedLeaderElection=true"])
            defer { refused.kill() }
            #expect(await refused.waitForExit(timeout: .seconds(20)) != 0)
            #expect(refused.standardError.contains("CoordinatedLeaderElection does not exist in 1.26"), "\(refused.standardError)")

            let tls = try await EtcdTLS.shared()
            let process = try ServerProcess.start([
                "--etcd-endpoints", etcd.endpoint, "--port", "0", "--tls-cert-file", tls.serverCertFile,
                "--tls-private-key-file", tls.serverKeyFile, "--token", "t", "--etcd-prefix", "/exe-\(UUID().uuidString.lowercased())",
                "--emulated-version", "1.31", "--feature-gates", "CoordinatedLeaderElection=true", "--log-level", "warning",
            ])
            defer { process.kill() }
            let line = try #require(await process.firstLine(timeout: .seconds(30)), "no listening line; stderr: \(process.standardError)")
            let url = String(line.dropFirst("lease-apiserver listening on ".count))
            let http = makeHTTPClient(trusting: tls.caFile)
            do {
                let body = leaseJSON("x", extraSpec: #""preferredHolder":"b","strategy":"OldestEmulationVersion""#)
                let created = try await send(http, "POST", url + leasesPath("default"), body: body, token: "t")
                #expect(created.status == 201, "\(created)")
                #expect(created.warnings.isEmpty)
                let lease = try created.decode(Lease.self)
                #expect(lease.spec?.preferredHolder == "b" && lease.spec?.strategy == "OldestEmulationVersion")
            } catch {
                try? await http.shutdown()
                throw error
            }
            try await http.shutdown()
        }
    }

    @Test func unreachableEtcdIsNoStartupErrorButA503() async throws {
        let port = try EtcdServer.freePort()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lease-apiserver-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let tokenFile = directory.appendingPathComponent("tokens.csv").path
        try "# tokens\nfile-token,admin,1,\"system:masters\"\n\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let process = try ServerProcess.start([
            "--etcd-endpoints", "127.0.0.1:\(port)", "--port", "0", "--token-file", tokenFile, "--log-level", "critical",
        ])
        defer { process.kill() }
        let line = try #require(await process.firstLine(timeout: .seconds(30)), "stderr: \(process.standardError)")
        #expect(line.hasPrefix("lease-apiserver listening on http://127.0.0.1:"))
        let url = String(line.dropFirst("lease-apiserver listening on ".count))
        let http = makeHTTPClient(trusting: "/nonexistent")
        do {
            let response = try await send(http, "GET", url + leasesPath("default") + "/x", token: "file-token")
            #expect(response.status == 503, "\(response)")
            #expect(try response.decode(Status.self).reason == "ServiceUnavailable")
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
        process.signal(SIGINT)
        #expect(await process.waitForExit(timeout: .seconds(20)) == 0)
    }

    @Test func unusableTLSFilesFailAtStartup() async throws {
        let process = try ServerProcess.start([
            "--etcd-endpoints", "127.0.0.1:1", "--port", "0",
            "--tls-cert-file", "/nonexistent/server.crt", "--tls-private-key-file", "/nonexistent/server.key",
        ])
        defer { process.kill() }
        let status = await process.waitForExit(timeout: .seconds(20))
        #expect(status == 1)
        #expect(process.standardError.contains("lease-apiserver: cannot load the TLS certificate chain /nonexistent/server.crt"),
                "\(process.standardError)")
        #expect(await process.firstLine(timeout: .seconds(5)) == nil)
    }
}

/// A `lease-apiserver` child process with its output collected.
final class ServerProcess: Sendable {
    /// The binary built next to the test bundle (`swift build --build-tests` builds every product).
    static let executable: String = {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var directory = URL(fileURLWithPath: me).deletingLastPathComponent()
        for _ in 0..<4 where !FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent("lease-apiserver").path) {
            directory.deleteLastPathComponent()
        }
        return directory.appendingPathComponent("lease-apiserver").path
    }()

    private struct State {
        var stdout = ""
        var stderr = ""
        var stdoutClosed = false
        var exitStatus: Int32?
    }
    private let state = Mutex(State())
    private let changes = ChangeNotifier()
    let pid: Int32
    /// Kept so that Foundation keeps watching the child for the termination handler.
    private let process: Mutex<Process?>

    private init(process: Process) {
        self.pid = process.processIdentifier
        self.process = Mutex(process)
    }

    static func start(_ arguments: [String]) throws -> ServerProcess {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw TestFailure("lease-apiserver is not built at \(executable); run `swift build --build-tests` first")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let holder = Mutex<ServerProcess?>(nil)
        process.terminationHandler = { finished in
            holder.withLock { $0 }?.exited(finished.terminationStatus)
        }
        try process.run()
        let server = ServerProcess(process: process)
        holder.withLock { $0 = server }
        if !process.isRunning { server.exited(process.terminationStatus) }
        server.read(out.fileHandleForReading, isStdout: true)
        server.read(err.fileHandleForReading, isStdout: false)
        return server
    }

    private func exited(_ status: Int32) {
        state.withLock { if $0.exitStatus == nil { $0.exitStatus = status } }
        changes.notify()
    }

    private func read(_ handle: FileHandle, isStdout: Bool) {
        Thread.detachNewThread { [self] in
            while true {
                let data = handle.availableData
                if data.isEmpty { break }
                let text = String(decoding: data, as: UTF8.self)
                state.withLock { state in
                    if isStdout { state.stdout += text } else { state.stderr += text }
                }
                changes.notify()
            }
            state.withLock { state in if isStdout { state.stdoutClosed = true } }
            changes.notify()
        }
    }

    var standardError: String { state.withLock { $0.stderr } }

    func signal(_ number: Int32) {
        if state.withLock({ $0.exitStatus }) == nil { _ = Glibc.kill(pid, number) }
    }

    /// SIGKILL, if it still runs.
    func kill() { signal(SIGKILL) }

    /// Waits (bounded) until `condition` holds for the state.
    private func wait(timeout: Duration, _ condition: @escaping @Sendable (State) -> Bool) async -> Bool {
        await changes.wait(timeout: timeout) { state.withLock { condition($0) } }
    }

    /// The first line of standard output, or `nil` when it closed (or `timeout` passed) without one.
    func firstLine(timeout: Duration) async -> String? {
        _ = await wait(timeout: timeout) { $0.stdout.contains("\n") || $0.stdoutClosed }
        let stdout = state.withLock { $0.stdout }
        guard let newline = stdout.firstIndex(of: "\n") else { return nil }
        return String(stdout[..<newline])
    }

    /// The exit status, or `nil` when it did not exit within `timeout`.
    func waitForExit(timeout: Duration) async -> Int32? {
        _ = await wait(timeout: timeout) { $0.exitStatus != nil }
        return state.withLock { $0.exitStatus }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
