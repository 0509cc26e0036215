import CEtcdShim
import EtcdTesting
import Foundation
import Synchronization
import Testing

// Helpers for driving the C API directly from Swift tests: a client wrapper, unary calls and streams whose
// C callbacks resume continuations or record into a mutex-guarded box, and protobuf-c encoding helpers.

// MARK: - gRPC status codes

enum Code {
    static let ok: Int32 = 0
    static let cancelled: Int32 = 1
    static let invalidArgument: Int32 = 3
    static let deadlineExceeded: Int32 = 4
    static let resourceExhausted: Int32 = 8
    static let unimplemented: Int32 = 12
    static let unavailable: Int32 = 14
    static let unauthenticated: Int32 = 16
}

// MARK: - Client

struct ShimClientOptions: Sendable {
    var target: String
    var useTLS = false
    var rootPEM: String?
    var certChainPEM: String?
    var privateKeyPEM: String?
    var serverNameOverride: String?
    var keepaliveTimeMs: Int32 = 0
    var keepaliveTimeoutMs: Int32 = 0
    var maxReceiveBytes: Int32 = 0
}

enum ShimError: Error, CustomStringConvertible {
    case create(String)
    var description: String {
        switch self {
        case .create(let message): "etcd_shim_client_create failed: \(message)"
        }
    }
}

/// Owns an `etcd_shim_client`. Destroy it with `destroy()` (off the cooperative pool: it blocks until every
/// callback has run).
final class ShimClient: @unchecked Sendable {
    let raw: OpaquePointer
    private let destroyed = Atomic<Bool>(false)

    init(_ options: ShimClientOptions) throws {
        var err = [CChar](repeating: 0, count: 256)
        let client: OpaquePointer? = withOptionalCStrings(
            [options.target, options.rootPEM, options.certChainPEM, options.privateKeyPEM, options.serverNameOverride]
        ) { p in
            var o = etcd_shim_options()
            o.target = p[0]
            o.use_tls = options.useTLS ? 1 : 0
            o.root_pem = p[1]
            o.cert_chain_pem = p[2]
            o.private_key_pem = p[3]
            o.server_name_override = p[4]
            o.keepalive_time_ms = options.keepaliveTimeMs
            o.keepalive_timeout_ms = options.keepaliveTimeoutMs
            o.max_receive_bytes = options.maxReceiveBytes
            return err.withUnsafeMutableBufferPointer { etcd_shim_client_create(&o, $0.baseAddress, $0.count) }
        }
        guard let client else { throw ShimError.create(cString(err)) }
        raw = client
    }

    convenience init(target: String) throws {
        try self.init(ShimClientOptions(target: target))
    }

    /// Destroys the client on a dedicated thread (never blocks Swift's cooperative pool).
    func destroy() async {
        guard !destroyed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let raw = UncheckedBox(raw)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let thread = Thread {
                etcd_shim_client_destroy(raw.value)
                continuation.resume()
            }
            thread.start()
        }
    }

    deinit {
        if !destroyed.load(ordering: .acquiring) { etcd_shim_client_destroy(raw) }
    }
}

/// The NUL-terminated string in a buffer.
func cString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Runs `body` with C strings for each (optional) string, `nil` staying `nil`.
func withOptionalCStrings<R>(_ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let copies = strings.map { $0.map { strdup($0)! } }
    defer { copies.forEach { free($0) } }
    return body(copies.map { $0.map { UnsafePointer($0) } })
}

// MARK: - A handle on a call

/// The caller's reference to an `etcd_shim_call` (released exactly once).
final class CallHandle: @unchecked Sendable {
    private let raw: Mutex<OpaquePointer?>

    init(_ raw: sending OpaquePointer?) { self.raw = Mutex(raw) }

    var isNull: Bool { raw.withLock { $0 == nil } }

    func cancel() { raw.withLock { if let p = $0 { etcd_shim_call_cancel(p) } } }

    func send(_ bytes: [UInt8]) -> Int32 {
        raw.withLock { p -> Int32 in
            guard let p else { return -1 }
            return bytes.withUnsafeBufferPointer { etcd_shim_stream_send(p, $0.baseAddress, $0.count) }
        }
    }

    func closeSend() { raw.withLock { if let p = $0 { etcd_shim_stream_close_send(p) } } }

    func release() {
        raw.withLock { p in
            if let call = p { etcd_shim_call_release(call) }
            p = nil
        }
    }

