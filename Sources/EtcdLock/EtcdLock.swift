import Etcd
import LeaderElection
import Synchronization

/// A ``ResourceLock`` stored in one etcd key.
///
/// The record is JSON with client-go's `LeaderElectionRecord` field names (microsecond timestamps;
/// sub-second lease durations allowed). The version token is the key's `mod_revision`.
/// - `create` is one transaction: `create_revision(key) == 0 → put`.
/// - `update` is one transaction: `mod_revision(key) == expected → put`, else read the key — so a failed
///   compare-and-swap reports the current version (or `notFound`) without a second round trip.
/// - ``changes()`` is an etcd watch on the key, which reconnects and resumes by itself; it yields once
///   when the watch is (re-)established, so nothing between subscribing and establishing is missed.
///
/// Expiry stays the elector's business (client-go semantics, local monotonic clock). By default no etcd
/// lease is attached, so a dead holder's record stays in etcd until a candidate takes it over after
/// `leaseDuration`.
///
/// ## Attaching an etcd lease (``Configuration/attachLease``)
/// When enabled, every write that names this lock's identity as holder attaches an etcd lease whose TTL is
/// the record's lease duration (rounded up to whole seconds), kept alive in the background while this
/// candidate holds the lock; writes naming anyone else (a release) detach it. If the holder's process
/// dies, or it is cut off from etcd, **etcd itself** deletes the record once the TTL runs out, and
/// followers watching the key take over at once.
///
/// The trade-off:
/// - The deletion resets `leaseTransitions`, so fencing tokens restart (the elector continues from the
///   highest value it had seen, but a fresh candidate starts at 0). Use it only if downstream systems do not
///   rely on tokens across such a takeover.
/// - Liveness then also depends on the keepalive stream and on etcd's clock; a holder whose keepalives
///   stall for the TTL loses its record even if its renewals would have succeeded later.
/// - One more background stream per holder. The renewal itself stays one round trip.
public struct EtcdLock: ResourceLock {
    /// Where the lock lives.
    public struct Configuration: Sendable {
        /// The key prefix. Default `/leader-election`.
        public var keyPrefix: String
        /// A namespace inside the prefix. Default `default`.
        public var namespace: String
        /// The lock's name.
        public var name: String
        /// Attach an etcd lease (TTL = the record's lease duration) to the holder's record, so that etcd
        /// deletes it when the holder stops keeping it alive. Default `false`; see ``EtcdLock``.
        public var attachLease: Bool

        /// Creates a configuration; the key is `<keyPrefix>/<namespace>/<name>`.
        public init(name: String, namespace: String = "default", keyPrefix: String = "/leader-election", attachLease: Bool = false) {
            self.name = name
            self.namespace = namespace
            self.keyPrefix = keyPrefix
            self.attachLease = attachLease
        }

        /// The etcd key.
        public var key: String {
            let prefix = keyPrefix.hasSuffix("/") ? String(keyPrefix.dropLast()) : keyPrefix
            return namespace.isEmpty ? "\(prefix)/\(name)" : "\(prefix)/\(namespace)/\(name)"
        }
    }

    /// The largest record accepted (etcd itself rejects requests above ~1.5 MiB).
    public static let maximumRecordBytes = 64 * 1024

    /// The client used for every call (shared by all locks that use it).
    public let client: EtcdClient
    /// Where the lock lives.
    public let configuration: Configuration
    public let identity: String
    private let key: [UInt8]
    private let leases = HolderLease()

    /// Creates a lock for `identity` on the key described by `configuration`.
    /// - Throws: ``LeaderElectionError/Code/invalidConfiguration`` for an empty name or identity.
    public init(client: EtcdClient, configuration: Configuration, identity: String) throws {
        guard !configuration.name.isEmpty, !configuration.name.contains("/") else {
            throw LeaderElectionError.invalidConfiguration("etcd lock name must be non-empty and contain no '/' (got \"\(configuration.name)\")")
        }
        guard !identity.isEmpty else { throw LeaderElectionError.invalidConfiguration("Lock identity is empty") }
        self.client = client
        self.configuration = configuration
        self.identity = identity
        self.key = Array(configuration.key.utf8)
    }

    public var description: String {
        "etcd://\(client.configuration.endpoints.joined(separator: ","))\(configuration.key)"
    }

    public func get() async throws -> VersionedRecord? {
        let response = try await mapErrors { try await client.range(key) }
        return try Self.record(in: response, description: description)
    }

