import Foundation

/// A `leasectl elect --events json` process whose event lines are read by a thread of their own into an
/// ``ElectionEventHub``. Used by `leasectl demo` (and by tests).
final class CandidateProcess: Sendable {
    /// The identity it campaigns as.
    let identity: String
    /// The process.
    let process: ChildProcess
    /// Finishes when the process's standard output reaches end of file.
    let outputClosed: Task<Void, Never>

    private init(identity: String, process: ChildProcess, outputClosed: Task<Void, Never>) {
        self.identity = identity
        self.process = process
        self.outputClosed = outputClosed
    }

    /// Starts `executable elect --lock lockURL --identity identity --events json` plus `arguments`.
    ///
    /// - Parameters:
    ///   - arguments: more `elect` options, and `--` COMMAND if any.
    ///   - logPath: where its standard error is appended; `nil` discards it.
    static func start(
        executable: String, lock: String, identity: String, arguments: [String],
        hub: ElectionEventHub, logPath: String?
    ) throws -> CandidateProcess {
        let argv = [executable, "elect", "--lock", lock, "--identity", identity, "--events", "json"] + arguments
        let process = try ChildProcess.spawn(
            argv, standardInput: .null, standardOutput: .pipe,
            standardError: logPath.map { .append($0) } ?? .null)
        let fd = process.standardOutput!
        let (done, finished) = AsyncStream.makeStream(of: Void.self)
        Thread.detachNewThread {
            LineReader.forEachLine(of: fd) { line in
                if let event = ElectionEventLine(line: line) { hub.append(event) }
            }
            close(fd)
            finished.finish()
        }
        let outputClosed = Task { for await _ in done {} }
        return CandidateProcess(identity: identity, process: process, outputClosed: outputClosed)
    }
}

/// Blocking line splitting of a file descriptor, for reader threads.
enum LineReader {
    /// Calls `body` with every complete line read from `fd` (without the newline) until end of file or
    /// an error; a final unterminated line is passed too.
    static func forEachLine(of fd: Int32, _ body: (String) -> Void) {
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            pending.append(contentsOf: buffer[0..<n])
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                body(String(decoding: pending[..<newline], as: UTF8.self))
                pending.removeSubrange(...newline)
            }
        }
        if !pending.isEmpty { body(String(decoding: pending, as: UTF8.self)) }
    }
}