    deinit { release() }
}

// MARK: - Unary

struct UnaryResult: Sendable, CustomStringConvertible {
    var status: Int32
    var message: String
    var bytes: [UInt8]?
    /// The response body, or empty when there is none (decodes as the default message).
    var body: [UInt8] { bytes ?? [] }
    var description: String { "status \(status) \"\(message)\" (\(bytes.map { "\($0.count) bytes" } ?? "no body"))" }
}

/// The state of one unary call: completes once, from the poller thread (or synchronously on start failure).
final class UnaryState: @unchecked Sendable {
    private struct Inner {
        var result: UnaryResult?
        var waiter: CheckedContinuation<UnaryResult, Never>?
        var calls = 0
    }
    private let inner = Mutex(Inner())

    func complete(_ result: UnaryResult) {
        let waiter = inner.withLock { inner -> CheckedContinuation<UnaryResult, Never>? in
            inner.calls += 1
            guard inner.result == nil else { return nil }
            inner.result = result
            defer { inner.waiter = nil }
            return inner.waiter
        }
        waiter?.resume(returning: result)
    }

    var callbackCount: Int { inner.withLock { $0.calls } }
    var result: UnaryResult? { inner.withLock { $0.result } }

    func wait() async -> UnaryResult {
        await withCheckedContinuation { (c: CheckedContinuation<UnaryResult, Never>) in
            let ready = inner.withLock { inner -> UnaryResult? in
                if let r = inner.result { return r }
                inner.waiter = c
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }
}

private let unaryCallback: etcd_shim_unary_cb = { ctx, status, message, bytes, len in
    let state = Unmanaged<UnaryState>.fromOpaque(ctx!).takeRetainedValue()
    let body = bytes.map { Array(UnsafeBufferPointer(start: $0, count: len)) }
    state.complete(UnaryResult(status: status, message: message.map { String(cString: $0) } ?? "<NULL>", bytes: body))
}

/// Starts a unary call; returns its state and handle (the handle may be NULL when the start failed).
func startUnary(
    _ client: ShimClient, _ method: String, _ request: [UInt8], token: String? = nil, timeoutMs: Int64 = 10_000
) -> (UnaryState, CallHandle) {
    let state = UnaryState()
    let ctx = Unmanaged.passRetained(state).toOpaque()
    let call = withOptionalCStrings([method, token]) { p in
        request.withUnsafeBufferPointer { buf in
            etcd_shim_unary(client.raw, p[0], buf.baseAddress, buf.count, p[1], timeoutMs, unaryCallback, ctx)
        }
    }
    return (state, CallHandle(call))
}

/// A unary call awaited to completion.
func unary(
    _ client: ShimClient, _ method: String, _ request: [UInt8], token: String? = nil, timeoutMs: Int64 = 10_000
) async -> UnaryResult {
    let (state, handle) = startUnary(client, method, request, token: token, timeoutMs: timeoutMs)
    handle.release()
    return await state.wait()
}

// MARK: - Streams

/// What a stream delivered, recorded from the poller thread; `wait(until:)` awaits a condition.
final class StreamState: @unchecked Sendable {
    struct Snapshot: Sendable {
        var messages: [[UInt8]] = []
        var closedCount = 0
        var status: Int32?
        var message: String?
        var messagesAfterClose = 0
    }
    private struct Inner {
        var snapshot = Snapshot()
        var waiters: [(id: Int, predicate: @Sendable (Snapshot) -> Bool, continuation: CheckedContinuation<Bool, Never>)] = []
        var nextID = 0
    }
    private let inner = Mutex(Inner())

    var snapshot: Snapshot { inner.withLock { $0.snapshot } }

    func update(_ change: (inout Snapshot) -> Void) {
        let ready = inner.withLock { inner -> [CheckedContinuation<Bool, Never>] in
            change(&inner.snapshot)
            var ready: [CheckedContinuation<Bool, Never>] = []
            let snapshot = inner.snapshot
            inner.waiters.removeAll { waiter in
                guard waiter.predicate(snapshot) else { return false }
                ready.append(waiter.continuation)
                return true
            }
            return ready
        }
        ready.forEach { $0.resume(returning: true) }
    }

    /// Waits until `predicate` holds, at most `timeout`. Returns whether it holds.
    func wait(timeout: Duration = .seconds(20), until predicate: @escaping @Sendable (Snapshot) -> Bool) async -> Bool {
        let id = inner.withLock { inner -> Int in
            inner.nextID += 1
            return inner.nextID
        }
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            self?.expire(id)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
            let now = inner.withLock { inner -> Bool in
                if predicate(inner.snapshot) { return true }
                inner.waiters.append((id, predicate, c))
                return false
            }
            if now { c.resume(returning: true) }
        }
    }

    private func expire(_ id: Int) {
        let c = inner.withLock { inner -> CheckedContinuation<Bool, Never>? in
            guard let index = inner.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return inner.waiters.remove(at: index).continuation
        }
        c?.resume(returning: false)
    }

    func waitClosed(timeout: Duration = .seconds(20)) async -> Bool {
        await wait(timeout: timeout) { $0.closedCount > 0 }
    }
}

private let streamMessageCallback: etcd_shim_stream_message_cb = { ctx, bytes, len in
    let state = Unmanaged<StreamState>.fromOpaque(ctx!).takeUnretainedValue()
    let body = bytes.map { Array(UnsafeBufferPointer(start: $0, count: len)) } ?? []
    state.update { s in
        if s.closedCount > 0 { s.messagesAfterClose += 1 }
        s.messages.append(body)
    }
}

private let streamClosedCallback: etcd_shim_stream_closed_cb = { ctx, status, message in
    // The closed callback is the last one: drop the reference taken at open.
    let state = Unmanaged<StreamState>.fromOpaque(ctx!).takeRetainedValue()
    let text = message.map { String(cString: $0) } ?? "<NULL>"
    state.update { s in
        s.closedCount += 1
        s.status = status
        s.message = text
    }
}

func openStream(_ client: ShimClient, _ method: String, token: String? = nil) -> (StreamState, CallHandle) {
    let state = StreamState()
    let ctx = Unmanaged.passRetained(state).toOpaque()
    let call = withOptionalCStrings([method, token]) { p in
        etcd_shim_stream_open(client.raw, p[0], p[1], streamMessageCallback, streamClosedCallback, ctx)
    }
    return (state, CallHandle(call))
}

// MARK: - protobuf-c

/// Runs `body` with a `ProtobufCBinaryData` viewing `bytes` (valid only inside).
func withBinary<R>(_ bytes: [UInt8], _ body: (ProtobufCBinaryData) -> R) -> R {
    var copy = bytes
    return copy.withUnsafeMutableBufferPointer { buf in
        body(ProtobufCBinaryData(len: buf.count, data: buf.baseAddress))
    }
}

func packed(_ message: UnsafePointer<ProtobufCMessage>) -> [UInt8] {
    let size = protobuf_c_message_get_packed_size(message)
    var out = [UInt8](repeating: 0, count: size)
    let written = out.withUnsafeMutableBufferPointer { protobuf_c_message_pack(message, $0.baseAddress) }
    precondition(written == size)
    return out
}

func packMessage<M>(_ message: inout M) -> [UInt8] {
    withUnsafePointer(to: &message) { p in
        p.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { packed($0) }
    }
}

func bytes(_ data: ProtobufCBinaryData) -> [UInt8] {
    guard data.len > 0, let p = data.data else { return [] }
    return Array(UnsafeBufferPointer(start: p, count: data.len))
}

extension String {
    var utf8Bytes: [UInt8] { Array(utf8) }
}

enum Requests {
    static func range(_ key: String, serializable: Bool = false) -> [UInt8] {
        withBinary(key.utf8Bytes) { k in
            var r = Etcdv3__RangeRequest()
            etcdv3__range_request__init(&r)
            r.key = k
            r.serializable = serializable ? 1 : 0
            return packMessage(&r)
        }
    }

