import Foundation
import Kubernetes
import KubernetesLock
import KubernetesTesting
import LeaderElection
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Our elector and the Python `kubernetes` package's leader election (kubernetes-client/python, its
/// `LeaseLock`) contend for one Lease on LeaseAPIServer: never two leaders, each side sees the other as
/// holder, and each decodes the other's record. The Python client is installed from PyPI into a virtualenv
/// by `scripts/python-venv` (pinned in `scripts/python/requirements.txt`).
///
/// That client never increments leaseTransitions and never releases: on a graceful stop of our side it
/// takes over the released Lease at its next retry; when it dies we wait out the lease.
@Suite(.serialized) struct PythonInteropTests {
    // Python's client requires whole seconds with retry ≥ 1 s, renew > 1.2 × retry, lease > renew.
    static let lease = 4, renew = 3, retry = 1

    @Test func contendsWithThePythonClientOnOneLease() async throws {
        let python = try await PythonEnvironment.interpreter()
        try await KubernetesTestEnvironment.with { env in
            let name = "interop-\(UUID().uuidString.lowercased().prefix(8))"
            let ledger = LeadershipLedger()

            // 1. Python leads first (it creates the Lease).
            let pyA = try PythonCandidate.start(python: python, env: env, name: name, identity: "py-a", ledger: ledger)
            _ = try await pyA.await("py-a to start leading") { $0["event"] as? String == "started" }

            // 2. Our elector follows, sees py-a as leader, and decodes its record.
            let swift = try SwiftCandidate.start(env: env, name: name, identity: "swift-1", ledger: ledger)
            _ = try await swift.awaitLeaderObserved("py-a")
            let seen = try #require(try await KubernetesLock(client: env.client, configuration: .init(name: name, namespace: env.namespace), identity: "reader").get())
            #expect(seen.record.holderIdentity == "py-a")
            #expect(seen.record.leaseDuration == .seconds(Int64(Self.lease)))
            #expect(seen.record.acquireTime != nil && seen.record.renewTime != nil)

            // 3. Python dies without releasing: we take over once the lease has run out.
            await pyA.kill(ledger: ledger)
            try await swift.awaitLeading()

            // 4. A new Python candidate sees us as holder and decodes our record with its own LeaseLock.
            let pyB = try PythonCandidate.start(python: python, env: env, name: name, identity: "py-b", ledger: ledger)
            let observed = try await pyB.await("py-b to observe swift-1") { $0["event"] as? String == "observed" && $0["holder"] as? String == "swift-1" }
            #expect(observed["leaseDurationSeconds"] as? String == String(Self.lease))
            #expect((observed["acquireTime"] as? String).map { $0 != "None" } == true)
            // …and does not take over while we renew: we renew a few times with py-b watching.
            let lock = try KubernetesLock(client: env.client, configuration: .init(name: name, namespace: env.namespace), identity: "reader")
            try await awaitRenewals(lock, holder: "swift-1", count: 3)
            #expect(pyB.events.contains { $0["event"] as? String == "started" } == false)

            // 5. We stop gracefully (work stopped, then released); py-b takes the released Lease.
            await swift.stop()
            _ = try await pyB.await("py-b to start leading after our release") { $0["event"] as? String == "started" }
            let afterRelease = try #require(try await lock.get())
            #expect(afterRelease.record.holderIdentity == "py-b")

            // 6. A new Swift candidate waits while py-b renews, then takes over when py-b dies.
            let swift2 = try SwiftCandidate.start(env: env, name: name, identity: "swift-2", ledger: ledger)
            _ = try await swift2.awaitLeaderObserved("py-b")
            try await awaitRenewals(lock, holder: "py-b", count: 2)
            #expect(!swift2.isLeading)
            await pyB.kill(ledger: ledger)
            try await swift2.awaitLeading()
            let final = try #require(try await lock.get())
            #expect(final.record.holderIdentity == "swift-2")
            // Our takeovers count transitions; Python keeps the count it found.
            #expect(final.record.leaseTransitions >= 2)
            await swift2.stop()

            // Never two leaders: the leadership intervals (CLOCK_MONOTONIC, shared by all processes) are disjoint.
            let overlaps = ledger.overlaps()
            #expect(overlaps.isEmpty, "overlapping leadership: \(overlaps)")
            #expect(ledger.intervals.count == 4, "intervals: \(ledger.intervals)")
        }
    }

