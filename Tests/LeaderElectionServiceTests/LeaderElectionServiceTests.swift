import InMemoryLogging
import LeaderElection
@testable import LeaderElectionService
import Logging
import ServiceLifecycle
import ServiceLifecycleTestKit
import Synchronization
import Testing

/// A wrapped service: records when it runs and stops (on cancellation or graceful shutdown).
struct WorkerService: Service {
    let recorder: Recorder
    func run() async throws {
        recorder.record("worker started")
        try? await cancelWhenGracefulShutdown { await untilCancelled() }
        recorder.record("worker stopped")
    }
}

@Suite("LeaderElectionService")
struct LeaderElectionServiceTests {
    @Test("a wrapped service runs only once elected, and stops before the lease is released")
    func wrappedServiceRunsOnlyWhileLeading() async throws {
        let store = InMemoryLockStore(name: "svc")
        let recorder = Recorder()
        // Someone else holds the lease first.
        let wall = WallClock.system.now()
        _ = try await store.lock(identity: "other").create(
            LeaderElectionRecord(holderIdentity: "other", leaseDuration: .seconds(15), acquireTime: wall, renewTime: wall, leaseTransitions: 0))
        let clock = ManualClock()
        let service = LeaderElectionService(
            configuration: .init(id: "svc"),
            lock: RecordingLock(base: store.lock(identity: "a"), recorder: recorder),
            clock: clock, logger: quietLogger,
            work: { _ in try await WorkerService(recorder: recorder).run() })

        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                // The candidate is parked waiting for the lease: the worker must not have started.
                #expect(await clock.waitForSleepers(atLeast: 1))
                #expect(!recorder.events.contains("worker started"))
                try await release(store, as: "other")
                try await recorder.waitFor("worker started")
                #expect(recorder.index(of: "a acquired")! < recorder.index(of: "worker started")!)
                #expect(try await holder(of: store) == "a")
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
        #expect(try await holder(of: store) == "")
        let stopped = try #require(recorder.index(of: "worker stopped"))
        let released = try #require(recorder.index(of: "a released"))
        #expect(stopped < released)
    }