    static func put(_ key: String, _ value: [UInt8], lease: Int64 = 0) -> [UInt8] {
        withBinary(key.utf8Bytes) { k in
            withBinary(value) { v in
                var r = Etcdv3__PutRequest()
                etcdv3__put_request__init(&r)
                r.key = k
                r.value = v
                r.lease = lease
                return packMessage(&r)
            }
        }
    }

    /// if version(key) == version { put(key, value) } else { range(key) }
    static func casPut(_ key: String, expectVersion: Int64, value: String) -> [UInt8] {
        withBinary(key.utf8Bytes) { k in
            withBinary(value.utf8Bytes) { v in
                var cmp = Etcdv3__Compare()
                etcdv3__compare__init(&cmp)
                cmp.result = ETCDV3__COMPARE__COMPARE_RESULT__EQUAL
                cmp.target = ETCDV3__COMPARE__COMPARE_TARGET__VERSION
                cmp.key = k
                cmp.target_union_case = ETCDV3__COMPARE__TARGET_UNION_VERSION
                cmp.version = expectVersion
                var put = Etcdv3__PutRequest()
                etcdv3__put_request__init(&put)
                put.key = k
                put.value = v
                var range = Etcdv3__RangeRequest()
                etcdv3__range_request__init(&range)
                range.key = k
                return withUnsafeMutablePointer(to: &cmp) { cmpP in
                    withUnsafeMutablePointer(to: &put) { putP in
                        withUnsafeMutablePointer(to: &range) { rangeP in
                            var success = Etcdv3__RequestOp()
                            etcdv3__request_op__init(&success)
                            success.request_case = ETCDV3__REQUEST_OP__REQUEST_REQUEST_PUT
                            success.request_put = putP
                            var failure = Etcdv3__RequestOp()
                            etcdv3__request_op__init(&failure)
                            failure.request_case = ETCDV3__REQUEST_OP__REQUEST_REQUEST_RANGE
                            failure.request_range = rangeP
                            return withUnsafeMutablePointer(to: &success) { sP in
                                withUnsafeMutablePointer(to: &failure) { fP in
                                    var compares: [UnsafeMutablePointer<Etcdv3__Compare>?] = [cmpP]
                                    var successes: [UnsafeMutablePointer<Etcdv3__RequestOp>?] = [sP]
                                    var failures: [UnsafeMutablePointer<Etcdv3__RequestOp>?] = [fP]
                                    return compares.withUnsafeMutableBufferPointer { c in
                                        successes.withUnsafeMutableBufferPointer { s in
                                            failures.withUnsafeMutableBufferPointer { f in
                                                var txn = Etcdv3__TxnRequest()
                                                etcdv3__txn_request__init(&txn)
                                                txn.n_compare = 1
                                                txn.compare = c.baseAddress
                                                txn.n_success = 1
                                                txn.success = s.baseAddress
                                                txn.n_failure = 1
                                                txn.failure = f.baseAddress
                                                return packMessage(&txn)
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    static func watchCreate(_ key: String, startRevision: Int64 = 0) -> [UInt8] {
        withBinary(key.utf8Bytes) { k in
            var create = Etcdv3__WatchCreateRequest()
            etcdv3__watch_create_request__init(&create)
            create.key = k
            create.start_revision = startRevision
            return withUnsafeMutablePointer(to: &create) { cp in
                var w = Etcdv3__WatchRequest()
                etcdv3__watch_request__init(&w)
                w.request_union_case = ETCDV3__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST
                w.create_request = cp
                return packMessage(&w)
            }
        }
    }

    static func leaseGrant(ttl: Int64) -> [UInt8] {
        var r = Etcdv3__LeaseGrantRequest()
        etcdv3__lease_grant_request__init(&r)
        r.ttl = ttl
        return packMessage(&r)
    }

    static func leaseKeepAlive(_ id: Int64) -> [UInt8] {
        var r = Etcdv3__LeaseKeepAliveRequest()
        etcdv3__lease_keep_alive_request__init(&r)
        r.id = id
        return packMessage(&r)
    }

    static func authenticate(_ name: String, _ password: String) -> [UInt8] {
        withOptionalCStrings([name, password]) { p in
            var r = Etcdv3__AuthenticateRequest()
            etcdv3__authenticate_request__init(&r)
            r.name = UnsafeMutablePointer(mutating: p[0])
            r.password = UnsafeMutablePointer(mutating: p[1])
            return packMessage(&r)
        }
    }
}

/// Decoded views of responses (copied out of the protobuf-c structs, which are freed right away).
enum Responses {
    struct KV: Sendable, Equatable {
        var key: String
        var value: [UInt8]
        var modRevision: Int64
        var version: Int64
    }

    static func kv(_ p: UnsafeMutablePointer<Etcdv3__KeyValue>) -> KV {
        KV(key: String(decoding: bytes(p.pointee.key), as: UTF8.self), value: bytes(p.pointee.value),
           modRevision: p.pointee.mod_revision, version: p.pointee.version)
    }

    static func range(_ data: [UInt8]) -> (revision: Int64, kvs: [KV])? {
        guard let r = etcdv3__range_response__unpack(nil, data.count, data) else { return nil }
        defer { etcdv3__range_response__free_unpacked(r, nil) }
        let kvs = (0..<r.pointee.n_kvs).map { kv(r.pointee.kvs[$0]!) }
        return (r.pointee.header?.pointee.revision ?? 0, kvs)
    }

    static func putRevision(_ data: [UInt8]) -> Int64? {
        guard let r = etcdv3__put_response__unpack(nil, data.count, data) else { return nil }
        defer { etcdv3__put_response__free_unpacked(r, nil) }
        return r.pointee.header?.pointee.revision
    }

    static func txnSucceeded(_ data: [UInt8]) -> Bool? {
        guard let r = etcdv3__txn_response__unpack(nil, data.count, data) else { return nil }
        defer { etcdv3__txn_response__free_unpacked(r, nil) }
        return r.pointee.succeeded != 0
    }

    struct Watch: Sendable {
        var watchID: Int64
        var created: Bool
        var canceled: Bool
        var events: [(type: Int32, kv: KV)]
    }

    static func watch(_ data: [UInt8]) -> Watch? {
        guard let r = etcdv3__watch_response__unpack(nil, data.count, data) else { return nil }
        defer { etcdv3__watch_response__free_unpacked(r, nil) }
        let events = (0..<r.pointee.n_events).map { i -> (type: Int32, kv: KV) in
            let e = r.pointee.events[i]!
            return (Int32(e.pointee.type.rawValue), kv(e.pointee.kv))
        }
        return Watch(watchID: r.pointee.watch_id, created: r.pointee.created != 0,
                     canceled: r.pointee.canceled != 0, events: events)
    }

    static func leaseGrant(_ data: [UInt8]) -> (id: Int64, ttl: Int64)? {
        guard let r = etcdv3__lease_grant_response__unpack(nil, data.count, data) else { return nil }
        defer { etcdv3__lease_grant_response__free_unpacked(r, nil) }
        return (r.pointee.id, r.pointee.ttl)
    }

    static func leaseKeepAlive(_ data: [UInt8]) -> (id: Int64, ttl: Int64)? {
        guard let r = etcdv3__lease_keep_alive_response__unpack(nil, data.count, data) else { return nil }
        defer { etcdv3__lease_keep_alive_response__free_unpacked(r, nil) }
        return (r.pointee.id, r.pointee.ttl)
    }

    static func token(_ data: [UInt8]) -> String? {
        guard let r = etcdv3__authenticate_response__unpack(nil, data.count, data) else { return nil }
        defer { etcdv3__authenticate_response__free_unpacked(r, nil) }
        return r.pointee.token.map { String(cString: $0) }
    }
}

enum Method {
    static let range = "/etcdserverpb.KV/Range"
    static let put = "/etcdserverpb.KV/Put"
    static let txn = "/etcdserverpb.KV/Txn"
    static let watch = "/etcdserverpb.Watch/Watch"
    static let leaseGrant = "/etcdserverpb.Lease/LeaseGrant"
    static let leaseKeepAlive = "/etcdserverpb.Lease/LeaseKeepAlive"
    static let authenticate = "/etcdserverpb.Auth/Authenticate"
    static let status = "/etcdserverpb.Maintenance/Status"
}

/// A unique key prefix per test.
func uniqueKey(_ name: String) -> String { "shim-tests/\(name)/\(UUID().uuidString.prefix(8))" }

func elapsed(since start: ContinuousClock.Instant) -> Duration { ContinuousClock.now - start }

extension Duration {
    var milliseconds: Double {
        Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15
    }
}


/// Runs `body` with a fresh client to the shared etcd, destroying it afterwards.
func withSharedClient<R>(_ body: (ShimClient, EtcdServer) async throws -> R) async throws -> R {
    try await SharedEtcdServer.withServer { server in
        let client = try ShimClient(target: server.endpoint)
        do {
            let r = try await body(client, server)
            await client.destroy()
            return r
        } catch {
            await client.destroy()
            throw error
        }
    }
}

/// Runs `body` with its own etcd (for tests that pause, kill or reconfigure it) and a client to it.
func withOwnServer<R>(
    name: String = "cetcdshim", tls: EtcdTLS? = nil, _ body: (EtcdServer) async throws -> R
) async throws -> R {
    try await EtcdServer.withServer(name: name, tls: tls) { server in
        do {
            let r = try await body(server)
            server.resume()
            return r
        } catch {
            server.resume()
            throw error
        }
    }
}

