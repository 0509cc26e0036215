import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// The open connections, so that shutdown can close them (which also ends their watch streams).
final class ConnectionRegistry: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var shuttingDown = false
    }
    private let state = Mutex(State())

    /// Records `channel`; closes it at once when the server is shutting down.
    func register(_ channel: any Channel) {
        let refused = state.withLock { state -> Bool in
            if state.shuttingDown { return true }
            state.channels[ObjectIdentifier(channel)] = channel
            return false
        }
        if refused { channel.close(promise: nil) }
    }

    func unregister(_ channel: any Channel) {
        _ = state.withLock { $0.channels.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    func beginShutdown() {
        state.withLock { $0.shuttingDown = true }
    }

    func closeAll() {
        let channels = state.withLock { Array($0.channels.values) }
        for channel in channels { channel.close(promise: nil) }
    }
}

/// One HTTP/1.1 connection: reads requests one after the other, hands each to the ``APIHandler`` (in this
/// task, never on the event loop) and writes the response back.
struct HTTPConnection {
    /// kube-apiserver's limit for request bodies (3 MiB).
    static let maxBodyBytes = 3 * 1024 * 1024

    let channel: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
    let api: APIHandler
    let registry: ConnectionRegistry
    let logger: Logger

    func run() async {
        registry.register(channel.channel)
        defer { registry.unregister(channel.channel) }
        do {
            try await channel.executeThenClose { inbound, outbound in
                var parts = inbound.makeAsyncIterator()
                while let part = try await parts.next() {
                    guard case .head(let head) = part else { continue }
                    if head.headers[canonicalForm: "Expect"].contains(where: { $0.lowercased() == "100-continue" }) {
                        try await outbound.write(.head(HTTPResponseHead(version: head.version, status: .continue)))
                    }
                    var body = ByteBuffer()
                    var tooLarge = false
                    var complete = false
                    collecting: while let part = try await parts.next() {
                        switch part {
                        case .head:
                            return   // a second head before the end: give up on this connection
                        case .body(var chunk):
                            if body.readableBytes + chunk.readableBytes > Self.maxBodyBytes {
                                tooLarge = true
                            } else if !tooLarge {
                                body.writeBuffer(&chunk)
                            }
                        case .end:
                            complete = true
                            break collecting
                        }
                    }
                    guard complete else { return }
                    let request = HTTPRequest(head: head, body: body)
                    let keepAlive = head.isKeepAlive
                    let result: HandlerResult
                    if tooLarge {
                        result = .response(APIHandler.statusResponse(.requestEntityTooLarge(limit: Self.maxBodyBytes)))
                    } else {
                        result = await api.handle(request)
                    }
                    switch result {
                    case .response(let response):
                        log(request, status: response.status)
                        try await write(response, version: head.version, keepAlive: keepAlive, to: outbound)
                    case .watch(let stream):
                        log(request, status: .ok)
                        try await serve(stream, version: head.version, keepAlive: keepAlive, to: outbound)
                    }
                    if !keepAlive { return }
                }
            }
        } catch {
            logger.debug("connection ended", metadata: ["error.message": "\(error)"])
        }
    }

    private func log(_ request: HTTPRequest, status: HTTPResponseStatus) {
        let metadata: Logger.Metadata = [
            "http.method": "\(request.method.rawValue)",
            "http.path": "\(request.path)",
            "http.status": "\(status.code)",
        ]
        if status.code >= 500 {
            logger.info("request failed", metadata: metadata)
        } else {
            logger.debug("request", metadata: metadata)
        }
    }

    private func write(
        _ response: HTTPResponse, version: HTTPVersion, keepAlive: Bool,
        to outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>
    ) async throws {
        var headers = response.headers
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body.readableBytes))
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: version, status: response.status, headers: headers)
        try await outbound.write(contentsOf: [.head(head), .body(.byteBuffer(response.body)), .end(nil)])
    }

    /// Streams a watch: the head, then every line the stream emits (each flushed on its own), then the end —
    /// unless the client goes away first, which cancels the stream (and with it the etcd watch).
    private func serve(
        _ stream: WatchStream, version: HTTPVersion, keepAlive: Bool,
        to outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>
    ) async throws {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Transfer-Encoding", value: "chunked")
        headers.add(name: "Cache-Control", value: "no-cache, private")
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        try await outbound.write(.head(HTTPResponseHead(version: version, status: .ok, headers: headers)))
        let task = Task {
            try await stream.run { line in
                try await outbound.write(.body(.byteBuffer(line)))
            }
        }
        channel.channel.closeFuture.whenComplete { _ in task.cancel() }
        let outcome = await withTaskCancellationHandler {
            await task.result
        } onCancel: {
            task.cancel()
        }
        if case .failure(let error) = outcome {
            logger.debug("watch ended", metadata: ["error.message": "\(error)"])
            throw error
        }
        try await outbound.write(.end(nil))
    }
}