    @Test("graceful shutdown cancels the work and waits for it to drain before releasing the lease")
    func gracefulShutdownDrainsBeforeRelease() async throws {
        let store = InMemoryLockStore()
        let recorder = Recorder()
        let drain = Latch()
        let service = LeaderElectionService(
            configuration: .init(id: "drain"),
            lock: RecordingLock(base: store.lock(identity: "a"), recorder: recorder),
            clock: ManualClock(), logger: quietLogger,
            work: recordingWork("a", recorder, drain: drain))

        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                try await recorder.waitFor("a started 0")
                trigger.triggerGracefulShutdown()
                try await recorder.waitFor("a cancelled 0")
                // The work is cancelled but still draining: the lease must still be held.
                #expect(try await holder(of: store) == "a")
                #expect(!recorder.events.contains("a released"))
                drain.open()
                try await group.waitForAll()
            }
        }
        let events = recorder.events
        let stopped = try #require(events.firstIndex(of: "a stopped 0"))
        let released = try #require(events.firstIndex(of: "a released"))
        #expect(stopped < released, "events: \(events)")
        #expect(try await holder(of: store) == "")
    }

    @Test("releaseOnCancel false: graceful shutdown stops the work and leaves the lease held to expire")
    func noReleaseOnCancel() async throws {
        let store = InMemoryLockStore()
        let recorder = Recorder()
        let service = LeaderElectionService(
            configuration: .init(id: "keep", releaseOnCancel: false),
            lock: RecordingLock(base: store.lock(identity: "a"), recorder: recorder),
            clock: ManualClock(), logger: quietLogger,
            work: recordingWork("a", recorder))
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                try await recorder.waitFor("a started 0")
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
        #expect(recorder.events.contains("a stopped 0"))
        #expect(!recorder.events.contains("a released"))
        #expect(try await holder(of: store) == "a")
    }

    @Test("lost leadership with .recampaign stops the work and restarts it when re-elected")
    func lostLeadershipRecampaigns() async throws {
        let store = InMemoryLockStore()
        let recorder = Recorder()
        let clock = ManualClock()
        let service = LeaderElectionService(
            configuration: .init(id: "re", onLostLeadership: .recampaign),
            lock: store.lock(identity: "a"),
            clock: clock, logger: quietLogger,
            work: recordingWork("a", recorder))

        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                try await recorder.waitFor("a started 0")
                try await steal(store, as: "thief")
                // The next renewal (after retryPeriod) finds the record held by the thief.
                clock.advance(by: .seconds(2))
                try await recorder.waitFor("a stopped 0")
                #expect(try await holder(of: store) == "thief")
                // Campaigning again: the thief hands the lease back, and the work restarts in a new term.
                try await release(store, as: "thief")
                try await recorder.waitFor("a started 2")
                #expect(recorder.count(of: "a started 0") == 1)
                #expect(try await holder(of: store) == "a")
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
        #expect(recorder.events.last == "a stopped 2")
        #expect(try await holder(of: store) == "")
    }

    @Test("lost leadership with .endGroup ends the ServiceGroup with leadershipLost, without restarting the work")
    func lostLeadershipEndsGroup() async throws {
        let store = InMemoryLockStore()
        let recorder = Recorder()
        let clock = ManualClock()
        let service = LeaderElectionService(
            configuration: .init(id: "end"),
            lock: store.lock(identity: "a"),
            clock: clock, logger: quietLogger,
            work: recordingWork("a", recorder))
        let group = ServiceGroup(services: [service], logger: quietLogger)

        let run = Task { try await group.run() }
        try await recorder.waitFor("a started 0")
        try await steal(store, as: "thief")
        // Hand the lease back at once: a service that campaigned again would win it and restart the work.
        try await release(store, as: "thief")
        clock.advance(by: .seconds(2))
        let error = await #expect(throws: LeaderElectionServiceError.self) { try await run.value }
        #expect(error?.code == .leadershipLost)
        #expect(error?.message.contains("leader election lost") == true)
        #expect(recorder.events == ["a started 0", "a cancelled 0", "a stopped 0"])
        #expect(try await holder(of: store) == "")
    }

    @Test("disabled election runs the work directly, without a lock, and stops it on graceful shutdown")
    func disabledRunsWorkDirectly() async throws {
        let recorder = Recorder()
        let factoryCalls = Mutex(0)
        let service = LeaderElectionService(
            configuration: .init(id: "off", enabled: false),
            lockFactory: { _ in
                factoryCalls.withLock { $0 += 1 }
                return InMemoryLockStore().lock(identity: "never")
            },
            logger: quietLogger,
            work: recordingWork("w", recorder))
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                try await recorder.waitFor("w started none")
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
        #expect(recorder.events == ["w started none", "w cancelled none", "w stopped none"])
        #expect(factoryCalls.withLock { $0 } == 0)
    }

    @Test("two services on one lock: exactly one runs the work; after the leader's graceful shutdown the other takes over")
    func twoServicesHandOver() async throws {
        let store = InMemoryLockStore()
        let recorder = Recorder()
        let running = Mutex((now: 0, max: 0))
        func work(_ name: String) -> @Sendable (LeadershipTerm?) async throws -> Void {
            { term in
                running.withLock { $0.now += 1; $0.max = max($0.max, $0.now) }
                recorder.record("\(name) started \(term!.fencingToken)")
                await untilCancelled()
                running.withLock { $0.now -= 1 }
                recorder.record("\(name) stopped")
            }
        }
        let clockB = ManualClock()
        let a = LeaderElectionService(
            configuration: .init(id: "pair"), lock: RecordingLock(base: store.lock(identity: "a"), recorder: recorder),
            clock: ManualClock(), logger: quietLogger, work: work("a"))
        let b = LeaderElectionService(
            configuration: .init(id: "pair"), lock: RecordingLock(base: store.lock(identity: "b"), recorder: recorder),
            clock: clockB, logger: quietLogger, work: work("b"))
        let groupA = ServiceGroup(services: [a], logger: quietLogger)
        let groupB = ServiceGroup(services: [b], logger: quietLogger)

        let runA = Task { try await groupA.run() }
        try await recorder.waitFor("a started 0")
        let runB = Task { try await groupB.run() }
        #expect(await clockB.waitForSleepers(atLeast: 1))   // b is parked, following
        #expect(!recorder.events.contains("b started 1"))

        await groupA.triggerGracefulShutdown()
        try await runA.value
        try await recorder.waitFor("b started 1")
        let events = recorder.events
        #expect(events.firstIndex(of: "a stopped")! < events.firstIndex(of: "a released")!)
        #expect(events.firstIndex(of: "a released")! < events.firstIndex(of: "b acquired")!)
        #expect(try await holder(of: store) == "b")

        await groupB.triggerGracefulShutdown()
        try await runB.value
        #expect(running.withLock { $0.max } == 1)
        #expect(recorder.count(of: "a started 0") == 1 && recorder.count(of: "b started 1") == 1)
    }

    @Test("work that returns ends the service and releases the lease; work that throws ends it with the error")
    func workEndingEndsTheService() async throws {
        struct Boom: Error, Equatable {}
        let store = InMemoryLockStore()
        let done = LeaderElectionService(
            configuration: .init(id: "done"), lock: store.lock(identity: "a"), clock: ManualClock(), logger: quietLogger,
            work: { term in try term?.check() })
        try await done.run()
        #expect(try await holder(of: store) == "")

        let failing = LeaderElectionService(
            configuration: .init(id: "done"), lock: store.lock(identity: "b"), clock: ManualClock(), logger: quietLogger,
            work: { _ in throw Boom() })
        await #expect(throws: Boom()) { try await failing.run() }
        #expect(try await holder(of: store) == "")
    }

    @Test("a lock factory receives the configuration; invalid timing is rejected with client-go's wording")
    func factoryAndValidation() async throws {
        let seen = Mutex<LeaderElectionService.Configuration?>(nil)
        let store = InMemoryLockStore()
        let configuration = LeaderElectionService.Configuration(
            id: "made", namespace: "prod", resourceLock: .etcd, labels: ["app": "x"])
        let service = LeaderElectionService(
            configuration: configuration,
            lockFactory: { configuration in
                seen.withLock { $0 = configuration }
                return store.lock(identity: "f")
            },
            logger: quietLogger,
            work: { term in #expect(term?.identity == "f") })
        try await service.run()
        let got = try #require(seen.withLock { $0 })
        #expect(got.id == "made" && got.namespace == "prod" && got.resourceLock == .etcd && got.labels == ["app": "x"])

        let invalid = LeaderElectionService(
            configuration: .init(id: "bad", leaseDuration: .seconds(10), renewDeadline: .seconds(10)),
            lock: store.lock(identity: "g"), logger: quietLogger, work: { _ in })
        let error = await #expect(throws: LeaderElectionError.self) { try await invalid.run() }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.hasPrefix("leaseDuration must be greater than renewDeadline") == true)
    }

    @Test("logs carry dotted metadata keys")
    func loggingMetadata() async throws {
        let logs = InMemoryLogHandler()
        let logger = Logger(label: "test", factory: { _ in logs })
        let service = LeaderElectionService(
            configuration: .init(id: "logged"), lock: InMemoryLockStore().lock(identity: "a"), clock: ManualClock(),
            logger: logger, work: { _ in })
        try await service.run()
        let started = try #require(logs.entries.first { $0.message.description.contains("started leading") })
        #expect(started.metadata["leader.identity"]?.description == "a")
        #expect(started.metadata["leader.id"]?.description == "logged")
        #expect(started.metadata["leader.fencing_token"]?.description == "0")
    }
}
