#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import LeaderElection
import Synchronization
import Testing

@testable import FileLock

@Suite("FileLock crash safety")
struct FileLockCrashTests {
    /// Writers SIGKILLed at random instants (many mid-write) never leave a torn or undecodable record,
    /// and the generation never goes backwards — not even across deletes of the record.
    @Test("SIGKILLed writers never leave a torn record", .timeLimit(.minutes(2)))
    func tornRecordCrashTest() async throws {
        let leasectl = try locateLeasectl()
        let writerCount = 3
        let rounds = 300
        try await withTemporaryDirectory { dir in
            let path = dir + "/torture"
            let checker = try FileLock(path: path, identity: "checker")
            let started = ContinuousClock.now
            var writers: [TortureWriter] = []
            for index in 0..<writerCount {
                writers.append(try await TortureWriter.start(leasectl, path: path, identity: "w\(index)"))
            }
            var lastGeneration: Int64 = 0
            var firstGeneration: Int64?
            var kills = 0
            var midWrite = 0
            var deletes = 0
            var deletedSinceCheck = false
            var completed = 0

            rounds: for round in 0..<rounds {
                let victim = Int.random(in: 0..<writerCount)
                try await Task.sleep(for: .microseconds(Int.random(in: 0...3_000)))
                let pid = writers[victim].kill()
                // Until the victim is reaped it still holds the companion lock if it died holding it, so its
                // temp file (if any) is still there: count kills that landed inside the write window.
                if (try? FileManager.default.contentsOfDirectory(atPath: dir))?.contains(where: { $0.hasPrefix(".torture.tmp.\(pid).") }) == true {
                    midWrite += 1
                }
                await writers[victim].exited()
                kills += 1

                do {
                    if let read = try await checker.get() {
                        let current = try #require(generation(of: read.version), "version \(read.version) is not a generation")
                        #expect(current >= lastGeneration, "generation went back from \(lastGeneration) to \(current) in round \(round)")
                        lastGeneration = max(lastGeneration, current)
                        firstGeneration = firstGeneration ?? current
                    } else {
                        #expect(deletedSinceCheck, "the record vanished in round \(round)")
                    }
                } catch let error as LeaderElectionError {
                    Issue.record("round \(round): reading after SIGKILL failed: \(error)")
                    break rounds
                }
                deletedSinceCheck = false

                writers[victim] = try await TortureWriter.start(leasectl, path: path, identity: "w\(victim)")
                if round % 30 == 29 && round < rounds - 1 {
                    // Writers must recreate the record; the generation still must not go back.
                    try checker.delete()
                    deletes += 1
                    deletedSinceCheck = true
                }
                completed += 1
            }

            for writer in writers {
                writer.kill()
                await writer.exited()
            }
            // The next write removes every temp file left by killed writers.
            if let final = try await checker.get() {
                _ = try await checker.update(sampleRecord(holder: "checker"), expecting: final.version)
            } else {
                _ = try await checker.create(sampleRecord(holder: "checker"))
            }
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix(".torture.tmp.") }
            #expect(leftovers.isEmpty, "temp files left after a write: \(leftovers)")

            #expect(completed == rounds)
            #expect(kills >= 300)
            let elapsed = ContinuousClock.now - started
            print(
                "FileLock torture: \(completed) rounds, \(kills) SIGKILLs (\(midWrite) with the victim's temp file present: killed mid-write), "
                    + "\(deletes) deletes, \(writerCount) writers, generations \(firstGeneration ?? 0)...\(lastGeneration), "
                    + "0 torn records, \(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18) s")
        }
    }

    @Test("a holder process killed with SIGKILL is reported gone at once, and the feed wakes")
    func killedHolderProcessIsGone() async throws {
        let leasectl = try locateLeasectl()
        try await withTemporaryDirectory { dir in
            let path = dir + "/app"
            let watcher = try FileLock(path: path, identity: "watcher")
            let writer = try await TortureWriter.start(leasectl, path: path, identity: "victim", count: nil)
            // The writer holds the record (it is the only writer) and keeps renewing it.
            let record = try #require(try await watcher.get())
            #expect(record.record.holderIdentity == "victim")
            #expect(record.holderIsKnownGone == false)

            let recorder = ChangeRecorder(try #require(watcher.changes()))
            defer { recorder.stop() }
            writer.kill()
            await writer.exited()
            let gone = try await recorder.waitUntil { try await watcher.get()?.holderIsKnownGone == true }
            #expect(gone)
        }
    }
}

/// The `leasectl` binary built next to the test bundle.
func locateLeasectl() throws -> String {
    var candidates: [String] = []
    if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        candidates.append((exe as NSString).deletingLastPathComponent)
    }
    let argv0 = CommandLine.arguments.first ?? ""
    candidates.append(((argv0 as NSString).deletingLastPathComponent as NSString).standardizingPath)
    for directory in candidates {
        // The bundle may be a directory (…/X.xctest/…); walk up a few levels.
        var current = directory
        for _ in 0..<4 {
            let path = current + "/leasectl"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
            current = (current as NSString).deletingLastPathComponent
        }
    }
    throw POSIXFailure(call: "locate leasectl next to \(candidates)", code: ENOENT)
}

/// One `leasectl _torture-write` child process.
final class TortureWriter: Sendable {
    let identity: String
    let pid: Int32
    private let exit: Latch
    private let stdout: FileHandle

    private init(identity: String, pid: Int32, exit: Latch, stdout: FileHandle) {
        self.identity = identity
        self.pid = pid
        self.exit = exit
        self.stdout = stdout
    }

    /// Starts a writer and returns once it printed `ready` (its first write succeeded).
    static func start(_ leasectl: String, path: String, identity: String, count: Int? = nil) async throws -> TortureWriter {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: leasectl)
        process.arguments = ["_torture-write", "--path", path, "--identity", identity] + (count.map { ["--count", "\($0)"] } ?? [])
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardInput = FileHandle.nullDevice
        let exit = Latch()
        process.terminationHandler = { _ in exit.open() }
        try process.run()
        try? pipe.fileHandleForWriting.close()
        let writer = TortureWriter(identity: identity, pid: process.processIdentifier, exit: exit, stdout: pipe.fileHandleForReading)
        do {
            try await awaitReady(pipe.fileHandleForReading.fileDescriptor, identity: identity)
        } catch {
            writer.kill()
            await writer.exited()
            throw error
        }
        return writer
    }

    /// Sends SIGKILL; returns the pid.
    @discardableResult
    func kill() -> Int32 {
        _ = Glibc.kill(pid, SIGKILL)
        return pid
    }

    /// Returns once the process has exited and been reaped (its descriptors, and so its locks, are closed).
    func exited() async {
        await exit.wait()
        try? stdout.close()
    }

    private static func awaitReady(_ fd: Int32, identity: String) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            DispatchQueue.global().async {
                var collected: [UInt8] = []
                var chunk = [UInt8](repeating: 0, count: 64)
                while true {
                    let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n > 0 {
                        collected += chunk[..<n]
                        if String(decoding: collected, as: UTF8.self).contains("ready\n") {
                            continuation.resume()
                            return
                        }
                    } else if n == 0 || errno != EINTR {
                        continuation.resume(throwing: POSIXFailure(call: "writer \(identity) exited before ready", code: n == 0 ? EPIPE : errno))
                        return
                    }
                }
            }
        }
    }
}

/// A one-way gate: `wait()` returns once `open()` was called.
final class Latch: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }
}
