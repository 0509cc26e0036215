#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Synchronization

/// Turns `SIGTERM` and `SIGINT` into task cancellation, for an orderly shutdown.
///
/// The signals' default action is ignored (`signal(_, SIG_IGN)`) and they are received through Dispatch
/// signal sources instead. The first signal cancels the operation started with ``run(_:)``; a second
/// one calls `onRepeat` (typically: kill what must not outlive us and exit at once).
final class ShutdownSignals: @unchecked Sendable {
    private struct State {
        var received: [Int32] = []
        var cancel: (@Sendable () -> Void)?
    }
    private final class Shared: Sendable {
        let state = Mutex(State())
    }
    private let shared = Shared()
    private let sources: [any DispatchSourceSignal]   // immutable after init; kept alive here

    /// Installs the handlers. Create it before starting anything a signal should stop.
    ///
    /// - Parameters:
    ///   - onFirst: called on the first signal, before the operation is cancelled.
    ///   - onRepeat: called on every later signal.
    init(
        _ signals: [Int32] = [SIGTERM, SIGINT],
        onFirst: @escaping @Sendable (Int32) -> Void = { _ in },
        onRepeat: @escaping @Sendable (Int32) -> Void = { sig in _exit(128 + sig) }
    ) {
        var sources: [any DispatchSourceSignal] = []
        let queue = DispatchQueue(label: "leasectl.signals")
        let shared = self.shared
        for sig in signals {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            source.setEventHandler {
                let (count, cancel) = shared.state.withLock { state in
                    state.received.append(sig)
                    return (state.received.count, state.cancel)
                }
                if count == 1 {
                    onFirst(sig)
                    cancel?()
                } else {
                    onRepeat(sig)
                }
            }
            source.resume()
            sources.append(source)
        }
        self.sources = sources
    }

    /// The first signal received, if any.
    var received: Int32? { shared.state.withLock { $0.received.first } }

    /// Runs `operation` in a new task that the first signal (or cancellation of the caller) cancels.
    func run<T: Sendable>(_ operation: @escaping @Sendable () async -> T) async -> T {
        let task = Task { await operation() }
        let early = shared.state.withLock { state -> Bool in
            state.cancel = { task.cancel() }
            return !state.received.isEmpty
        }
        if early { task.cancel() }
        return await withTaskCancellationHandler { await task.value } onCancel: { task.cancel() }
    }

    deinit {
        for source in sources { source.cancel() }
    }
}
