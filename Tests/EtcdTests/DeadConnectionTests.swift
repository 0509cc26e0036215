@testable import Etcd
import EtcdTesting
import Foundation
import Testing

/// A connection whose peer vanished without a FIN or RST (kubernetes#125530), played by a proxy that black-holes
/// the connections open at that moment while new ones still work. HTTP/2 keepalive is off in these clients, so only
/// ``EtcdClient/Configuration/reconnectAfterTimeout`` can get them off the dead connection.
@Suite struct DeadConnectionTests {
    private static func client(through port: UInt16, reconnect: Bool) throws -> EtcdClient {
        try EtcdClient(configuration: .init(endpoints: ["127.0.0.1:\(port)"], requestTimeout: .milliseconds(1500),
                                            keepaliveInterval: nil, reconnectAfterTimeout: reconnect))
    }

    @Test func aTimedOutCallReplacesTheDeadConnectionAndWatchesResume() async throws {
        try await SharedEtcdServer.withServer { server in
            let proxy = try FaultProxy()
            defer { proxy.shutdown() }
            let port = try proxy.addProxy(id: 0, upstream: UInt16(server.clientPort))
            let etcd = try Self.client(through: port, reconnect: true)
            defer { etcd.close() }
            let direct = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
            defer { direct.close() }
            let key = "/tests/dead-connection-\(UUID().uuidString)"
            try await etcd.put(key, "before")

            // A watch on the connection that is about to die.
            var watch = etcd.watch(Array(key.utf8)).makeAsyncIterator()
            guard case .established? = try await watch.next() else { Issue.record("watch not established"); return }

            proxy.blackholeExisting(proxies: [0])
            await #expect(throws: EtcdError.self) { _ = try await etcd.get(key) }
            #expect(etcd.connectionReplacements == 1)

            // The next call runs on a new connection.
            #expect(try await etcd.get(key)?.value == Array("before".utf8))
            #expect(etcd.connectionReplacements == 1)
            #expect(proxy.acceptedTotal == 2)

            // The watch ended on the old connection with `unavailable`, resumed on the new one, and misses nothing.
            try await direct.put(key, "after")
            var delivered: [String] = []
            while let message = try await watch.next() {
                if case .event(let event) = message { delivered.append(String(decoding: event.kv.value, as: UTF8.self)); break }
            }
            #expect(delivered == ["after"])
        }
    }

    @Test func withoutReconnectTheClientStaysOnTheDeadConnection() async throws {
        try await SharedEtcdServer.withServer { server in
            let proxy = try FaultProxy()
            defer { proxy.shutdown() }
            let port = try proxy.addProxy(id: 0, upstream: UInt16(server.clientPort))
            let etcd = try Self.client(through: port, reconnect: false)
            defer { etcd.close() }
            let key = "/tests/dead-connection-\(UUID().uuidString)"
            try await etcd.put(key, "before")
            proxy.blackholeExisting(proxies: [0])
            for _ in 0..<2 {
                await #expect {
                    _ = try await etcd.get(key)
                } throws: { ($0 as? EtcdError)?.code == .deadlineExceeded }
            }
            #expect(etcd.connectionReplacements == 0)
            #expect(proxy.acceptedTotal == 1)
        }
    }
}
