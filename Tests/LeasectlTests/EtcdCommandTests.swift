import Etcd
import EtcdLock
import EtcdTesting
import Foundation
import LeaderElection
import Synchronization
import Testing
@testable import leasectl

extension ProcessTests {
    /// `leasectl elect`, `get` and `release` on `etcd://` locks, against real etcd servers.
    @Suite struct EtcdCommandTests {
        /// Three `leasectl elect` processes on one etcd key: one leader, hand-offs by release, and takeovers
        /// after a SIGKILLed leader's lease expired (etcd cannot tell that a holder died).
        @Test(.timeLimit(.minutes(1)))
        func oneLeaderAtATimeThroughHandOffsAndCrashes() async throws {
            let etcd = try await EtcdServer.start(name: "leasectl-elect")
            let directory = try LeasectlHarness.temporaryDirectory()
            let lease: Duration = .seconds(2)
            let retry: Duration = .milliseconds(300)
            let group = CandidateGroup(
                lock: "etcd://\(etcd.endpoint)/leader-election/tests/x", directory: directory,
                arguments: ["--lease-duration", "2s", "--renew-deadline", "1500ms", "--retry-period", "300ms"])
            let names = ["c1", "c2", "c3"]
            do {
                let (handOffs, takeovers, _) = try await group.handOffsAndCrashes(names: names, lease: lease, retry: retry)
                let ms = ElectMultiProcessTests.ms
                print("etcd graceful hand-off ms: \(handOffs.map(ms).joined(separator: ", "))")
                print("etcd crash takeover ms: \(takeovers.map(ms).joined(separator: ", ")) (leaseDuration 2s, renewDeadline 1500ms, retryPeriod 300ms)")
            } catch {
                await group.stopAll()
                Issue.record("candidate logs:\n\(group.logs())")
                await etcd.stop()
                LeasectlHarness.cleanUp(directory)
                throw error
            }
            await etcd.stop()
            LeasectlHarness.cleanUp(directory)
        }

        /// `get` lists a prefix (table and JSON, a corrupt value included), `release` frees held and corrupt
        /// locks, and unreachable or authenticating etcd servers give clear errors.
        @Test(.timeLimit(.minutes(1)))
        func getAndReleaseOnEtcd() async throws {
            let etcd = try await EtcdServer.start(name: "leasectl-get")
            let client = try EtcdClient(configuration: .init(endpoints: [etcd.endpoint]))
            do {
                try await Self.getAndRelease(etcd, client)
            } catch {
                client.close()
                await etcd.stop()
                throw error
            }
            client.close()
            await etcd.stop()
        }

        private static func getAndRelease(_ etcd: EtcdServer, _ client: EtcdClient) async throws {
            let base = "etcd://\(etcd.endpoint)/leader-election/tests"
            func lock(_ path: String, _ identity: String = "writer") throws -> EtcdLock {
                let configuration = try EtcdLockBackend.configuration(for: LockURL(parsing: base + "/" + path))
                return try EtcdLock(client: client, configuration: configuration, identity: identity)
            }
            let now = MicroTime.now()
            _ = try await lock("held", "alice").create(LeaderElectionRecord(
                holderIdentity: "alice", leaseDuration: .seconds(60), acquireTime: now.advanced(by: .seconds(-190)),
                renewTime: now, leaseTransitions: 3))
            _ = try await lock("free").create(LeaderElectionRecord(
                holderIdentity: "", leaseDuration: .seconds(1), acquireTime: now, renewTime: now, leaseTransitions: 5))
            _ = try await lock("team/nested", "bob").create(LeaderElectionRecord(
                holderIdentity: "bob", leaseDuration: .seconds(30), acquireTime: now, renewTime: now, leaseTransitions: 1))
            try await client.put("/leader-election/tests/broken", "{not json")
            try await client.put("/leader-election/other/x", "outside the prefix")

            let table = try await LeasectlHarness.run(["get", base + "/"])
            #expect(table.status == .exited(0), "\(table)")
            let rows = table.stdout.split(separator: "\n").map { $0.split(separator: "   ").map { $0.trimmingCharacters(in: .whitespaces) } }
            #expect(rows.first == ["NAME", "HOLDER", "AGE", "TRANSITIONS", "EXPIRES IN"], "\(table)")
            #expect(rows.dropFirst().map(\.first) == ["broken", "free", "held", "team/nested"], "\(table)")
            #expect(rows.contains(["broken", "<corrupt>", "<unknown>", "<unknown>", "<unknown>"]), "\(table)")
            #expect(rows.contains(["free", "<none>", "0s", "5", "<none>"]), "\(table)")
            let held = try #require(rows.first { $0.first == "held" }, "\(table)")
            #expect(Array(held.prefix(4)) == ["held", "alice", "3m", "3"])
            #expect(held[4].hasSuffix("s") && held[4] != "expired", "about a minute left: \(held[4])")

            let json = try await LeasectlHarness.run(["get", base + "/", "-o", "json"])
            #expect(json.status == .exited(0), "\(json)")
            let list = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json)")
            let items = try #require(list["items"] as? [[String: Any]])
            #expect(items.map { $0["name"] as? String } == ["broken", "free", "held", "team/nested"])
            #expect(items[0]["corrupt"] as? Bool == true)
            #expect(items[2]["holderIdentity"] as? String == "alice")
            #expect(items[2]["leaderTransitions"] as? Int == 3)
            #expect(items[2]["lock"] as? String == "\(base)/held")
            #expect(items[3]["lock"] as? String == "\(base)/team/nested")

