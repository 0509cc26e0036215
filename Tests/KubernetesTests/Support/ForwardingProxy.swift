import Foundation
import NIOHTTP1
import Synchronization
@testable import Kubernetes

/// A plain-HTTP proxy on 127.0.0.1 in front of an API server, forwarding every request through `upstream`
/// (which adds the upstream's TLS and credentials) — unary requests whole, watches line by line — except the
/// requests `hangs` picks, which it receives and never answers (until the proxy shuts down).
final class ForwardingProxy: Sendable {
    let server: ScriptedHTTPServer
    /// Each request the proxy left hanging, as it arrives.
    let hung: AsyncStream<RecordedRequest>
    private let hungContinuation: AsyncStream<RecordedRequest>.Continuation
    private let hanging: Gauge

    /// A count shared by the handler and the proxy.
    private final class Gauge: Sendable {
        private let value = Mutex(0)
        func add(_ delta: Int) { value.withLock { $0 += delta } }
        var current: Int { value.withLock { $0 } }
    }

    /// How many hung requests are still open (their client has not given up on them yet).
    var hangingCount: Int { hanging.current }

    var url: String { server.url }

    private init(
        server: ScriptedHTTPServer, hung: AsyncStream<RecordedRequest>, continuation: AsyncStream<RecordedRequest>.Continuation,
        hanging: Gauge
    ) {
        self.hanging = hanging
        self.server = server
        self.hung = hung
        self.hungContinuation = continuation
    }

    static func start(upstream: KubernetesClient, hangs: @escaping @Sendable (RecordedRequest) -> Bool) async throws -> ForwardingProxy {
        let (stream, continuation) = AsyncStream.makeStream(of: RecordedRequest.self)
        let hanging = Gauge()
        let server = try await ScriptedHTTPServer.start { request, writer in
            if hangs(request) {
                hanging.add(1)
                continuation.yield(request)
                await writer.waitForClose()
                hanging.add(-1)
                return
            }
            let query = request.query.map { ($0.key, $0.value) }
            if request.query["watch"] == "true" || request.query["watch"] == "1" {
                try await writer.head(.ok, headers: [("Content-Type", "application/json")])
                try await upstream.streamLines(request.path, query: query) { line in
                    try await writer.body(String(decoding: line, as: UTF8.self) + "\n")
                }
                try await writer.end()
                return
            }
            let response = try await upstream.perform(request.method, request.path, query: query, body: request.body.isEmpty ? nil : request.body)
            var headers: [(String, String)] = []
            for name in ["Content-Type", "Warning", "Retry-After"] {
                for value in response.headers[name] { headers.append((name, value)) }
            }
            try await writer.head(HTTPResponseStatus(statusCode: response.status), headers: headers, contentLength: response.body.count)
            if !response.body.isEmpty { try await writer.body(String(decoding: response.body, as: UTF8.self)) }
            try await writer.end()
        }
        return ForwardingProxy(server: server, hung: stream, continuation: continuation, hanging: hanging)
    }

    /// Closes every connection (failing the hung requests) and stops listening.
    func shutdown() async {
        hungContinuation.finish()
        await server.shutdown()
    }
}
