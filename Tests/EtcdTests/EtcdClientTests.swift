@testable import Etcd
import EtcdTesting
import Foundation
import Testing

private func unique(_ prefix: String) -> String { "/tests/\(prefix)-\(UUID().uuidString)" }

@Suite struct EtcdClientTests {
    @Test func putGetRangeDelete() async throws {
        try await SharedEtcdServer.withServer { server in
            let etcd = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
            defer { etcd.close() }
            let base = unique("kv")
            let h1 = try await etcd.put("\(base)/a", "1")
            try await etcd.put("\(base)/b", "2")
            let a = try #require(try await etcd.get("\(base)/a"))
            #expect(a.value == Array("1".utf8) && a.modRevision == h1.revision && a.version == 1)
            #expect(try await etcd.get(prefix: "\(base)/").map(\.keyString) == ["\(base)/a", "\(base)/b"])
            #expect(try await etcd.get("\(base)/missing") == nil)
            #expect(try await etcd.delete(Array("\(base)/".utf8), rangeEnd: etcdPrefixEnd(Array("\(base)/".utf8))) == 2)
            #expect(try await etcd.get(prefix: "\(base)/").isEmpty)
            let status = try await etcd.status()
            #expect(status.version.hasPrefix("3.") && status.header.revision > 0)
        }
    }

    @Test func txnCompareAndSwap() async throws {
        try await SharedEtcdServer.withServer { server in
            let etcd = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
            defer { etcd.close() }
            let key = Array(unique("cas").utf8)
            let created = try await etcd.txn([EtcdCompare(key: key, .createRevision(0))], success: [.put(key: key, value: [1])], failure: [.range(key: key)])
            #expect(created.succeeded)
            let again = try await etcd.txn([EtcdCompare(key: key, .createRevision(0))], success: [.put(key: key, value: [2])], failure: [.range(key: key)])
            #expect(!again.succeeded)
            guard case .range(let kvs)? = again.responses.first else { Issue.record("no range result"); return }
            #expect(kvs.first?.value == [1] && kvs.first?.modRevision == created.header.revision)
            let swapped = try await etcd.txn([EtcdCompare(key: key, .modRevision(created.header.revision))], success: [.put(key: key, value: [3])])
            #expect(swapped.succeeded)
            let stale = try await etcd.txn([EtcdCompare(key: key, .modRevision(created.header.revision))], success: [.put(key: key, value: [4])])
            #expect(!stale.succeeded)
            let byValue = try await etcd.txn([EtcdCompare(key: key, .value([3]))], success: [.delete(key: key)])
            #expect(byValue.succeeded && byValue.responses == [.delete(deleted: 1)])
            let byVersion = try await etcd.txn([EtcdCompare(key: key, .version(0))], success: [])
            #expect(byVersion.succeeded)
        }
    }

    @Test func leaseKeepsKeyAliveAndKeyVanishesAfterKeepaliveStops() async throws {
        try await SharedEtcdServer.withServer { server in
            let etcd = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
            defer { etcd.close() }
            let key = unique("leased")
            // 5 s, not less: the whole suite starts at once on 2 cores, and a keepalive delayed past a shorter TTL
            // by CPU starvation lets etcd expire the lease (seen in CI) — a scheduling hiccup, not the client.
            let lease = try await etcd.grantLease(ttl: 5)
            try await etcd.put(Array(key.utf8), [1], lease: lease.id)
            let ttl = try await etcd.timeToLive(lease.id)
            #expect(ttl.grantedTTL == lease.ttl)
            // Keep it alive past several TTLs.
            var renewals = 0
            let started = ContinuousClock.now
            for try await _ in etcd.keepAlive(lease.id) {
                renewals += 1
                if ContinuousClock.now - started > .seconds(lease.ttl * 2) { break }
            }
            #expect(renewals >= 3)
            #expect(try await etcd.get(key) != nil, "the key outlived its TTL thanks to keepalive")
            // Keepalive stopped: the key must disappear; wait for the delete through a watch (bounded).
            let header = try await etcd.status().header
            var deleted = false
            for try await message in etcd.watch(Array(key.utf8), fromRevision: header.revision) {
                if case .event(let e) = message, e.kind == .delete { deleted = true; break }
                if ContinuousClock.now - started > .seconds(30) { break }
            }
            #expect(deleted)
            #expect(try await etcd.get(key) == nil)
            await #expect { try await etcd.revokeLease(lease.id) } throws: { ($0 as? EtcdError)?.code == .notFound }
        }
    }