            let single = try await LeasectlHarness.run(["get", "\(base)/free", "-o", "json"])
            let object = try #require(try JSONSerialization.jsonObject(with: Data(single.stdout.utf8)) as? [String: Any], "\(single)")
            #expect(object["name"] as? String == "free")
            #expect(object["leaderTransitions"] as? Int == 5)

            let missing = try await LeasectlHarness.run(["get", "\(base)/nothing"])
            #expect(missing.status == .exited(1))
            #expect(missing.stderr.contains("not found"), "\(missing)")

            // release: refused while live, forced, then the record is free with the same transitions —
            // which `get -w` (an etcd watch) prints as it happens.
            let watcher = try OutputLines(["get", "-w", "\(base)/held"])
            #expect(await watcher.next(timeout: .seconds(10))?.hasPrefix("NAME") == true)
            #expect(await watcher.next(timeout: .seconds(10))?.contains("alice") == true)
            let refused = try await LeasectlHarness.run(["release", "\(base)/held"])
            #expect(refused.status == .exited(1), "\(refused)")
            #expect(refused.stderr.contains("--force"))
            let released = try await LeasectlHarness.run(["release", "--force", "\(base)/held"])
            #expect(released.status == .exited(0), "\(released)")
            #expect(released.stdout == "released lock \(base)/held (was held by alice, transitions 3)\n")
            let changed = await watcher.next(timeout: .seconds(10))
            #expect(changed?.contains("<none>") == true, "\(changed ?? "nothing")")
            #expect(await watcher.stop() == .exited(0))
            let record = try #require(try await lock("held").get()).record
            #expect(record.holderIdentity == "" && record.leaseTransitions == 3)
            let corrupt = try await LeasectlHarness.run(["release", "\(base)/broken"])
            #expect(corrupt.status == .exited(1) && corrupt.stderr.contains("corrupt record"), "\(corrupt)")
            let replaced = try await LeasectlHarness.run(["release", "--force", "\(base)/broken"])
            #expect(replaced.stdout == "released lock \(base)/broken (replaced a corrupt record)\n", "\(replaced)")
            #expect(try await lock("broken").get()?.record.holderIdentity == "")

            // Nothing listens: a clear error, exit status 1.
            let port = try EtcdServer.freePort()
            let unreachable = try await LeasectlHarness.run(["get", "etcd://127.0.0.1:\(port)/leader-election/tests/"])
            #expect(unreachable.status == .exited(1), "\(unreachable)")
            #expect(unreachable.stderr.contains("cannot reach etcd at 127.0.0.1:\(port)"), "\(unreachable)")
            let releaseUnreachable = try await LeasectlHarness.run(["release", "etcd://127.0.0.1:\(port)/leader-election/tests/x"])
            #expect(releaseUnreachable.status == .exited(1), "\(releaseUnreachable)")
            #expect(releaseUnreachable.stderr.contains("cannot release lock") && releaseUnreachable.stderr.contains("cannot reach etcd"), "\(releaseUnreachable)")

