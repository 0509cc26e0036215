import Etcd
import EtcdLock
import EtcdTesting
import Foundation
import LeaderElection
import LockConformance
import Testing

/// EtcdLock against a real etcd passes the whole shared suite, unchanged.
@Suite struct EtcdLockConformanceTests {
    @Test(arguments: LockConformanceSuite.Check.all)
    func conformance(_ check: LockConformanceSuite.Check) async throws {
        try await SharedEtcdServer.withServer { server in
            let client = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
            defer { client.close() }
            let suite = LockConformanceSuite(name: "EtcdLock") {
                let configuration = EtcdLock.Configuration(name: "conformance-\(UUID().uuidString)", namespace: "tests")
                return .init(
                    makeLock: { identity in try EtcdLock(client: client, configuration: configuration, identity: identity) },
                    writeGarbage: { bytes in try await EtcdLock(client: client, configuration: configuration, identity: "garbage").writeRaw(bytes) },
                    tearDown: { try await EtcdLock(client: client, configuration: configuration, identity: "cleanup").delete() })
            }
            try await suite.run(check)
        }
    }
}

@Suite struct EtcdLockTests {
    @Test func foreignJSONAndGarbageAreCorruptRecords() async throws {
        try await SharedEtcdServer.withServer { server in
            let client = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
            defer { client.close() }
            let lock = try EtcdLock(client: client, configuration: .init(name: "foreign-\(UUID().uuidString)"), identity: "a")
            for bytes in [Array(#"{"apiVersion":"v1","kind":"ConfigMap","data":{}}"#.utf8), [0xFF, 0x00, 0x13], Array("[1,2,3]".utf8)] {
                try await lock.writeRaw(bytes)
                await #expect { _ = try await lock.get() } throws: { ($0 as? LeaderElectionError)?.code == .corruptRecord && ($0 as? LeaderElectionError)?.version != nil }
            }
        }
    }

    @Test func oversizedRecordsAreRejectedClearly() async throws {
        try await SharedEtcdServer.withServer { server in
            let client = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
            defer { client.close() }
            let lock = try EtcdLock(client: client, configuration: .init(name: "big-\(UUID().uuidString)"), identity: "a")
            let record = LeaderElectionRecord(holderIdentity: String(repeating: "x", count: 200_000), leaseDuration: .seconds(15))
            await #expect { _ = try await lock.create(record) } throws: { ($0 as? LeaderElectionError)?.code == .invalidConfiguration }
            #expect(try await lock.get() == nil)
        }
    }

    @Test func unreachableEndpointFailsFastWithUnavailable() async throws {
        let port = try EtcdServer.freePort()
        let client = try EtcdClient(configuration: .init(endpoints: ["127.0.0.1:\(port)"], requestTimeout: .seconds(30)))
        defer { client.close() }
        let lock = try EtcdLock(client: client, configuration: .init(name: "nobody-home"), identity: "a")
        let start = ContinuousClock.now
        await #expect { _ = try await lock.get() } throws: { ($0 as? LeaderElectionError)?.code == .unavailable }
        // Fails fast (connection refused), not at the 30 s deadline.
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test func subSecondLeaseDurationsRoundTrip() async throws {
        try await SharedEtcdServer.withServer { server in
            let client = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
            defer { client.close() }
            let lock = try EtcdLock(client: client, configuration: .init(name: "fast-\(UUID().uuidString)"), identity: "a")
            let record = LeaderElectionRecord(holderIdentity: "a", leaseDuration: .milliseconds(750), acquireTime: .now(), renewTime: .now())
            let version = try await lock.create(record)
            let read = try #require(try await lock.get())
            #expect(read.record == record && read.version == version)
        }
    }
}
