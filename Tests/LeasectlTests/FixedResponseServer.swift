import Foundation
import Synchronization
@testable import leasectl

/// A plain-HTTP server on 127.0.0.1 (POSIX sockets, one thread) that answers every request with the same
/// response and closes the connection: an API server that fails every request the same way.
final class FixedResponseServer: Sendable {
    let port: Int
    private let listener: Int32
    private let stopped = Mutex(false)
    /// How many requests it answered.
    var answered: Int { count.withLock { $0 } }
    private let count = Mutex(0)

    var url: String { "http://127.0.0.1:\(port)" }

    /// Starts answering `status` with a JSON `body` (and `Connection: close`).
    init(status: Int, reason: String, body: String) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LeaseCtlError("socket() failed") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw LeaseCtlError("cannot listen on 127.0.0.1")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        let response = Array((
            "HTTP/1.1 \(status) \(reason)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
            + "Connection: close\r\n\r\n" + body).utf8)
        Thread.detachNewThread { [self] in serve(response) }
    }

    private func serve(_ response: [UInt8]) {
        while true {
            let connection = accept(listener, nil, nil)
            if connection < 0 {
                if stopped.withLock({ $0 }) { return }
                continue
            }
            // Read the request head (and whatever body came with it), then answer and close.
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !received.containsHeadEnd {
                let n = read(connection, &buffer, buffer.count)
                if n <= 0 { break }
                received += buffer[0..<n]
            }
            _ = response.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
            count.withLock { $0 += 1 }
            shutdown(connection, Int32(SHUT_WR))
            close(connection)
        }
    }

    /// Stops accepting.
    func stop() {
        stopped.withLock { $0 = true }
        Foundation.shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }
}

private extension [UInt8] {
    var containsHeadEnd: Bool {
        guard count >= 4 else { return false }
        for index in 0...(count - 4) where self[index] == 13 && self[index + 1] == 10 && self[index + 2] == 13 && self[index + 3] == 10 {
            return true
        }
        return false
    }
}
