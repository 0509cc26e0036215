#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LeaderElection
import Synchronization
import Testing

@testable import FileLock

/// Runs `body` with a fresh directory from `mkdtemp`, removed (recursively) afterwards.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    var template = Array("/tmp/filelock-tests.XXXXXX".utf8CString)
    let path = try template.withUnsafeMutableBufferPointer { buffer -> String in
        guard let result = mkdtemp(buffer.baseAddress!) else {
            throw POSIXFailure(call: "mkdtemp", code: errno)
        }
        return String(cString: result)
    }
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

struct POSIXFailure: Error, CustomStringConvertible {
    var call: String
    var code: Int32
    var description: String { "\(call): \(String(cString: strerror(code)))" }
}

/// A record with every field set, timestamps at microsecond precision.
func sampleRecord(
    holder: String,
    transitions: Int = 0,
    strategy: String? = nil,
    preferredHolder: String? = nil
) -> LeaderElectionRecord {
    LeaderElectionRecord(
        holderIdentity: holder,
        leaseDuration: .milliseconds(15_250),
        acquireTime: MicroTime(microsecondsSinceEpoch: 1_700_000_000_123_456),
        renewTime: MicroTime(microsecondsSinceEpoch: 1_700_000_012_654_321),
        leaseTransitions: transitions,
        strategy: strategy,
        preferredHolder: preferredHolder
    )
}

/// The generation in a `g<generation>` version.
func generation(of version: LockVersion) -> Int64? {
    guard version.rawValue.hasPrefix("g") else { return nil }
    return Int64(version.rawValue.dropFirst())
}

/// `true` when some process holds a `flock` on `path` that excludes a shared lock (or the file cannot be
/// opened for a reason other than not existing).
func isLockedByAnyone(_ path: String) -> Bool {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
    guard fd >= 0 else { return errno != ENOENT }
    defer { close(fd) }
    if flock(fd, LOCK_SH | LOCK_NB) == 0 {
        flock(fd, LOCK_UN)
        return false
    }
    return errno == EWOULDBLOCK
}

func fileExists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}

/// Awaits `body` and returns the ``LeaderElectionError`` it throws (recording an issue otherwise).
func leaderElectionError<T>(
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () async throws -> T
) async -> LeaderElectionError? {
    do {
        let value = try await body()
        Issue.record("expected a LeaderElectionError, got \(value)", sourceLocation: sourceLocation)
        return nil
    } catch let error as LeaderElectionError {
        return error
    } catch {
        Issue.record("expected a LeaderElectionError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Same for synchronous calls.
func leaderElectionError<T>(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> T) -> LeaderElectionError? {
    do {
        let value = try body()
        Issue.record("expected a LeaderElectionError, got \(value)", sourceLocation: sourceLocation)
        return nil
    } catch let error as LeaderElectionError {
        return error
    } catch {
        Issue.record("expected a LeaderElectionError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Counts the elements of a change feed, consumed by a background task, and lets tests await them.
final class ChangeRecorder: Sendable {
    private struct State {
        var count = 0
        var nextWaiter = 0
        var waiters: [Int: (above: Int, continuation: CheckedContinuation<Bool, Never>)] = [:]
    }
    private let state = Mutex(State())
    private let consumer = Mutex<Task<Void, Never>?>(nil)

    init(_ stream: AsyncStream<Void>) {
        let task = Task { [weak self] in
            for await _ in stream { self?.increment() }
        }
        consumer.withLock { $0 = task }
    }

    deinit { consumer.withLock { $0?.cancel() } }

    /// Ends the subscription.
    func stop() { consumer.withLock { $0?.cancel() } }

    var count: Int { state.withLock { $0.count } }

    private func increment() {
        let ready = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            state.count += 1
            let due = state.waiters.filter { $0.value.above < state.count }
            for key in due.keys { state.waiters[key] = nil }
            return due.values.map(\.continuation)
        }
        for continuation in ready { continuation.resume(returning: true) }
    }

    /// `true` once more than `count` elements arrived; `false` after `timeout`.
    func wait(forCountAbove count: Int, timeout: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { await self.wait(forCountAbove: count) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    private func wait(forCountAbove count: Int) async -> Bool {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let immediate = state.withLock { state -> Bool? in
                    if state.count > count { return true }
                    if Task.isCancelled { return false }
                    state.waiters[id] = (count, continuation)
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.continuation.resume(returning: false)
        }
    }

    /// Re-evaluates `condition` after each change until it holds (`true`) or `timeout` passes (`false`).
    func waitUntil(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while true {
            let seen = count
            if try await condition() { return true }
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else { return false }
            if !(await wait(forCountAbove: seen, timeout: remaining)) { return try await condition() }
        }
    }
}
