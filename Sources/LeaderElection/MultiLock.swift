/// A lock that holds two locks at once, so a fleet can move its election from one store to another —
/// client-go's `MultiLock` — without ever having two leaders during the rollout.
///
/// Migrating from lock A to lock B takes three rollouts:
/// 1. every candidate uses A;
/// 2. every candidate uses `MultiLock(primary: A, secondary: B)`;
/// 3. every candidate uses B.
///
/// During the first rollout, candidates on A alone and candidates on the MultiLock exclude each other through A;
/// during the last, candidates on the MultiLock and on B alone exclude each other through B. Never mix A-only and
/// B-only candidates.
///
/// Semantics, following client-go:
/// - ``get()`` reads both. The record is the primary's; when the two name different holders, the holder reads as
///   `"UnknownLeader"` (so nobody takes over before the lease has gone unchanged for its duration); when only one
///   exists, it is that one. Its `leaseTransitions` is the larger of the two (client-go takes the primary's), so that
///   fencing tokens keep increasing while candidates on the secondary alone take terms during the last rollout.
///   The version combines both versions (and notes a missing one).
/// - ``create(_:)`` creates the primary, then the secondary. ``update(_:expecting:)`` compare-and-swaps the primary,
///   then the secondary (creating the secondary if it did not exist when the version was read). Either failing
///   fails the write; a write that landed on the primary only is repaired by the next successful write.
/// - ``changes()`` merges both feeds; `nil` unless both can watch. ``recordChanges()`` reports each change as
///   ``LockChange/unknown`` (the protocol's default: the two locks' feeds cannot say which pair of records was ever
///   stored together), so every candidate — the leader too, which looks for hand-off requests — reads once per
///   change while the migration lasts.
/// - Undecodable data in either lock makes ``get()`` throw ``LeaderElectionError/Code/corruptRecord`` with a
///   combined version, which ``update(_:expecting:)`` accepts to replace it.
///
/// Both locks must write as the same identity. Passes the `LockConformance` suite (Tests/LockConformanceTests).
public struct MultiLock: ResourceLock {
    /// The lock the fleet is moving from.
    public let primary: any ResourceLock
    /// The lock the fleet is moving to.
    public let secondary: any ResourceLock

    /// The holder reported when the two locks name different holders (client-go's `UnknownLeader`).
    public static let unknownLeader = "UnknownLeader"

    /// Combines two locks.
    /// - Throws: ``LeaderElectionError/Code/invalidConfiguration`` when their identities differ.
    public init(primary: any ResourceLock, secondary: any ResourceLock) throws {
        guard primary.identity == secondary.identity else {
            throw LeaderElectionError.invalidConfiguration(
                "MultiLock needs one identity: the primary writes as \(primary.identity), the secondary as \(secondary.identity)")
        }
        self.primary = primary
        self.secondary = secondary
    }

    public var identity: String { primary.identity }
    public var description: String { "MultiLock(\(primary), \(secondary))" }

    public func get() async throws -> VersionedRecord? {
        let (p, pCorrupt) = try await Self.read(primary)
        let (s, sCorrupt) = try await Self.read(secondary)
        if pCorrupt != nil || sCorrupt != nil {
            let which = pCorrupt != nil ? "primary \(primary)" : "secondary \(secondary)"
            let message = (pCorrupt ?? sCorrupt)!.message
            throw LeaderElectionError.corruptRecord("\(which): \(message)",
                version: CombinedVersion(primary: pCorrupt?.version ?? p?.version, secondary: sCorrupt?.version ?? s?.version).encoded)
        }
        let version = CombinedVersion(primary: p?.version, secondary: s?.version).encoded
        switch (p, s) {
        case (nil, nil):
            return nil
        case (let p?, nil):
            return VersionedRecord(record: p.record, version: version, holderIsKnownGone: p.holderIsKnownGone)
        case (nil, let s?):
            return VersionedRecord(record: s.record, version: version, holderIsKnownGone: s.holderIsKnownGone)
        case (let p?, let s?):
            var record = p.record
            if p.record.holderIdentity != s.record.holderIdentity { record.holderIdentity = Self.unknownLeader }
            record.leaseTransitions = max(p.record.leaseTransitions, s.record.leaseTransitions)
            return VersionedRecord(record: record, version: version, holderIsKnownGone: p.holderIsKnownGone && s.holderIsKnownGone)
        }
    }