            // Authentication: without a user, with a wrong password, and right from the environment or a file.
            _ = try await etcd.etcdctl(["user", "add", "root:s3cret"])
            _ = try await etcd.etcdctl(["auth", "enable"])
            let anonymous = try await LeasectlHarness.run(["get", "\(base)/free"], environment: ["ETCD_PASSWORD": nil])
            #expect(anonymous.status == .exited(1), "\(anonymous)")
            #expect(anonymous.stderr.contains("refused the request") && anonymous.stderr.contains("pass --etcd-user"), "\(anonymous)")
            let wrong = try await LeasectlHarness.run(["get", "--etcd-user", "root", "\(base)/free"], environment: ["ETCD_PASSWORD": "wrong"])
            #expect(wrong.status == .exited(1), "\(wrong)")
            #expect(wrong.stderr.contains("authentication failed"), "\(wrong)")
            let electAnonymous = try await LeasectlHarness.run(
                ["elect", "--lock", "\(base)/free", "--events", "json"], environment: ["ETCD_PASSWORD": nil], timeout: .seconds(15))
            #expect(electAnonymous.status == .exited(1), "a candidate etcd rejects gives up at once: \(electAnonymous)")
            #expect(electAnonymous.stderr.contains("cannot campaign on \(base)/free"), "\(electAnonymous)")
            let right = try await LeasectlHarness.run(["get", "--etcd-user", "root", "\(base)/"], environment: ["ETCD_PASSWORD": "s3cret"])
            #expect(right.status == .exited(0), "\(right)")
            #expect(right.stdout.contains("team/nested"), "\(right)")
            let directory = try LeasectlHarness.temporaryDirectory()
            defer { LeasectlHarness.cleanUp(directory) }
            try "s3cret\n".write(toFile: "\(directory)/password", atomically: true, encoding: .utf8)
            let fromFile = try await LeasectlHarness.run(
                ["release", "--etcd-user", "root", "--etcd-password-file", "\(directory)/password", "\(base)/free"],
                environment: ["ETCD_PASSWORD": nil])
            #expect(fromFile.status == .exited(0), "\(fromFile)")
            #expect(fromFile.stdout.contains("is already free (transitions 5)"), "\(fromFile)")
        }

        /// A candidate that cannot reach etcd says so on stderr, keeps campaigning, and stops cleanly.
        @Test(.timeLimit(.minutes(1)))
        func electNotesAnUnreachableEtcdAndKeepsRetrying() async throws {
            let port = try EtcdServer.freePort()
            let candidate = try OutputLines(
                ["elect", "--lock", "etcd://127.0.0.1:\(port)/leader-election/tests/x", "--identity", "lonely",
                 "--lease-duration", "2s", "--renew-deadline", "1500ms", "--retry-period", "300ms"],
                stream: .standardError)
            let note = await candidate.first(timeout: .seconds(10)) { $0.contains("cannot reach etcd") }
            #expect(note?.hasPrefix("leasectl: lonely: cannot reach etcd at 127.0.0.1:\(port)") == true, "\(note ?? "no note")")
            #expect(note?.hasSuffix("; retrying") == true, "\(note ?? "no note")")
            #expect(candidate.process.exitStatus == nil, "still campaigning")
            #expect(await candidate.stop(signal: SIGTERM) == .exited(0))
        }

