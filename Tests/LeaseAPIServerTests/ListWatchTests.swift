import Etcd
import EtcdTesting
import Foundation
import Kubernetes
import Testing

@Suite struct ListTests {
    @Test func listShapeIsLeaseListWithBareItems() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            for name in ["a", "b"] {
                #expect(try await fixture.request("POST", leasesPath(namespace), body: leaseJSON(name)).status == 201)
            }
            let response = try await fixture.get(leasesPath(namespace))
            #expect(response.status == 200)
            let json = response.json
            #expect(json["kind"] as? String == "LeaseList" && json["apiVersion"] as? String == "coordination.k8s.io/v1")
            let items = try #require(json["items"] as? [[String: Any]])
            #expect(items.count == 2)
            for item in items { #expect(item["kind"] == nil && item["apiVersion"] == nil) }
            let list = try response.decode(LeaseList.self)
            #expect(list.items.map(\.metadata.name) == ["a", "b"])
            // The list's resourceVersion is the revision it was read at: no older than any item, no newer than etcd now.
            let listVersion = try #require(list.metadata.resourceVersion.flatMap { Int64($0) })
            for item in list.items { #expect(Int64(item.metadata.resourceVersion ?? "") ?? .max <= listVersion) }
            let now = try await fixture.etcd.range(Array("/".utf8)).header.revision
            #expect(listVersion <= now)
            #expect(list.metadata.continue == nil && list.metadata.remainingItemCount == nil)
        }
    }

    @Test func clusterWideListAndSelectors() async throws {
        try await ServerFixture.with { fixture in
            let first = try await fixture.namespace("one")
            let second = try await fixture.namespace("two")
            let objects: [(String, String, [String: String])] = [
                (first, "a", ["app": "web", "tier": "front"]),
                (first, "b", ["app": "db"]),
                (second, "c", ["app": "web"]),
                (second, "d", [:]),
            ]
            for (namespace, name, labels) in objects {
                #expect(try await fixture.request("POST", leasesPath(namespace), body: leaseJSON(name, labels: labels)).status == 201)
            }
            func names(_ query: String, cluster: Bool = true) async throws -> [String] {
                let path = cluster ? "/apis/coordination.k8s.io/v1/leases" : leasesPath(first)
                let response = try await fixture.get(path + query)
                #expect(response.status == 200, "\(query): \(response)")
                return try response.decode(LeaseList.self).items.map { $0.metadata.name ?? "" }.sorted()
            }
            #expect(try await names("") == ["a", "b", "c", "d"])
            #expect(try await names("", cluster: false) == ["a", "b"])
            #expect(try await names("?labelSelector=app%3Dweb") == ["a", "c"])
            #expect(try await names("?labelSelector=app%3D%3Dweb") == ["a", "c"])
            #expect(try await names("?labelSelector=app!%3Dweb") == ["b", "d"])
            #expect(try await names("?labelSelector=app") == ["a", "b", "c"])
            #expect(try await names("?labelSelector=!app") == ["d"])
            #expect(try await names("?labelSelector=app%3Dweb,tier%3Dfront") == ["a"])
            #expect(try await names("?labelSelector=app%20in%20(db,web)") == ["a", "b", "c"])
            #expect(try await names("?labelSelector=app%20notin%20(web)") == ["b", "d"])
            #expect(try await names("?fieldSelector=metadata.name%3Dc") == ["c"])
            #expect(try await names("?fieldSelector=metadata.namespace%3D\(second)") == ["c", "d"])
            #expect(try await names("?fieldSelector=metadata.name!%3Dc,metadata.namespace%3D\(second)") == ["d"])

            let badField = try await fixture.get("/apis/coordination.k8s.io/v1/leases?fieldSelector=spec.holderIdentity%3Dx")
            #expect(try badField.decode(Status.self) == failure(
                400, "BadRequest", #""spec.holderIdentity" is not a known field selector: only "metadata.name", "metadata.namespace""#))
            let badLabel = try await fixture.get("/apis/coordination.k8s.io/v1/leases?labelSelector=app%20in%20web")
            #expect(badLabel.status == 400)
        }
    }