/// A request, read completely.
struct HTTPRequest: Sendable {
    var method: HTTPMethod
    /// The path, without the query.
    var path: String
    /// The path's segments, percent-decoded (`/a/b/` → `["a", "b"]`).
    var segments: [String]
    /// Query parameters, percent-decoded; the first value of each name.
    var query: [String: String]
    var headers: HTTPHeaders
    var body: ByteBuffer

    init(head: HTTPRequestHead, body: ByteBuffer) {
        method = head.method
        headers = head.headers
        self.body = body
        let uri = head.uri
        let pathPart: Substring
        let queryPart: Substring
        if let mark = uri.firstIndex(of: "?") {
            pathPart = uri[..<mark]
            queryPart = uri[uri.index(after: mark)...]
        } else {
            pathPart = uri[...]
            queryPart = ""
        }
        path = String(pathPart)
        segments = pathPart.split(separator: "/", omittingEmptySubsequences: true).map { percentDecode($0, plusIsSpace: false) }
        var query: [String: String] = [:]
        for pair in queryPart.split(separator: "&", omittingEmptySubsequences: true) {
            let name: Substring
            let value: Substring
            if let equals = pair.firstIndex(of: "=") {
                name = pair[..<equals]
                value = pair[pair.index(after: equals)...]
            } else {
                name = pair
                value = ""
            }
            let key = percentDecode(name, plusIsSpace: true)
            if query[key] == nil { query[key] = percentDecode(value, plusIsSpace: true) }
        }
        self.query = query
    }
}

/// A complete response.
struct HTTPResponse: Sendable {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: ByteBuffer

    /// A JSON body.
    static func json(_ status: HTTPResponseStatus, _ bytes: [UInt8]) -> HTTPResponse {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Cache-Control", value: "no-cache, private")
        return HTTPResponse(status: status, headers: headers, body: ByteBuffer(bytes: bytes))
    }

    /// A plain-text body.
    static func text(_ status: HTTPResponseStatus, _ text: String) -> HTTPResponse {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        return HTTPResponse(status: status, headers: headers, body: ByteBuffer(string: text))
    }
}

/// What a handler produced: a complete response, or a stream of watch events.
enum HandlerResult: Sendable {
    case response(HTTPResponse)
    case watch(WatchStream)
}

/// A watch response body: `run` emits one JSON line per event until it returns (the stream ends) or its
/// task is cancelled (the client went away, or the server shuts down).
struct WatchStream: Sendable {
    let run: @Sendable (_ emit: @escaping @Sendable (ByteBuffer) async throws -> Void) async throws -> Void
}

/// Decodes `%XX` escapes (and `+` as a space in queries); invalid escapes are kept as they are.
func percentDecode(_ text: Substring, plusIsSpace: Bool) -> String {
    guard text.contains(where: { $0 == "%" || (plusIsSpace && $0 == "+") }) else { return String(text) }
    var bytes: [UInt8] = []
    let utf8 = Array(text.utf8)
    var index = 0
    func hex(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
    while index < utf8.count {
        let byte = utf8[index]
        if byte == UInt8(ascii: "%"), index + 2 < utf8.count, let high = hex(utf8[index + 1]), let low = hex(utf8[index + 2]) {
            bytes.append(high << 4 | low)
            index += 3
        } else if byte == UInt8(ascii: "+") && plusIsSpace {
            bytes.append(UInt8(ascii: " "))
            index += 1
        } else {
            bytes.append(byte)
            index += 1
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}
