import Logging
import LeaderElection
import Testing
@testable import leasectl

/// `elect`'s session logic in process, on an in-memory lock.
@Suite struct ElectionSessionTests {
    @Test(.timeLimit(.minutes(1)))
    func exitWithCommandReturnsTheStatusAfterReleasing() async throws {
        let store = InMemoryLockStore(name: "s")
        let session = ElectionSession(
            lock: store.lock(identity: "me"),
            configuration: LeaderElectionConfiguration(name: "s", leaseDuration: .seconds(4), renewDeadline: .seconds(3), retryPeriod: .milliseconds(500)),
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
            output: EventOutput(format: .text, identity: "me"),
            command: LeaderCommand(arguments: ["sh", "-c", "exit 5"], gracePeriod: .seconds(1), lockDescription: "memory:s"),
            exitWithCommand: true)
        #expect(await session.run() == 5)
        let record = try #require(try await store.lock(identity: "x").get()).record
        #expect(record.holderIdentity == "")
    }

    @Test(.timeLimit(.minutes(1)))
    func cancellationStopsTheCommandAndReleases() async throws {
        let store = InMemoryLockStore(name: "s")
        let lock = store.lock(identity: "me")
        let session = ElectionSession(
            lock: lock,
            configuration: LeaderElectionConfiguration(name: "s", leaseDuration: .seconds(4), renewDeadline: .seconds(3), retryPeriod: .milliseconds(500)),
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
            output: EventOutput(format: .text, identity: "me"),
            command: LeaderCommand(arguments: ["sleep", "100"], gracePeriod: .seconds(5), lockDescription: "memory:s"),
            exitWithCommand: false)
        let changes = try #require(lock.changes())
        let running = Task { await session.run() }
        // Wait for the record to name us (the lock's change feed, bounded by the time limit).
        for await _ in changes {
            if try await lock.get()?.record.holderIdentity == "me" { break }
        }
        running.cancel()
        #expect(await running.value == 0)
        #expect(try await lock.get()?.record.holderIdentity == "")
    }
}
