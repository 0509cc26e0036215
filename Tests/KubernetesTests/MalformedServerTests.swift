import Foundation
import Kubernetes
import Testing

/// Servers that break HTTP or the watch protocol (issue 5, "Fuzzing and bad input"): every case ends in a
/// typed ``KubernetesError`` within a bounded time. The plain cases (garbage JSON body, connection closed
/// mid-body, no answer, stall) are in ErrorMappingTests; these are the ones below the HTTP layer and inside
/// a watch stream.
@Suite("Malformed servers", .timeLimit(.minutes(1)))
struct MalformedServerTests {
    /// Runs `body` against a client of `url` and returns the KubernetesError it threw, checking it took less
    /// than `bound`.
    private func typedError(
        _ url: String, requestTimeout: Duration = .seconds(2), within bound: Duration = .seconds(10),
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: @escaping (KubernetesClient) async throws -> Void
    ) async throws -> KubernetesError? {
        let configuration = KubernetesConfiguration(server: url, namespace: "default", credentials: .bearerToken("t"), requestTimeout: requestTimeout)
        return try await withClient(configuration) { client in
            let start = ContinuousClock.now
            let error = await kubernetesError(sourceLocation: sourceLocation) { try await body(client) }
            #expect(ContinuousClock.now - start < bound, "took \(ContinuousClock.now - start)", sourceLocation: sourceLocation)
            return error
        }
    }

    private func raw(_ text: String, ending: RawResponseServer.Ending, requestTimeout: Duration = .seconds(2),
                     sourceLocation: SourceLocation = #_sourceLocation,
                     _ body: @escaping (KubernetesClient) async throws -> Void) async throws -> KubernetesError? {
        let server = try await RawResponseServer.start(response: Array(text.utf8), ending: ending)
        defer { Task { await server.shutdown() } }
        return try await typedError(server.url, requestTimeout: requestTimeout, sourceLocation: sourceLocation, body)
    }

    // MARK: - Not HTTP

    @Test(arguments: [RawResponseServer.Ending.close, .reset, .keepOpen])
    func garbageInsteadOfHTTP(ending: RawResponseServer.Ending) async throws {
        let error = try await raw("\u{0}\u{1}\u{2}SSH-2.0-OpenSSH_9.2\r\n\u{7F}garbage\r\n\r\n", ending: ending, requestTimeout: .milliseconds(500)) {
            _ = try await $0.getLease(namespace: "default", name: "x")
        }
        #expect(error.map { [.unavailable, .invalidResponse, .timeout].contains($0.code) } == true, "\(String(describing: error))")
    }

    @Test func brokenStatusLine() async throws {
        let error = try await raw("HTTP/1.1 two hundred OK\r\nContent-Length: 2\r\n\r\n{}", ending: .close) {
            _ = try await $0.getLease(namespace: "default", name: "x")
        }
        #expect(error.map { [.unavailable, .invalidResponse].contains($0.code) } == true, "\(String(describing: error))")
    }

    /// The server sends part of a head and closes the connection: the client reports exactly that
    /// (unavailable: the answer broke off), never a timeout, however loaded the machine. The network thread
    /// sees the end of the connection milliseconds after the request; when the request deadline fires first
    /// only because the tasks were not scheduled in time, it defers to the outcome already decided.
    @Test func headersThatNeverEnd() async throws {
        let error = try await raw("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: aaaa", ending: .close) {
            _ = try await $0.getLease(namespace: "default", name: "x")
        }
        #expect(error?.code == .unavailable, "\(String(describing: error))")
        #expect(error?.connection == .incompleteResponse, "\(String(describing: error))")
    }

    @Test func malformedChunkSize() async throws {
        let error = try await raw("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
                                  ending: .keepOpen, requestTimeout: .milliseconds(500)) {
            _ = try await $0.getLease(namespace: "default", name: "x")
        }
        #expect(error.map { [.unavailable, .invalidResponse, .timeout].contains($0.code) } == true, "\(String(describing: error))")
    }

    @Test func errorStatusWithTruncatedBodyIsStillTyped() async throws {
        let error = try await raw("HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"kind\":\"Status\",\"rea", ending: .reset) {
            _ = try await $0.getLease(namespace: "default", name: "x")
        }
        #expect(error?.code == .unavailable, "\(String(describing: error))")
    }

    // MARK: - Inside a watch stream

    private static let lease1 = watchLine("ADDED", leaseJSON(resourceVersion: "11"))

    /// Collects the events of a watch until it throws; returns them with the error.
    private func watchUntilError(_ client: KubernetesClient) async -> ([WatchEvent<Lease>], (any Error)?) {
        var events: [WatchEvent<Lease>] = []
        do {
            for try await event in client.watchLeases(namespace: "default", resourceVersion: "10") { events.append(event) }
            return (events, nil)
        } catch {
            return (events, error)
        }
    }