        /// `get` over TLS needs --etcd-cacert; mutual TLS also --etcd-cert and --etcd-key.
        @Test(.timeLimit(.minutes(1)))
        func getOverTLSAndMutualTLS() async throws {
            let material = try EtcdTLS.generate()
            var mutual = material
            mutual.clientCertAuth = true
            async let startedTLS = EtcdServer.start(name: "leasectl-tls", tls: material)
            async let startedMutual = EtcdServer.start(name: "leasectl-mtls", tls: mutual)
            let (tls, mtls) = try await (startedTLS, startedMutual)
            do {
                let ca = try String(contentsOfFile: material.caFile, encoding: .utf8)
                let client = try EtcdClient(configuration: .init(endpoints: [tls.endpoint], tls: .init(caPEM: ca)))
                defer { client.close() }
                try await client.put("/leader-election/tls/x", String(decoding: LeaderElectionRecord(
                    holderIdentity: "tls-holder", leaseDuration: .seconds(30), acquireTime: .now(), renewTime: .now(),
                    leaseTransitions: 2).jsonBytes(), as: UTF8.self))
                let url = "etcd://\(tls.endpoint)/leader-election/tls/"

                let ok = try await LeasectlHarness.run(["get", "--etcd-cacert", material.caFile, url])
                #expect(ok.status == .exited(0), "\(ok)")
                #expect(ok.stdout.contains("tls-holder"), "\(ok)")

                let plaintext = try await LeasectlHarness.run(["get", "--etcd-dial-timeout", "3s", url])
                #expect(plaintext.status == .exited(1), "\(plaintext)")
                #expect(plaintext.stderr.contains("cannot reach etcd at \(tls.endpoint)") && plaintext.stderr.contains("pass --etcd-cacert"), "\(plaintext)")

                let wrongCA = try await LeasectlHarness.run(["get", "--etcd-dial-timeout", "3s", "--etcd-cacert", material.wrongCAFile, url])
                #expect(wrongCA.status == .exited(1), "\(wrongCA)")
                #expect(wrongCA.stderr.contains("cannot reach etcd") && wrongCA.stderr.contains("--etcd-cacert signed its certificate"), "\(wrongCA)")

                let unreadable = try await LeasectlHarness.run(["get", "--etcd-cacert", material.directory + "/missing.pem", url])
                #expect(unreadable.status == .exited(1), "\(unreadable)")
                #expect(unreadable.stderr.contains("cannot read --etcd-cacert \(material.directory)/missing.pem"), "\(unreadable)")

                // Mutual TLS: the CA alone is not enough.
                let mutualURL = "etcd://\(mtls.endpoint)/leader-election/tls/"
                let noCertificate = try await LeasectlHarness.run(["get", "--etcd-dial-timeout", "3s", "--etcd-cacert", material.caFile, mutualURL])
                #expect(noCertificate.status == .exited(1), "\(noCertificate)")
                #expect(noCertificate.stderr.contains("pass --etcd-cert and --etcd-key"), "\(noCertificate)")
                let withCertificate = try await LeasectlHarness.run([
                    "get", "--etcd-cacert", material.caFile, "--etcd-cert", material.clientCertFile,
                    "--etcd-key", material.clientKeyFile, mutualURL,
                ])
                #expect(withCertificate.status == .exited(0), "\(withCertificate)")
                #expect(withCertificate.stderr.contains("No locks found"), "an empty prefix: \(withCertificate)")
            } catch {
                await tls.stop()
                await mtls.stop()
                throw error
            }
            await tls.stop()
            await mtls.stop()
        }
    }
}

/// A `leasectl` process whose standard output (or error) lines are read as they come.
final class OutputLines: Sendable {
    enum Stream: Sendable { case standardOutput, standardError }

    let process: ChildProcess
    private let lines: LineBuffer

    init(_ arguments: [String], stream: Stream = .standardOutput) throws {
        process = try ChildProcess.spawn(
            [LeasectlHarness.executable] + arguments, standardInput: .null,
            standardOutput: stream == .standardOutput ? .pipe : .null,
            standardError: stream == .standardError ? .pipe : .null)
        let fd = stream == .standardOutput ? process.standardOutput! : process.standardError!
        let lines = LineBuffer()
        self.lines = lines
        Thread.detachNewThread {
            LineReader.forEachLine(of: fd) { lines.append($0) }
            close(fd)
            lines.finish()
        }
    }

    deinit {
        // A test that failed half-way must not leave `get -w` or `elect` running.
        if process.exitStatus == nil { process.signal(SIGKILL) }
    }

    /// The next line not returned yet, waiting at most `timeout`; `nil` at end of output or on timeout.
    func next(timeout: Duration) async -> String? {
        await lines.next(timeout: timeout)
    }

    /// The first further line matching `predicate`, waiting at most `timeout` in all.
    func first(timeout: Duration, where predicate: (String) -> Bool) async -> String? {
        let deadline = ContinuousClock.now + timeout
        while let line = await lines.next(timeout: deadline - ContinuousClock.now) {
            if predicate(line) { return line }
        }
        return nil
    }

    /// Signals the process and waits (bounded) for it to exit; SIGKILL when it does not.
    func stop(signal: Int32 = SIGINT) async -> ProcessExitStatus? {
        process.signal(signal)
        if let status = await process.waitUntilExit(timeout: .seconds(10)) { return status }
        process.signal(SIGKILL)
        _ = await process.waitUntilExit()
        return nil
    }
}

/// Lines appended by a reader thread, taken in order by one consumer.
final class LineBuffer: Sendable {
    private struct State {
        var lines: [String] = []
        var taken = 0
        var finished = false
    }
    private let state = Mutex(State())

    func append(_ line: String) { state.withLock { $0.lines.append(line) } }

    func finish() { state.withLock { $0.finished = true } }

    /// The next line, polling until `timeout` has passed; `nil` at the end of the output or on timeout.
    func next(timeout: Duration) async -> String? {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (line, finished) = state.withLock { state -> (String?, Bool) in
                guard state.taken < state.lines.count else { return (nil, state.finished) }
                state.taken += 1
                return (state.lines[state.taken - 1], false)
            }
            if let line { return line }
            if finished || ContinuousClock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}
