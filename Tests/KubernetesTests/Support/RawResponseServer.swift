import NIOCore
import NIOPosix

/// A TCP server on 127.0.0.1 that answers the first bytes of every connection with `response`, verbatim —
/// for responses `ScriptedHTTPServer` cannot produce because they are not valid HTTP (garbage, a broken
/// status line, a truncated or malformed chunked body). Then it closes the connection, resets it, or keeps it
/// open, as `ending` says.
final class RawResponseServer: Sendable {
    enum Ending: Sendable {
        /// Closes the connection after the response (FIN).
        case close
        /// Resets the connection after the response (RST).
        case reset
        /// Keeps the connection open until the client closes it.
        case keepOpen
    }

    let port: Int
    private let channel: any Channel

    var url: String { "http://127.0.0.1:\(port)" }

    private init(port: Int, channel: any Channel) {
        self.port = port
        self.channel = channel
    }

    static func start(response: [UInt8], ending: Ending) async throws -> RawResponseServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RawResponder(response: response, ending: ending))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return RawResponseServer(port: channel.localAddress?.port ?? 0, channel: channel)
    }

    func shutdown() async {
        try? await channel.close()
    }
}

private final class RawResponder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let response: [UInt8]
    private let ending: RawResponseServer.Ending
    private var answered = false

    init(response: [UInt8], ending: RawResponseServer.Ending) {
        self.response = response
        self.ending = ending
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        answered = true
        let ending = self.ending
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: response))).whenComplete { _ in
            switch ending {
            case .close:
                channel.close(promise: nil)
            case .reset:
                if let provider = channel as? any SocketOptionProvider {
                    provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
                } else {
                    channel.close(promise: nil)
                }
            case .keepOpen:
                break
            }
        }
    }
}
