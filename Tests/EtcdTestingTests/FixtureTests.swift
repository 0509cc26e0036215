#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

@testable import EtcdTesting

@Suite("Fixture plumbing: ports, parallel starts, missing binaries, stale directories")
struct FixtureTests {
    @Test("servers started in parallel get distinct ports and directories and stay isolated")
    func parallelStarts() async throws {
        let servers = try await withThrowingTaskGroup(of: EtcdServer.self) { group in
            for index in 0..<4 {
                group.addTask { try await EtcdServer.start(name: "parallel\(index)") }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        do {
            let ports = servers.flatMap { [$0.clientPort, $0.peerPort] }
            #expect(Set(ports).count == 8)
            #expect(Set(servers.map(\.directory)).count == 4)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for server in servers {
                    group.addTask { try await server.etcdctl(["put", "owner", server.directory]) }
                }
                try await group.waitForAll()
            }
            for server in servers {
                #expect(try await value(of: "owner", in: server) == server.directory)
            }
        } catch {
            for server in servers { await server.stop() }
            throw error
        }
        for server in servers { await server.stop() }
    }

    @Test("the port allocator never hands out a reserved port twice")
    func portAllocator() throws {
        let first = try PortAllocator.allocate(20)
        let second = try PortAllocator.allocate(20)
        #expect(Set(first + second).count == 40)
        PortAllocator.release(first + second)
    }

    @Test("etcd and etcdctl are found here")
    func binariesPresent() throws {
        let binaries = try EtcdTesting.requireEtcd()
        #expect(binaries.etcd.hasSuffix("/etcd"))
        #expect(binaries.etcdctl.hasSuffix("/etcdctl"))
    }

    @Test("a missing binary says how to install it, and is a CI failure in CI")
    func missingBinaryMessages() {
        let local = missingEtcdError(etcdMissing: true, etcdctlMissing: false, inCI: false).message
        #expect(local.contains("`etcd` (Debian package etcd-server) not found"))
        #expect(local.contains("sudo apt-get install etcd-server etcd-client"))
        #expect(local.contains("make bootstrap"))
        #expect(!local.contains("CI failure"))

        let ci = missingEtcdError(etcdMissing: true, etcdctlMissing: true, inCI: true).message
        #expect(ci.hasPrefix("CI failure:"))
        #expect(ci.contains("`etcdctl` (Debian package etcd-client)"))
        #expect(ci.contains("sudo apt-get install etcd-server etcd-client"))
    }

    @Test("directories left by a dead test process are swept; live owners' directories are kept")
    func staleDirectorySweep() throws {
        let mine = try makeTemporaryDirectory(label: "sweep-live")
        defer { removeDirectory(mine) }
        let stale = try makeTemporaryDirectory(label: "sweep-stale")
        defer { removeDirectory(stale) }
        // A process that has exited: its pid (almost certainly) names no process now.
        let exited = try runCommandBlocking("/bin/sh", ["-c", "echo $$"], timeout: .seconds(10))
        let deadPID = try #require(Int32(exited.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)))
        let owner = try String(contentsOfFile: mine + "/owner", encoding: .utf8).split(separator: " ")
        try "\(deadPID) \(owner[1]) \(owner[2])".write(toFile: stale + "/owner", atomically: false, encoding: .utf8)

        sweepStaleDirectories()
        #expect(pathExists(mine))
        #expect(!pathExists(stale) || processExists(deadPID))
    }

    @Test("a command that outlives its timeout is killed and reported")
    func commandTimeout() async throws {
        let started = ContinuousClock.now
        let result = try await runCommand("/bin/sleep", ["30"], timeout: .milliseconds(300))
        #expect(result.timedOut)
        #expect(!result.succeeded)
        #expect(ContinuousClock.now - started < .seconds(5))
    }
}
