import NIOCore

/// Splits a watch response body — newline-delimited JSON objects arriving in arbitrary chunks — into
/// complete lines: an object split across chunks is held until its newline arrives, and a chunk holding
/// several objects yields them all. Blank lines are skipped.
struct JSONLineSplitter {
    private var buffer: [UInt8] = []
    private var scanned = 0

    /// The most bytes a single line may have before the stream is considered broken (a Lease is ~1 KiB).
    static let maximumLineLength = 16 * 1024 * 1024

    /// Adds a chunk and returns every line it completes (without the newline).
    mutating func append(_ chunk: ByteBuffer) throws -> [[UInt8]] {
        buffer.append(contentsOf: chunk.readableBytesView)
        var lines: [[UInt8]] = []
        var start = 0
        var index = scanned
        while index < buffer.count {
            if buffer[index] == UInt8(ascii: "\n") {
                let line = Self.trimmed(buffer[start..<index])
                if !line.isEmpty { lines.append(Array(line)) }
                start = index + 1
            }
            index += 1
        }
        if start > 0 { buffer.removeFirst(start) }
        scanned = buffer.count
        if buffer.count > Self.maximumLineLength {
            throw KubernetesError.invalidResponse("watch stream line exceeds \(Self.maximumLineLength) bytes without a newline")
        }
        return lines
    }

    /// What is left after the stream ended: a final object without a trailing newline, if any.
    mutating func finish() -> [UInt8]? {
        let rest = Self.trimmed(buffer[...])
        buffer.removeAll()
        scanned = 0
        return rest.isEmpty ? nil : Array(rest)
    }

    private static func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0A }
        var slice = bytes
        while let first = slice.first, isSpace(first) { slice = slice.dropFirst() }
        while let last = slice.last, isSpace(last) { slice = slice.dropLast() }
        return slice
    }
}