    @Test func keepAliveReportsAnExpiredLease() async throws {
        try await SharedEtcdServer.withServer { server in
            let etcd = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
            defer { etcd.close() }
            let lease = try await etcd.grantLease(ttl: 5)
            try await etcd.revokeLease(lease.id)
            await #expect { for try await _ in etcd.keepAlive(lease.id) {} } throws: { ($0 as? EtcdError)?.code == .notFound }
        }
    }

    @Test func watchSeesPutsAndDeletesAndResumesAfterEtcdRestarts() async throws {
        let server = try await EtcdServer.start(name: "watch-restart")
        defer { Task { await server.stop() } }
        let etcd = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
        defer { etcd.close() }
        let prefix = Array(unique("watch").utf8)
        var iterator = etcd.watch(prefix, rangeEnd: etcdPrefixEnd(prefix)).makeAsyncIterator()
        guard case .established? = try await iterator.next() else { Issue.record("no establishment"); return }
        try await etcd.put(prefix + Array("/1".utf8), [1])
        try await etcd.delete(prefix + Array("/1".utf8))
        var seen: [EtcdWatchEvent.Kind] = []
        while seen.count < 2, let message = try await iterator.next() {
            if case .event(let e) = message { seen.append(e.kind) }
        }
        #expect(seen == [.put, .delete])
        await server.kill()
        try await server.restart()
        // A write made while we reconnect must be delivered exactly once, in order.
        var writer: EtcdClient? = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
        try await writer!.put(prefix + Array("/2".utf8), [2])
        try await writer!.put(prefix + Array("/3".utf8), [3])
        writer!.close()
        writer = nil
        var keys: [String] = []
        while keys.count < 2, let message = try await iterator.next() {
            if case .event(let e) = message { keys.append(String(decoding: e.kv.key.suffix(2), as: UTF8.self)) }
        }
        #expect(keys == ["/2", "/3"])
    }

    @Test func deadlineAndCancellation() async throws {
        let server = try await EtcdServer.start(name: "deadline")
        defer { Task { await server.stop() } }
        let etcd = try EtcdClient(configuration: .init(endpoints: [server.endpoint], requestTimeout: .milliseconds(300)))
        defer { etcd.close() }
        try await etcd.put("/warm", "up")
        server.pause()
        defer { server.resume() }
        await #expect { _ = try await etcd.get("/warm") } throws: { ($0 as? EtcdError)?.code == .deadlineExceeded }
        let slow = try EtcdClient(configuration: .init(endpoints: [server.endpoint], requestTimeout: .seconds(60)))
        defer { slow.close() }
        let call = Task { try await slow.get("/warm") }
        try await Task.sleep(for: .milliseconds(100))
        call.cancel()
        do {
            let value = try await call.value
            Issue.record("a cancelled call against a paused etcd returned \(String(describing: value)); paused=\(server.isPaused) state=\((try? String(contentsOfFile: "/proc/\(server.pid)/stat", encoding: .utf8)) ?? "?")")
        } catch {
            #expect((error as? EtcdError)?.code == .cancelled, "got \(error)")
        }
    }

