// The only file that calls the CEtcdShim transport API: C callbacks, retained boxes and raw pointers
// stay here. Callbacks run on the shim's poller thread and only resume continuations or yield into
// streams; nothing blocks Swift's cooperative pool.
import CEtcdShim
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A `TaskExecutor` that runs tasks on the shim's poller thread, inside the callback that resumed them.
///
/// A task that prefers this executor (`withTaskExecutorPreference(client.executor)`) and awaits a unary
/// reply is, when the poller thread resumes its continuation, enqueued here and run right away on the same
/// thread, instead of waking a thread of the global pool (one thread wake-up per round trip instead of
/// two). Jobs enqueued from any other thread are forwarded to the global concurrent executor, so nothing
/// ever waits for the poller.
final class PollerExecutor: TaskExecutor, @unchecked Sendable {
    // Only the poller thread touches `pending` (inside a callback); the lock is cheap insurance.
    private let pending = Mutex<[UnownedJob]>([])

    func enqueue(_ job: consuming ExecutorJob) {
        if PollerExecutor.current() === self {
            let unowned = UnownedJob(job)
            pending.withLock { $0.append(unowned) }
        } else {
            globalConcurrentExecutor.enqueue(job)
        }
    }

    /// Marks the current thread as this executor's poller thread while `body` runs (a callback), then runs
    /// every job enqueued meanwhile — on this thread, before returning to the shim.
    func runCallback(_ body: () -> Void) {
        let previous = pthread_getspecific(pollerKey)
        pthread_setspecific(pollerKey, Unmanaged.passUnretained(self).toOpaque())
        body()
        while let job = pending.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
        pthread_setspecific(pollerKey, previous)
    }

    /// The executor whose callback is running on this thread, if any.
    static func current() -> PollerExecutor? {
        pthread_getspecific(pollerKey).map { Unmanaged<PollerExecutor>.fromOpaque($0).takeUnretainedValue() }
    }

    /// `true` on a poller thread, inside a callback.
    static var onPollerThread: Bool { pthread_getspecific(pollerKey) != nil }
}

private let pollerKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key, nil)
    return key
}()

/// Transport options handed to the C shim.
struct ShimOptions: Sendable {
    var target: String
    var useTLS = false
    var rootPEM: String?
    var certChainPEM: String?
    var privateKeyPEM: String?
    var serverNameOverride: String?
    var keepaliveTimeMilliseconds: Int32 = 0
    var keepaliveTimeoutMilliseconds: Int32 = 0
    var maxReceiveBytes: Int32 = 0
}

/// One gRPC channel + completion queue + poller thread (a C `etcd_shim_client`).
final class ShimTransport: @unchecked Sendable {
    // The C client is thread-safe; `closed` guards against use after destroy.
    private let client: OpaquePointer
    private let closed = Mutex(false)
    /// Set by ``retire()``: calls and streams this closes end with `unavailable`, not `cancelled`.
    private let retirement = Retirement()
    let executor = PollerExecutor()

    init(_ options: ShimOptions) throws {
        var errorBuffer = [CChar](repeating: 0, count: 512)
        let created: OpaquePointer? = withCStrings([options.target, options.rootPEM, options.certChainPEM, options.privateKeyPEM, options.serverNameOverride]) { p in
            var o = etcd_shim_options()
            o.target = p[0]
            o.use_tls = options.useTLS ? 1 : 0
            o.root_pem = p[1]
            o.cert_chain_pem = p[2]
            o.private_key_pem = p[3]
            o.server_name_override = p[4]
            o.keepalive_time_ms = options.keepaliveTimeMilliseconds
            o.keepalive_timeout_ms = options.keepaliveTimeoutMilliseconds
            o.max_receive_bytes = options.maxReceiveBytes
            return errorBuffer.withUnsafeMutableBufferPointer { eb in
                etcd_shim_client_create(&o, eb.baseAddress, eb.count)
            }
        }
        guard let created else {
            let message = errorBuffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw EtcdError(code: .invalidArgument, message: "cannot create an etcd client for \(options.target): \(message)")
        }
        client = created
    }

    /// Cancels every call, waits for their callbacks and frees the channel. Idempotent.
    func close() {
        let wasClosed = closed.withLock { c -> Bool in
            defer { c = true }
            return c
        }
        guard !wasClosed else { return }
        if PollerExecutor.onPollerThread {
            // Destroying joins the poller thread: never from the poller thread itself.
            let client = UncheckedPointer(client)
            DispatchQueue.global().async { etcd_shim_client_destroy(client.pointer) }
        } else {
            etcd_shim_client_destroy(client)
        }
    }

