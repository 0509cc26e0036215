import Etcd
import Logging
import Synchronization

/// The changes under the server's etcd prefix since it started, as kube-apiserver's watch cache keeps them:
/// a watch from a revision that etcd has compacted away is replayed from here when the history still
/// holds it (kube answers 410 only for revisions older than its cache).
final class WatchHistory: Sendable {
    /// How many changes are kept; older ones are dropped (watches from before them get 410).
    static let capacity = 10_000

    private struct State {
        /// The first revision whose changes are all here (the revision after the one the history began at).
        var complete: Int64?
        var events: [EtcdWatchEvent] = []
        /// The newest revision the history has seen (an event or the start).
        var latest: Int64 = 0
    }
    private let state = Mutex(State())

    /// Follows every change under `prefix` from now until the task is cancelled; retries while etcd is
    /// unreachable and starts over (with an empty history) after a compaction it could not follow.
    ///
    /// - Parameter after: the revision the history begins after (the server's bootstrap writes); `nil`:
    ///   the store's revision when recording starts.
    func record(store: Store, after: Int64?, logger: Logger) async {
        let prefix = Array((store.prefix + "/").utf8)
        var backoff = Duration.milliseconds(200)
        var after = after
        while !Task.isCancelled {
            do {
                let start: Int64
                if let revision = after {
                    start = revision
                } else {
                    start = try await store.etcd.status().header.revision
                }
                after = nil   // after an interruption, start over from the store's revision
                state.withLock {
                    $0 = State(complete: start + 1, events: [], latest: start)
                }
                for try await message in store.etcd.watch(prefix, rangeEnd: etcdPrefixEnd(prefix), fromRevision: start + 1) {
                    guard case .event(let event) = message else { continue }
                    state.withLock { state in
                        state.events.append(event)
                        state.latest = max(state.latest, event.kv.modRevision)
                        if state.events.count > Self.capacity {
                            let dropped = state.events.removeFirst()
                            state.complete = dropped.kv.modRevision + 1
                        }
                    }
                }
            } catch {
                state.withLock { $0.complete = nil }
                logger.debug("watch history interrupted", metadata: ["error.message": "\(error)"])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
    }

    /// The changes under `prefix` from `revision` on, and the revision to follow etcd from afterwards; `nil`
    /// when the history does not reach back to `revision`.
    func replay(from revision: Int64, prefix: [UInt8]) -> (events: [EtcdWatchEvent], next: Int64)? {
        state.withLock { state in
            guard let complete = state.complete, revision >= complete else { return nil }
            let events = state.events.filter { $0.kv.modRevision >= revision && $0.kv.key.starts(with: prefix) }
            return (events, state.latest + 1)
        }
    }
}
