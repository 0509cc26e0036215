import CEtcdShim
import EtcdTesting
import Synchronization
import Testing

// Callbacks run on the client's poller thread with no shim lock held: they may start calls, send on
// streams, cancel and release handles without deadlocking.

/// Sends the next LeaseKeepAlive from each response's callback, `target` times, then half-closes.
private final class PingPong: @unchecked Sendable {
    let request: [UInt8]
    let target: Int
    let client: ShimClient
    let call = Mutex<UncheckedBox<OpaquePointer?>>(UncheckedBox(nil))
    let received = Atomic<Int>(0)
    let done = StreamState()

    init(client: ShimClient, request: [UInt8], target: Int) {
        self.client = client
        self.request = request
        self.target = target
    }

    func onMessage() {
        let n = received.add(1, ordering: .relaxed).newValue
        call.withLock { box in
            guard let p = box.value else { return }
            if n < target {
                _ = request.withUnsafeBufferPointer { etcd_shim_stream_send(p, $0.baseAddress, $0.count) }
            } else {
                etcd_shim_stream_close_send(p)
            }
        }
    }
}

/// Starts the next unary call from each completion, `remaining` times.
private final class Chain: @unchecked Sendable {
    let client: ShimClient
    let request: [UInt8]
    let remaining = Atomic<Int>(0)
    let statuses = Mutex<[Int32]>([])
    let finished = UnaryState()

    init(client: ShimClient, request: [UInt8], count: Int) {
        self.client = client
        self.request = request
        remaining.store(count, ordering: .relaxed)
    }

    func start() {
        let ctx = Unmanaged.passRetained(self).toOpaque()
        let call = request.withUnsafeBufferPointer { buf in
            etcd_shim_unary(client.raw, Method.range, buf.baseAddress, buf.count, nil, 10_000, { ctx, status, _, _, _ in
                let chain = Unmanaged<Chain>.fromOpaque(ctx!).takeRetainedValue()
                chain.statuses.withLock { $0.append(status) }
                if chain.remaining.subtract(1, ordering: .relaxed).newValue > 0 {
                    chain.start()   // on the poller thread
                } else {
                    chain.finished.complete(UnaryResult(status: 0, message: "", bytes: nil))
                }
            }, ctx)
        }
        etcd_shim_call_release(call)   // releasing from the poller thread, too
    }
}

@Suite("CEtcdShim: callbacks re-entering the API")
struct ShimReentrancyTests {
    @Test func unaryCallsStartedFromCallbacks() async throws {
        try await withSharedClient { client, _ in
            let chain = Chain(client: client, request: Requests.range(uniqueKey("chain")), count: 50)
            chain.start()
            _ = await chain.finished.wait()
            let statuses = chain.statuses.withLock { $0 }
            #expect(statuses.count == 50)
            #expect(statuses.allSatisfy { $0 == Code.ok })
        }
    }

    @Test func streamSendsFromTheMessageCallback() async throws {
        try await withSharedClient { client, _ in
            let grant = await unary(client, Method.leaseGrant, Requests.leaseGrant(ttl: 30))
            let lease = try #require(Responses.leaseGrant(grant.body))
            let pingPong = PingPong(client: client, request: Requests.leaseKeepAlive(lease.id), target: 25)
            let ctx = Unmanaged.passRetained(pingPong).toOpaque()
            let call = etcd_shim_stream_open(client.raw, Method.leaseKeepAlive, nil, { ctx, _, _ in
                Unmanaged<PingPong>.fromOpaque(ctx!).takeUnretainedValue().onMessage()
            }, { ctx, status, _ in
                let p = Unmanaged<PingPong>.fromOpaque(ctx!).takeRetainedValue()
                p.done.recordClosedForTest(status)
            }, ctx)
            let handle = UncheckedBox(call)
            pingPong.call.withLock { $0 = handle }
            #expect(pingPong.request.withUnsafeBufferPointer {
                etcd_shim_stream_send(handle.value, $0.baseAddress, $0.count)
            } == 0)
            #expect(await pingPong.done.waitClosed())
            #expect(pingPong.received.load(ordering: .relaxed) == 25)
            #expect(pingPong.done.snapshot.status == Code.ok)
            pingPong.call.withLock { box in
                if let p = box.value { etcd_shim_call_release(p) }
                box = UncheckedBox(nil)
            }
        }
    }
}