    @Test func truncatedChunkedWatchIsUnavailableAfterTheCompleteEvents() async throws {
        // One complete chunk with one event, then a chunk announcing 0x1f4 bytes of which only a few arrive.
        let body = Self.lease1
        let text = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + String(body.utf8.count, radix: 16) + "\r\n" + body + "\r\n" + "1f4\r\n{\"type\":\"MODIFIED\",\"obj"
        for ending in [RawResponseServer.Ending.close, .reset] {
            let server = try await RawResponseServer.start(response: Array(text.utf8), ending: ending)
            let configuration = KubernetesConfiguration(server: server.url, namespace: "default", credentials: .bearerToken("t"))
            try await withClient(configuration) { client in
                let (events, error) = await watchUntilError(client)
                #expect(events.count == 1)
                #expect((error as? KubernetesError)?.code == .unavailable, "\(ending): \(String(describing: error))")
            }
            await server.shutdown()
        }
    }

    @Test func garbageLineMidWatchIsInvalidResponseAfterTheGoodEvents() async throws {
        try await withServerAndClient(handler: { _, writer in
            try await writer.head(.ok, headers: [("Content-Type", "application/json")])
            try await writer.body(Self.lease1)
            try await writer.body("\u{0}\u{FFFD}\u{1B}[31mnot json\n")
            try await writer.body(watchLine("MODIFIED", leaseJSON(resourceVersion: "12")))
            try await writer.end()
        }) { _, client in
            let (events, error) = await watchUntilError(client)
            #expect(events.count == 1)
            let typed = try #require(error as? KubernetesError, "\(String(describing: error))")
            #expect(typed.code == .invalidResponse)
            #expect(typed.message.contains("not json"))
        }
    }

    @Test func watchLineWithoutNewlineBeyondTheLimitIsInvalidResponse() async throws {
        // 17 MiB without a newline: the splitter gives up at its 16 MiB limit instead of buffering forever.
        let chunk = String(repeating: "x", count: 1024 * 1024)
        try await withServerAndClient(handler: { _, writer in
            try await writer.head(.ok, headers: [("Content-Type", "application/json")])
            try await writer.body("{\"type\":\"ADDED\",\"object\":\"")
            for _ in 0..<17 { try await writer.body(chunk) }
            await writer.waitForClose()
        }) { _, client in
            let (events, error) = await watchUntilError(client)
            #expect(events.isEmpty)
            let typed = try #require(error as? KubernetesError, "\(String(describing: error))")
            #expect(typed.code == .invalidResponse)
            #expect(typed.message.contains("exceeds"))
        }
    }

    @Test func deeplyNestedJSONIsInvalidResponseNotAStackOverflow() async throws {
        let nested = String(repeating: "[", count: 200_000) + String(repeating: "]", count: 200_000)
        try await withServerAndClient(handler: { request, writer in
            if request.query["watch"] == "true" {
                try await writer.head(.ok, headers: [("Content-Type", "application/json")])
                try await writer.body("{\"type\":\"ADDED\",\"object\":" + nested + "}\n")
                try await writer.end()
            } else {
                try await writer.respond(.ok, json: "{\"metadata\":" + nested + "}")
            }
        }) { _, client in
            let error = await kubernetesError { _ = try await client.getLease(namespace: "default", name: "x") }
            #expect(error?.code == .invalidResponse)
            let (events, watchError) = await watchUntilError(client)
            #expect(events.isEmpty)
            #expect((watchError as? KubernetesError)?.code == .invalidResponse, "\(String(describing: watchError))")
        }
    }

    @Test func informerEndsWithTheTypedErrorOnGarbageEvents() async throws {
        try await withServerAndClient(handler: { request, writer in
            if request.query["watch"] == "true" {
                try await writer.head(.ok, headers: [("Content-Type", "application/json")])
                try await writer.body(watchLine("ADDED", "{\"metadata\":{\"name\":7}}"))
                try await writer.end()
            } else {
                try await writer.respond(.ok, json: leaseListJSON(resourceVersion: "10", leases: []))
            }
        }) { _, client in
            var notifications = 0
            let start = ContinuousClock.now
            do {
                for try await _ in client.informLeases(namespace: "default") { notifications += 1 }
                Issue.record("the informer ended without an error")
            } catch let error as KubernetesError {
                #expect(error.code == .invalidResponse)
            }
            #expect(notifications == 1, "the snapshot only")
            #expect(ContinuousClock.now - start < .seconds(10))
        }
    }
}
