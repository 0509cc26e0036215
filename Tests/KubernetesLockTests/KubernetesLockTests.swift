import Foundation
import Kubernetes
import KubernetesLock
import KubernetesTesting
import LeaderElection
import LockConformance
import Testing

/// The record ↔ Lease spec mapping, exactly as client-go's `LeaderElectionRecordToLeaseSpec` writes it.
@Suite struct KubernetesLockMappingTests {
    static let acquire = MicroTime(microsecondsSinceEpoch: 1_764_000_000_123_456)
    static let renew = MicroTime(microsecondsSinceEpoch: 1_764_000_009_000_000)

    private func json(_ spec: LeaseSpec) throws -> [String: JSONValue] {
        let value = try KubernetesJSON.decode(JSONValue.self, from: KubernetesJSON.encode(spec))
        guard case .object(let object) = value else { throw InteropError("spec did not encode as an object") }
        return object
    }

    @Test func specIsClientGosSpec() throws {
        let record = LeaderElectionRecord(holderIdentity: "node-a_1234", leaseDuration: .seconds(15),
                                          acquireTime: Self.acquire, renewTime: Self.renew, leaseTransitions: 7)
        let object = try json(KubernetesLock.spec(record))
        #expect(object == [
            "holderIdentity": .string("node-a_1234"),
            "leaseDurationSeconds": .number(15),
            "acquireTime": .string("2025-11-24T16:00:00.123456Z"),
            "renewTime": .string("2025-11-24T16:00:09.000000Z"),
            "leaseTransitions": .number(7),
        ])
    }

    @Test func releaseStillWritesTheEmptyHolder() throws {
        let released = LeaderElectionRecord(holderIdentity: "", leaseDuration: .seconds(1), acquireTime: Self.acquire,
                                            renewTime: Self.renew, leaseTransitions: 7)
        let object = try json(KubernetesLock.spec(released))
        #expect(object["holderIdentity"] == .string(""))
        #expect(object["leaseDurationSeconds"] == .number(1))
        #expect(object["strategy"] == nil && object["preferredHolder"] == nil)
    }

    @Test func coordinatedFieldsOnlyWhenSet() throws {
        var record = LeaderElectionRecord(holderIdentity: "a", leaseDuration: .seconds(5))
        record.strategy = "OldestEmulationVersion"
        record.preferredHolder = "b"
        let object = try json(KubernetesLock.spec(record))
        #expect(object["strategy"] == .string("OldestEmulationVersion"))
        #expect(object["preferredHolder"] == .string("b"))
        record.strategy = ""
        record.preferredHolder = ""
        let cleared = try json(KubernetesLock.spec(record))
        #expect(cleared["strategy"] == nil && cleared["preferredHolder"] == nil)
    }

    @Test(arguments: [Duration.milliseconds(1500), .milliseconds(500), .zero, .seconds(-3), .seconds(Int64(Int32.max) + 1)])
    func durationsThatALeaseCannotHoldAreRejected(_ duration: Duration) throws {
        let record = LeaderElectionRecord(holderIdentity: "a", leaseDuration: duration)
        #expect { _ = try KubernetesLock.spec(record) } throws: { ($0 as? LeaderElectionError)?.code == .invalidConfiguration }
        var configuration = LeaderElectionConfiguration(name: "x")
        configuration.leaseDuration = duration
        #expect { try KubernetesLock.validate(configuration) } throws: { ($0 as? LeaderElectionError)?.code == .invalidConfiguration }
    }

    @Test func specsOtherWritersLeaveIncompleteDecodeAsClientGoReadsThem() throws {
        // No spec, or no holder: a free lock.
        #expect(KubernetesLock.record(nil)?.holderIdentity == "")
        #expect(KubernetesLock.record(LeaseSpec())?.isReleased == true)
        // No leaseTransitions (the Python client never writes it): 0.
        let python = KubernetesLock.record(LeaseSpec(holderIdentity: "py", leaseDurationSeconds: 4))
        #expect(python?.leaseTransitions == 0 && python?.leaseDuration == .seconds(4))
        // A holder without a positive duration cannot be honoured: nil (the lock reports corruptRecord).
        #expect(KubernetesLock.record(LeaseSpec(holderIdentity: "x")) == nil)
        #expect(KubernetesLock.record(LeaseSpec(holderIdentity: "x", leaseDurationSeconds: 0)) == nil)
    }

    @Test func pythonStyleTimesDecode() throws {
        let data = Data(#"{"holderIdentity":"py","leaseDurationSeconds":4,"acquireTime":"2025-11-24T17:00:00.123456+01:00","renewTime":"2025-11-24T16:00:09+00:00"}"#.utf8)
        let spec = try KubernetesJSON.decode(LeaseSpec.self, from: data)
        let record = try #require(KubernetesLock.record(spec))
        #expect(record.acquireTime == Self.acquire)
        #expect(record.renewTime == Self.renew)
    }
}

