import Foundation

/// One round of Go's etcd client (`bench/go-clientv3`), as that program reports it on stdout.
struct GoRound: Codable, Sendable {
    var op: String
    var samples: Int
    var p50Micros: Double
    var p90Micros: Double
    var p99Micros: Double
    var maxMicros: Double
    /// CPU time (user + system) of the Go process during its timed calls, per call.
    var cpuMicrosPerCall: Double
    var goVersion: String
    var client: String
}

/// Go's etcd client, measured in the same run as ours: `bench/go-clientv3` built by `make bench` (Debian's
/// `golang-go` and `golang-etcd-server-dev`, the clientv3 of etcd 3.4).
///
/// A latency scenario runs one Go round after each of its own rounds, against the same etcd, with the same
/// value, sample and warm-up counts (on a key of Go's own, so the two clients never race on a revision). The
/// ratio to Go then compares two clients measured minutes apart at most on the same server, instead of a figure
/// taken on another day: on this shared 2-core machine Go's own Range p50 moves between ≈ 175 and ≈ 310 µs
/// from one hour to the next.
struct GoClientReference: Sendable {
    /// The built `go-clientv3` executable.
    let executable: String

    enum Operation: String, Sendable {
        /// `Get(key)`, linearizable.
        case range
        /// `Txn(If(ModRevision(key) == rev)).Then(OpPut(key, value)).Else(OpGet(key))`.
        case txn
    }

    /// Fails when the executable is missing, with what to run.
    init(executable: String) throws(BenchError) {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw BenchError("--go-reference \(executable): no such executable (make bench builds it from bench/go-clientv3; "
                             + "it needs `golang-go` and `golang-etcd-server-dev`: BOOTSTRAP_BENCH=1 scripts/bootstrap)")
        }
        self.executable = executable
    }

    /// Runs one round: `warmup` untimed then `samples` timed sequential calls, in a new process.
    func round(_ operation: Operation, endpoint: String, key: String, value: [UInt8], samples: Int,
               warmup: Int) async throws -> GoRound {
        let arguments = ["-endpoint", endpoint, "-op", operation.rawValue, "-key", key,
                         "-value", String(decoding: value, as: UTF8.self),
                         "-samples", String(samples), "-warmup", String(warmup)]
        let (status, output, errors) = try await runToCompletion(executable, arguments)
        guard status == 0 else {
            throw BenchError("go-clientv3 \(operation.rawValue) exited with \(status): \(errors.prefix(500))")
        }
        do {
            return try JSONDecoder().decode(GoRound.self, from: Data(output.utf8))
        } catch {
            throw BenchError("go-clientv3 printed something that is not its result (\(error)): \(output.prefix(300))")
        }
    }
}

/// Runs a process to completion on a thread of its own (never blocking Swift's cooperative pool) and returns its
/// exit status, stdout and stderr.
private func runToCompletion(_ executable: String, _ arguments: [String]) async throws -> (Int32, String, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var environment = ProcessInfo.processInfo.environment
    environment["GOMAXPROCS"] = nil  // Go's default, as a Go service would run
    process.environment = environment
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    process.standardInput = FileHandle.nullDevice
    try process.run()
    return await withCheckedContinuation { continuation in
        let thread = Thread {
            // stderr is read on a second thread so neither pipe can fill up and stall the child.
            let errorText = LockedText()
            let errorsRead = DispatchSemaphore(value: 0)
            let errorReader = Thread {
                errorText.set(String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
                errorsRead.signal()
            }
            errorReader.start()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            errorsRead.wait()
            continuation.resume(returning: (process.terminationStatus, text, errorText.value))
        }
        thread.start()
    }
}

/// A string written once by one thread and read by another.
private final class LockedText: @unchecked Sendable {
    private let lock = NSLock()
    private var text: String?
    func set(_ value: String) { lock.withLock { text = value } }
    var value: String { lock.withLock { text ?? "" } }
}