    @Test func limitAndContinuePageThroughEverything() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let names = (0..<5).map { "lease-\($0)" }
            for name in names {
                #expect(try await fixture.request("POST", leasesPath(namespace), body: leaseJSON(name)).status == 201)
            }
            var seen: [String] = []
            var token: String?
            var versions = Set<String>()
            var pages = 0
            repeat {
                var query = "?limit=2"
                if let token { query += "&continue=\(token)" }
                let page = try await fixture.get(leasesPath(namespace) + query).decode(LeaseList.self)
                seen += page.items.map { $0.metadata.name ?? "" }
                versions.insert(page.metadata.resourceVersion ?? "")
                token = page.metadata.continue
                if token != nil { #expect(page.metadata.remainingItemCount == Int64(names.count - seen.count)) }
                pages += 1
                // A write between pages is not seen: the pages are one consistent snapshot.
                if pages == 1 {
                    #expect(try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("lease-9")).status == 201)
                }
            } while token != nil && pages < 10
            #expect(seen == names)
            #expect(pages == 3 && versions.count == 1)
        }
    }
}

@Suite struct WatchTests {
    private func parse(_ lines: [String]) throws -> [WatchLine] { try lines.map(WatchLine.parse) }

    @Test func watchStreamsAddedModifiedDeletedInOrder() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            #expect(try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("existing")).status == 201)
            let watch = try await fixture.watch(leasesPath(namespace))
            defer { watch.cancel() }
            let head = try #require(watch.head.withLock { $0 })
            #expect(head.status == 200)
            #expect(head.headers["content-type"] == "application/json")
            #expect(head.headers["transfer-encoding"] == "chunked")
            // Without a resourceVersion: every current object first.
            let initial = try parse(await watch.first(1))
            #expect(initial.map(\.type) == ["ADDED"] && initial.first?.object?.metadata.name == "existing")

            let created = try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x")).decode(Lease.self)
            let updated = try await fixture.request(
                "PUT", leasesPath(namespace) + "/x", body: leaseJSON("x", resourceVersion: created.metadata.resourceVersion, holder: "b")
            ).decode(Lease.self)
            #expect(try await fixture.request("DELETE", leasesPath(namespace) + "/x").status == 200)
            let deletedKV = try await fixture.etcd.range(Array("/".utf8)).header.revision

