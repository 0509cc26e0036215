#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

@testable import EtcdTesting

@Suite("EtcdServer: one real etcd member")
struct EtcdServerTests {
    @Test("starts on free loopback ports, serves put/get, and stop() removes everything")
    func startPutGetStop() async throws {
        let server = try await EtcdServer.start(name: "single")
        let pid = server.pid
        let directory = server.directory
        #expect(server.endpoint == "127.0.0.1:\(server.clientPort)")
        #expect(server.clientURL == "http://127.0.0.1:\(server.clientPort)")
        #expect(server.clientPort != server.peerPort)
        #expect(server.dataDirectory.hasPrefix(directory + "/"))
        #expect(pathExists(server.dataDirectory + "/member"))
        #expect(processExists(pid))
        #expect(server.isRunning)

        try await server.etcdctl(["put", "greeting", "hello"])
        #expect(try await value(of: "greeting", in: server) == "hello")
        let status = try await server.status()
        #expect(status.isLeader)
        #expect(status.version.hasPrefix("3."))
        #expect(status.revision >= 2)

        await server.stop()
        #expect(!processExists(pid))
        #expect(!pathExists(directory))
        #expect(!server.isRunning)
        await server.stop()   // idempotent
        await #expect(throws: EtcdTestingError.self) { try await server.restart() }
    }

    @Test("kill() is a crash that keeps the data; restart() comes back on the same ports")
    func killAndRestartKeepData() async throws {
        try await EtcdServer.withServer(name: "crash") { server in
            try await server.etcdctl(["put", "durable", "yes"])
            let (firstPID, endpoint) = (server.pid, server.endpoint)

            await server.kill()
            #expect(!processExists(firstPID))
            #expect(!server.isRunning)
            #expect(pathExists(server.dataDirectory + "/member"))
            let down = try await server.runEtcdctl(["get", "durable", "--command-timeout", "500ms", "--dial-timeout", "500ms"])
            #expect(!down.succeeded)

            try await server.restart()
            #expect(server.isRunning)
            #expect(server.pid != firstPID)
            #expect(server.endpoint == endpoint)
            #expect(try await value(of: "durable", in: server) == "yes")

            // A restart of a running member stops it gracefully first.
            let secondPID = server.pid
            try await server.restart()
            #expect(!processExists(secondPID))
            #expect(try await value(of: "durable", in: server) == "yes")
        }
    }

    @Test("restart() reports a port someone else took, and succeeds once it is free again")
    func restartWithPortTaken() async throws {
        try await EtcdServer.withServer(name: "port-taken") { server in
            try await server.etcdctl(["put", "k", "v"])
            await server.kill()
            let squatter = try listen(onPort: server.clientPort)
            do {
                try await server.restart(timeout: .seconds(20))   // etcd exits at once on a taken port; the bound only matters under load
                Issue.record("restart succeeded although 127.0.0.1:\(server.clientPort) was taken")
            } catch let error as EtcdTestingError {
                #expect(error.message.contains("its port was taken"), "\(error)")
                #expect(error.message.contains("address already in use"))
            }
            #expect(!server.isRunning)
            close(squatter)
            try await server.restart()
            #expect(try await value(of: "k", in: server) == "v")
        }
    }

    @Test("pause() freezes the process (SIGSTOP), resume() lets it serve again")
    func pauseAndResume() async throws {
        try await EtcdServer.withServer(name: "pause") { server in
            try await server.etcdctl(["put", "k", "v"])
            server.pause()
            #expect(server.isPaused)
            #expect(await eventually { processState(server.pid) == "T" })
            let frozen = try await server.runEtcdctl(
                ["get", "k", "--command-timeout", "500ms", "--dial-timeout", "500ms"], timeout: .seconds(10))
            #expect(!frozen.succeeded)

            server.resume()
            #expect(!server.isPaused)
            #expect(try await value(of: "k", in: server) == "v")
        }
    }

    @Test("stop() ends a paused server too")
    func stopWhilePaused() async throws {
        let server = try await EtcdServer.start(name: "paused-stop")
        let pid = server.pid
        server.pause()
        await server.stop()
        #expect(!processExists(pid))
        #expect(!pathExists(server.directory))
        // SIGTERM + SIGCONT end it: it exits on its own (etcd exits 0 on SIGTERM), not by the SIGKILL fallback.
        // Asserted on how it ended, not on how long that took (a loaded machine makes any time bound flaky).
        #expect(server.exitStatus != .signaled(SIGKILL), "stop() of a paused server needed the SIGKILL fallback: \(String(describing: server.exitStatus))")
    }

    @Test("a server dropped without stop() is killed and its directory removed")
    func dropWithoutStop() async throws {
        var server: EtcdServer? = try await EtcdServer.start(name: "dropped")
        let pid = server!.pid
        let directory = server!.directory
        #expect(processExists(pid))
        server = nil
        #expect(await eventually { !processExists(pid) && !pathExists(directory) })
    }

    @Test("extra arguments reach etcd")
    func extraArguments() async throws {
        try await EtcdServer.withServer(name: "extra", extraArguments: ["--max-request-bytes", "1024"]) { server in
            try await server.etcdctl(["put", "small", "fits"])
            let big = try await server.runEtcdctl(["put", "big", String(repeating: "x", count: 4096)])
            #expect(!big.succeeded)
            #expect(big.standardError.contains("request is too large"))
        }
    }
}
