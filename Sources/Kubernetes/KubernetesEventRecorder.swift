import Logging
import Synchronization

/// Sends core `v1` Events in the background, like client-go's event recorder: ``record(_:namespace:)`` queues
/// the Event and returns at once; one background task creates the queued Events one after the other. A slow,
/// hung or refusing events endpoint therefore never delays the caller (a leader taking over or renewing).
///
/// The queue is bounded (``capacity``, client-go's broadcaster keeps 1000): when it is full, new Events are
/// dropped and logged at debug level. Failures to create an Event are logged at debug level and never retried.
/// Events are best-effort.
///
/// Every ``KubernetesClient`` has one (``KubernetesClient/events``); ``KubernetesClient/shutdown()`` gives the
/// Events still queued up to one request timeout to be sent, then drops the rest.
public final class KubernetesEventRecorder: Sendable {
    /// How many Events may wait to be sent before new ones are dropped.
    public let capacity: Int

    private struct Queued: Sendable {
        var event: CoreEvent
        var namespace: String
    }

    private struct State {
        var continuation: AsyncStream<Queued>.Continuation?
        var sender: Task<Void, Never>?
        var pending = 0
        var dropped = 0
        var sent = 0
        var failed = 0
        var closed = false
    }

    private let state = Mutex(State())
    private let send: @Sendable (CoreEvent, String) async throws -> Void
    private let logger: Logger

    /// Creates a recorder that creates each Event with `send(event, namespace)`.
    init(capacity: Int, logger: Logger, send: @escaping @Sendable (CoreEvent, String) async throws -> Void) {
        self.capacity = max(1, capacity)
        self.logger = logger
        self.send = send
    }

    /// Queues `event` for creation in `namespace` and returns at once.
    ///
    /// - Returns: `false` when the Event was dropped: the queue is full, or the client is shut down.
    @discardableResult
    public func record(_ event: CoreEvent, namespace: String) -> Bool {
        let item = Queued(event: event, namespace: namespace)
        let accepted: Bool = state.withLock { state in
            guard !state.closed else { return false }
            guard state.pending < capacity else {
                state.dropped += 1
                return false
            }
            if state.continuation == nil { start(&state) }
            state.pending += 1
            state.continuation?.yield(item)
            return true
        }
        if !accepted {
            logger.debug("dropped an Event: the event queue is full or closed", metadata: [
                "k8s.event.reason": "\(event.reason ?? "")", "k8s.event.message": "\(event.message ?? "")",
                "k8s.event.queue_capacity": "\(capacity)",
            ])
        }
        return accepted
    }

    /// Events queued and not yet sent (or failed).
    public var pendingCount: Int { state.withLock { $0.pending } }
    /// Events dropped because the queue was full or closed.
    public var droppedCount: Int { state.withLock { $0.dropped } }
    /// Events the API server created.
    public var sentCount: Int { state.withLock { $0.sent } }
    /// Events whose creation failed (logged at debug level).
    public var failedCount: Int { state.withLock { $0.failed } }

    /// Starts the sender (called under the lock on the first Event).
    private func start(_ state: inout State) {
        let (stream, continuation) = AsyncStream.makeStream(of: Queued.self, bufferingPolicy: .unbounded)
        state.continuation = continuation
        let send = self.send
        let logger = self.logger
        state.sender = Task { [weak self] in
            for await item in stream {
                var succeeded = false
                do {
                    try await send(item.event, item.namespace)
                    succeeded = true
                } catch {
                    logger.debug("could not record an Event", metadata: [
                        "k8s.event.reason": "\(item.event.reason ?? "")", "k8s.event.message": "\(item.event.message ?? "")",
                        "k8s.error": "\(error)",
                    ])
                }
                guard let self else { continue }
                self.state.withLock { state in
                    state.pending -= 1
                    if succeeded { state.sent += 1 } else { state.failed += 1 }
                }
            }
        }
    }

    /// Stops accepting Events, gives the queued ones up to `grace` to be sent, then cancels the rest.
    func shutdown(grace: Duration) async {
        let sender = state.withLock { state -> Task<Void, Never>? in
            state.closed = true
            state.continuation?.finish()
            return state.sender
        }
        guard let sender else { return }
        let drained = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await sender.value
                return true
            }
            group.addTask {
                try? await Task.sleep(for: grace)
                return false
            }
            let first = await group.next() ?? false
            if !first { sender.cancel() }
            group.cancelAll()
            return first
        }
        if !drained {
            logger.debug("Events still queued at shutdown were dropped", metadata: ["k8s.event.grace": "\(grace)"])
        }
    }
}
