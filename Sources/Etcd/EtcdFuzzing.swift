/// Entry points for the `lease-fuzz` harness (Sources/lease-fuzz): each decodes arbitrary bytes as one etcd
/// response message exactly as ``EtcdClient`` does, then runs the client's own handling of the decoded value
/// (watch resume revisions, keepalive interval). Not API: it exists for fuzzing only and may change at any time.
public enum _EtcdFuzzing {
    /// The response messages the client decodes.
    public enum Response: UInt8, CaseIterable, Sendable {
        case range, put, deleteRange, txn, leaseGrant, leaseRevoke, leaseKeepAlive, leaseTimeToLive, watch, status, authenticate
    }

    /// Decodes `bytes` as a `response` message and applies the client's handling to it; returns a
    /// description of the result.
    /// - Throws: ``EtcdError`` (``EtcdError/Code/invalidResponse`` for bytes that are not such a message, or
    ///   the error the client would report for the message, such as ``EtcdError/Code/compacted``).
    public static func decode(_ response: Response, _ bytes: [UInt8]) throws -> String {
        switch response {
        case .range: return "\(try EtcdCodec.decodeRange(bytes))"
        case .put: return "\(try EtcdCodec.decodePut(bytes))"
        case .deleteRange: return "\(try EtcdCodec.decodeDelete(bytes))"
        case .txn: return "\(try EtcdCodec.decodeTxn(bytes))"
        case .leaseGrant:
            let (lease, error) = try EtcdCodec.decodeLeaseGrant(bytes)
            return "\(lease) \(error)"
        case .leaseRevoke:
            try EtcdCodec.decodeLeaseRevoke(bytes)
            return "revoked"
        case .leaseKeepAlive:
            let lease = try EtcdCodec.decodeLeaseKeepAlive(bytes)
            guard lease.ttl > 0 else { return "expired \(lease)" }
            return "\(lease) next in \(EtcdClient.keepAliveDelay(ttl: lease.ttl))"
        case .leaseTimeToLive: return "\(try EtcdCodec.decodeLeaseTimeToLive(bytes))"
        case .watch:
            // A watch started from "now" and one already past revision 1, as the client's loop runs them.
            var fresh = WatchProgress(next: 0)
            var resumed = WatchProgress(next: 1)
            let response = try EtcdCodec.decodeWatch(bytes)
            let messages = try fresh.apply(response)
            _ = try resumed.apply(response)
            return "\(messages) next \(fresh.next)"
        case .status: return "\(try EtcdCodec.decodeStatus(bytes))"
        case .authenticate: return "token of \(try EtcdCodec.decodeAuthenticate(bytes).utf8.count) bytes"
        }
    }

    /// Decodes a `RangeResponse` as ``EtcdClient/range(_:rangeEnd:limit:revision:serializable:)`` does.
    public static func range(_ bytes: [UInt8]) throws -> EtcdRangeResponse { try EtcdCodec.decodeRange(bytes) }

    /// Decodes a `TxnResponse` as ``EtcdClient/txn(_:success:failure:)`` does.
    public static func txn(_ bytes: [UInt8]) throws -> EtcdTxnResponse { try EtcdCodec.decodeTxn(bytes) }
}
