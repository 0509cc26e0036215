import Foundation
@testable import Kubernetes
import NIOCore
import NIOHTTP1
import Testing

@Suite("Watch", .timeLimit(.minutes(1)))
struct WatchTests {
    @Test func severalEventsInOneChunk() async throws {
        try await withServerAndClient(handler: { _, writer in
            try await writer.head(.ok, headers: [("Content-Type", "application/json")])
            try await writer.body(
                watchLine("ADDED", leaseJSON(resourceVersion: "11", holder: "a"))
                    + watchLine("MODIFIED", leaseJSON(resourceVersion: "12", holder: "b"))
                    + watchLine("BOOKMARK", #"{"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"resourceVersion":"13"}}"#)
                    + watchLine("DELETED", leaseJSON(resourceVersion: "14", holder: "b"))
            )
            try await writer.end()
        }) { server, client in
            var events: [WatchEvent<Lease>] = []
            for try await event in client.watchLeases(namespace: "default", name: "lock", resourceVersion: "10", timeoutSeconds: 30) {
                events.append(event)
            }
            #expect(events.count == 4)
            guard events.count == 4 else { return }
            if case .added(let lease) = events[0] { #expect(lease.spec?.holderIdentity == "a") } else { Issue.record("\(events[0])") }
            if case .modified(let lease) = events[1] { #expect(lease.metadata.resourceVersion == "12") } else { Issue.record("\(events[1])") }
            #expect(events[2] == .bookmark(resourceVersion: "13"))
            if case .deleted(let lease) = events[3] { #expect(lease.metadata.resourceVersion == "14") } else { Issue.record("\(events[3])") }

            let request = try #require(server.requests.first)
            #expect(request.path == "/apis/coordination.k8s.io/v1/namespaces/default/leases")
            #expect(request.query == [
                "watch": "true", "resourceVersion": "10", "allowWatchBookmarks": "true",
                "fieldSelector": "metadata.name=lock", "timeoutSeconds": "30",
            ])
            #expect(request.rawQuery.contains("fieldSelector=metadata.name%3Dlock"))
        }
    }

    @Test func oneEventSplitAcrossChunks() async throws {
        let line = watchLine("MODIFIED", leaseJSON(resourceVersion: "21", holder: "split"))
        let bytes = Array(line.utf8)
        let cut1 = bytes.count / 3, cut2 = 2 * bytes.count / 3
        try await withServerAndClient(handler: { _, writer in
            try await writer.head(.ok)
            try await writer.body(String(decoding: bytes[..<cut1], as: UTF8.self))
            try await Task.sleep(for: .milliseconds(20))  // scripted pause, so the parts arrive as separate reads
            try await writer.body(String(decoding: bytes[cut1..<cut2], as: UTF8.self))
            try await Task.sleep(for: .milliseconds(20))
            try await writer.body(String(decoding: bytes[cut2...], as: UTF8.self) + watchLine("ADDED", leaseJSON(name: "other", resourceVersion: "22")))
            try await writer.end()
        }) { _, client in
            var events: [WatchEvent<Lease>] = []
            for try await event in client.watchLeases(namespace: "default", resourceVersion: "20") { events.append(event) }
            #expect(events.count == 2)
            if case .modified(let lease)? = events.first { #expect(lease.spec?.holderIdentity == "split") } else { Issue.record("\(events)") }
            if case .added(let lease)? = events.last { #expect(lease.metadata.name == "other") } else { Issue.record("\(events)") }
        }
    }

    @Test func lastObjectWithoutNewline() async throws {
        try await withServerAndClient(handler: { _, writer in
            try await writer.head(.ok)
            try await writer.body(watchLine("ADDED", leaseJSON(resourceVersion: "2")).trimmingCharacters(in: .newlines))
            try await writer.end()
        }) { _, client in
            var count = 0
            for try await _ in client.watchLeases(namespace: nil, resourceVersion: nil) { count += 1 }
            #expect(count == 1)
        }
    }

    @Test func errorEventIsYielded() async throws {
        try await withServerAndClient(handler: { _, writer in
            try await writer.head(.ok)
            try await writer.body(watchLine("ERROR", statusJSON(code: 410, reason: "Expired", message: "too old resource version: 1 (50)")))
            try await writer.end()
        }) { _, client in
            var events: [WatchEvent<Lease>] = []
            for try await event in client.watchLeases(namespace: "default", resourceVersion: "1") { events.append(event) }
            guard case .error(let status)? = events.first, events.count == 1 else {
                Issue.record("expected one ERROR event, got \(events)")
                return
            }
            #expect(status.code == 410)
            #expect(status.reason == "Expired")
        }
    }

    @Test func refusedWatchThrowsTheMappedError() async throws {
        try await withServerAndClient(handler: { _, writer in
            try await writer.respond(.gone, json: statusJSON(code: 410, reason: "Gone", message: "too old"))
        }) { _, client in
            let error = await kubernetesError {
                for try await _ in client.watchLeases(namespace: "default", resourceVersion: "1") {}
            }
            #expect(error?.code == .gone)
        }
    }

    @Test func undecodableEventThrowsInvalidResponse() async throws {
        try await withServerAndClient(handler: { _, writer in
            try await writer.head(.ok)
            try await writer.body("{\"type\":\"ADDED\",\"object\":\"not a lease\"}\n")
            try await writer.end()
        }) { _, client in
            let error = await kubernetesError {
                for try await _ in client.watchLeases(namespace: "default", resourceVersion: "1") {}
            }
            #expect(error?.code == .invalidResponse)
        }
    }

    @Test func watchOutlivesTheRequestTimeoutAndEndingTheIterationCancelsIt() async throws {
        let closed = Signal<Void>()
        try await withServerAndClient(requestTimeout: .seconds(1), handler: { _, writer in
            try await writer.head(.ok)
            try await writer.body(watchLine("ADDED", leaseJSON(resourceVersion: "1")))
            try await Task.sleep(for: .milliseconds(2500))  // longer than the request timeout: a watch has no deadline
            try await writer.body(watchLine("MODIFIED", leaseJSON(resourceVersion: "2")))
            await writer.waitForClose()
            closed.send(())
        }) { _, client in
            var seen = 0
            for try await _ in client.watchLeases(namespace: "default", resourceVersion: "0") {
                seen += 1
                if seen == 2 { break }
            }
            #expect(seen == 2)
            // Leaving the loop cancels the request: the server sees the connection close.
            var signals = closed.stream.makeAsyncIterator()
            _ = await signals.next()
        }
    }

    @Test func lineSplitterHandlesEveryChunking() throws {
        let lines = [watchLine("ADDED", leaseJSON(resourceVersion: "1")), "\n", watchLine("DELETED", leaseJSON(resourceVersion: "2"))]
        let stream = Array(lines.joined().utf8)
        for chunkSize in [1, 2, 7, 64, stream.count] {
            var splitter = JSONLineSplitter()
            var output: [[UInt8]] = []
            var index = 0
            while index < stream.count {
                let end = min(index + chunkSize, stream.count)
                output += try splitter.append(ByteBuffer(bytes: stream[index..<end]))
                index = end
            }
            #expect(splitter.finish() == nil)
            #expect(output.count == 2, "chunk size \(chunkSize)")
            #expect(output.first.map { String(decoding: $0, as: UTF8.self) } == lines[0].trimmingCharacters(in: .newlines))
        }
    }
}
