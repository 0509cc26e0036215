#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Etcd
import EtcdLock
import EtcdTesting
import FileLock
import Foundation
import Kubernetes
import KubernetesLock
import LeaderElection
import Logging
import Synchronization

/// The backends a run can exercise.
enum BackendKind: String, CaseIterable, Codable, Sendable {
    case file
    case etcd
    case etcdCluster = "etcd-cluster"
    case kubernetes
}

/// What the store holds at the end of a run, read by a fresh lock (not through the proxies).
struct FinalRecord: Codable, Sendable {
    var decoded: Bool
    var holder: String?
    var leaseTransitions: Int?
    var error: String?
}

/// A backend started for real: a flock directory, one etcd member, a 3-member etcd cluster, or a
/// `lease-apiserver` process on etcd.
final class BackendFixture: Sendable {
    let kind: BackendKind
    let workDirectory: String
    let etcd: EtcdServer?
    let cluster: EtcdCluster?
    let apiServerPort: UInt16
    private let apiServerBinary: String?
    private let apiServer = Mutex<Child?>(nil)
    static let lockName = "chaos"
    static let token = "chaos-token"

    private init(kind: BackendKind, workDirectory: String, etcd: EtcdServer?, cluster: EtcdCluster?, apiServerPort: UInt16, apiServerBinary: String?) {
        self.kind = kind
        self.workDirectory = workDirectory
        self.etcd = etcd
        self.cluster = cluster
        self.apiServerPort = apiServerPort
        self.apiServerBinary = apiServerBinary
    }

    static func start(_ kind: BackendKind, workDirectory: String, apiServerBinary: String) async throws -> BackendFixture {
        switch kind {
        case .file:
            try FileManager.default.createDirectory(atPath: workDirectory + "/locks", withIntermediateDirectories: true)
            return BackendFixture(kind: kind, workDirectory: workDirectory, etcd: nil, cluster: nil, apiServerPort: 0, apiServerBinary: nil)
        case .etcd:
            let etcd = try await EtcdServer.start(name: "chaos")
            return BackendFixture(kind: kind, workDirectory: workDirectory, etcd: etcd, cluster: nil, apiServerPort: 0, apiServerBinary: nil)
        case .etcdCluster:
            let cluster = try await EtcdCluster.start(members: 3, name: "chaos")
            return BackendFixture(kind: kind, workDirectory: workDirectory, etcd: nil, cluster: cluster, apiServerPort: 0, apiServerBinary: nil)
        case .kubernetes:
            guard FileManager.default.isExecutableFile(atPath: apiServerBinary) else {
                throw ChaosError("lease-apiserver not found at \(apiServerBinary) (build it: swift build --product lease-apiserver, or pass --apiserver)")
            }
            let etcd = try await EtcdServer.start(name: "chaos-k8s")
            let port = try EtcdServer.freePort()
            let fixture = BackendFixture(kind: kind, workDirectory: workDirectory, etcd: etcd, cluster: nil, apiServerPort: port, apiServerBinary: apiServerBinary)
            do {
                try await fixture.startAPIServer()
            } catch {
                await fixture.stop()
                throw error
            }
            return fixture
        }
    }

    /// The ports the candidates' proxies forward to (one per etcd member, or the API server's).
    var upstreamPorts: [UInt16] {
        switch kind {
        case .file: []
        case .etcd: [etcd!.clientPort]
        case .etcdCluster: cluster!.members.map(\.clientPort)
        case .kubernetes: [apiServerPort]
        }
    }

    /// The lock URL for a candidate whose proxies (one per upstream, in member order) listen on `proxyPorts`.
    /// Cluster candidates get every member, starting with a different one per slot.
    func lockURL(slot: Int, proxyPorts: [UInt16]) -> String {
        switch kind {
        case .file:
            return "file://\(workDirectory)/locks/\(Self.lockName)"
        case .etcd, .etcdCluster:
            let n = proxyPorts.count
            let ordered = (0..<n).map { proxyPorts[($0 + slot) % n] }
            return "etcd://" + ordered.map { "127.0.0.1:\($0)" }.joined(separator: ",") + "/leader-election/default/\(Self.lockName)"
        case .kubernetes:
            return "kubernetes://default/\(Self.lockName)"
        }
    }

    /// The member a slot's client connects to first (pick_first): its first endpoint.
    func firstMember(slot: Int) -> Int { upstreamPorts.isEmpty ? 0 : slot % upstreamPorts.count }

    /// Extra candidate arguments (a kubeconfig pointing at the slot's proxy).
    func candidateArguments(slot: Int, proxyPorts: [UInt16]) throws -> [String] {
        guard kind == .kubernetes, let port = proxyPorts.first else { return [] }
        let path = workDirectory + "/kubeconfig-\(slot).yaml"
        try Self.kubeconfig(port: port).write(toFile: path, atomically: true, encoding: .utf8)
        return ["--kubeconfig", path]
    }

