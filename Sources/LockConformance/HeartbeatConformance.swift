import LeaderElection

/// The heartbeat scenario every backend with a ``LeaderElection/LeaseDirectory`` runs: a ``LeaderElection/HeartbeatLease``
/// creates and renews `name` (on a ``LeaderElection/ManualClock``), the directory lists it, and a
/// ``LeaderElection/LeaseMonitor`` on its own manual clock sees it alive → expired (once the heartbeat stops) → alive
/// (once it restarts).
public enum HeartbeatConformance {
    /// Runs the scenario; throws a ``ConformanceFailure`` naming the first broken expectation.
    ///
    /// - Parameters:
    ///   - lock: the lock of member `name`, empty at the start.
    ///   - directory: the collection `name` belongs to, holding nothing else that matches.
    ///   - name: the member's name as the directory lists it.
    ///   - backend: a name for failure messages.
    public static func run(lock: any ResourceLock, directory: any LeaseDirectory, name: String, backend: String) async throws {
        func expect(_ condition: Bool, _ message: @autoclosure () -> String, line: Int = #line) throws {
            if !condition { throw ConformanceFailure(backend: backend, check: "heartbeat", message: message(), line: line) }
        }
        let clock = ManualClock()
        let heartbeat = try HeartbeatLease(lock: lock, configuration: .init(leaseDuration: .seconds(40)), clock: clock)
        var beats = heartbeat.events().makeAsyncIterator()
        var running = Task { await heartbeat.run() }
        defer { running.cancel() }

        guard case .renewed(true, let v1, let created)? = await beats.next() else { throw failure(backend, "expected a create") }
        try expect(created.holderIdentity == lock.identity && created.leaseDuration == .seconds(40), "created \(created)")
        try expect(try await lock.get()?.version == v1, "the stored version is not the created one")
        try expect(await clock.waitForSleepers(atLeast: 1), "the heartbeat did not wait for its next renewal")
        try expect(clock.nextDeadline == ManualClock.Instant(offset: .seconds(10)), "next renewal at \(String(describing: clock.nextDeadline)), expected t+10s")
        clock.advance(by: .seconds(10))
        guard case .renewed(false, let v2, let renewed)? = await beats.next() else { throw failure(backend, "expected a renewal") }
        try expect(v2 != v1, "a renewal kept the version")
        try expect(renewed.acquireTime == created.acquireTime, "a renewal changed acquireTime")
        let stored = try await lock.get()
        try expect(stored?.version == v2 && stored?.record.holderIdentity == lock.identity, "stored after renewal: \(String(describing: stored))")

        let listed = try await directory.list()
        try expect(listed.map(\.name) == [name], "the directory lists \(listed.map(\.name)), expected [\(name)]")
        try expect(listed.first?.version == v2 && listed.first?.record?.holderIdentity == lock.identity, "listed \(String(describing: listed.first))")

        let monitorClock = ManualClock()
        let monitor = try LeaseMonitor(
            directory: directory, configuration: .init(pollInterval: .seconds(5), gracePeriod: .seconds(40)), clock: monitorClock)
        var transitions = monitor.transitions().makeAsyncIterator()
        let first = await transitions.next()
        try expect(first?.name == name && first?.state == .alive, "first transition \(String(describing: first)), expected \(name) alive")

        running.cancel()
        await running.value
        try expect(await monitorClock.waitForSleepers(atLeast: 1), "the monitor did not wait for its next poll")
        monitorClock.advance(by: .seconds(41))
        let expired = await transitions.next()
        try expect(expired?.name == name && expired?.state == .expired, "after 41 s without renewals: \(String(describing: expired)), expected expired")
        try expect((expired?.unchangedFor ?? .zero) >= .seconds(40), "expired after \(String(describing: expired?.unchangedFor)) unchanged")

        running = Task { await heartbeat.run() }
        guard case .renewed(false, _, _)? = await beats.next() else { throw failure(backend, "expected a renewal after the restart") }
        try expect(await monitorClock.waitForSleepers(atLeast: 1), "the monitor did not wait for its next poll")
        monitorClock.advance(by: .seconds(5))   // a poll, unless the change feed woke the monitor already
        let alive = await transitions.next()
        try expect(alive?.name == name && alive?.state == .alive, "after the restart: \(String(describing: alive)), expected alive")
    }

    private static func failure(_ backend: String, _ message: String, line: Int = #line) -> ConformanceFailure {
        ConformanceFailure(backend: backend, check: "heartbeat", message: message, line: line)
    }
}
