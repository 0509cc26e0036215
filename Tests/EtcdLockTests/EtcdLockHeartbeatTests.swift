import Etcd
import EtcdLock
import EtcdTesting
import Foundation
import LeaderElection
import LockConformance
import Testing

@Suite(.timeLimit(.minutes(2))) struct EtcdLockHeartbeatTests {
    @Test func heartbeatListingAndMonitor() async throws {
        try await SharedEtcdServer.withServer { server in
            let client = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
            defer { client.close() }
            let namespace = "members-\(UUID().uuidString)"
            let lock = try EtcdLock(client: client, configuration: .init(name: "node-a", namespace: namespace), identity: "node-a")
            try await HeartbeatConformance.run(lock: lock, directory: EtcdLockDirectory(client: client, namespace: namespace), name: "node-a", backend: "EtcdLock")
        }
    }

    @Test func directoryListsKeysUnderThePrefixOnly() async throws {
        try await SharedEtcdServer.withServer { server in
            let client = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
            defer { client.close() }
            let namespace = "list-\(UUID().uuidString)"
            let directory = EtcdLockDirectory(client: client, namespace: namespace)
            #expect(directory.prefix == "/leader-election/\(namespace)/")
            #expect(try await directory.list().isEmpty)
            for name in ["b", "a"] {
                _ = try await EtcdLock(client: client, configuration: .init(name: name, namespace: namespace), identity: name)
                    .create(LeaderElectionRecord(holderIdentity: name, leaseDuration: .seconds(40)))
            }
            try await EtcdLock(client: client, configuration: .init(name: "c", namespace: namespace), identity: "c").writeRaw(Array("x".utf8))
            _ = try await EtcdLock(client: client, configuration: .init(name: "a", namespace: namespace + "-other"), identity: "a")
                .create(LeaderElectionRecord(holderIdentity: "a", leaseDuration: .seconds(40)))
            let listed = try await directory.list()
            #expect(listed.map(\.name) == ["a", "b", "c"])
            #expect(listed[0].record?.holderIdentity == "a" && listed[2].record == nil)
            let a = try #require(try await EtcdLock(client: client, configuration: .init(name: "a", namespace: namespace), identity: "a").get())
            #expect(listed[0].version == a.version)
            // The change feed yields on a write under the prefix.
            let feed = try #require(directory.changes())
            var changes = feed.makeAsyncIterator()
            _ = await changes.next()   // established
            _ = try await EtcdLock(client: client, configuration: .init(name: "d", namespace: namespace), identity: "d")
                .create(LeaderElectionRecord(holderIdentity: "d", leaseDuration: .seconds(40)))
            #expect(await changes.next() != nil)
        }
    }
}
