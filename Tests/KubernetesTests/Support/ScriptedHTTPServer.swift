import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// A request the scripted server received.
struct RecordedRequest: Sendable {
    var method: HTTPMethod
    var uri: String
    var headers: HTTPHeaders
    var body: [UInt8]
    /// The certificate the client presented in the TLS handshake, if any.
    var clientCertificate: NIOSSLCertificate?

    var path: String { String(uri.split(separator: "?", maxSplits: 1).first ?? "") }

    /// The decoded query parameters.
    var query: [String: String] {
        guard let raw = uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return [:] }
        var result: [String: String] = [:]
        for pair in raw.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0) }
            let key = parts[0].removingPercentEncoding ?? parts[0]
            let value = parts.count > 1 ? (parts[1].removingPercentEncoding ?? parts[1]) : ""
            result[key] = value
        }
        return result
    }

    /// The raw (still percent-encoded) query string.
    var rawQuery: String { String(uri.split(separator: "?", maxSplits: 1).dropFirst().first ?? "") }

    var bodyString: String { String(decoding: body, as: UTF8.self) }
}

/// Writes one scripted response; every method is safe to call from any task.
struct ResponseWriter: Sendable {
    let channel: any Channel

    /// Sends the response head. Without `contentLength` the body is chunked.
    func head(_ status: HTTPResponseStatus, headers: [(String, String)] = [], contentLength: Int? = nil) async throws {
        var fields = HTTPHeaders(headers)
        if let contentLength {
            fields.replaceOrAdd(name: "Content-Length", value: String(contentLength))
        } else if !fields.contains(name: "Content-Length") {
            fields.replaceOrAdd(name: "Transfer-Encoding", value: "chunked")
        }
        try await channel.writeAndFlush(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: status, headers: fields)))
    }

    /// Sends (and flushes) a part of the body: one chunk of a chunked body.
    func body(_ text: String) async throws {
        try await channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: text))))
    }

    /// Ends the response.
    func end() async throws {
        try await channel.writeAndFlush(HTTPServerResponsePart.end(nil))
    }

    /// A complete response with a `Content-Length` body.
    func respond(_ status: HTTPResponseStatus, json: String, headers: [(String, String)] = []) async throws {
        let bytes = Array(json.utf8)
        try await head(status, headers: [("Content-Type", "application/json")] + headers, contentLength: bytes.count)
        if !bytes.isEmpty { try await body(json) }
        try await end()
    }

    /// Closes the connection abruptly.
    func close() async {
        try? await channel.close()
    }

    /// Suspends until the client closes the connection (or the server shuts down): a server that never answers.
    func waitForClose() async {
        try? await channel.closeFuture.get()
    }
}

/// A tiny HTTP/1.1 (optionally TLS) server for tests, bound to 127.0.0.1 on a free port, whose every
/// response is scripted by a closure.
final class ScriptedHTTPServer: Sendable {
    typealias Handler = @Sendable (RecordedRequest, ResponseWriter) async throws -> Void

    let port: Int
    let scheme: String
    private let serverChannel: any Channel
    private let state: ServerState

    /// `https://127.0.0.1:<port>` (or `http://`).
    var url: String { "\(scheme)://127.0.0.1:\(port)" }

    /// Every request received so far, in order.
    var requests: [RecordedRequest] { state.requests }

    private init(port: Int, scheme: String, serverChannel: any Channel, state: ServerState) {
        self.port = port
        self.scheme = scheme
        self.serverChannel = serverChannel
        self.state = state
    }

    /// Starts a server.
    ///
    /// - Parameters:
    ///   - tls: The server TLS configuration; `nil` for plain HTTP.
    ///   - handler: Scripts the response to each request.
    static func start(tls: TLSConfiguration? = nil, handler: @escaping Handler) async throws -> ScriptedHTTPServer {
        let sslContext = try tls.map { try NIOSSLContext(configuration: $0) }
        let state = ServerState()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        ScriptedRequestHandler(handler: handler, record: { request in state.record(request) })
                    )
                    state.register(channel)
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return ScriptedHTTPServer(
            port: channel.localAddress?.port ?? 0, scheme: tls == nil ? "http" : "https", serverChannel: channel, state: state
        )
    }

    /// Stops accepting and closes every connection.
    func shutdown() async {
        try? await serverChannel.close()
        for child in state.children { try? await child.close() }
    }
}

/// The requests and open connections of a server.
private final class ServerState: Sendable {
    private struct Values {
        var requests: [RecordedRequest] = []
        var children: [ObjectIdentifier: any Channel] = [:]
    }
    private let values = Mutex(Values())

    var requests: [RecordedRequest] { values.withLock { $0.requests } }
    var children: [any Channel] { values.withLock { Array($0.children.values) } }

    func record(_ request: RecordedRequest) {
        values.withLock { $0.requests.append(request) }
    }

    func register(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        values.withLock { $0.children[id] = channel }
        channel.closeFuture.whenComplete { _ in
            _ = self.values.withLock { $0.children.removeValue(forKey: id) }
        }
    }
}

/// Collects one request at a time and runs the script for it.
private final class ScriptedRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let handler: ScriptedHTTPServer.Handler
    private let record: @Sendable (RecordedRequest) -> Void
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []

    init(handler: @escaping ScriptedHTTPServer.Handler, record: @escaping @Sendable (RecordedRequest) -> Void) {
        self.handler = handler
        self.record = record
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body = []
        case .body(let buffer):
            body.append(contentsOf: buffer.readableBytesView)
        case .end:
            guard let head else { return }
            let certificate = (try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self))?.peerCertificate
            let request = RecordedRequest(
                method: head.method, uri: head.uri, headers: head.headers, body: body, clientCertificate: certificate
            )
            self.head = nil
            record(request)
            let writer = ResponseWriter(channel: context.channel)
            let handler = self.handler
            Task {
                do {
                    try await handler(request, writer)
                } catch {
                    await writer.close()
                }
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
