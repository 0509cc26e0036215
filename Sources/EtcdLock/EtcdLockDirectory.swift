import Etcd
import LeaderElection

/// The ``EtcdLock`` records under one key prefix as a ``LeaseDirectory``: the collection a
/// ``LeaseMonitor`` watches when members keep ``HeartbeatLease``s in etcd (one key per member).
///
/// ```swift
/// // Members write EtcdLock(client:, configuration: .init(name: member, namespace: "members"), identity: member).
/// let members = EtcdLockDirectory(client: client, namespace: "members")
/// let monitor = try LeaseMonitor(directory: members)
/// ```
///
/// ``list()`` is one range read of every key under ``prefix``; each lease is named by its key below the
/// prefix and versioned by its `mod_revision`, exactly as ``EtcdLock`` versions it. Values that are not
/// leader-election records are listed with a `nil` record. ``changes()`` is one etcd watch on the prefix
/// (it yields once when established, and ends after a compaction or failure, after one last yield).
public struct EtcdLockDirectory: LeaseDirectory {
    /// The client used for every call.
    public let client: EtcdClient
    /// The key prefix listed, ending in `/`, such as `/leader-election/members/`.
    public let prefix: String

    /// Lists the keys under `prefix` (a `/` is appended when missing).
    public init(client: EtcdClient, prefix: String) {
        self.client = client
        self.prefix = prefix.hasSuffix("/") ? prefix : prefix + "/"
    }

    /// Lists the locks that ``EtcdLock`` stores for `namespace` under `keyPrefix`: the keys
    /// `<keyPrefix>/<namespace>/<name>`.
    public init(client: EtcdClient, namespace: String = "default", keyPrefix: String = "/leader-election") {
        let key = EtcdLock.Configuration(name: "x", namespace: namespace, keyPrefix: keyPrefix).key
        self.init(client: client, prefix: String(key.dropLast(1)))
    }

    public var description: String {
        "etcd://\(client.configuration.endpoints.joined(separator: ","))\(prefix)"
    }

    /// Every key under the prefix, sorted by name.
    /// - Throws: ``LeaderElectionError/Code/unavailable`` (or `unauthorized`) when etcd cannot be read.
    public func list() async throws -> [ListedLease] {
        let start = Array(prefix.utf8)
        let response: EtcdRangeResponse
        do {
            response = try await client.range(start, rangeEnd: etcdPrefixEnd(start))
        } catch let error as EtcdError {
            switch error.code {
            case .cancelled: throw CancellationError()
            case .unauthenticated, .permissionDenied: throw LeaderElectionError.unauthorized("\(description): \(error.message)")
            default: throw LeaderElectionError.unavailable("\(description): \(error)")
            }
        }
        var leases: [ListedLease] = []
        for kv in response.kvs {
            let name = String(decoding: kv.key.dropFirst(start.count), as: UTF8.self)
            guard !name.isEmpty else { continue }
            let record = try? LeaderElectionRecord.decodeJSON(kv.value).record
            leases.append(ListedLease(name: name, record: record, version: LockVersion(UInt64(max(0, kv.modRevision)))))
        }
        return leases.sorted { $0.name < $1.name }
    }

    public func changes() -> AsyncStream<Void>? {
        let start = Array(prefix.utf8)
        let watch = client.watch(start, rangeEnd: etcdPrefixEnd(start))
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let task = Task {
            do {
                for try await _ in watch { continuation.yield() }
            } catch {
                continuation.yield()   // compacted or failed: the consumer re-lists and falls back to polling
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }
}
