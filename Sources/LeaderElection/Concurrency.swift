import Synchronization

/// Fan-out of elector events to every subscriber.
final class EventBroadcaster<Element: Sendable>: Sendable {
    private struct State {
        var next = 0
        var continuations: [Int: AsyncStream<Element>.Continuation] = [:]
        var finished = false
    }
    private let state = Mutex(State())

    func subscribe() -> AsyncStream<Element> {
        let (stream, continuation) = AsyncStream.makeStream(of: Element.self, bufferingPolicy: .bufferingNewest(4096))
        let id: Int? = state.withLock { state in
            if state.finished { return nil }
            let id = state.next
            state.next += 1
            state.continuations[id] = continuation
            return id
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.continuations.removeValue(forKey: id) }
        }
        return stream
    }

    func send(_ element: Element) {
        let targets = state.withLock { Array($0.continuations.values) }
        for continuation in targets { continuation.yield(element) }
    }

    func finish() {
        let targets = state.withLock { state in
            state.finished = true
            defer { state.continuations = [:] }
            return Array(state.continuations.values)
        }
        for continuation in targets { continuation.finish() }
    }
}

/// A level-triggered wake-up: `signal()` wakes the current or next waiter once.
final class WakeSignal: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    func signal() {
        let waiter: CheckedContinuation<Void, Never>? = state.withLock { state in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.pending = true
            return nil
        }
        waiter?.resume()
    }

    /// Clears a pending signal.
    func reset() { state.withLock { $0.pending = false } }

    /// Returns after the next signal, or at once when one is pending or the task is cancelled.
    func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.pending || Task.isCancelled {
                        state.pending = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }

    /// Waits until `deadline` on `clock` or the next signal, whichever comes first.
    func wait<C: Clock>(until deadline: C.Instant, clock: C) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await clock.sleep(until: deadline, tolerance: nil) }
            group.addTask { await self.wait() }
            await group.next()
            group.cancelAll()
        }
    }
}

/// Resumes a continuation at most once, with the first result offered.
final class OneShot<Value: Sendable>: Sendable {
    private let state = Mutex<(continuation: CheckedContinuation<Value, Never>?, early: Value?)>((nil, nil))

    func offer(_ value: Value) {
        let continuation: CheckedContinuation<Value, Never>? = state.withLock { state in
            if let c = state.continuation {
                state.continuation = nil
                return c
            }
            if state.early == nil { state.early = value }
            return nil
        }
        continuation?.resume(returning: value)
    }

    func value() async -> Value {
        await withCheckedContinuation { (continuation: CheckedContinuation<Value, Never>) in
            let early: Value? = state.withLock { state in
                if let e = state.early { return e }
                state.continuation = continuation
                return nil
            }
            if let early { continuation.resume(returning: early) }
        }
    }
}

/// Runs `operation` in its own task and returns its result, or throws
/// ``LeaderElectionError/Code/timeout`` at `deadline` on `clock` (cancelling the operation, which may
/// finish later in the background). A hung store call therefore cannot hold up the caller past its deadline.
func withDeadline<C: Clock, T: Sendable>(
    _ deadline: C.Instant,
    clock: C,
    what: @autoclosure () -> String,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let box = OneShot<Result<T, any Error>>()
    let description = what()
    let work = Task {
        let result: Result<T, any Error>
        do { result = .success(try await operation()) } catch { result = .failure(error) }
        box.offer(result)
    }
    let timer = Task {
        do {
            try await ManualClock.$isDeadlineTimer.withValue(true) {
                try await clock.sleep(until: deadline, tolerance: nil)
            }
            box.offer(.failure(LeaderElectionError.timeout("\(description) did not finish before its deadline")))
        } catch {}
    }
    let result = await withTaskCancellationHandler {
        await box.value()
    } onCancel: {
        box.offer(.failure(CancellationError()))
    }
    work.cancel()
    timer.cancel()
    return try result.get()
}

/// A `Mutex` in a reference, so that escaping closures can share it.
final class LockedBox<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T: Sendable>(_ body: (inout sending Value) throws -> sending T) rethrows -> T { try mutex.withLock(body) }
}
