import EtcdTesting
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A TCP listener on 127.0.0.1 that plays a broken etcd: every accepted connection is handled by `behaviour`,
/// from raw garbage to well-framed HTTP/2 + gRPC responses carrying arbitrary protobuf bytes.
///
/// Only as much HTTP/2 as gRPC core needs is spoken: the server SETTINGS (and ACKs of the client's SETTINGS
/// and PINGs), then for each request stream a HEADERS frame (`:status 200`, `content-type application/grpc`),
/// one DATA frame per gRPC message and a trailers frame with `grpc-status`. HPACK fields are literal (no
/// Huffman, no dynamic table), which every decoder accepts.
final class MisbehavingGRPCServer: Sendable {
    enum Behaviour: Sendable {
        /// Writes these bytes as soon as the connection is accepted, then reads until the client goes away.
        case garbage([UInt8])
        /// Accepts and reads everything, never writes a byte.
        case acceptAndNeverAnswer
        /// Reads the client's HTTP/2 preface, then closes the connection (FIN).
        case closeAfterPreface
        /// Reads the client's HTTP/2 preface, then resets the connection (RST: SO_LINGER 0).
        case resetAfterPreface
        /// Answers every request stream with these gRPC messages and `grpc-status` (0 = OK); with
        /// `resetAfterMessages`, resets the TCP connection after the messages instead of sending trailers
        /// (a stream cut mid-way).
        case respond(messages: [[UInt8]], grpcStatus: Int = 0, resetAfterMessages: Bool = false)
        /// Answers every request stream with a DATA frame holding `bytes` as-is (for example a gRPC length
        /// prefix announcing more than follows), then resets the connection.
        case rawData([UInt8])
    }

    let port: Int
    let behaviour: Behaviour
    private let listener: Int32
    private let state = Mutex(State())

    private struct State {
        var connections: [Int32] = []
        var accepted = 0
        var requests = 0
        var stopped = false
    }

    /// `127.0.0.1:<port>`.
    var endpoint: String { "127.0.0.1:\(port)" }
    /// Connections accepted so far.
    var acceptedConnections: Int { state.withLock { $0.accepted } }
    /// Request streams (HEADERS frames from the client) seen so far.
    var requestStreams: Int { state.withLock { $0.requests } }

    init(_ behaviour: Behaviour) throws {
        self.behaviour = behaviour
        let (fd, port) = try bindLoopbackSocket(listenBacklog: 16)
        self.listener = fd
        self.port = Int(port)
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    /// Stops accepting and shuts every connection down (the client sees them close).
    func stop() {
        let connections = state.withLock { s -> [Int32] in
            s.stopped = true
            return s.connections
        }
        shutdown(listener, Int32(SHUT_RDWR))
        for fd in connections { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    deinit {
        stop()
        close(listener)
    }

    // MARK: - Connections

    private func acceptLoop() {
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                return
            }
            let stopped = state.withLock { s -> Bool in
                if !s.stopped { s.connections.append(fd); s.accepted += 1 }
                return s.stopped
            }
            if stopped { close(fd); return }
            let thread = Thread { [self] in
                serve(fd)
                state.withLock { $0.connections.removeAll { $0 == fd } }
                close(fd)
            }
            thread.start()
        }
    }

    private static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private func serve(_ fd: Int32) {
        switch behaviour {
        case .garbage(let bytes):
            write(fd, bytes)
            drain(fd)
        case .acceptAndNeverAnswer:
            drain(fd)
        case .closeAfterPreface:
            _ = readExactly(fd, Self.preface.count)
        case .resetAfterPreface:
            _ = readExactly(fd, Self.preface.count)
            reset(fd)
        case .respond, .rawData:
            speakHTTP2(fd)
        }
    }

    private func speakHTTP2(_ fd: Int32) {
        guard readExactly(fd, Self.preface.count) == Self.preface else { return }
        write(fd, frame(type: 0x4, flags: 0, stream: 0, payload: []))  // our SETTINGS
        while let header = readExactly(fd, 9) {
            let length = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
            let type = header[3], flags = header[4]
            let stream = (UInt32(header[5]) << 24 | UInt32(header[6]) << 16 | UInt32(header[7]) << 8 | UInt32(header[8])) & 0x7FFF_FFFF
            guard let payload = readExactly(fd, length) else { return }
            switch type {
            case 0x4 where flags & 0x1 == 0:  // SETTINGS → ACK
                write(fd, frame(type: 0x4, flags: 0x1, stream: 0, payload: []))
            case 0x6 where flags & 0x1 == 0:  // PING → ACK
                write(fd, frame(type: 0x6, flags: 0x1, stream: 0, payload: payload))
            case 0x1:  // HEADERS: a new request stream
                state.withLock { $0.requests += 1 }
                if !answer(fd, stream: stream) { return }
            case 0x7:  // GOAWAY
                return
            default:
                break
            }
        }
    }

    /// Answers one request stream; `false` when the connection was reset.
    private func answer(_ fd: Int32, stream: UInt32) -> Bool {
        let headers: [UInt8] = [0x88]  // :status 200 (static table index 8)
            + literal("content-type", "application/grpc")
        write(fd, frame(type: 0x1, flags: 0x4, stream: stream, payload: headers))
        switch behaviour {
        case .respond(let messages, let grpcStatus, let resetAfterMessages):
            for message in messages {
                let n = UInt32(message.count)
                let prefix: [UInt8] = [0, UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]
                write(fd, frame(type: 0x0, flags: 0, stream: stream, payload: prefix + message))
            }
            if resetAfterMessages {
                // Give the client time to read the messages first: a reset discards whatever the peer's
                // kernel has not yet handed to it.
                usleep(200_000)
                reset(fd)
                return false
            }
            let trailers = literal("grpc-status", String(grpcStatus)) + literal("grpc-message", grpcStatus == 0 ? "" : "misbehaving")
            write(fd, frame(type: 0x1, flags: 0x5, stream: stream, payload: trailers))  // END_HEADERS | END_STREAM
            return true
        case .rawData(let bytes):
            write(fd, frame(type: 0x0, flags: 0, stream: stream, payload: bytes))
            reset(fd)
            return false
        default:
            return true
        }
    }

    // MARK: - Bytes

    private func literal(_ name: String, _ value: String) -> [UInt8] {
        // "Literal Header Field without Indexing — New Name", lengths < 127, no Huffman.
        [0x00, UInt8(name.utf8.count)] + Array(name.utf8) + [UInt8(value.utf8.count)] + Array(value.utf8)
    }

    private func frame(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8]) -> [UInt8] {
        let n = payload.count
        return [UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF), type, flags,
                UInt8(stream >> 24 & 0x7F), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)] + payload
    }

    private func write(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                return
            }
            offset += n
        }
    }

    private func readExactly(_ fd: Int32, _ count: Int) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + offset, count - offset, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            offset += n
        }
        return buffer
    }

    private func drain(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, 4096, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
        }
    }

    private func reset(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        // The caller returns and closes the socket: with a zero linger time, close sends RST.
    }
}
