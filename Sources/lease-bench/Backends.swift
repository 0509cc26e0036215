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

// The three backends behind one interface for the elector-level scenarios (issue 6): every candidate gets a
// lock with its own connections (as a separate process would), and the store's own request counters are read
// where the store has them.

enum BackendKind: String, CaseIterable, Sendable, Codable {
    case file = "filelock"
    case etcd = "etcdlock"
    case kubernetes = "kubernetes"

    var label: String {
        switch self {
        case .file: "flock (FileLock)"
        case .etcd: "etcd (EtcdLock)"
        case .kubernetes: "Kubernetes (KubernetesLock → LeaseAPIServer)"
        }
    }
}

/// What the store received during a section (server-side counters).
struct StoreCounts: Sendable {
    /// Requests by method: etcd gRPC calls started (`grpc_server_started_total`), or LeaseAPIServer requests
    /// (`requestCounts`, `WATCH` for watches).
    var requests: [String: Int]
    /// etcd: bytes the server received / sent on its client gRPC port (`etcd_network_client_grpc_*_bytes_total`).
    var bytesReceived: Double?
    var bytesSent: Double?
    /// Kubernetes: the gRPC calls the API server made to etcd.
    var etcdRPCs: [String: Int]?

    var total: Int { requests.values.reduce(0, +) }

    func delta(to end: StoreCounts) -> StoreCounts {
        StoreCounts(requests: countDelta(from: requests, to: end.requests),
                    bytesReceived: end.bytesReceived.flatMap { e in bytesReceived.map { e - $0 } },
                    bytesSent: end.bytesSent.flatMap { e in bytesSent.map { e - $0 } },
                    etcdRPCs: end.etcdRPCs.flatMap { e in etcdRPCs.map { countDelta(from: $0, to: e) } })
    }
}

/// One backend, ready to make candidates' locks.
struct LockBackend: Sendable {
    let kind: BackendKind
    /// A lock named `leaseName` for `identity`, with its own connections, and what closes them.
    let makeLock: @Sendable (_ leaseName: String, _ identity: String, _ configuration: LeaderElectionConfiguration) async throws
        -> (lock: any ResourceLock, close: @Sendable () async -> Void)
    /// The store's server-side counters, or `nil` when there is no server (flock: the "store" is the file
    /// system; only the lock calls counted on the client side apply).
    let storeCounts: (@Sendable () throws -> StoreCounts)?
    /// What a "store request" is for this backend, in words.
    let storeRequestMeaning: String
    /// Removes what the scenario left behind (the flock directory).
    let cleanup: @Sendable () async -> Void
    /// The flock directory (file backend only).
    let directory: String?
}

/// A fresh temporary directory (mode 0700) for FileLocks.
func makeLockDirectory(_ prefix: String) throws -> String {
    let path = NSTemporaryDirectory() + "/\(prefix)-\(getpid())-\(randomHex(6))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                            attributes: [.posixPermissions: 0o700])
    return path
}

func makeBackend(_ kind: BackendKind, _ context: BenchContext) async throws -> LockBackend {
    let etcd = context.etcd
    switch kind {
    case .file:
        let directory = try makeLockDirectory("lease-bench-flock")
        return LockBackend(
            kind: kind,
            makeLock: { name, identity, _ in
                (try FileLock(directory: directory, name: name, identity: identity), {})
            },
            storeCounts: nil,
            storeRequestMeaning: "no server: lock calls counted in the candidates (get = shared flock + read + liveness probe; update = exclusive flock + temp file + fsync + rename + directory fsync)",
            cleanup: { try? FileManager.default.removeItem(atPath: directory) },
            directory: directory)
    case .etcd:
        return LockBackend(
            kind: kind,
            makeLock: { name, identity, _ in
                let client = try EtcdClient(configuration: .init(endpoints: [etcd.server.endpoint]))
                do {
                    let lock = try EtcdLock(client: client, configuration: .init(name: name, namespace: "lease-bench"), identity: identity)
                    return (lock, { client.close() })
                } catch {
                    client.close()
                    throw error
                }
            },
            storeCounts: {
                StoreCounts(requests: try etcd.metrics.rpcsStarted(),
                            bytesReceived: try etcd.metrics.counterTotal("etcd_network_client_grpc_received_bytes_total"),
                            bytesSent: try etcd.metrics.counterTotal("etcd_network_client_grpc_sent_bytes_total"))
            },
            storeRequestMeaning: "gRPC calls etcd started (grpc_server_started_total, all methods; a watch stream counts once when opened)",
            cleanup: {}, directory: nil)
    case .kubernetes:
        let fixture = try await context.kubernetes.fixture()
        let counter = fixture.requestCounter
        return LockBackend(
            kind: kind,
            makeLock: { name, identity, configuration in
                try KubernetesLock.validate(configuration)
                let client = try fixture.makeClient(
                    requestTimeout: KubernetesConfiguration.requestTimeout(forRenewDeadline: configuration.renewDeadline))
                do {
                    let lock = try KubernetesLock(client: client, configuration: .init(name: name, namespace: fixture.namespace),
                                                  identity: identity)
                    return (lock, { try? await client.shutdown() })
                } catch {
                    try? await client.shutdown()
                    throw error
                }
            },
            storeCounts: {
                StoreCounts(requests: counter(), etcdRPCs: try etcd.metrics.rpcsStarted())
            },
            storeRequestMeaning: "requests the LeaseAPIServer received (requestCounts by method, WATCH for watches; Event POSTs included)",
            cleanup: {}, directory: nil)
    }
}

/// Runs `body` with `count` candidates on one new lock of `backend`, shutting them all down afterwards.
func withCandidates<R>(
    _ count: Int, prefix: String, backend: LockBackend, configuration: LeaderElectionConfiguration,
    _ body: ([Candidate], ElectionLog) async throws -> R
) async throws -> R {
    try await withCandidates(count, prefix: prefix, make: { identity, leaseName, log in
        let made = try await backend.makeLock(leaseName, identity, configuration)
        return try Candidate(identity: identity, lock: made.lock, configuration: configuration, log: log, close: made.close)
    }, body)
}

/// VmRSS and VmHWM of a process, in MiB (`/proc/<pid>/status`).
func residentMemoryMiB(pid: Int32? = nil) -> (rss: Double, peak: Double)? {
    let path = pid.map { "/proc/\($0)/status" } ?? "/proc/self/status"
    guard let text = ProcFS.read(path) else { return nil }
    func field(_ name: String) -> Double? {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return nil }
        return line.split(separator: " ").compactMap { Double($0) }.first.map { $0 / 1024 }
    }
    guard let rss = field("VmRSS"), let peak = field("VmHWM") else { return nil }
    return (rss, peak)
}

/// utime + stime of a process, ns (clock ticks).
func processCPUNanos(pid: Int32) -> UInt64? {
    // After "(comm)": state is field 3, utime field 14, stime field 15.
    guard let fields = ProcFS.statFields("/proc/\(pid)/stat"), fields.count > 12, let utime = UInt64(fields[11]), let stime = UInt64(fields[12]) else { return nil }
    let ticks = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
    return (utime + stime) * 1_000_000_000 / ticks
}