    static func kubeconfig(port: UInt16) -> String {
        """
        apiVersion: v1
        kind: Config
        clusters:
        - name: chaos
          cluster:
            server: http://127.0.0.1:\(port)
        users:
        - name: chaos
          user:
            token: \(token)
        contexts:
        - name: chaos
          context:
            cluster: chaos
            user: chaos
            namespace: default
        current-context: chaos

        """
    }

    // MARK: The API server process

    var apiServerLog: String { workDirectory + "/apiserver.log" }

    func startAPIServer() async throws {
        guard let apiServerBinary, let etcd else { return }
        let child = try await Child.spawn(
            name: "lease-apiserver", executable: apiServerBinary,
            arguments: ["--etcd-endpoints", etcd.endpoint, "--port", String(apiServerPort), "--bind-address", "127.0.0.1",
                        "--token", Self.token, "--log-level", "error"],
            stdout: apiServerLog, stderr: apiServerLog)
        apiServer.withLock { $0 = child }
        let deadline = monoNow() + 20_000_000_000
        while monoNow() < deadline {
            if child.exited { throw ChaosError("lease-apiserver exited at start (\(child.exitDescription)); see \(apiServerLog)") }
            if acceptsConnections(port: apiServerPort) { return }
            try? await Task.sleep(for: .milliseconds(10))
        }
        throw ChaosError("lease-apiserver did not listen on \(apiServerPort) within 20 s; see \(apiServerLog)")
    }

    /// SIGKILL the API server, wait `downtime`, start it again on the same port.
    func killAPIServer(downtime: Duration) async throws {
        let child = apiServer.withLock { $0 }
        await child?.kill()
        try? await Task.sleep(for: downtime)
        try await startAPIServer()
    }

    func pauseAPIServer(for duration: Duration) async {
        let child = apiServer.withLock { $0 }
        child?.stop()
        try? await Task.sleep(for: duration)
        child?.resume()
    }

    // MARK: etcd faults

    /// SIGKILL the (single) etcd member, wait, restart it with its data.
    func killEtcd(downtime: Duration) async throws {
        guard let etcd else { return }
        await etcd.kill()
        try? await Task.sleep(for: downtime)
        try await etcd.restart(waitUntilHealthy: true, timeout: .seconds(30))
    }

    func pauseEtcd(for duration: Duration) async {
        guard let etcd else { return }
        etcd.pause()
        try? await Task.sleep(for: duration)
        etcd.resume()
    }

    func killMember(_ index: Int, downtime: Duration) async throws {
        guard let cluster else { return }
        let member = cluster.members[index]
        await member.kill()
        try? await Task.sleep(for: downtime)
        try await member.restart(waitUntilHealthy: true, timeout: .seconds(30))
    }

    func pauseMember(_ index: Int, for duration: Duration) async {
        guard let cluster else { return }
        let member = cluster.members[index]
        member.pause()
        try? await Task.sleep(for: duration)
        member.resume()
    }

    func raftLeader() async throws -> Int {
        guard let cluster else { throw ChaosError("not a cluster") }
        return try await cluster.leader(timeout: .seconds(10))
    }

    // MARK: The final record

    /// Reads the record with a fresh lock straight from the store.
    func finalRecord() async -> FinalRecord {
        do {
            let fetched: VersionedRecord?
            switch kind {
            case .file:
                let lock = try FileLock(directory: workDirectory + "/locks", name: Self.lockName, identity: "chaos-checker")
                fetched = try await lock.get()
            case .etcd, .etcdCluster:
                let endpoints = kind == .etcd ? [etcd!.endpoint] : cluster!.endpoints
                let client = try EtcdClient(configuration: .init(endpoints: endpoints, requestTimeout: .seconds(5)))
                defer { client.close() }
                let lock = try EtcdLock(client: client, configuration: .init(name: Self.lockName), identity: "chaos-checker")
                fetched = try await lock.get()
            case .kubernetes:
                let configuration = KubernetesConfiguration(
                    server: "http://127.0.0.1:\(apiServerPort)", credentials: .bearerToken(Self.token), requestTimeout: .seconds(5))
                let client = try KubernetesClient(configuration: configuration, logger: Logger(label: "chaos.checker"))
                let lock = try KubernetesLock(client: client, configuration: .init(name: Self.lockName, namespace: "default"), identity: "chaos-checker")
                do {
                    fetched = try await lock.get()
                } catch {
                    try? await client.shutdown()
                    throw error
                }
                try? await client.shutdown()
            }
            guard let fetched else { return FinalRecord(decoded: false, error: "the record does not exist") }
            return FinalRecord(decoded: true, holder: fetched.record.holderIdentity, leaseTransitions: fetched.record.leaseTransitions)
        } catch {
            return FinalRecord(decoded: false, error: "\(error)")
        }
    }

    func stop() async {
        let child = apiServer.withLock { $0 }
        if let child { await child.terminate(grace: .seconds(3)) }
        await etcd?.stop()
        await cluster?.stop()
    }
}

/// `true` when something accepts TCP connections on 127.0.0.1:`port`.
func acceptsConnections(port: UInt16) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = port.bigEndian
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    } == 0
}