    public func create(_ record: LeaderElectionRecord) async throws -> LockVersion {
        let p = try await primary.create(record)
        let s = try await secondary.create(record)
        return CombinedVersion(primary: p, secondary: s).encoded
    }

    public func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion {
        guard let expected = CombinedVersion(decoding: version) else {
            // Not a version this lock handed out: it cannot match what is stored (or nothing is stored).
            let (p, pCorrupt) = try await Self.read(primary)
            let (s, sCorrupt) = try await Self.read(secondary)
            if p == nil && pCorrupt == nil && s == nil && sCorrupt == nil {
                throw LeaderElectionError.notFound("\(self) holds no record")
            }
            throw LeaderElectionError.conflict("\(version) is not a MultiLock version")
        }
        let p = try await Self.write(record, to: primary, expecting: expected.primary)
        let s = try await Self.write(record, to: secondary, expecting: expected.secondary)
        return CombinedVersion(primary: p, secondary: s).encoded
    }

    public func recordEvent(_ event: LockEvent) async {
        await primary.recordEvent(event)
        await secondary.recordEvent(event)
    }

    public func changes() -> AsyncStream<Void>? {
        guard let first = primary.changes(), let second = secondary.changes() else { return nil }
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let tasks = [Task { for await _ in first { continuation.yield() } }, Task { for await _ in second { continuation.yield() } }]
        continuation.onTermination = { _ in tasks.forEach { $0.cancel() } }
        return stream
    }

    /// A record, or the corrupt-record error (with its version) of one lock.
    private static func read(_ lock: any ResourceLock) async throws -> (VersionedRecord?, LeaderElectionError?) {
        do {
            return (try await lock.get(), nil)
        } catch let error as LeaderElectionError where error.code == .corruptRecord && error.version != nil {
            return (nil, error)
        }
    }

    /// Compare-and-swap on one lock; a lock that had no record when the version was read is created.
    private static func write(_ record: LeaderElectionRecord, to lock: any ResourceLock, expecting version: LockVersion?) async throws -> LockVersion {
        guard let version else {
            do {
                return try await lock.create(record)
            } catch let error as LeaderElectionError where error.code == .alreadyExists {
                throw LeaderElectionError.conflict("\(lock) was created meanwhile: \(error.message)")
            }
        }
        return try await lock.update(record, expecting: version)
    }
}

/// Two versions (either possibly absent) in one ``LockVersion``: `<length of the first>:<first><second>`, with `-`
/// for an absent version and `=` before a present one.
private struct CombinedVersion {
    var primary: LockVersion?
    var secondary: LockVersion?

    init(primary: LockVersion?, secondary: LockVersion?) {
        self.primary = primary
        self.secondary = secondary
    }

    init?(decoding version: LockVersion) {
        let raw = version.rawValue
        guard let colon = raw.firstIndex(of: ":"), let length = Int(raw[..<colon]), length >= 1 else { return nil }
        let rest = raw[raw.index(after: colon)...]
        guard rest.count >= length else { return nil }
        let split = rest.index(rest.startIndex, offsetBy: length)
        guard let p = Self.decode(rest[..<split]), let s = Self.decode(rest[split...]) else { return nil }
        primary = p.value
        secondary = s.value
    }

    var encoded: LockVersion {
        let first = Self.encode(primary)
        return LockVersion("\(first.count):\(first)\(Self.encode(secondary))")
    }

    private static func encode(_ version: LockVersion?) -> String { version.map { "=" + $0.rawValue } ?? "-" }

    /// `nil` for malformed text; otherwise the (possibly absent) version.
    private static func decode(_ text: Substring) -> (value: LockVersion?, Void)? {
        if text == "-" { return (nil, ()) }
        guard text.first == "=" else { return nil }
        return (LockVersion(String(text.dropFirst())), ())
    }
}
