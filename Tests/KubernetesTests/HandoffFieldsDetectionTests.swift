import Foundation
import Kubernetes
import KubernetesLock
import LeaderElection
import Synchronization
import Testing

/// How KubernetesLock reads the server's answer to decide where hand-off fields go, against scripted answers
/// for the case a single server cannot show: highly available API servers mid-upgrade, where a write that a
/// gated 1.31 server kept lands next on one that drops the fields (issue 13).
@Suite(.timeLimit(.minutes(1)))
struct HandoffFieldsDetectionTests {
    /// Answers a write as kube-apiserver does: the Lease as sent, with a new resourceVersion when something
    /// stored changed (the same one otherwise), after dropping the gated spec fields when `drops` says so
    /// (with one `Warning: 299` per dropped field).
    final class Store: Sendable {
        private let state = Mutex<(lease: Lease?, version: Int, drops: Bool)>((nil, 0, false))
        func setDrops(_ drops: Bool) { state.withLock { $0.drops = drops } }

        /// The stored Lease, as a GET returns it.
        func read() throws -> String {
            let lease = state.withLock { $0.lease }
            return String(decoding: try KubernetesJSON.encode(lease), as: UTF8.self)
        }

        func write(_ body: [UInt8], create: Bool) throws -> (status: Int, json: String, warnings: [String]) {
            var lease = try KubernetesJSON.decode(Lease.self, from: Data(body))
            return try state.withLock { state in
                if !create, lease.metadata.resourceVersion != String(state.version) {
                    return (409, #"{"kind":"Status","status":"Failure","reason":"Conflict","code":409,"message":"the object has been modified"}"#, [])
                }
                var warnings: [String] = []
                if state.drops {
                    if lease.spec?.preferredHolder != nil { warnings.append(#"299 - "unknown field \"spec.preferredHolder\"""#) }
                    if lease.spec?.strategy != nil { warnings.append(#"299 - "unknown field \"spec.strategy\"""#) }
                    lease.spec?.preferredHolder = nil
                    lease.spec?.strategy = nil
                }
                var comparable = lease
                comparable.metadata.resourceVersion = nil
                var previous = state.lease
                previous?.metadata.resourceVersion = nil
                if previous != comparable { state.version += 1 }
                lease.metadata.uid = "uid-1"
                lease.metadata.resourceVersion = String(state.version)
                state.lease = lease
                return (create ? 201 : 200, String(decoding: try KubernetesJSON.encode(lease), as: UTF8.self), warnings)
            }
        }
    }

    @Test func aWriteDroppedAfterTheFieldsWereKeptIsRewrittenWithAnnotations() async throws {
        let store = Store()
        let puts = Mutex(0)
        try await withServerAndClient(handler: { request, writer in
            if request.method == .GET {
                try await writer.respond(.ok, json: try store.read())
                return
            }
            if request.method == .PUT { puts.withLock { $0 += 1 } }
            let answer = try store.write(request.body, create: request.method == .POST)
            try await writer.respond(
                .init(statusCode: answer.status), json: answer.json, headers: answer.warnings.map { ("Warning", $0) })
        }) { _, client in
            let lock = try KubernetesLock(client: client, configuration: .init(name: "x", namespace: "default"), identity: "a")
            func record(_ preferred: String) -> LeaderElectionRecord {
                LeaderElectionRecord(holderIdentity: "a", leaseDuration: .seconds(15), leaseTransitions: 4, strategy: handoffStrategy, preferredHolder: preferred)
            }
            // A gated server: the fields are kept; the lock writes them in the spec from then on.
            store.setDrops(false)
            let v1 = try await lock.create(LeaderElectionRecord(holderIdentity: "a", leaseDuration: .seconds(15), leaseTransitions: 4))
            let v2 = try await lock.update(record("b"), expecting: v1)
            #expect(!lock.carriesHandoffInAnnotations)
            // The next write lands on a server that drops them: 200, same resourceVersion, the fields gone. The
            // lock notices, and re-writes the hand-off as annotations on the version the server returned.
            store.setDrops(true)
            let putsBefore = puts.withLock { $0 }
            let v3 = try await lock.update(record("c"), expecting: v2)
            #expect(puts.withLock { $0 } == putsBefore + 2, "the dropped write and its re-issue")
            #expect(lock.carriesHandoffInAnnotations)
            #expect(v3 != v2, "the hand-off was stored")
            let read = try #require(try await lock.get())
            #expect(read.version == v3)
            #expect(read.record.preferredHolder == "c" && read.record.strategy == handoffStrategy)
            let lease = try await client.getLease(namespace: "default", name: "x")
            #expect(lease.metadata.annotations == [
                KubernetesLock.preferredHolderAnnotation: "c",
                KubernetesLock.strategyAnnotation: handoffStrategy,
                KubernetesLock.handoffTermAnnotation: "4",
            ])
        }
    }
}
