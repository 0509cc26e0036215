import Etcd
import EtcdTesting
import Foundation
import Kubernetes
import Testing

@Suite struct FailureTests {
    @Test func garbageInEtcdIsAnInternalErrorAndTheServerKeepsServing() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            #expect(try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("good")).status == 201)
            _ = try await fixture.etcd.put(Array((fixture.prefix + "/leases/\(namespace)/bad").utf8), [0xFF, 0x00, 0x13, 0x37])

            let get = try await fixture.get(leasesPath(namespace) + "/bad")
            #expect(get.status == 500)
            let status = try get.decode(Status.self)
            #expect(status.reason == "InternalError" && status.code == 500 && status.status == "Failure")
            #expect(status.message?.hasPrefix(#"Internal error occurred: could not decode the stored object at "\#(fixture.prefix)/leases/\#(namespace)/bad""#) == true,
                    "\(status.message ?? "")")
            #expect(status.details?.causes?.count == 1)

            let list = try await fixture.get(leasesPath(namespace))
            #expect(list.status == 500)
            #expect(try list.decode(Status.self).reason == "InternalError")

            // Everything else still works, on the same connection pool.
            #expect(try await fixture.get(leasesPath(namespace) + "/good").status == 200)
            #expect(try await fixture.get("/healthz").text == "ok")
            // Replacing or deleting it needs its last state: both fail cleanly, as in kube-apiserver.
            let garbage = try #require(try await fixture.etcdValue("/leases/\(namespace)/bad"))
            let put = try await fixture.request(
                "PUT", leasesPath(namespace) + "/bad", body: leaseJSON("bad", resourceVersion: String(garbage.modRevision)))
            #expect(put.status == 500)
            #expect(try put.decode(Status.self).reason == "InternalError")
            #expect(try await fixture.request("DELETE", leasesPath(namespace) + "/bad").status == 500)
            #expect(try await fixture.get("/version").status == 200)
        }
    }

    @Test func etcdDownIsServiceUnavailableAndTheServerRecovers() async throws {
        try await ServerFixture.with(ownEtcd: true) { fixture in
            let namespace = try await fixture.namespace()
            #expect(try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x")).status == 201)

            await fixture.etcdServer.kill()
            let started = ContinuousClock.now
            let down = try await fixture.get(leasesPath(namespace) + "/x")
            #expect(down.status == 503, "\(down)")
            let status = try down.decode(Status.self)
            #expect(status.kind == "Status" && status.reason == "ServiceUnavailable" && status.code == 503)
            #expect(status.message?.hasPrefix("etcd is unavailable: ") == true, "\(status.message ?? "")")
            #expect(ContinuousClock.now - started < .seconds(10))
            for method in ["POST", "PUT"] {
                let path = method == "POST" ? leasesPath(namespace) : leasesPath(namespace) + "/x"
                let write = try await fixture.request(method, path, body: leaseJSON("x", resourceVersion: method == "PUT" ? "1" : nil))
                #expect(write.status == 503, "\(method): \(write)")
            }
            #expect(try await fixture.get(leasesPath(namespace)).status == 503)
            // The server itself keeps running and says it is not ready.
            #expect(try await fixture.get("/healthz").text == "ok")
            #expect(try await fixture.get("/readyz").status == 500)

            try await fixture.etcdServer.restart()
            try await eventually(timeout: .seconds(30), "the server to reach etcd again") {
                try await fixture.get(leasesPath(namespace) + "/x").status == 200
            }
            #expect(try await fixture.get("/readyz").status == 200)
        }
    }

    @Test func aWatchSurvivesAnEtcdRestart() async throws {
        try await ServerFixture.with(ownEtcd: true) { fixture in
            let namespace = try await fixture.namespace()
            let watch = try await fixture.watch(leasesPath(namespace))
            defer { watch.cancel() }
            var lease = try await fixture.request("POST", leasesPath(namespace), body: leaseJSON("x")).decode(Lease.self)
            _ = await watch.first(1)
            await fixture.etcdServer.kill()
            try await fixture.etcdServer.restart()
            try await eventually(timeout: .seconds(30), "etcd to answer again") {
                try await fixture.get(leasesPath(namespace) + "/x").status == 200
            }
            lease = try await fixture.request(
                "PUT", leasesPath(namespace) + "/x", body: leaseJSON("x", resourceVersion: lease.metadata.resourceVersion, holder: "b")
            ).decode(Lease.self)
            let events = try await watch.first(2, timeout: .seconds(30)).map(WatchLine.parse)
            #expect(events.map(\.summary).last == "MODIFIED x@\(lease.metadata.resourceVersion!)")
        }
    }
}
