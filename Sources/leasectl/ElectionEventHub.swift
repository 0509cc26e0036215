import Synchronization

/// Collects the `--events json` lines of several `leasectl elect` processes and lets a caller await
/// the first line matching a condition, with a timeout (for `leasectl demo`, and tests).
final class ElectionEventHub: Sendable {
    /// One received line, numbered in arrival order.
    struct Entry: Sendable, Hashable {
        /// Arrival order, from 0.
        var index: Int
        var line: ElectionEventLine
    }

    private struct State {
        var entries: [Entry] = []
        var nextSubscriber = 0
        var subscribers: [Int: AsyncStream<Void>.Continuation] = [:]
    }
    private let state = Mutex(State())

    init() {}

    /// Adds a line and wakes the waiters.
    func append(_ line: ElectionEventLine) {
        let subscribers = state.withLock { state in
            state.entries.append(Entry(index: state.entries.count, line: line))
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.yield() }
    }

    /// Every line received so far.
    var entries: [Entry] { state.withLock { $0.entries } }

    /// How many lines were received so far (use it as `after:` to wait only for newer lines).
    var count: Int { state.withLock { $0.entries.count } }

    /// The first line at index ≥ `after` that satisfies `predicate`, waiting up to `timeout` for it.
    /// `nil` on timeout or cancellation.
    func first(
        after: Int = 0, timeout: Duration,
        where predicate: @escaping @Sendable (ElectionEventLine) -> Bool
    ) async -> Entry? {
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let id = state.withLock { state in
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[id] = continuation
            return id
        }
        defer {
            _ = state.withLock { $0.subscribers.removeValue(forKey: id) }
            continuation.finish()
        }
        return await withTaskGroup(of: Entry?.self) { group in
            group.addTask {
                var checked = after
                var wakeups = stream.makeAsyncIterator()
                repeat {
                    let fresh = self.state.withLock { state in
                        checked < state.entries.count ? Array(state.entries[checked...]) : []
                    }
                    checked += fresh.count
                    if let hit = fresh.first(where: { predicate($0.line) }) { return hit }
                } while await wakeups.next() != nil && !Task.isCancelled
                return nil
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let result = await group.next() ?? nil
            group.cancelAll()
            return result
        }
    }
}