            let events = try parse(await watch.first(4))
            try #require(events.count == 4)
            #expect(events.map(\.type) == ["ADDED", "ADDED", "MODIFIED", "DELETED"])
            #expect(events[1].object?.metadata.resourceVersion == created.metadata.resourceVersion)
            #expect(events[2].object == updated)
            // DELETED carries the last state, with the deletion's revision.
            let deleted = try #require(events[3].object)
            #expect(deleted.spec?.holderIdentity == "b" && deleted.metadata.uid == created.metadata.uid)
            let versions = events.dropFirst().compactMap { Int64($0.object?.metadata.resourceVersion ?? "") }
            #expect(versions == versions.sorted() && Set(versions).count == 3)
            #expect(versions.last! <= deletedKV && versions.last! > versions[1])
            // Watch objects carry their kind.
            #expect(events.allSatisfy { $0.object?.kind == "Lease" && $0.object?.apiVersion == "coordination.k8s.io/v1" })
        }
    }

    @Test func resumingFromAResourceVersionMissesNothing() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            var lease = try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x")).decode(Lease.self)
            let start = try #require(lease.metadata.resourceVersion)
            var expected: [String] = []
            for holder in ["b", "c", "d"] {
                lease = try await fixture.request(
                    "PUT", leasesPath(namespace) + "/x", body: leaseJSON("x", resourceVersion: lease.metadata.resourceVersion, holder: holder)
                ).decode(Lease.self)
                expected.append("MODIFIED x@\(lease.metadata.resourceVersion!)")
            }
            // Changes made before the watch starts, after `start`, are all delivered; nothing before it.
            let watch = try await fixture.watch(leasesPath(namespace) + "?resourceVersion=\(start)&fieldSelector=metadata.name%3Dx")
            defer { watch.cancel() }
            let replayed = try parse(await watch.first(3))
            #expect(replayed.map(\.summary) == expected)
            let created = try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("y")).decode(Lease.self)
            #expect(created.metadata.name == "y")
            lease = try await fixture.request(
                "PUT", leasesPath(namespace) + "/x", body: leaseJSON("x", resourceVersion: lease.metadata.resourceVersion, holder: "e")
            ).decode(Lease.self)
            let next = try parse(await watch.first(4))
            // `y` is filtered out by the field selector.
            #expect(next.last?.summary == "MODIFIED x@\(lease.metadata.resourceVersion!)")
        }
    }

    @Test func labelSelectorTransitionsBecomeAddedAndDeleted() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let watch = try await fixture.watch(leasesPath(namespace) + "?labelSelector=role%3Dleader")
            defer { watch.cancel() }
            var lease = try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x")).decode(Lease.self)
            lease = try await fixture.request("PUT", leasesPath(namespace) + "/x", body: leaseJSON(
                "x", resourceVersion: lease.metadata.resourceVersion, labels: ["role": "leader"])).decode(Lease.self)
            let joined = lease.metadata.resourceVersion!
            lease = try await fixture.request("PUT", leasesPath(namespace) + "/x", body: leaseJSON(
                "x", resourceVersion: lease.metadata.resourceVersion, holder: "b", labels: ["role": "leader"])).decode(Lease.self)
            let modified = lease.metadata.resourceVersion!
            lease = try await fixture.request("PUT", leasesPath(namespace) + "/x", body: leaseJSON(
                "x", resourceVersion: lease.metadata.resourceVersion, labels: ["role": "follower"])).decode(Lease.self)
            let left = lease.metadata.resourceVersion!
            let events = try parse(await watch.first(3))
            #expect(events.map(\.summary) == ["ADDED x@\(joined)", "MODIFIED x@\(modified)", "DELETED x@\(left)"])
            // The DELETED object is the last state that matched.
            #expect(events.last?.object?.metadata.labels == ["role": "leader"])
        }
    }

    @Test func clusterWideWatchSeesEveryNamespace() async throws {
        try await ServerFixture.with { fixture in
            let watch = try await fixture.watch("/apis/coordination.k8s.io/v1/leases?resourceVersion=0")
            defer { watch.cancel() }
            let first = try await fixture.namespace()
            let second = try await fixture.namespace()
            #expect(try await fixture.request("POST", leasesPath(first), body: leaseJSON("a")).status == 201)
            #expect(try await fixture.request("POST", leasesPath(second), body: leaseJSON("b")).status == 201)
            #expect(try await fixture.request("DELETE", leasesPath(second) + "/b").status == 200)
            let events = try parse(await watch.first(3))
            #expect(events.map(\.type) == ["ADDED", "ADDED", "DELETED"])
            #expect(events.map { $0.object?.metadata.namespace ?? "" } == [first, second, second])
        }
    }

    @Test func timeoutSecondsEndsTheStream() async throws {
        try await ServerFixture.with { fixture in
            let watch = try await fixture.watch(leasesPath(try await fixture.namespace()) + "?timeoutSeconds=1")
            // The timeout runs on the server's clock: the watch stays open until that clock has moved 1 s.
            #expect(await fixture.clock.waitForSleepers(atLeast: 1))
            fixture.clock.advance(by: .milliseconds(999))
            #expect(await fixture.clock.waitForSleepers(atLeast: 1))
            #expect(!watch.ended)
            fixture.clock.advance(by: .milliseconds(1))
            #expect(await watch.waitForEnd(timeout: .seconds(15)))
            #expect(watch.failure == nil)
            try await eventually("the watch to be closed on the server") { fixture.server.activeWatchCount == 0 }
        }
    }

    @Test func disconnectingStopsTheWatch() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            #expect(try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x")).status == 201)
            let watch = try await fixture.watch(leasesPath(namespace))
            _ = await watch.first(1)
            #expect(fixture.server.activeWatchCount == 1)
            watch.cancel()
            // Promptly: well before the client's 5 s TLS shutdown timeout would close the socket anyway.
            try await eventually(timeout: .seconds(4), "the server to notice the disconnect") { fixture.server.activeWatchCount == 0 }
            // The server is unaffected.
            #expect(try await fixture.get(leasesPath(namespace) + "/x").status == 200)
        }
    }

    @Test func shutdownEndsOpenWatches() async throws {
        try await ServerFixture.with { fixture in
            let watch = try await fixture.watch(leasesPath(try await fixture.namespace()))
            try await eventually("the watch to open") { fixture.server.activeWatchCount == 1 }
            await fixture.server.shutdown()
            #expect(await watch.waitForEnd(timeout: .seconds(15)))
            #expect(fixture.server.activeWatchCount == 0)
            // The listener is gone; the etcd client, which the server does not own, still works.
            let http = makeHTTPClient(trusting: fixture.tls.caFile, connectTimeout: .milliseconds(500))
            await #expect(throws: (any Error).self) { _ = try await send(http, "GET", fixture.baseURL + "/healthz", token: nil) }
            try await http.shutdown()
            _ = try await fixture.etcd.get(fixture.prefix + "/anything")
        }
    }

    @Test func aCompactedResourceVersionIsReplayedOrEndsWithExpired() async throws {
        try await ServerFixture.with(ownEtcd: true) { fixture in
            let namespace = try await fixture.namespace()
            var lease = try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x")).decode(Lease.self)
            let old = try #require(lease.metadata.resourceVersion)
            for holder in ["b", "c", "d"] {
                lease = try await fixture.request(
                    "PUT", leasesPath(namespace) + "/x", body: leaseJSON("x", resourceVersion: lease.metadata.resourceVersion, holder: holder)
                ).decode(Lease.self)
            }
            let compactAt = try #require(lease.metadata.resourceVersion)
            try await fixture.etcdServer.etcdctl(["compact", compactAt])

            // Compacted in etcd but kept since the server started (kube's watch cache): replayed.
            let cached = try await fixture.watch(leasesPath(namespace) + "?resourceVersion=\(old)")
            defer { cached.cancel() }
            let replayed = try await cached.first(3).map(WatchLine.parse)
            #expect(replayed.map(\.type) == ["MODIFIED", "MODIFIED", "MODIFIED"])
            #expect(replayed.last?.object?.metadata.resourceVersion == compactAt)

            // Older than what the server keeps (from before it started): one ERROR line, then the end.
            let watch = try await fixture.watch(leasesPath(namespace) + "?resourceVersion=1")
            defer { watch.cancel() }
            let lines = await watch.first(1)
            let event = try WatchLine.parse(try #require(lines.first))
            #expect(event.type == "ERROR")
            #expect(event.status == failure(
                410, "Expired", "too old resource version: 1 (\(Int64(compactAt)! - 1))"))
            #expect(await watch.waitForEnd())
            #expect(watch.lines.count == 1)

            // A watch from the compaction point itself still works.
            let fresh = try await fixture.watch(leasesPath(namespace) + "?resourceVersion=\(Int64(compactAt)! - 1)")
            defer { fresh.cancel() }
            let replay = try await fresh.first(1).map(WatchLine.parse)
            #expect(replay.map(\.summary) == ["MODIFIED x@\(compactAt)"])

            // A continue token from before the compaction is expired too.
            #expect(try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("y")).status == 201)
            let token = #"{"v":"meta.k8s.io/v1","rv":\#(old),"start":"a"}"#
            let encoded = Data(token.utf8).base64EncodedString().replacingOccurrences(of: "=", with: "")
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            let expired = try await fixture.get(leasesPath(namespace) + "?limit=1&continue=\(encoded)")
            #expect(expired.status == 410)
            #expect(try expired.decode(Status.self).reason == "Expired")
        }
    }
}
