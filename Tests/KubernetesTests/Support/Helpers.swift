import Foundation
import Kubernetes
import Logging
import NIOSSL
import Testing

/// A logger that discards everything (tests never bootstrap the logging system).
let testLogger = Logger(label: "kubernetes-tests", factory: { _ in SwiftLogNoOpLogHandler() })

/// Starts a scripted server, runs `body`, and shuts the server down.
func withServer<T>(
    tls: TLSConfiguration? = nil,
    handler: @escaping ScriptedHTTPServer.Handler,
    _ body: (ScriptedHTTPServer) async throws -> T
) async throws -> T {
    let server = try await ScriptedHTTPServer.start(tls: tls, handler: handler)
    do {
        let result = try await body(server)
        await server.shutdown()
        return result
    } catch {
        await server.shutdown()
        throw error
    }
}

/// Creates a client, runs `body`, and shuts the client down.
func withClient<T>(_ configuration: KubernetesConfiguration, _ body: (KubernetesClient) async throws -> T) async throws -> T {
    let client = try KubernetesClient(configuration: configuration, logger: testLogger)
    do {
        let result = try await body(client)
        try await client.shutdown()
        return result
    } catch {
        try? await client.shutdown()
        throw error
    }
}

/// A plain-HTTP server and a client talking to it, with a short request timeout.
func withServerAndClient<T>(
    requestTimeout: Duration = .seconds(5),
    credentials: KubernetesConfiguration.Credentials = .bearerToken("test-token"),
    handler: @escaping ScriptedHTTPServer.Handler,
    _ body: (ScriptedHTTPServer, KubernetesClient) async throws -> T
) async throws -> T {
    try await withServer(handler: handler) { server in
        let configuration = KubernetesConfiguration(
            server: server.url, namespace: "default", credentials: credentials, requestTimeout: requestTimeout
        )
        return try await withClient(configuration) { client in try await body(server, client) }
    }
}

/// Runs `body`, expecting it to throw a ``KubernetesError``; records an issue and returns `nil` otherwise.
func kubernetesError(
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void
) async -> KubernetesError? {
    do {
        try await body()
        Issue.record("expected a KubernetesError, but nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as KubernetesError {
        return error
    } catch {
        Issue.record("expected a KubernetesError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// A Lease as the API server returns it.
func leaseJSON(name: String = "lock", namespace: String = "default", resourceVersion: String = "1", holder: String = "a") -> String {
    """
    {"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"name":"\(name)","namespace":"\(namespace)",\
    "uid":"uid-\(name)","resourceVersion":"\(resourceVersion)","creationTimestamp":"2024-05-01T10:00:00Z"},\
    "spec":{"holderIdentity":"\(holder)","leaseDurationSeconds":15,"acquireTime":"2024-05-01T10:00:00.000000Z",\
    "renewTime":"2024-05-01T10:00:05.123456Z","leaseTransitions":0}}
    """
}

/// A list of leases as the API server returns it.
func leaseListJSON(resourceVersion: String, leases: [String]) -> String {
    """
    {"kind":"LeaseList","apiVersion":"coordination.k8s.io/v1","metadata":{"resourceVersion":"\(resourceVersion)"},\
    "items":[\(leases.joined(separator: ","))]}
    """
}

/// A watch event line (with its newline).
func watchLine(_ type: String, _ object: String) -> String {
    "{\"type\":\"\(type)\",\"object\":\(object)}\n"
}

/// A failure Status as the API server sends it.
func statusJSON(code: Int, reason: String?, message: String, details: String? = nil) -> String {
    var fields = [
        "\"kind\":\"Status\"", "\"apiVersion\":\"v1\"", "\"metadata\":{}", "\"status\":\"Failure\"",
        "\"message\":\"\(message)\"", "\"code\":\(code)",
    ]
    if let reason { fields.append("\"reason\":\"\(reason)\"") }
    if let details { fields.append("\"details\":\(details)") }
    return "{" + fields.joined(separator: ",") + "}"
}

/// A channel from a server script to the test: the script sends, the test awaits (no polling, no sleeps).
final class Signal<Value: Sendable>: Sendable {
    let stream: AsyncStream<Value>
    private let continuation: AsyncStream<Value>.Continuation

    init() {
        (stream, continuation) = AsyncStream.makeStream(of: Value.self)
    }

    func send(_ value: Value) { continuation.yield(value) }
}
