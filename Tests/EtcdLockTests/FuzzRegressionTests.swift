@testable import Etcd
import EtcdLock
import Foundation
import LeaderElection
import Testing

/// Regressions for what `lease-fuzz etcd` found (fuzz/regressions/etcd): etcd responses that crashed the
/// client or EtcdLock. Each must now decode to a value or a typed error.
@Suite("etcd fuzz regressions")
struct EtcdFuzzRegressionTests {
    /// Every committed regression input, as the fuzzer ran it: selector byte + message.
    @Test func committedRegressionInputsDecodeToValuesOrTypedErrors() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../fuzz/regressions/etcd").standardizedFileURL.path
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { !$0.hasPrefix(".") }
        #expect(!names.isEmpty)
        for name in names {
            let data = try #require(FileManager.default.contents(atPath: directory + "/" + name))
            let input = Array(data)
            let all = _EtcdFuzzing.Response.allCases
            let response = all[Int(input[0]) % all.count]
            let message = Array(input.dropFirst())
            do {
                _ = try _EtcdFuzzing.decode(response, message)
                if response == .range { _ = try EtcdLock._fuzzGet(rangeResponse: message) }
                if response == .txn { _ = try EtcdLock._fuzzWrite(txnResponse: message) }
            } catch is EtcdError {
            } catch is LeaderElectionError {
            }
        }
    }

    // MARK: - The findings, written out

    private static let record = Array(#"{"holderIdentity":"a","leaseDurationSeconds":15,"leaderTransitions":1}"#.utf8)

    private static func header(revision: Int64) -> [UInt8] { Wire.bytes(1, Wire.int(3, revision) + Wire.int(4, 2)) }

    private static func keyValue(modRevision: Int64, createRevision: Int64 = 2, version: Int64 = 1) -> [UInt8] {
        Wire.bytes(1, Array("/leader-election/default/lock".utf8)) + Wire.int(2, createRevision) + Wire.int(3, modRevision)
            + Wire.int(4, version) + Wire.bytes(5, record)
    }

    /// Finding 1: a RangeResponse whose key has mod_revision -1 trapped in EtcdLock.get
    /// (`LockVersion(UInt64(kv.modRevision))`). Now the codec rejects negative revisions.
    @Test func negativeModRevisionIsInvalidResponseNotATrap() throws {
        let range = Self.header(revision: 5) + Wire.bytes(2, Self.keyValue(modRevision: -1)) + Wire.int(4, 1)
        #expect { try EtcdLock._fuzzGet(rangeResponse: range) } throws: { ($0 as? EtcdError)?.code == .invalidResponse }
        for kv in [Self.keyValue(modRevision: 3, createRevision: -5), Self.keyValue(modRevision: 3, version: Int64.min)] {
            #expect { try EtcdLock._fuzzGet(rangeResponse: Self.header(revision: 5) + Wire.bytes(2, kv)) } throws: {
                ($0 as? EtcdError)?.code == .invalidResponse
            }
        }
        // The same record at a sane revision still reads.
        let good = try #require(try EtcdLock._fuzzGet(rangeResponse: Self.header(revision: 5) + Wire.bytes(2, Self.keyValue(modRevision: 4))))
        #expect(good.version == LockVersion(4) && good.record.holderIdentity == "a")
    }

    /// The same conversion in create/update: a negative header revision (success) or a conflicting key with
    /// a negative mod_revision (failure branch).
    @Test func negativeRevisionsInTransactionsAreInvalidResponse() {
        let succeeded = Self.header(revision: -7) + Wire.int(2, 1)
        #expect { try EtcdLock._fuzzWrite(txnResponse: succeeded) } throws: { ($0 as? EtcdError)?.code == .invalidResponse }
        let rangeOp = Wire.bytes(3, Wire.bytes(1, Self.header(revision: 9) + Wire.bytes(2, Self.keyValue(modRevision: Int64.min))))
        #expect { try EtcdLock._fuzzWrite(txnResponse: Self.header(revision: 9) + rangeOp) } throws: { ($0 as? EtcdError)?.code == .invalidResponse }
    }

    /// Finding 2: a LeaseKeepAliveResponse with a TTL near Int64.max overflowed `ttl * 1000` when the keepalive
    /// loop computed its next delay. The TTL is now clamped to etcd's maximum (9e9 s).
    @Test func hugeKeepAliveTTLIsClampedNotAnOverflow() throws {
        for ttl in [Int64.max, Int64.max / 1000 + 1, EtcdClient.maximumLeaseTTL + 1] {
            #expect(EtcdClient.keepAliveDelay(ttl: ttl) == .seconds(EtcdClient.maximumLeaseTTL / 3))
            let message = Self.header(revision: 1) + Wire.int(2, 42) + Wire.int(3, ttl)
            #expect(try _EtcdFuzzing.decode(.leaseKeepAlive, message).contains("next in"))
        }
        #expect(EtcdClient.keepAliveDelay(ttl: 15) == .seconds(5))
        #expect(EtcdClient.keepAliveDelay(ttl: 1) == .milliseconds(500))
    }

    /// Found while fixing finding 1: a watch resuming after revision Int64.max would overflow `revision + 1`.
    @Test func watchRevisionAtInt64MaxIsInvalidResponse() throws {
        let created = Self.header(revision: Int64.max) + Wire.int(3, 1)
        #expect { try _EtcdFuzzing.decode(.watch, created) } throws: { ($0 as? EtcdError)?.code == .invalidResponse }
        let event = Self.header(revision: 3) + Wire.bytes(11, Wire.bytes(2, Self.keyValue(modRevision: Int64.max)))
        #expect { try _EtcdFuzzing.decode(.watch, event) } throws: { ($0 as? EtcdError)?.code == .invalidResponse }
        var progress = WatchProgress(next: 0)
        #expect(try progress.apply(EtcdCodec.decodeWatch(Self.header(revision: Int64.max - 1) + Wire.int(3, 1))) == [.established(revision: Int64.max - 1)])
        #expect(progress.next == Int64.max)
    }
}

/// Protobuf wire encoding for the tests above (field numbers from protos/etcdv3).
private enum Wire {
    static func varint(_ value: UInt64) -> [UInt8] {
        var v = value
        var out: [UInt8] = []
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
        return out
    }
    static func int(_ field: UInt64, _ value: Int64) -> [UInt8] { varint(field << 3) + varint(UInt64(bitPattern: value)) }
    static func bytes(_ field: UInt64, _ value: [UInt8]) -> [UInt8] { varint(field << 3 | 2) + varint(UInt64(value.count)) + value }
}