    /// Closes this transport because the client replaced it (off the calling thread: destroying waits for
    /// every callback). Calls and streams still on it end with ``EtcdError/Code/unavailable``.
    func retire() {
        retirement.retired.store(true, ordering: .sequentiallyConsistent)
        let wasClosed = closed.withLock { c -> Bool in
            defer { c = true }
            return c
        }
        guard !wasClosed else { return }
        let client = UncheckedPointer(client)
        DispatchQueue.global().async { etcd_shim_client_destroy(client.pointer) }
    }

    /// The error for a call or stream that finds this transport closed.
    private var closedError: EtcdError {
        retirement.retired.load(ordering: .sequentiallyConsistent) ? Retirement.error : EtcdError(code: .closed, message: "the etcd client is closed")
    }

    deinit { close() }

    /// One unary call; cancelling the task cancels the gRPC call.
    func unary(_ method: String, _ request: [UInt8], token: String?, timeout: Duration?) async throws -> [UInt8] {
        if closed.withLock({ $0 }) { throw closedError }
        let box = UnaryBox(executor: executor, retirement: retirement)
        let timeoutMs: Int64 = timeout.map { max(1, $0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000) } ?? 0
        // A caller that prefers `executor` is resumed on the poller thread itself (see PollerExecutor); others
        // are resumed on their own executor as usual. (Preferring it only around this await would not help:
        // leaving the scope hops back to the global pool, the very wake-up it is meant to save.)
        let result: Result<[UInt8], EtcdError> = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<[UInt8], EtcdError>, Never>) in
                box.continuation = continuation
                let context = Unmanaged.passRetained(box).toOpaque()
                let call = request.withUnsafeBufferPointer { rp in
                    withOptionalCString(token) { tp in
                        etcd_shim_unary(client, method, rp.baseAddress, rp.count, tp, timeoutMs, unaryCallback, context)
                    }
                }
                box.started(call)
            }
        } onCancel: {
            box.cancel()
        }
        box.finished()
        return try result.get()
    }

    /// Opens a bidirectional stream. Messages arrive on the returned stream, which finishes (or throws the
    /// call's status) when the gRPC stream ends. Ending iteration cancels the call.
    func stream(_ method: String, token: String?) -> ShimStream {
        let (messages, continuation) = AsyncThrowingStream.makeStream(of: [UInt8].self, throwing: (any Error).self, bufferingPolicy: .unbounded)
        let box = StreamBox(continuation: continuation, retirement: retirement)
        if closed.withLock({ $0 }) {
            continuation.finish(throwing: closedError)
            return ShimStream(box: box, messages: messages)
        }
        let context = Unmanaged.passRetained(box).toOpaque()
        let call = withOptionalCString(token) { tp in
            etcd_shim_stream_open(client, method, tp, streamMessageCallback, streamClosedCallback, context)
        }
        box.started(call)
        continuation.onTermination = { _ in box.cancel() }
        return ShimStream(box: box, messages: messages)
    }
}

/// A bidirectional stream opened by ``ShimTransport/stream(_:token:)``.
struct ShimStream: Sendable {
    fileprivate let box: StreamBox
    /// Messages received, in order; finishes with the call's status.
    let messages: AsyncThrowingStream<[UInt8], any Error>

    /// Queues a message; `false` when the stream has ended.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool { box.send(bytes) }
    /// Half-closes the sending side.
    func closeSend() { box.closeSend() }
    /// Cancels the call.
    func cancel() { box.cancel() }
}

private final class UnaryBox: @unchecked Sendable {
    // `continuation` is set before the call starts and read once by the callback.
    var continuation: CheckedContinuation<Result<[UInt8], EtcdError>, Never>?
    let executor: PollerExecutor
    let retirement: Retirement
    init(executor: PollerExecutor, retirement: Retirement) {
        self.executor = executor
        self.retirement = retirement
    }
    private let state = Mutex<(call: OpaquePointer?, cancelled: Bool, released: Bool)>((nil, false, false))

    func started(_ call: OpaquePointer?) {
        let cancelNow = state.withLock { s -> Bool in
            s.call = call
            return s.cancelled
        }
        if cancelNow, let call { etcd_shim_call_cancel(call) }
    }

    func cancel() {
        state.withLock { s in
            s.cancelled = true
            if let call = s.call, !s.released { etcd_shim_call_cancel(call) }
        }
    }