    public func create(_ record: LeaderElectionRecord) async throws -> LockVersion {
        let value = try encode(record)
        let response = try await withLease(for: record) { lease in
            try await client.txn([EtcdCompare(key: key, .createRevision(0))], success: [.put(key: key, value: value, lease: lease)])
        }
        return try Self.createdVersion(response, description: description)
    }

    public func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion {
        let value = try encode(record)
        // A version this backend never issued cannot match any mod_revision: compare against -1 so the
        // transaction still tells us (in the same round trip) whether the key exists.
        let expected = Int64(version.rawValue) ?? -1
        let response = try await withLease(for: record) { lease in
            try await client.txn([EtcdCompare(key: key, .modRevision(expected))],
                                 success: [.put(key: key, value: value, lease: lease)],
                                 failure: [.range(key: key)])
        }
        return try Self.updatedVersion(response, expecting: version, description: description)
    }

    public func changes() -> AsyncStream<Void>? {
        let watch = client.watch(key)
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let task = Task {
            do {
                for try await _ in watch { continuation.yield() }
            } catch {
                // A compacted or failed watch: wake the consumer once (it re-reads) and end the feed; the
                // elector then falls back to its timers.
                continuation.yield()
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    /// The watch on the key, reporting each put's record and `mod_revision` (no re-read needed), deletes, and
    /// ``LockChange/unknown`` when the watch is (re)established or a value does not decode.
    public func recordChanges() -> AsyncStream<LockChange>? {
        let watch = client.watch(key)
        let (stream, continuation) = AsyncStream.makeStream(of: LockChange.self, bufferingPolicy: .bufferingNewest(1))
        let task = Task {
            do {
                for try await message in watch { continuation.yield(Self.change(message)) }
            } catch {
                continuation.yield(.unknown)   // compacted or failed: the consumer re-reads; the feed ends
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    /// What one watch message says about the record.
    static func change(_ message: EtcdClient.WatchMessage) -> LockChange {
        guard case .event(let event) = message else { return .unknown }
        switch event.kind {
        case .delete:
            return .deleted
        case .put:
            guard event.kv.modRevision > 0, let (record, _) = try? LeaderElectionRecord.decodeJSON(event.kv.value) else { return .unknown }
            return .stored(VersionedRecord(record: record, version: LockVersion(UInt64(event.kv.modRevision))))
        }
    }

    /// Deletes the record (operators and tests).
    public func delete() async throws {
        _ = try await mapErrors { try await client.delete(key) }
    }

    /// Stores raw bytes as the record (tests and operators; bypasses every check).
    public func writeRaw(_ bytes: [UInt8]) async throws {
        _ = try await mapErrors { try await client.put(key, bytes) }
    }

    /// Runs `body` with the lease to attach (0 for none), granting one when this identity becomes holder
    /// and granting a fresh one once if etcd no longer knows the cached lease.
    private func withLease<T>(for record: LeaderElectionRecord, _ body: (Int64) async throws -> T) async throws -> T {
        guard configuration.attachLease, record.holderIdentity == identity else {
            let result = try await mapErrors { try await body(0) }
            if configuration.attachLease { leases.drop() }
            return result
        }
        let ttl = max(1, (record.leaseDuration.components.seconds) + (record.leaseDuration.components.attoseconds > 0 ? 1 : 0))
        for attempt in 0..<2 {
            let lease = try await mapErrors { try await leases.current(client: client, ttl: ttl) }
            do {
                return try await body(lease)
            } catch let error as EtcdError where error.code == .notFound && attempt == 0 {
                leases.forget(lease)   // the lease expired: grant a new one and retry once
            } catch {
                return try await mapErrors { throw error }
            }
        }
        throw LeaderElectionError.unavailable("\(description): could not attach an etcd lease")
    }

    private func encode(_ record: LeaderElectionRecord) throws -> [UInt8] {
        let bytes = record.jsonBytes()
        guard bytes.count <= Self.maximumRecordBytes else {
            throw LeaderElectionError.invalidConfiguration(
                "record for \(description) is \(bytes.count) bytes, more than the \(Self.maximumRecordBytes)-byte limit")
        }
        return bytes
    }

    // MARK: Interpreting responses (pure, so the fuzzer runs exactly this code on decoded server data)
    // Revisions become `UInt64` lock versions: EtcdCodec rejects responses with negative revisions (a
    // negative one trapped here before — found by `lease-fuzz etcd`).

    /// The record in the response to `get`'s range read; `nil` when the key does not exist.
    static func record(in response: EtcdRangeResponse, description: String) throws -> VersionedRecord? {
        guard let kv = response.kvs.first else { return nil }
        let version = LockVersion(UInt64(kv.modRevision))
        do {
            let (record, _) = try LeaderElectionRecord.decodeJSON(kv.value)
            return VersionedRecord(record: record, version: version)
        } catch let error as LeaderElectionError {
            throw LeaderElectionError.corruptRecord("\(description): \(error.message)", version: version)
        }
    }

    /// The version written by `create`'s transaction.
    static func createdVersion(_ response: EtcdTxnResponse, description: String) throws -> LockVersion {
        guard response.succeeded else { throw LeaderElectionError.alreadyExists("\(description) already has a record") }
        return LockVersion(UInt64(response.header.revision))
    }

    /// The version written by `update`'s transaction, or the conflict / missing record its failure branch read.
    static func updatedVersion(_ response: EtcdTxnResponse, expecting version: LockVersion, description: String) throws -> LockVersion {
        if response.succeeded { return LockVersion(UInt64(response.header.revision)) }
        guard case .range(let kvs)? = response.responses.first, let current = kvs.first else {
            throw LeaderElectionError.notFound("\(description) has no record")
        }
        throw LeaderElectionError.conflict("\(description) is at version \(current.modRevision), not \(version)",
                                           current: LockVersion(UInt64(current.modRevision)))
    }

    /// Runs `get`'s handling of a `RangeResponse` on `bytes` (decoded as the client decodes them).
    /// Exists for the `lease-fuzz` harness only; not API.
    public static func _fuzzGet(rangeResponse bytes: [UInt8]) throws -> VersionedRecord? {
        try record(in: _EtcdFuzzing.range(bytes), description: "etcd://fuzz/lock")
    }

    /// Runs `create`'s and `update`'s handling of a `TxnResponse` on `bytes` (decoded as the client decodes
    /// them). Exists for the `lease-fuzz` harness only; not API.
    public static func _fuzzWrite(txnResponse bytes: [UInt8]) throws -> LockVersion {
        let response = try _EtcdFuzzing.txn(bytes)
        _ = try? createdVersion(response, description: "etcd://fuzz/lock")
        return try updatedVersion(response, expecting: LockVersion("1"), description: "etcd://fuzz/lock")
    }

    private func mapErrors<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as EtcdError {
            switch error.code {
            case .cancelled: throw CancellationError()
            case .unauthenticated, .permissionDenied:
                throw LeaderElectionError.unauthorized("\(description): \(error.message)")
            case .invalidArgument, .resourceExhausted:
                throw LeaderElectionError.invalidConfiguration("\(description): etcd rejected the request: \(error.message)")
            default:
                throw LeaderElectionError.unavailable("\(description): \(error)")
            }
        }
    }
}

/// The etcd lease a holder attaches to its record, kept alive in the background.
private final class HolderLease: Sendable {
    private struct State: Sendable {
        var id: Int64?
        var keeper: Task<Void, Never>?
    }
    private let state = Mutex(State())

    func current(client: EtcdClient, ttl: Int64) async throws -> Int64 {
        if let id = state.withLock({ $0.id }) { return id }
        let lease = try await client.grantLease(ttl: ttl)
        let keeper = Task { [weak self] in
            do { for try await _ in client.keepAlive(lease.id) {} } catch {}
            self?.forget(lease.id)
        }
        let previous = state.withLock { s -> Task<Void, Never>? in
            defer { s.id = lease.id; s.keeper = keeper }
            return s.keeper
        }
        previous?.cancel()
        return lease.id
    }

    func forget(_ id: Int64) {
        let keeper = state.withLock { s -> Task<Void, Never>? in
            guard s.id == id else { return nil }
            defer { s.id = nil; s.keeper = nil }
            return s.keeper
        }
        keeper?.cancel()
    }

    /// Stops keeping the lease alive (the record no longer names us); etcd expires it after its TTL.
    func drop() {
        let keeper = state.withLock { s -> Task<Void, Never>? in
            defer { s.id = nil; s.keeper = nil }
            return s.keeper
        }
        keeper?.cancel()
    }

    deinit { state.withLock { $0.keeper?.cancel() } }
}
