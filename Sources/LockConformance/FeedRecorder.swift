import Synchronization

/// Consumes a change feed in the background and keeps what it delivered, so that a check can await a condition on
/// the elements (bounded by real time) instead of polling for it.
final class FeedRecorder<Element: Sendable>: Sendable {
    private struct Waiter {
        var condition: @Sendable ([Element]) -> Bool
        var continuation: CheckedContinuation<Bool, Never>
    }

    private struct State {
        var elements: [Element] = []
        var waiters: [Int: Waiter] = [:]
        /// Waiters whose time ran out (or whose task was cancelled) before they registered.
        var expired: Set<Int> = []
        var nextWaiter = 0
    }

    private let state = Mutex(State())
    private let consumer = Mutex<Task<Void, Never>?>(nil)

    /// Starts consuming `feed`.
    init(_ feed: AsyncStream<Element>) {
        let task = Task { [weak self] in
            for await element in feed {
                guard let self else { return }
                self.append(element)
            }
        }
        consumer.withLock { $0 = task }
    }

    deinit { stop() }

    /// Everything delivered so far.
    var all: [Element] { state.withLock { $0.elements } }

    /// Stops consuming the feed.
    func stop() { consumer.withLock { $0 }?.cancel() }

    /// Waits until `condition` holds for the elements delivered so far, for at most `timeout` of real time.
    /// - Returns: whether it held.
    func wait(timeout: Duration, until condition: @escaping @Sendable ([Element]) -> Bool) async -> Bool {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            self?.resume(id, with: false)
        }
        defer { timer.cancel() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let now = state.withLock { state -> Bool? in
                    if condition(state.elements) { return true }
                    if state.expired.remove(id) != nil { return false }
                    state.waiters[id] = Waiter(condition: condition, continuation: continuation)
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            resume(id, with: false)
        }
    }

    private func append(_ element: Element) {
        let satisfied = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            state.elements.append(element)
            let ready = state.waiters.filter { $0.value.condition(state.elements) }
            for id in ready.keys { state.waiters.removeValue(forKey: id) }
            return ready.values.map(\.continuation)
        }
        for continuation in satisfied { continuation.resume(returning: true) }
    }

    private func resume(_ id: Int, with value: Bool) {
        let waiter = state.withLock { state -> Waiter? in
            guard let waiter = state.waiters.removeValue(forKey: id) else {
                state.expired.insert(id)
                return nil
            }
            return waiter
        }
        waiter?.continuation.resume(returning: value)
    }
}
