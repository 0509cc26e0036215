#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ArgumentParser
import Dispatch
import Etcd
import EtcdLock
import FileLock
import Foundation
import Kubernetes
import KubernetesLock
import LeaderElection
import Logging
import Synchronization

/// `lease-chaos candidate`: one election candidate that, while leading, performs fenced actions.
///
/// Every action is: read `CLOCK_MONOTONIC` (t0), `try term.check()`, then append
/// `{"token":T,"mono":t0,"identity":ID,"seq":n}` to the shared action log with one `O_APPEND` write.
/// Reading the clock *before* `check()` makes the claim exact: if `check()` passed, the term was still
/// guaranteed at t0 (its deadline lay after the clock reading `check()` made, which is ≥ t0). A process
/// stopped between `check()` and the write lands its line late in the file, but with its true t0.
///
/// Events go to standard output as JSON lines: `ready`, `newLeader`, `startedLeading`, `stoppedLeading`,
/// `checkFailed` (an action refused by the guard), `resigned`, `exiting`, each with `mono` and `pid`.
///
/// Signals: SIGTERM/SIGINT stop the election (the lease is released) and exit 0; SIGUSR1 resigns
/// (cancel the election, which releases the lease, then campaign again after `--resign-pause`).
struct CandidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "candidate",
        abstract: "Run one candidate that performs fenced actions while it leads.",
        discussion: """
            --backend is file:///DIR/NAME (FileLock), etcd://HOST:PORT[,HOST:PORT…]/PREFIX/NAMESPACE/NAME \
            (EtcdLock on that key) or kubernetes://NAMESPACE/NAME (KubernetesLock; the API server and credentials \
            come from --kubeconfig).
            """)

    @Option(help: "The lock: file:///dir/name, etcd://h:p[,h:p]/prefix/ns/name or kubernetes://ns/name.")
    var backend: String

    @Option(help: "Kubeconfig for kubernetes:// backends.")
    var kubeconfig: String?

    @Option(help: "This candidate's identity (unique per process).")
    var identity: String

    @Option(help: "The shared action log (appended with O_APPEND).")
    var log: String

    @Option(help: "leaseDuration.")
    var lease = DurationArgument(.seconds(1))

    @Option(help: "renewDeadline.")
    var renew = DurationArgument(.milliseconds(800))

    @Option(help: "retryPeriod.")
    var retry = DurationArgument(.milliseconds(200))

    @Option(help: "Pause between fenced actions.")
    var actionInterval = DurationArgument(.milliseconds(10))

    @Option(help: "Per-request timeout for etcd and Kubernetes (default: max(renew/2, 100ms) for etcd, the library's recommendation for Kubernetes).")
    var requestTimeout: DurationArgument?

    @Option(help: "After SIGUSR1 (resign), how long to wait before campaigning again (default: 2 × retry).")
    var resignPause: DurationArgument?

    @Option(help: "Offset of the wall clock the elector uses (write negative values as --wall-clock-offset=-1h).")
    var wallClockOffset: DurationArgument?

    @Option(help: "Make the wall clock jump this long after start…")
    var wallClockJumpAfter: DurationArgument?

    @Option(help: "…by this much (--wall-clock-jump=-1h for backwards).")
    var wallClockJump: DurationArgument?

    func validate() throws {
        if identity.isEmpty || identity.contains("\"") || identity.contains("\\") { throw ValidationError("--identity must be non-empty plain text") }
        if (wallClockJumpAfter == nil) != (wallClockJump == nil) { throw ValidationError("--wall-clock-jump-after and --wall-clock-jump go together") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        signal(SIGPIPE, SIG_IGN)
        let identity = self.identity
        let out = EventWriter(identity: identity)
        let actionFD = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard actionFD >= 0 else { throw ChaosError("cannot open \(log): \(String(cString: strerror(errno)))") }

        let wallClock = makeWallClock()
        let configuration = LeaderElectionConfiguration(
            name: "chaos", leaseDuration: lease.duration, renewDeadline: renew.duration, retryPeriod: retry.duration,
            releaseOnCancel: true, wallClock: wallClock)
        let opened = try await openLock(configuration: configuration)
        let elector = try LeaderElector(lock: opened.lock, configuration: configuration, logger: Logger(label: "chaos.\(identity)"))

        let control = CandidateControl()
        let signals = SignalSources(control: control)

        let events = elector.events()
        let eventTask = Task {
            for await event in events {
                switch event {
                case .newLeader(let leader):
                    out.emit("newLeader", ["leader": jsonString(leader)])
                case .startedLeading(let term):
                    out.emit("startedLeading", ["token": "\(term.fencingToken)"])
                case .stoppedLeading(let term, let reason):
                    out.emit("stoppedLeading", ["token": "\(term.fencingToken)", "reason": jsonString(reason.description)])
                }
            }
        }
        out.emit("ready", ["wallClockSkew": jsonString(skewDescription)])

        let interval = actionInterval.duration
        let sequence = Counter()
        let resignPause = self.resignPause?.duration ?? retry.duration * 2
        while !control.terminating {
            let runTask = Task {
                try await elector.run { term in
                    var refused = false
                    while !Task.isCancelled {
                        let t0 = monoNow()
                        do {
                            try term.check()
                            let n = sequence.next()
                            let line = "{\"token\":\(term.fencingToken),\"mono\":\(t0),\"identity\":\(jsonString(identity)),\"seq\":\(n)}\n"
                            if !writeAll(actionFD, line) {
                                out.emit("actionWriteFailed", ["errno": "\(errno)"])
                            }
                        } catch {
                            if !refused {
                                refused = true
                                out.emit("checkFailed", ["token": "\(term.fencingToken)", "at": "\(t0)"])
                            }
                        }
                        do { try await Task.sleep(for: interval) } catch { return }
                    }
                }
            }
            control.setCurrent(runTask)
            let result = await runTask.result
            control.setCurrent(nil)
            if control.terminating { break }
            if control.takeResign() {
                out.emit("resigned", [:])
                try? await Task.sleep(for: resignPause)
            } else if case .failure(let error) = result {
                out.emit("runFailed", ["error": jsonString("\(error)")])
                try? await Task.sleep(for: retry.duration)
            }
        }
        out.emit("exiting", [:])
        eventTask.cancel()
        await opened.shutdown()
        withExtendedLifetime(signals) {}
        close(actionFD)
    }

    private var skewDescription: String {
        var parts: [String] = []
        if let wallClockOffset { parts.append("offset \(wallClockOffset)") }
        if let wallClockJump, let wallClockJumpAfter { parts.append("jump \(wallClockJump) after \(wallClockJumpAfter)") }
        return parts.joined(separator: ", ")
    }

    private func makeWallClock() -> WallClock {
        let offset = wallClockOffset?.duration ?? .zero
        guard let jump = wallClockJump?.duration, let after = wallClockJumpAfter?.duration else {
            return offset == .zero ? .system : .offset(by: offset)
        }
        let start = monoNow()
        let afterNanos = after.nanos
        return WallClock {
            var now = MicroTime.now().advanced(by: offset)
            if monoNow() - start >= afterNanos { now = now.advanced(by: jump) }
            return now
        }
    }

    private struct OpenedLock {
        var lock: any ResourceLock
        var shutdown: @Sendable () async -> Void
    }

    private func openLock(configuration: LeaderElectionConfiguration) async throws -> OpenedLock {
        guard let colon = backend.range(of: "://") else { throw ValidationError("--backend must be a URL") }
        let scheme = backend[..<colon.lowerBound]
        let rest = String(backend[colon.upperBound...])
        switch scheme {
        case "file":
            let lock = try FileLock(path: rest, identity: identity, createDirectory: true)
            return OpenedLock(lock: lock, shutdown: {})
        case "etcd":
            guard let slash = rest.firstIndex(of: "/") else { throw ValidationError("etcd URL without a key") }
            let endpoints = rest[..<slash].split(separator: ",").map(String.init)
            let parts = rest[slash...].split(separator: "/").map(String.init)
            guard parts.count >= 3 else { throw ValidationError("etcd key must be /prefix/namespace/name") }
            let timeout = requestTimeout?.duration ?? max(renew.duration / 2, .milliseconds(100))
            let client = try EtcdClient(configuration: .init(endpoints: endpoints, requestTimeout: timeout))
            let lock = try EtcdLock(
                client: client,
                configuration: .init(name: parts[parts.count - 1], namespace: parts[parts.count - 2],
                                     keyPrefix: "/" + parts.dropLast(2).joined(separator: "/")),
                identity: identity)
            return OpenedLock(lock: lock, shutdown: { client.close() })
        case "kubernetes":
            let parts = rest.split(separator: "/").map(String.init)
            guard parts.count == 2 else { throw ValidationError("kubernetes URL must be kubernetes://namespace/name") }
            var k8s = try KubernetesConfiguration.kubeconfig(path: kubeconfig)
            k8s.requestTimeout = requestTimeout?.duration ?? KubernetesConfiguration.requestTimeout(forRenewDeadline: renew.duration)
            try KubernetesLock.validate(configuration)
            let client = try KubernetesClient(configuration: k8s, logger: Logger(label: "chaos.k8s"))
            let lock = try KubernetesLock(client: client, configuration: .init(name: parts[1], namespace: parts[0]), identity: identity)
            return OpenedLock(lock: lock, shutdown: { try? await client.shutdown() })
        default:
            throw ValidationError("unknown backend scheme \(scheme)")
        }
    }
}

