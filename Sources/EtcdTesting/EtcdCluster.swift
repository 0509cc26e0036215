import Foundation

/// A real multi-member etcd cluster for tests: every member is an ``EtcdServer`` on its own free loopback
/// ports, with its own temporary directory.
///
/// ```swift
/// let cluster = try await EtcdCluster.start()          // 3 members, healthy
/// let client = try EtcdClient(configuration: .init(endpoints: cluster.endpoints))
/// let old = try await cluster.leader()
/// await cluster.members[old].kill()
/// let new = try await cluster.leader()                 // waits for the survivors' election
/// try await cluster.members[old].restart()
/// await cluster.stop()
/// ```
///
/// Members use short raft timings by default (`--heartbeat-interval 50 --election-timeout 500`), so a new
/// leader is elected within about a second of losing one. Each cluster has a unique `--initial-cluster-token`.
public final class EtcdCluster: Sendable {
    /// The members, in `--initial-cluster` order; named `<name>1`, `<name>2`, … Each can be killed,
    /// restarted, paused and resumed on its own.
    public let members: [EtcdServer]
    /// `tls` as given to `start`.
    public let tls: EtcdTLS?

    init(members: [EtcdServer], tls: EtcdTLS?) {
        self.members = members
        self.tls = tls
    }

    /// Starts `members` etcd members as one cluster and waits until every one is healthy.
    ///
    /// - Parameters:
    ///   - members: how many (1 or more; 3 tolerates one failure, 5 two).
    ///   - name: the member name prefix: members are `<name>1`, `<name>2`, ….
    ///   - tls: serve clients over TLS with these certificates (peers stay plain HTTP on loopback).
    ///   - heartbeatInterval: `--heartbeat-interval`.
    ///   - electionTimeout: `--election-timeout` (etcd wants at least 5 × the heartbeat interval).
    ///   - extraArguments: more `etcd` flags for every member, appended last.
    ///   - startTimeout: how long to wait for every member to be healthy.
    /// - Throws: ``EtcdTestingError`` when etcd is missing (with how to install it), or a member does not
    ///   become healthy in time (with the tail of its log). Port collisions are retried with fresh ports.
    public static func start(
        members count: Int = 3,
        name: String = "etcd",
        tls: EtcdTLS? = nil,
        heartbeatInterval: Duration = .milliseconds(50),
        electionTimeout: Duration = .milliseconds(500),
        extraArguments: [String] = [],
        startTimeout: Duration = .seconds(20)
    ) async throws -> EtcdCluster {
        precondition(count >= 1, "a cluster needs at least one member")
        let binaries = try requireEtcd()
        let heartbeat = Int(heartbeatInterval / .milliseconds(1))
        let election = Int(electionTimeout / .milliseconds(1))
        var attempt = 0
        while true {
            attempt += 1
            let ports = try PortAllocator.allocate(2 * count)
            let names = (1...count).map { "\(name)\($0)" }
            let initialCluster = names.indices
                .map { "\(names[$0])=http://127.0.0.1:\(ports[2 * $0 + 1])" }
                .joined(separator: ",")
            let token = "etcd-testing-\(UUID().uuidString.lowercased())"
            var servers: [EtcdServer] = []
            do {
                for index in 0..<count {
                    let configuration = MemberConfiguration(
                        name: names[index], clientPort: ports[2 * index], peerPort: ports[2 * index + 1], tls: tls,
                        initialCluster: initialCluster, clusterToken: token,
                        heartbeatInterval: heartbeat, electionTimeout: election, extraArguments: extraArguments)
                    servers.append(try EtcdServer(binaries: binaries, configuration: configuration))
                }
            } catch {
                for server in servers { await server.stop() }
                // Ports of servers never created are not held by anyone.
                PortAllocator.release(Array(ports.dropFirst(2 * servers.count)))
                throw error
            }
            let cluster = EtcdCluster(members: servers, tls: tls)
            do {
                for server in servers { try await server.launch() }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for server in servers {
                        group.addTask {
                            try await server.waitUntilReady(healthy: true, timeout: startTimeout, what: "cluster start")
                        }
                    }
                    try await group.waitForAll()
                }
                return cluster
            } catch {
                let retry = attempt < 5 && servers.contains { $0.portWasTaken() }
                await cluster.stop()
                if !retry { throw error }
            }
        }
    }

    /// Starts a cluster (see ``start(members:name:tls:heartbeatInterval:electionTimeout:extraArguments:startTimeout:)``),
    /// runs `body` with it, and stops it — also when `body` throws.
    public static func withCluster<T>(
        members count: Int = 3,
        tls: EtcdTLS? = nil,
        _ body: (EtcdCluster) async throws -> T
    ) async throws -> T {
        let cluster = try await start(members: count, tls: tls)
        do {
            let result = try await body(cluster)
            await cluster.stop()
            return result
        } catch {
            await cluster.stop()
            throw error
        }
    }

    /// The client endpoints, `127.0.0.1:PORT`, in member order.
    public var endpoints: [String] { members.map(\.endpoint) }

    /// The client URLs (`http://127.0.0.1:PORT` or `https://…`), in member order.
    public var clientURLs: [String] { members.map(\.clientURL) }

    /// The index in ``members`` of the raft leader, waiting (up to `timeout`) until there is one.
    ///
    /// Asks every running, unpaused member for its `endpoint status`; the answer is a member that says it leads
    /// and that a majority of the cluster (counting itself) agrees leads in the same term. A killed or paused
    /// leader can never be the answer, so after killing the leader this waits for the survivors' election.
    /// - Throws: ``EtcdTestingError`` when no leader emerges within `timeout` (for example without a quorum).
    public func leader(timeout: Duration = .seconds(10)) async throws -> Int {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        let quorum = members.count / 2 + 1
        var lastSeen = "no member answered"
        while true {
            let statuses = await withTaskGroup(of: (Int, EtcdMemberStatus?).self) { group in
                for (index, member) in members.enumerated() where member.isRunning && !member.isPaused {
                    group.addTask { (index, try? await member.status(timeout: .seconds(1))) }
                }
                var statuses: [Int: EtcdMemberStatus] = [:]
                for await (index, status) in group {
                    if let status { statuses[index] = status }
                }
                return statuses
            }
            let claimants = statuses.filter { $0.value.isLeader }.sorted { $0.value.raftTerm > $1.value.raftTerm }
            if let (index, leader) = claimants.first {
                let agreeing = statuses.values.filter { $0.leaderID == leader.memberID && $0.raftTerm == leader.raftTerm }
                if agreeing.count >= quorum { return index }
            }
            if !statuses.isEmpty {
                lastSeen = statuses.sorted { $0.key < $1.key }
                    .map { "\(members[$0.key].name): member \(hex($0.value.memberID)) sees leader \(hex($0.value.leaderID)) in term \($0.value.raftTerm)" }
                    .joined(separator: "; ")
            }
            if ContinuousClock.now >= deadline {
                throw EtcdTestingError("no etcd leader agreed by \(quorum) of \(members.count) members within \(timeout): \(lastSeen)")
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Runs `etcdctl --endpoints <all client URLs> [TLS flags] <arguments>` and returns its standard output.
    /// - Throws: ``EtcdTestingError`` with the command's output when it fails or runs past `timeout`.
    @discardableResult
    public func etcdctl(_ arguments: [String], timeout: Duration = .seconds(20)) async throws -> String {
        guard let first = members.first else { throw EtcdTestingError("empty cluster") }
        let result = try await runEtcdctlCommand(
            binaries: first.binaries, endpoints: clientURLs, tls: tls, arguments: arguments, timeout: timeout)
        guard result.succeeded else { throw EtcdTestingError("etcdctl failed: \(result)") }
        return result.standardOutput
    }

    /// Tears the cluster down: kills every member (`SIGKILL`, concurrently), waits for them, and removes their
    /// directories. Idempotent; members already stopped stay stopped.
    ///
    /// Unlike ``EtcdServer/stop()`` there is no `SIGTERM` first: a cluster being deleted has nothing to flush,
    /// and an etcd leader that receives `SIGTERM` first tries to hand its leadership to another member — one
    /// that is stopping too, or paused — and can wait 5 s for it.
    public func stop() async {
        await withTaskGroup(of: Void.self) { group in
            for member in members { group.addTask { await member.stop(gracePeriod: .zero) } }
        }
    }
}

private func hex(_ id: UInt64) -> String { String(id, radix: 16) }
