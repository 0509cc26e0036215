// protobuf-c encoding and decoding of etcd messages: the only file that touches the generated C types.
// Requests are built in a `CArena` (freed after packing); responses are unpacked, copied into Swift
// values and freed at once.
import CEtcdShim

#if canImport(Glibc)
import Glibc
#endif

/// C allocations for one request, freed together.
private final class CArena {
    private var allocations: [UnsafeMutableRawPointer] = []

    deinit { allocations.forEach { free($0) } }

    func bytes(_ b: [UInt8]) -> ProtobufCBinaryData {
        guard !b.isEmpty else { return ProtobufCBinaryData(len: 0, data: nil) }
        let p = malloc(b.count)!
        allocations.append(p)
        b.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: b.count) }
        return ProtobufCBinaryData(len: b.count, data: p.assumingMemoryBound(to: UInt8.self))
    }

    func string(_ s: String) -> UnsafeMutablePointer<CChar> {
        let p = strdup(s)!
        allocations.append(UnsafeMutableRawPointer(p))
        return p
    }

    func message<T>(_ initialize: (UnsafeMutablePointer<T>) -> Void) -> UnsafeMutablePointer<T> {
        let raw = calloc(1, MemoryLayout<T>.stride)!
        allocations.append(raw)
        let p = raw.assumingMemoryBound(to: T.self)
        initialize(p)
        return p
    }

    func array<T>(_ items: [UnsafeMutablePointer<T>]) -> UnsafeMutablePointer<UnsafeMutablePointer<T>?>? {
        guard !items.isEmpty else { return nil }
        let raw = calloc(items.count, MemoryLayout<UnsafeMutablePointer<T>?>.stride)!
        allocations.append(raw)
        let p = raw.assumingMemoryBound(to: UnsafeMutablePointer<T>?.self)
        for (i, item) in items.enumerated() { p[i] = item }
        return p
    }
}

private func pack<T>(_ message: UnsafeMutablePointer<T>, size: (UnsafePointer<T>) -> Int, pack: (UnsafePointer<T>, UnsafeMutablePointer<UInt8>) -> Int) -> [UInt8] {
    let n = size(message)
    if n == 0 { return [] }
    return [UInt8](unsafeUninitializedCapacity: n) { buffer, count in
        count = pack(message, buffer.baseAddress!)
    }
}

private func array(_ d: ProtobufCBinaryData) -> [UInt8] {
    guard d.len > 0, let data = d.data else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: d.len))
}

private func string(_ p: UnsafeMutablePointer<CChar>?) -> String { p.map { String(cString: $0) } ?? "" }

private func invalid(_ what: String) -> EtcdError {
    EtcdError(code: .invalidResponse, message: "etcd sent a \(what) that does not decode")
}