    /// The task cancelled this call (as opposed to the transport closing under it).
    var cancelledByCaller: Bool { state.withLock { $0.cancelled } }

    func finished() {
        state.withLock { s in
            if let call = s.call, !s.released { etcd_shim_call_release(call) }
            s.released = true
        }
    }
}

private let unaryCallback: etcd_shim_unary_cb = { context, status, message, bytes, length in
    let box = Unmanaged<UnaryBox>.fromOpaque(context!).takeRetainedValue()
    let result: Result<[UInt8], EtcdError>
    if status == 0 {
        result = .success(bytes.map { Array(UnsafeBufferPointer(start: $0, count: length)) } ?? [])
    } else {
        result = .failure(box.retirement.error(grpcStatus: status, message: message, cancelledByCaller: box.cancelledByCaller))
    }
    let continuation = box.continuation
    box.continuation = nil
    box.executor.runCallback { continuation?.resume(returning: result) }
}

fileprivate final class StreamBox: @unchecked Sendable {
    let continuation: AsyncThrowingStream<[UInt8], any Error>.Continuation
    let retirement: Retirement
    private let state = Mutex<(call: OpaquePointer?, cancelled: Bool, ended: Bool)>((nil, false, false))

    init(continuation: AsyncThrowingStream<[UInt8], any Error>.Continuation, retirement: Retirement) {
        self.continuation = continuation
        self.retirement = retirement
    }

    /// The consumer cancelled this stream (as opposed to the transport closing under it).
    var cancelledByCaller: Bool { state.withLock { $0.cancelled } }

    func started(_ call: OpaquePointer?) {
        state.withLock { s in
            guard let call else { return }
            if s.ended {   // the stream already ended on the poller thread
                etcd_shim_call_release(call)
                return
            }
            s.call = call
            if s.cancelled { etcd_shim_call_cancel(call) }
        }
    }

    func send(_ bytes: [UInt8]) -> Bool {
        state.withLock { s in
            guard let call = s.call, !s.ended, !s.cancelled else { return false }
            return bytes.withUnsafeBufferPointer { etcd_shim_stream_send(call, $0.baseAddress, $0.count) } == 0
        }
    }

    func closeSend() {
        state.withLock { s in
            if let call = s.call, !s.ended { etcd_shim_stream_close_send(call) }
        }
    }

    func cancel() {
        state.withLock { s in
            s.cancelled = true
            if let call = s.call, !s.ended { etcd_shim_call_cancel(call) }
        }
    }

    /// Called once from the closed callback: drops the handle.
    func ended() {
        state.withLock { s in
            s.ended = true
            if let call = s.call { etcd_shim_call_release(call) }
            s.call = nil
        }
    }
}

private let streamMessageCallback: etcd_shim_stream_message_cb = { context, bytes, length in
    let box = Unmanaged<StreamBox>.fromOpaque(context!).takeUnretainedValue()
    box.continuation.yield(bytes.map { Array(UnsafeBufferPointer(start: $0, count: length)) } ?? [])
}

private let streamClosedCallback: etcd_shim_stream_closed_cb = { context, status, message in
    let box = Unmanaged<StreamBox>.fromOpaque(context!).takeRetainedValue()
    if status == 0 {
        box.continuation.finish()
    } else {
        box.continuation.finish(throwing: box.retirement.error(grpcStatus: status, message: message, cancelledByCaller: box.cancelledByCaller))
    }
    box.ended()
}

/// Whether a transport was retired by its client, shared with its calls' boxes.
final class Retirement: Sendable {
    let retired = Atomic<Bool>(false)

    static let error = EtcdError(code: .unavailable, grpcStatus: 14,
                                 message: "the connection to etcd was replaced after a request on it timed out")

    /// The error for a finished call: CANCELLED because the transport was retired reads as `unavailable`.
    func error(grpcStatus status: Int32, message: UnsafePointer<CChar>?, cancelledByCaller: Bool) -> EtcdError {
        if status == 1 && !cancelledByCaller && retired.load(ordering: .sequentiallyConsistent) { return Self.error }
        return EtcdError(grpcStatus: status, message: message.map { String(cString: $0) } ?? "")
    }
}

private struct UncheckedPointer: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
}

private func withOptionalCString<R>(_ s: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let s else { return body(nil) }
    return s.withCString { body($0) }
}

private func withCStrings<R>(_ strings: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0)! } }
    defer { copies.forEach { free($0) } }
    return body(copies.map { $0.map { UnsafePointer($0) } })
}