    @Test func authenticationAndReauthenticationAfterTokenExpiry() async throws {
        let server = try await EtcdServer.start(name: "auth", extraArguments: ["--auth-token", "simple", "--auth-token-ttl", "1"])
        defer { Task { await server.stop() } }
        _ = try await server.etcdctl(["user", "add", "root:rootpw"])
        _ = try await server.etcdctl(["auth", "enable"])
        let anonymous = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
        defer { anonymous.close() }
        await #expect { _ = try await anonymous.get("/x") } throws: { ($0 as? EtcdError)?.code == .invalidArgument }
        let wrong = try EtcdClient(configuration: .init(endpoints: [server.endpoint], credentials: .init(user: "root", password: "nope")))
        defer { wrong.close() }
        await #expect { _ = try await wrong.get("/x") } throws: { ($0 as? EtcdError)?.code == .invalidArgument }
        let etcd = try EtcdClient(configuration: .init(endpoints: [server.endpoint], credentials: .init(user: "root", password: "rootpw")))
        defer { etcd.close() }
        try await etcd.put("/x", "1")
        // Simple tokens expire after the TTL of idleness; the client re-authenticates on UNAUTHENTICATED.
        try await Task.sleep(for: .seconds(3))
        #expect(try await etcd.get("/x")?.value == Array("1".utf8))
    }

    @Test func unreachableEndpointIsUnavailableFast() async throws {
        let port = try EtcdServer.freePort()
        let etcd = try EtcdClient(configuration: .init(endpoints: ["127.0.0.1:\(port)"], requestTimeout: .seconds(30)))
        defer { etcd.close() }
        let start = ContinuousClock.now
        await #expect { _ = try await etcd.get("/x") } throws: { ($0 as? EtcdError)?.code == .unavailable }
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test func invalidConfigurationIsTyped() {
        #expect(throws: EtcdError.self) { _ = try EtcdClient(configuration: .init(endpoints: [])) }
        #expect(throws: EtcdError.self) { _ = try EtcdClient(configuration: .init(endpoints: ["http://x:1/"])) }
    }
}

@Suite struct EtcdWatchCompactionTests {
    @Test func watchFromACompactedRevisionEndsWithCompacted() async throws {
        let server = try await EtcdServer.start(name: "compaction")
        defer { Task { await server.stop() } }
        let etcd = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
        defer { etcd.close() }
        let first = try await etcd.put("/c/k", "1")
        try await etcd.put("/c/k", "2")
        let last = try await etcd.put("/c/k", "3")
        _ = try await server.etcdctl(["compact", "\(last.revision)"])
        var received: [EtcdClient.WatchMessage] = []
        do {
            for try await message in etcd.watch(Array("/c/k".utf8), fromRevision: first.revision) {
                received.append(message)
                if received.count > 10 { break }
            }
            Issue.record("the watch ended without an error: \(received)")
        } catch let error as EtcdError {
            #expect(error.code == .compacted, "\(error)")
            #expect(error.compactRevision == last.revision)
        }
    }
}

@Suite struct EtcdEndpointTests {
    @Test func severalEndpointsByNameFailOverToTheLiveOne() async throws {
        try await SharedEtcdServer.withServer { server in
            let dead = try EtcdServer.freePort()
            let etcd = try EtcdClient(configuration: .init(endpoints: ["localhost:\(dead)", "localhost:\(server.clientPort)"]))
            defer { etcd.close() }
            try await etcd.put("/endpoints/by-name", "ok")
            #expect(try await etcd.get("/endpoints/by-name")?.value == Array("ok".utf8))
        }
    }

    @Test func targets() throws {
        #expect(try EtcdClient.target(for: ["10.0.0.1:2379"]) == "10.0.0.1:2379")
        #expect(try EtcdClient.target(for: ["10.0.0.1:2379", "10.0.0.2:2380"]) == "ipv4:10.0.0.1:2379,10.0.0.2:2380")
        #expect(try EtcdClient.target(for: ["[::1]:2379", "[::2]:2379"]) == "ipv6:[::1]:2379,[::2]:2379")
        #expect(throws: EtcdError.self) { _ = try EtcdClient.target(for: ["a:1", "no-port"]) }
    }
}