    /// Waits until `holder` has written `count` more renewals (renewTime changes) of the Lease.
    private func awaitRenewals(_ lock: KubernetesLock, holder: String, count: Int) async throws {
        var last: MicroTime?
        var seen = 0
        let deadline = ContinuousClock.now + .seconds(Int64(count * Self.retry * 4 + 10))
        while seen < count {
            guard ContinuousClock.now < deadline else { throw InteropError("\(holder) renewed only \(seen) of \(count) times") }
            let current = try await lock.get()
            guard current?.record.holderIdentity == holder else {
                throw InteropError("the holder changed to \(current?.record.holderIdentity ?? "nothing") while \(holder) should renew")
            }
            if let renew = current?.record.renewTime, renew != last {
                if last != nil { seen += 1 }
                last = renew
            }
            try await Task.sleep(for: .milliseconds(100))   // polling a remote record: no push to wait for here
        }
    }
}

struct InteropError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The monotonic time in seconds (CLOCK_MONOTONIC, as Python's `time.monotonic()`).
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Leadership intervals of every candidate, Python's and ours, on CLOCK_MONOTONIC.
final class LeadershipLedger: Sendable {
    struct Interval: Sendable, CustomStringConvertible {
        var identity: String
        var start: Double
        var end: Double?
        var description: String { "\(identity) [\(start), \(end.map { String($0) } ?? "…"))" }
    }
    private let state = Mutex<[Interval]>([])

    func started(_ identity: String, at time: Double) { state.withLock { $0.append(Interval(identity: identity, start: time)) } }

    func ended(_ identity: String, at time: Double) {
        state.withLock { intervals in
            if let index = intervals.lastIndex(where: { $0.identity == identity && $0.end == nil }) { intervals[index].end = time }
        }
    }

    var intervals: [Interval] { state.withLock { $0 } }

    func overlaps() -> [(Interval, Interval)] {
        let all = intervals
        var result: [(Interval, Interval)] = []
        for i in all.indices {
            for j in all.indices where j > i {
                let a = all[i], b = all[j]
                if a.start < (b.end ?? .infinity) && b.start < (a.end ?? .infinity) { result.append((a, b)) }
            }
        }
        return result
    }
}

/// Finds (creating once) the virtualenv with the Python client.
enum PythonEnvironment {
    /// The venv's python, made by `scripts/python-venv` on a thread of its own (pip may take a while; the
    /// cooperative pool must not wait for it).
    static func interpreter() async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try interpreterBlocking() }) }
        }
    }

    private static func interpreterBlocking() throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: root + "/scripts/python-venv")
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw InteropError("scripts/python-venv failed (needs python3 with venv and PyPI access to install kubernetes): \(String(decoding: errors, as: UTF8.self))")
        }
        return String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
            + "/scripts/python/elector.py"
    }
}

/// A Python candidate process and the JSON lines it printed.
final class PythonCandidate: Sendable {
    let identity: String
    private let process: Process
    private let lines = Mutex<[[String: any Sendable]]>([])
    private let signal = Mutex<[CheckedContinuation<Void, Never>]>([])

    private init(identity: String, process: Process) {
        self.identity = identity
        self.process = process
    }

