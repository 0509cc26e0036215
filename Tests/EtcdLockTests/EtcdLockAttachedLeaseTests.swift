import EtcdTesting
import Etcd
import EtcdLock
import Foundation
import LeaderElection
import LockConformance
import Testing

@Suite struct EtcdLockAttachedLeaseTests {
    /// The whole suite also passes with an etcd lease attached to the holder's record.
    @Test(arguments: LockConformanceSuite.Check.all)
    func conformanceWithAttachedLease(_ check: LockConformanceSuite.Check) async throws {
        try await Self.conformance(check)
    }

    private static func conformance(_ check: LockConformanceSuite.Check) async throws {
        try await SharedEtcdServer.withServer { server in
            let client = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
            defer { client.close() }
            let suite = LockConformanceSuite(name: "EtcdLock(attachLease)") {
                let configuration = EtcdLock.Configuration(name: "leased-\(UUID().uuidString)", namespace: "tests", attachLease: true)
                return .init(
                    makeLock: { identity in try EtcdLock(client: client, configuration: configuration, identity: identity) },
                    writeGarbage: { bytes in try await EtcdLock(client: client, configuration: configuration, identity: "garbage").writeRaw(bytes) },
                    tearDown: { try await EtcdLock(client: client, configuration: configuration, identity: "cleanup").delete() })
            }
            try await suite.run(check)
        }
    }

    @Test func holdersRecordCarriesALeaseAndDisappearsWhenItsHolderIsGone() async throws {
        try await SharedEtcdServer.withServer { server in
            let client = try EtcdClient(configuration: .init(endpoints: [server.endpoint]))
            defer { client.close() }
            let configuration = EtcdLock.Configuration(name: "leased-\(UUID().uuidString)", namespace: "tests", attachLease: true)
            let key = configuration.key
            var holder: EtcdLock? = try EtcdLock(client: client, configuration: configuration, identity: "a")
            let record = LeaderElectionRecord(holderIdentity: "a", leaseDuration: .seconds(2), acquireTime: .now(), renewTime: .now())
            let v1 = try await holder!.create(record)
            let attached = try #require(try await client.get(key)).lease
            #expect(attached != 0)
            // Renewals keep the same lease and stay one write.
            _ = try await holder!.update(record, expecting: v1)
            #expect(try await client.get(key)?.lease == attached)
            // Releasing (a record naming nobody) detaches it.
            let released = LeaderElectionRecord(holderIdentity: "", leaseDuration: .seconds(1), acquireTime: .now(), renewTime: .now())
            let v2 = try await holder!.update(released, expecting: try #require(try await holder!.get()).version)
            #expect(try await client.get(key)?.lease == 0)
            // Holding again, then the holder goes away without a word: etcd deletes the record after the TTL.
            _ = try await holder!.update(record, expecting: v2)
            #expect(try await client.get(key)?.lease != 0)
            let revision = try await client.status().header.revision
            holder = nil
            var deleted = false
            let started = ContinuousClock.now
            for try await message in client.watch(Array(key.utf8), fromRevision: revision + 1) {
                if case .event(let e) = message, e.kind == .delete { deleted = true; break }
                if ContinuousClock.now - started > .seconds(30) { break }
            }
            #expect(deleted, "etcd should delete the dead holder's record when its lease expires")
        }
    }
}
