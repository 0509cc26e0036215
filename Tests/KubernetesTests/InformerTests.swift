import Foundation
import Kubernetes
import NIOHTTP1
import Synchronization
import Testing

/// Hands out 0, 1, 2, … to the requests of a scripted server.
final class RequestCounter: Sendable {
    private let value = Mutex(0)
    func next() -> Int { value.withLock { value in defer { value += 1 }; return value } }
}

@Suite("Lease informer", .timeLimit(.minutes(1)))
struct InformerTests {
    @Test func relistsAfterGoneAndResumesFromTheLastResourceVersion() async throws {
        let counter = RequestCounter()
        try await withServerAndClient(handler: { _, writer in
            switch counter.next() {
            case 0:  // list
                try await writer.respond(.ok, json: leaseListJSON(resourceVersion: "10", leases: [leaseJSON(resourceVersion: "5")]))
            case 1:  // watch from the list; one change, then the server ends the watch
                try await writer.head(.ok)
                try await writer.body(watchLine("MODIFIED", leaseJSON(resourceVersion: "11", holder: "b")))
                try await writer.end()
            case 2:  // resumed; a bookmark moves the resourceVersion on, then the stream ends
                try await writer.head(.ok)
                try await writer.body(watchLine("BOOKMARK", #"{"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"resourceVersion":"15"}}"#))
                try await writer.end()
            case 3:  // resumed from the bookmark; the resourceVersion has been compacted
                try await writer.head(.ok)
                try await writer.body(watchLine("ERROR", statusJSON(code: 410, reason: "Expired", message: "too old resource version: 15 (25)")))
                try await writer.end()
            case 4:  // relist
                try await writer.respond(.ok, json: leaseListJSON(resourceVersion: "30", leases: [leaseJSON(resourceVersion: "28", holder: "c")]))
            case 5:  // the watch itself is refused with 410
                try await writer.respond(.gone, json: statusJSON(code: 410, reason: "Gone", message: "too old resource version"))
            case 6:  // relist again
                try await writer.respond(.ok, json: leaseListJSON(resourceVersion: "40", leases: []))
            case 7:
                try await writer.head(.ok)
                try await writer.body(watchLine("ADDED", leaseJSON(resourceVersion: "41", holder: "d")))
                await writer.waitForClose()
            default:
                await writer.waitForClose()
            }
        }) { server, client in
            var notifications: [LeaseNotification] = []
            for try await notification in client.informLeases(namespace: "default", name: "lock") {
                notifications.append(notification)
                if notifications.count == 5 { break }
            }
            guard notifications.count == 5 else { Issue.record("\(notifications)"); return }
            guard case .snapshot(let first, "10") = notifications[0] else { Issue.record("\(notifications[0])"); return }
            #expect(first.map(\.metadata.resourceVersion) == ["5"])
            guard case .event(.modified(let modified)) = notifications[1] else { Issue.record("\(notifications[1])"); return }
            #expect(modified.spec?.holderIdentity == "b")
            guard case .snapshot(let second, "30") = notifications[2] else { Issue.record("\(notifications[2])"); return }
            #expect(second.first?.spec?.holderIdentity == "c")
            #expect(notifications[3] == .snapshot([], resourceVersion: "40"))
            guard case .event(.added(let added)) = notifications[4] else { Issue.record("\(notifications[4])"); return }
            #expect(added.metadata.resourceVersion == "41")

            let requests = server.requests
            #expect(requests.count >= 8)
            let isWatch = requests.map { $0.query["watch"] == "true" }
            #expect(Array(isWatch.prefix(8)) == [false, true, true, true, false, true, false, true])
            let versions = requests.prefix(8).map { $0.query["resourceVersion"] }
            #expect(versions == [nil, "10", "11", "15", nil, "30", nil, "40"])
            #expect(requests[0].query["fieldSelector"] == "metadata.name=lock")
            #expect(requests[1].query["fieldSelector"] == "metadata.name=lock")
            #expect(requests[1].query["allowWatchBookmarks"] == "true")
            #expect(requests[1].query["timeoutSeconds"].flatMap(Int.init).map { (300...600).contains($0) } == true)
        }
    }

    @Test func retriesTransientErrorsFromTheSameResourceVersion() async throws {
        let counter = RequestCounter()
        try await withServerAndClient(handler: { _, writer in
            switch counter.next() {
            case 0:
                try await writer.respond(.serviceUnavailable, json: "upstream unavailable")
            case 1:
                try await writer.respond(.ok, json: leaseListJSON(resourceVersion: "7", leases: []))
            case 2:
                try await writer.respond(.internalServerError, json: statusJSON(code: 500, reason: "InternalError", message: "etcd hiccup"))
            case 3:
                try await writer.head(.ok)
                try await writer.body(watchLine("ADDED", leaseJSON(resourceVersion: "8")))
                await writer.waitForClose()
            default:
                await writer.waitForClose()
            }
        }) { server, client in
            var notifications: [LeaseNotification] = []
            for try await notification in client.informLeases(namespace: nil) {
                notifications.append(notification)
                if notifications.count == 2 { break }
            }
            #expect(notifications.first == .snapshot([], resourceVersion: "7"))
            let requests = server.requests
            #expect(requests.map(\.path).allSatisfy { $0 == "/apis/coordination.k8s.io/v1/leases" })
            #expect(requests.prefix(4).map { $0.query["resourceVersion"] } == [nil, nil, "7", "7"])
        }
    }

    @Test func resumesAfterTheConnectionDropsMidStream() async throws {
        let counter = RequestCounter()
        try await withServerAndClient(handler: { _, writer in
            switch counter.next() {
            case 0:
                try await writer.respond(.ok, json: leaseListJSON(resourceVersion: "3", leases: []))
            case 1:  // one event, then half of the next one, then the connection dies
                try await writer.head(.ok)
                try await writer.body(watchLine("ADDED", leaseJSON(resourceVersion: "4")) + #"{"type":"MODIFIED","obj"#)
                await writer.close()
            case 2:
                try await writer.head(.ok)
                try await writer.body(watchLine("MODIFIED", leaseJSON(resourceVersion: "5", holder: "z")))
                await writer.waitForClose()
            default:
                await writer.waitForClose()
            }
        }) { server, client in
            var notifications: [LeaseNotification] = []
            for try await notification in client.informLeases(namespace: "default") {
                notifications.append(notification)
                if notifications.count == 3 { break }
            }
            guard case .event(.modified(let lease)) = notifications.last else { Issue.record("\(notifications)"); return }
            #expect(lease.spec?.holderIdentity == "z")
            #expect(server.requests.prefix(3).map { $0.query["resourceVersion"] } == [nil, "3", "4"])
        }
    }

    @Test func nonRetryableErrorsFinishTheStream() async throws {
        let counter = RequestCounter()
        try await withServerAndClient(handler: { _, writer in
            switch counter.next() {
            case 0:
                try await writer.respond(.ok, json: leaseListJSON(resourceVersion: "7", leases: []))
            default:
                try await writer.respond(.forbidden, json: statusJSON(code: 403, reason: "Forbidden", message: "cannot watch leases"))
            }
        }) { _, client in
            var notifications: [LeaseNotification] = []
            let error = await kubernetesError {
                for try await notification in client.informLeases(namespace: "default") { notifications.append(notification) }
            }
            #expect(error?.code == .forbidden)
            #expect(notifications == [.snapshot([], resourceVersion: "7")])
        }
    }
}