/// KubernetesLock against the API server: uid preconditions, labels, events, and bad stored data.
@Suite struct KubernetesLockServerTests {
    private func lock(_ env: KubernetesTestEnvironment, _ name: String, _ identity: String, labels: [String: String] = [:]) throws -> KubernetesLock {
        try KubernetesLock(client: env.client, configuration: .init(name: name, namespace: env.namespace, labels: labels), identity: identity)
    }

    private func record(_ holder: String, transitions: Int = 1) -> LeaderElectionRecord {
        LeaderElectionRecord(holderIdentity: holder, leaseDuration: .seconds(15), acquireTime: .now(), renewTime: .now(), leaseTransitions: transitions)
    }

    @Test func updateAfterTheLeaseWasDeletedIsNotFoundAndCreatesNothing() async throws {
        try await KubernetesTestEnvironment.with { env in
            let a = try lock(env, "deleted", "a")
            let v1 = try await a.create(record("a"))
            try await env.client.deleteLease(namespace: env.namespace, name: "deleted")
            // `a` still has the Lease cached with its uid: the PUT must not re-create it.
            await #expect { _ = try await a.update(record("a", transitions: 2), expecting: v1) } throws: {
                ($0 as? LeaderElectionError)?.code == .notFound
            }
            #expect(try await a.get() == nil)
        }
    }

    @Test func updateAfterTheLeaseWasRecreatedConflicts() async throws {
        try await KubernetesTestEnvironment.with { env in
            let a = try lock(env, "recreated", "a")
            let b = try lock(env, "recreated", "b")
            let v1 = try await a.create(record("a"))
            try await env.client.deleteLease(namespace: env.namespace, name: "recreated")
            let v2 = try await b.create(record("b"))
            await #expect { _ = try await a.update(record("a", transitions: 2), expecting: v1) } throws: {
                ($0 as? LeaderElectionError)?.code == .conflict && ($0 as? LeaderElectionError)?.version == v2
            }
            #expect(try await a.get()?.record.holderIdentity == "b")
        }
    }

    @Test func labelsAreMergedAndForeignMetadataKept() async throws {
        try await KubernetesTestEnvironment.with { env in
            let a = try lock(env, "labelled", "a", labels: ["app": "demo"])
            let v1 = try await a.create(record("a"))
            var lease = try await env.client.getLease(namespace: env.namespace, name: "labelled")
            lease.metadata.labels?["team"] = "x"
            lease.metadata.annotations = ["note": "kept"]
            let foreign = try await env.client.replaceLease(lease, namespace: env.namespace)
            #expect(foreign.metadata.resourceVersion != v1.rawValue)
            let current = try #require(try await a.get())
            _ = try await a.update(record("a", transitions: 2), expecting: current.version)
            let after = try await env.client.getLease(namespace: env.namespace, name: "labelled")
            #expect(after.metadata.labels == ["app": "demo", "team": "x"])
            #expect(after.metadata.annotations == ["note": "kept"])
            #expect(after.spec?.leaseTransitions == 2)
        }
    }

    @Test func electionRecordsClientGoEvents() async throws {
        try await KubernetesTestEnvironment.with { env in
            let name = "evented"
            var configuration = LeaderElectionConfiguration(name: name)
            configuration.leaseDuration = .seconds(15)
            let elector = try LeaderElector(lock: try lock(env, name, "cand-1"), configuration: configuration, clock: ContinuousClock())
            let events = elector.events()
            let run = Task { try await elector.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
            for await event in events { if case .startedLeading = event { break } }
            run.cancel()
            _ = try? await run.value
            let selector = "involvedObject.name=\(name)"
            var messages: [String] = []
            for _ in 0..<100 {   // events are recorded asynchronously: bounded wait for both
                let events = try await env.client.listEvents(namespace: env.namespace, fieldSelector: selector)
                messages = events.items.compactMap(\.message)
                if messages.contains("cand-1 stopped leading") { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(messages.contains("cand-1 became leader"))
            #expect(messages.contains("cand-1 stopped leading"))
            let recorded = try await env.client.listEvents(namespace: env.namespace, fieldSelector: selector)
            for event in recorded.items {
                #expect(event.type == "Normal" && event.reason == "LeaderElection")
                #expect(event.involvedObject.kind == "Lease" && event.involvedObject.name == name && event.involvedObject.namespace == env.namespace)
            }
        }
    }

    @Test(.enabled(if: KubernetesTestEnvironment.localServerTestsRun,
                   "writes behind the API server's back; needs the local LeaseAPIServer"),
          arguments: [
              #"{"holderIdentity": 42, garbage"#,
              #"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"stored"},"spec":{"leaseDurationSeconds":"fifteen"}}"#,
          ])
    func undecodableStoredLeaseIsATypedErrorAndTheElectionRecovers(_ stored: String) async throws {
        try await KubernetesTestEnvironment.with { env in
            try await env.storeRawLease(name: "stored", bytes: Array(stored.utf8))
            let a = try lock(env, "stored", "a")
            await #expect { _ = try await a.get() } throws: { ($0 as? LeaderElectionError)?.code == .unavailable }
            // An elector keeps retrying (the server keeps answering) and leads once the object is fixed.
            var configuration = LeaderElectionConfiguration(name: "stored")
            configuration.retryPeriod = .milliseconds(200)
            let elector = try LeaderElector(lock: a, configuration: configuration, clock: ContinuousClock())
            let events = elector.events()
            let run = Task { try await elector.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
            try await env.deleteRawLease(name: "stored")
            for await event in events { if case .startedLeading = event { break } }
            run.cancel()
            _ = try? await run.value
        }
    }

    @Test(.enabled(if: KubernetesTestEnvironment.localServerTestsRun,
                   "counts requests at the local LeaseAPIServer"))
    func aRenewalIsOnePUTAndNothingElse() async throws {
        try await KubernetesTestEnvironment.with { env in
            let server = try #require(env.server)
            let lock = InstrumentedLock(try lock(env, "renewals", "a"))
            var configuration = LeaderElectionConfiguration(name: "renewals")
            // Renew every 100 ms, but with a long renew deadline: under a loaded CI machine a store stall of a
            // couple of seconds must not end the term (a lost and re-acquired term adds a GET and two Event POSTs).
            configuration.leaseDuration = .seconds(15)
            configuration.renewDeadline = .seconds(10)
            configuration.retryPeriod = .milliseconds(100)
            let elector = try LeaderElector(lock: lock, configuration: configuration, clock: ContinuousClock())
            let events = elector.events()
            let run = Task { try await elector.run { _ in try? await Task.sleep(for: .seconds(3600)) } }
            for await event in events { if case .startedLeading = event { break } }
            // Steady state: from one renewal to five renewals later, nobody else talks to the server.
            func renewals() -> Int { lock.counts.updates }
            /// The number of renewals once none is in flight (read consistently: unchanged around an idle moment).
            func settled() -> Int? {
                let before = renewals()
                let idle = lock.inFlight == 0
                return idle && renewals() == before ? before : nil
            }
            let start = renewals() + 1
            let deadline = ContinuousClock.now + .seconds(60)
            // In-process counters only (no load on the server); a renewal counts once its PUT was answered.
            /// The server's counts and the renewals so far, read while no renewal is in flight on either side.
            func snapshot(atLeast minimum: Int) async throws -> (server: [String: Int], renewals: Int) {
                while ContinuousClock.now < deadline {
                    if let first = settled(), first >= minimum {
                        let counts = server.requestCounts(inNamespace: env.namespace)   // other tests share the server
                        if settled() == first { return (counts, first) }
                    }
                    try await Task.sleep(for: .milliseconds(2))
                }
                throw InteropError("no \(minimum) settled renewals within a minute: \(lock.counts)")
            }
            let (before, renewalsBefore) = try await snapshot(atLeast: start)
            let lockBefore = lock.counts
            let (after, renewalsAfter) = try await snapshot(atLeast: renewalsBefore + 5)
            let lockAfter = lock.counts
            run.cancel()
            _ = try? await run.value
            let puts = after["PUT", default: 0] - before["PUT", default: 0]
            let renewed = renewalsAfter - renewalsBefore
            #expect(lockAfter.gets == lockBefore.gets, "the elector read the lock while renewing")
            #expect(renewed >= 5)
            #expect(puts == renewed, "\(renewed) renewals took \(puts) PUTs")
            #expect(after["GET", default: 0] == before["GET", default: 0], "renewals read the Lease: \(before) → \(after)")
            #expect(after["POST", default: 0] == before["POST", default: 0])
        }
    }
}