/// Unpacks with `unpack`, converts with `convert`, frees with `free`.
private func decode<T, R>(
    _ bytes: [UInt8], _ what: String,
    unpack: (UnsafeMutablePointer<ProtobufCAllocator>?, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<T>?,
    free: (UnsafeMutablePointer<T>?, UnsafeMutablePointer<ProtobufCAllocator>?) -> Void,
    _ convert: (UnsafeMutablePointer<T>) throws -> R
) throws -> R {
    let message = bytes.withUnsafeBufferPointer { unpack(nil, $0.count, $0.baseAddress) }
    guard let message else { throw invalid(what) }
    defer { free(message, nil) }
    return try convert(message)
}

enum EtcdCodec {
    // MARK: requests

    private static func fillRange(_ r: UnsafeMutablePointer<Etcdv3__RangeRequest>, _ arena: CArena, key: [UInt8], rangeEnd: [UInt8], limit: Int64, revision: Int64, serializable: Bool, countOnly: Bool) {
        etcdv3__range_request__init(r)
        r.pointee.key = arena.bytes(key)
        r.pointee.range_end = arena.bytes(rangeEnd)
        r.pointee.limit = limit
        r.pointee.revision = revision
        r.pointee.serializable = serializable ? 1 : 0
        r.pointee.count_only = countOnly ? 1 : 0
    }

    static func range(key: [UInt8], rangeEnd: [UInt8], limit: Int64, revision: Int64, serializable: Bool, countOnly: Bool = false) -> [UInt8] {
        let arena = CArena()
        let r: UnsafeMutablePointer<Etcdv3__RangeRequest> = arena.message { fillRange($0, arena, key: key, rangeEnd: rangeEnd, limit: limit, revision: revision, serializable: serializable, countOnly: countOnly) }
        return pack(r, size: { etcdv3__range_request__get_packed_size($0) }, pack: { etcdv3__range_request__pack($0, $1) })
    }

    static func put(key: [UInt8], value: [UInt8], lease: Int64) -> [UInt8] {
        let arena = CArena()
        let r: UnsafeMutablePointer<Etcdv3__PutRequest> = arena.message { p in
            etcdv3__put_request__init(p)
            p.pointee.key = arena.bytes(key)
            p.pointee.value = arena.bytes(value)
            p.pointee.lease = lease
        }
        return pack(r, size: { etcdv3__put_request__get_packed_size($0) }, pack: { etcdv3__put_request__pack($0, $1) })
    }

    static func deleteRange(key: [UInt8], rangeEnd: [UInt8]) -> [UInt8] {
        let arena = CArena()
        let r: UnsafeMutablePointer<Etcdv3__DeleteRangeRequest> = arena.message { p in
            etcdv3__delete_range_request__init(p)
            p.pointee.key = arena.bytes(key)
            p.pointee.range_end = arena.bytes(rangeEnd)
        }
        return pack(r, size: { etcdv3__delete_range_request__get_packed_size($0) }, pack: { etcdv3__delete_range_request__pack($0, $1) })
    }

    private static func requestOp(_ op: EtcdOperation, _ arena: CArena) -> UnsafeMutablePointer<Etcdv3__RequestOp> {
        arena.message { (p: UnsafeMutablePointer<Etcdv3__RequestOp>) in
            etcdv3__request_op__init(p)
            switch op {
            case .range(let key, let rangeEnd):
                p.pointee.request_case = ETCDV3__REQUEST_OP__REQUEST_REQUEST_RANGE
                p.pointee.request_range = arena.message { fillRange($0, arena, key: key, rangeEnd: rangeEnd, limit: 0, revision: 0, serializable: false, countOnly: false) }
            case .put(let key, let value, let lease):
                p.pointee.request_case = ETCDV3__REQUEST_OP__REQUEST_REQUEST_PUT
                p.pointee.request_put = arena.message { (q: UnsafeMutablePointer<Etcdv3__PutRequest>) in
                    etcdv3__put_request__init(q)
                    q.pointee.key = arena.bytes(key)
                    q.pointee.value = arena.bytes(value)
                    q.pointee.lease = lease
                }
            case .delete(let key, let rangeEnd):
                p.pointee.request_case = ETCDV3__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE
                p.pointee.request_delete_range = arena.message { (q: UnsafeMutablePointer<Etcdv3__DeleteRangeRequest>) in
                    etcdv3__delete_range_request__init(q)
                    q.pointee.key = arena.bytes(key)
                    q.pointee.range_end = arena.bytes(rangeEnd)
                }
            }
        }
    }

    static func txn(compares: [EtcdCompare], success: [EtcdOperation], failure: [EtcdOperation]) -> [UInt8] {
        let arena = CArena()
        let cmps: [UnsafeMutablePointer<Etcdv3__Compare>] = compares.map { c in
            arena.message { (p: UnsafeMutablePointer<Etcdv3__Compare>) in
                etcdv3__compare__init(p)
                p.pointee.key = arena.bytes(c.key)
                p.pointee.result = Etcdv3__Compare__CompareResult(rawValue: UInt32(c.result.rawValue))
                switch c.target {
                case .version(let v):
                    p.pointee.target = ETCDV3__COMPARE__COMPARE_TARGET__VERSION
                    p.pointee.target_union_case = ETCDV3__COMPARE__TARGET_UNION_VERSION
                    p.pointee.version = v
                case .createRevision(let v):
                    p.pointee.target = ETCDV3__COMPARE__COMPARE_TARGET__CREATE
                    p.pointee.target_union_case = ETCDV3__COMPARE__TARGET_UNION_CREATE_REVISION
                    p.pointee.create_revision = v
                case .modRevision(let v):
                    p.pointee.target = ETCDV3__COMPARE__COMPARE_TARGET__MOD
                    p.pointee.target_union_case = ETCDV3__COMPARE__TARGET_UNION_MOD_REVISION
                    p.pointee.mod_revision = v
                case .value(let v):
                    p.pointee.target = ETCDV3__COMPARE__COMPARE_TARGET__VALUE
                    p.pointee.target_union_case = ETCDV3__COMPARE__TARGET_UNION_VALUE
                    p.pointee.value = arena.bytes(v)
                case .lease(let v):
                    p.pointee.target = ETCDV3__COMPARE__COMPARE_TARGET__LEASE
                    p.pointee.target_union_case = ETCDV3__COMPARE__TARGET_UNION_LEASE
                    p.pointee.lease = v
                }
            }
        }
        let ok = success.map { requestOp($0, arena) }
        let ko = failure.map { requestOp($0, arena) }
        let r: UnsafeMutablePointer<Etcdv3__TxnRequest> = arena.message { p in
            etcdv3__txn_request__init(p)
            p.pointee.n_compare = cmps.count
            p.pointee.compare = arena.array(cmps)
            p.pointee.n_success = ok.count
            p.pointee.success = arena.array(ok)
            p.pointee.n_failure = ko.count
            p.pointee.failure = arena.array(ko)
        }
        return pack(r, size: { etcdv3__txn_request__get_packed_size($0) }, pack: { etcdv3__txn_request__pack($0, $1) })
    }

    static func leaseGrant(ttl: Int64, id: Int64) -> [UInt8] {
        var r = Etcdv3__LeaseGrantRequest()
        etcdv3__lease_grant_request__init(&r)
        r.ttl = ttl
        r.id = id
        return withUnsafeMutablePointer(to: &r) { pack($0, size: { etcdv3__lease_grant_request__get_packed_size($0) }, pack: { etcdv3__lease_grant_request__pack($0, $1) }) }
    }

    static func leaseRevoke(id: Int64) -> [UInt8] {
        var r = Etcdv3__LeaseRevokeRequest()
        etcdv3__lease_revoke_request__init(&r)
        r.id = id
        return withUnsafeMutablePointer(to: &r) { pack($0, size: { etcdv3__lease_revoke_request__get_packed_size($0) }, pack: { etcdv3__lease_revoke_request__pack($0, $1) }) }
    }

    static func leaseKeepAlive(id: Int64) -> [UInt8] {
        var r = Etcdv3__LeaseKeepAliveRequest()
        etcdv3__lease_keep_alive_request__init(&r)
        r.id = id
        return withUnsafeMutablePointer(to: &r) { pack($0, size: { etcdv3__lease_keep_alive_request__get_packed_size($0) }, pack: { etcdv3__lease_keep_alive_request__pack($0, $1) }) }
    }

    static func leaseTimeToLive(id: Int64) -> [UInt8] {
        var r = Etcdv3__LeaseTimeToLiveRequest()
        etcdv3__lease_time_to_live_request__init(&r)
        r.id = id
        return withUnsafeMutablePointer(to: &r) { pack($0, size: { etcdv3__lease_time_to_live_request__get_packed_size($0) }, pack: { etcdv3__lease_time_to_live_request__pack($0, $1) }) }
    }

    static func watchCreate(key: [UInt8], rangeEnd: [UInt8], startRevision: Int64, watchID: Int64) -> [UInt8] {
        let arena = CArena()
        let create: UnsafeMutablePointer<Etcdv3__WatchCreateRequest> = arena.message { p in
            etcdv3__watch_create_request__init(p)
            p.pointee.key = arena.bytes(key)
            p.pointee.range_end = arena.bytes(rangeEnd)
            p.pointee.start_revision = startRevision
            p.pointee.watch_id = watchID
        }
        let r: UnsafeMutablePointer<Etcdv3__WatchRequest> = arena.message { p in
            etcdv3__watch_request__init(p)
            p.pointee.request_union_case = ETCDV3__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST
            p.pointee.create_request = create
        }
        return pack(r, size: { etcdv3__watch_request__get_packed_size($0) }, pack: { etcdv3__watch_request__pack($0, $1) })
    }

    static func status() -> [UInt8] { [] }

    static func authenticate(user: String, password: String) -> [UInt8] {
        let arena = CArena()
        let r: UnsafeMutablePointer<Etcdv3__AuthenticateRequest> = arena.message { p in
            etcdv3__authenticate_request__init(p)
            p.pointee.name = arena.string(user)
            p.pointee.password = arena.string(password)
        }
        return pack(r, size: { etcdv3__authenticate_request__get_packed_size($0) }, pack: { etcdv3__authenticate_request__pack($0, $1) })
    }

    // MARK: responses

    /// Revisions and versions are never negative in etcd; callers rely on it (a revision becomes a
    /// `UInt64` lock version, a watch resumes from revision + 1). A negative one (a 10-byte varint from a
    /// broken or hostile server) crashed EtcdLock before this check — found by `lease-fuzz etcd`.
    private static func revision(_ value: Int64, _ field: String) throws -> Int64 {
        guard value >= 0 else { throw EtcdError(code: .invalidResponse, message: "etcd sent a response whose \(field) is negative (\(value))") }
        return value
    }

    private static func header(_ h: UnsafeMutablePointer<Etcdv3__ResponseHeader>?) throws -> EtcdResponseHeader {
        guard let h else { return EtcdResponseHeader(clusterID: 0, memberID: 0, revision: 0, raftTerm: 0) }
        return EtcdResponseHeader(clusterID: h.pointee.cluster_id, memberID: h.pointee.member_id,
                                  revision: try revision(h.pointee.revision, "header.revision"), raftTerm: h.pointee.raft_term)
    }

    private static func keyValue(_ kv: UnsafeMutablePointer<Etcdv3__KeyValue>) throws -> EtcdKeyValue {
        EtcdKeyValue(key: array(kv.pointee.key), value: array(kv.pointee.value),
                     createRevision: try revision(kv.pointee.create_revision, "create_revision"),
                     modRevision: try revision(kv.pointee.mod_revision, "mod_revision"),
                     version: try revision(kv.pointee.version, "version"), lease: kv.pointee.lease)
    }

    private static func keyValues(_ p: UnsafeMutablePointer<UnsafeMutablePointer<Etcdv3__KeyValue>?>?, _ n: Int) throws -> [EtcdKeyValue] {
        guard let p else { return [] }
        return try (0..<n).compactMap { try p[$0].map(keyValue) }
    }

    private static func rangeResponse(_ r: UnsafeMutablePointer<Etcdv3__RangeResponse>) throws -> EtcdRangeResponse {
        EtcdRangeResponse(header: try header(r.pointee.header), kvs: try keyValues(r.pointee.kvs, r.pointee.n_kvs), more: r.pointee.more != 0, count: r.pointee.count)
    }

    static func decodeRange(_ bytes: [UInt8]) throws -> EtcdRangeResponse {
        try decode(bytes, "RangeResponse", unpack: { etcdv3__range_response__unpack($0, $1, $2) }, free: { etcdv3__range_response__free_unpacked($0, $1) }) { try rangeResponse($0) }
    }

    static func decodePut(_ bytes: [UInt8]) throws -> EtcdResponseHeader {
        try decode(bytes, "PutResponse", unpack: { etcdv3__put_response__unpack($0, $1, $2) }, free: { etcdv3__put_response__free_unpacked($0, $1) }) { try header($0.pointee.header) }
    }

    static func decodeDelete(_ bytes: [UInt8]) throws -> (EtcdResponseHeader, Int64) {
        try decode(bytes, "DeleteRangeResponse", unpack: { etcdv3__delete_range_response__unpack($0, $1, $2) }, free: { etcdv3__delete_range_response__free_unpacked($0, $1) }) {
            (try header($0.pointee.header), $0.pointee.deleted)
        }
    }

    static func decodeTxn(_ bytes: [UInt8]) throws -> EtcdTxnResponse {
        try decode(bytes, "TxnResponse", unpack: { etcdv3__txn_response__unpack($0, $1, $2) }, free: { etcdv3__txn_response__free_unpacked($0, $1) }) { r in
            var results: [EtcdOperationResult] = []
            if let ops = r.pointee.responses {
                for i in 0..<r.pointee.n_responses {
                    guard let op = ops[i] else { continue }
                    switch op.pointee.response_case {
                    case ETCDV3__RESPONSE_OP__RESPONSE_RESPONSE_RANGE:
                        results.append(.range(try op.pointee.response_range.map { try rangeResponse($0).kvs } ?? []))
                    case ETCDV3__RESPONSE_OP__RESPONSE_RESPONSE_PUT:
                        results.append(.put)
                    case ETCDV3__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE:
                        results.append(.delete(deleted: op.pointee.response_delete_range?.pointee.deleted ?? 0))
                    default:
                        throw invalid("TxnResponse with an unexpected operation result")
                    }
                }
            }
            return EtcdTxnResponse(header: try header(r.pointee.header), succeeded: r.pointee.succeeded != 0, responses: results)
        }
    }

    static func decodeLeaseGrant(_ bytes: [UInt8]) throws -> (EtcdLease, String) {
        try decode(bytes, "LeaseGrantResponse", unpack: { etcdv3__lease_grant_response__unpack($0, $1, $2) }, free: { etcdv3__lease_grant_response__free_unpacked($0, $1) }) {
            (EtcdLease(id: $0.pointee.id, ttl: $0.pointee.ttl), string($0.pointee.error))
        }
    }

    static func decodeLeaseRevoke(_ bytes: [UInt8]) throws {
        try decode(bytes, "LeaseRevokeResponse", unpack: { etcdv3__lease_revoke_response__unpack($0, $1, $2) }, free: { etcdv3__lease_revoke_response__free_unpacked($0, $1) }) { _ in }
    }

    static func decodeLeaseKeepAlive(_ bytes: [UInt8]) throws -> EtcdLease {
        try decode(bytes, "LeaseKeepAliveResponse", unpack: { etcdv3__lease_keep_alive_response__unpack($0, $1, $2) }, free: { etcdv3__lease_keep_alive_response__free_unpacked($0, $1) }) {
            EtcdLease(id: $0.pointee.id, ttl: $0.pointee.ttl)
        }
    }

    static func decodeLeaseTimeToLive(_ bytes: [UInt8]) throws -> (ttl: Int64, grantedTTL: Int64) {
        try decode(bytes, "LeaseTimeToLiveResponse", unpack: { etcdv3__lease_time_to_live_response__unpack($0, $1, $2) }, free: { etcdv3__lease_time_to_live_response__free_unpacked($0, $1) }) {
            ($0.pointee.ttl, $0.pointee.grantedttl)
        }
    }

    struct WatchResponse {
        var header: EtcdResponseHeader
        var watchID: Int64
        var created: Bool
        var canceled: Bool
        var compactRevision: Int64
        var cancelReason: String
        var events: [EtcdWatchEvent]
    }

    static func decodeWatch(_ bytes: [UInt8]) throws -> WatchResponse {
        try decode(bytes, "WatchResponse", unpack: { etcdv3__watch_response__unpack($0, $1, $2) }, free: { etcdv3__watch_response__free_unpacked($0, $1) }) { r in
            var events: [EtcdWatchEvent] = []
            if let list = r.pointee.events {
                for i in 0..<r.pointee.n_events {
                    guard let e = list[i], let kv = e.pointee.kv else { continue }
                    events.append(EtcdWatchEvent(kind: e.pointee.type == ETCDV3__EVENT__EVENT_TYPE__DELETE ? .delete : .put, kv: try keyValue(kv)))
                }
            }
            return WatchResponse(header: try header(r.pointee.header), watchID: r.pointee.watch_id, created: r.pointee.created != 0,
                                 canceled: r.pointee.canceled != 0, compactRevision: r.pointee.compact_revision,
                                 cancelReason: string(r.pointee.cancel_reason), events: events)
        }
    }

    static func decodeStatus(_ bytes: [UInt8]) throws -> EtcdStatus {
        try decode(bytes, "StatusResponse", unpack: { etcdv3__status_response__unpack($0, $1, $2) }, free: { etcdv3__status_response__free_unpacked($0, $1) }) { r in
            EtcdStatus(header: try header(r.pointee.header), version: string(r.pointee.version), dbSize: r.pointee.dbsize,
                       leader: r.pointee.leader, raftIndex: r.pointee.raftindex, raftTerm: r.pointee.raftterm)
        }
    }

    static func decodeAuthenticate(_ bytes: [UInt8]) throws -> String {
        try decode(bytes, "AuthenticateResponse", unpack: { etcdv3__authenticate_response__unpack($0, $1, $2) }, free: { etcdv3__authenticate_response__free_unpacked($0, $1) }) {
            string($0.pointee.token)
        }
    }
}