/// Writes one JSON event per line to standard output (one `write(2)` each).
struct EventWriter: Sendable {
    let identity: String
    let pid = getpid()

    func emit(_ event: String, _ fields: [String: String]) {
        var line = "{\"event\":\(jsonString(event)),\"identity\":\(jsonString(identity)),\"pid\":\(pid),\"mono\":\(monoNow())"
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) { line += ",\(jsonString(key)):\(value)" }
        line += "}\n"
        writeAll(1, line)
    }
}

/// What the signals asked for, and the election task to cancel.
final class CandidateControl: Sendable {
    private struct State {
        var terminating = false
        var resign = false
        var current: Task<Void?, any Error>?
    }
    private let state = Mutex(State())

    var terminating: Bool { state.withLock { $0.terminating } }

    func setCurrent(_ task: Task<Void?, any Error>?) {
        let cancelNow = state.withLock { state -> Bool in
            state.current = task
            return task != nil && (state.terminating || state.resign)
        }
        if cancelNow { task?.cancel() }
    }

    func terminate() {
        let task = state.withLock { state -> Task<Void?, any Error>? in
            if state.terminating { _exit(3) }   // a second signal: leave at once
            state.terminating = true
            return state.current
        }
        task?.cancel()
    }

    func resign() {
        let task = state.withLock { state -> Task<Void?, any Error>? in
            guard !state.terminating, !state.resign else { return nil }
            state.resign = true
            return state.current
        }
        task?.cancel()
    }

    func takeResign() -> Bool {
        state.withLock { state in
            defer { state.resign = false }
            return state.resign
        }
    }
}

/// SIGTERM/SIGINT → terminate, SIGUSR1 → resign, through Dispatch sources (the default actions are ignored).
final class SignalSources: @unchecked Sendable {
    private var sources: [any DispatchSourceSignal] = []

    init(control: CandidateControl) {
        let queue = DispatchQueue(label: "chaos.signals")
        for sig in [SIGTERM, SIGINT, SIGUSR1] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            source.setEventHandler {
                if sig == SIGUSR1 { control.resign() } else { control.terminate() }
            }
            source.resume()
            sources.append(source)
        }
    }
}

/// A process-wide sequence number for fenced actions.
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    func next() -> Int { value.add(1, ordering: .relaxed).newValue }
}