    static func start(python: String, env: KubernetesTestEnvironment, name: String, identity: String, ledger: LeadershipLedger) throws -> PythonCandidate {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [PythonEnvironment.script, env.kubeconfigPath, env.namespace, name, identity,
                             String(PythonInteropTests.lease), String(PythonInteropTests.renew), String(PythonInteropTests.retry)]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        let candidate = PythonCandidate(identity: identity, process: process)
        let reader = out.fileHandleForReading
        try process.run()
        Thread.detachNewThread {
            var buffer = Data()
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                buffer.append(chunk)
                while let newline = buffer.firstIndex(of: 0x0A) {
                    let line = buffer[buffer.startIndex..<newline]
                    buffer = Data(buffer[(newline + 1)...])
                    guard let object = try? JSONSerialization.jsonObject(with: line) as? [String: Any] else { continue }
                    let event = object["event"] as? String
                    if event == "started", let mono = object["mono"] as? Double { ledger.started(identity, at: mono) }
                    if event == "stopped", let mono = object["mono"] as? Double { ledger.ended(identity, at: mono) }
                    candidate.append(object.compactMapValues { $0 as? String ?? ($0 as? Double).map { String($0) } ?? ($0 as? Int).map { String($0) } })
                }
            }
            candidate.append(["event": "exited"])
        }
        return candidate
    }

    private func append(_ object: [String: any Sendable]) {
        lines.withLock { $0.append(object) }
        let waiters = signal.withLock { w -> [CheckedContinuation<Void, Never>] in defer { w = [] }; return w }
        for waiter in waiters { waiter.resume() }
    }

    var events: [[String: any Sendable]] { lines.withLock { $0 } }

    /// The first line matching `predicate`, waiting up to `timeout`.
    func await(_ what: String, timeout: Duration = .seconds(30), _ predicate: @escaping @Sendable ([String: any Sendable]) -> Bool) async throws -> [String: any Sendable] {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let match = events.first(where: predicate) { return match }
            if events.contains(where: { $0["event"] as? String == "exited" }) {
                throw InteropError("\(identity) exited before \(what); output: \(events)")
            }
            guard ContinuousClock.now < deadline else { throw InteropError("timed out waiting for \(what); \(identity) printed: \(events)") }
            let timer = Task { try? await Task.sleep(for: .milliseconds(200)); self.append([:]) }   // bounded wake-up
            await withCheckedContinuation { continuation in signal.withLock { $0.append(continuation) } }
            timer.cancel()
        }
    }

    /// SIGKILLs the process; its leadership (if any) ends when it is reaped.
    func kill(ledger: LeadershipLedger) async {
        Glibc.kill(process.processIdentifier, SIGKILL)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                self.process.waitUntilExit()
                continuation.resume()
            }
        }
        ledger.ended(identity, at: monotonicSeconds())
    }
}

/// Our elector on a KubernetesLock, in this process, recording its terms in the ledger.
final class SwiftCandidate: Sendable {
    let identity: String
    let elector: LeaderElector<ContinuousClock>
    private let task: Mutex<Task<Void, Never>?> = Mutex(nil)
    private let leading = Mutex(false)
    private let leaders = Mutex<[String]>([])

    private init(identity: String, elector: LeaderElector<ContinuousClock>) {
        self.identity = identity
        self.elector = elector
    }

    static func start(env: KubernetesTestEnvironment, name: String, identity: String, ledger: LeadershipLedger) throws -> SwiftCandidate {
        let lock = try KubernetesLock(client: env.client, configuration: .init(name: name, namespace: env.namespace), identity: identity)
        var configuration = LeaderElectionConfiguration(name: name)
        configuration.leaseDuration = .seconds(Int64(PythonInteropTests.lease))
        configuration.renewDeadline = .seconds(Int64(PythonInteropTests.renew))
        configuration.retryPeriod = .seconds(Int64(PythonInteropTests.retry))
        let elector = try LeaderElector(lock: lock, configuration: configuration, clock: ContinuousClock())
        let candidate = SwiftCandidate(identity: identity, elector: elector)
        let events = elector.events()
        let watcher = Task {
            for await event in events {
                if case .newLeader(let leader) = event { candidate.leaders.withLock { $0.append(leader) } }
            }
        }
        let run = Task {
            _ = try? await elector.run { _ in
                ledger.started(identity, at: monotonicSeconds())
                candidate.leading.withLock { $0 = true }
                defer {
                    candidate.leading.withLock { $0 = false }
                    ledger.ended(identity, at: monotonicSeconds())
                }
                try? await Task.sleep(for: .seconds(3600))   // leader work: runs until cancelled
            }
            watcher.cancel()
        }
        candidate.task.withLock { $0 = run }
        return candidate
    }

    var isLeading: Bool { leading.withLock { $0 } }

    func awaitLeaderObserved(_ leader: String, timeout: Duration = .seconds(30)) async throws {
        try await poll("\(identity) to observe \(leader)", timeout: timeout) { self.leaders.withLock { $0.contains(leader) } }
    }

    func awaitLeading(timeout: Duration = .seconds(30)) async throws {
        try await poll("\(identity) to lead", timeout: timeout) { self.isLeading }
    }

    /// Cancels the election: leader work stops, then the Lease is released.
    func stop() async {
        let run = task.withLock { $0 }
        run?.cancel()
        await run?.value
    }

    private func poll(_ what: String, timeout: Duration, _ condition: @escaping @Sendable () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else { throw InteropError("timed out waiting for \(what)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
