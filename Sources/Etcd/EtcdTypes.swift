/// A key-value pair as etcd stores it.
public struct EtcdKeyValue: Hashable, Sendable {
    /// The key.
    public var key: [UInt8]
    /// The value.
    public var value: [UInt8]
    /// The revision at which the key was created (0 when it does not exist).
    public var createRevision: Int64
    /// The revision of the last modification of the key.
    public var modRevision: Int64
    /// How many times the key was written since it was created.
    public var version: Int64
    /// The ID of the lease attached to the key, or 0.
    public var lease: Int64

    /// Creates a key-value pair.
    public init(key: [UInt8], value: [UInt8], createRevision: Int64 = 0, modRevision: Int64 = 0, version: Int64 = 0, lease: Int64 = 0) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.lease = lease
    }

    /// The key as a UTF-8 string (lossy).
    public var keyString: String { String(decoding: key, as: UTF8.self) }
}

/// The header etcd attaches to every response.
public struct EtcdResponseHeader: Hashable, Sendable {
    /// The cluster's ID.
    public var clusterID: UInt64
    /// The ID of the member that answered.
    public var memberID: UInt64
    /// The store's revision when the request was applied.
    public var revision: Int64
    /// The raft term of the answering member.
    public var raftTerm: UInt64
}

/// The result of a range read.
public struct EtcdRangeResponse: Hashable, Sendable {
    /// The response header.
    public var header: EtcdResponseHeader
    /// The pairs found.
    public var kvs: [EtcdKeyValue]
    /// Whether more pairs match than were returned (a limit was hit).
    public var more: Bool
    /// How many pairs match.
    public var count: Int64
}

/// A condition of a transaction.
public struct EtcdCompare: Hashable, Sendable {
    /// How the target is compared.
    public enum Result: Int32, Hashable, Sendable { case equal = 0, greater = 1, less = 2, notEqual = 3 }
    /// What is compared, with the operand.
    public enum Target: Hashable, Sendable {
        /// The key's version (number of writes since creation; 0 when absent).
        case version(Int64)
        /// The key's create revision (0 when absent).
        case createRevision(Int64)
        /// The key's mod revision.
        case modRevision(Int64)
        /// The key's value.
        case value([UInt8])
        /// The ID of the lease attached to the key.
        case lease(Int64)
    }
    /// The key compared.
    public var key: [UInt8]
    /// The comparison.
    public var result: Result
    /// The target and operand.
    public var target: Target

    /// Creates a comparison.
    public init(key: [UInt8], _ target: Target, _ result: Result = .equal) {
        self.key = key
        self.target = target
        self.result = result
    }
}

/// One operation inside a transaction.
public enum EtcdOperation: Hashable, Sendable {
    /// Read `key` (or `[key, rangeEnd)` when `rangeEnd` is non-empty).
    case range(key: [UInt8], rangeEnd: [UInt8] = [])
    /// Write `value` at `key`, attached to `lease` when non-zero.
    case put(key: [UInt8], value: [UInt8], lease: Int64 = 0)
    /// Delete `key` (or `[key, rangeEnd)`).
    case delete(key: [UInt8], rangeEnd: [UInt8] = [])
}

/// The result of one operation inside a transaction.
public enum EtcdOperationResult: Hashable, Sendable {
    /// A range read's pairs.
    case range([EtcdKeyValue])
    /// A put's revision (from its header).
    case put
    /// How many keys a delete removed.
    case delete(deleted: Int64)
}

/// The result of a transaction.
public struct EtcdTxnResponse: Hashable, Sendable {
    /// The response header; `header.revision` is the revision of the transaction's writes.
    public var header: EtcdResponseHeader
    /// Whether every comparison held (so the success branch ran).
    public var succeeded: Bool
    /// The results of the branch that ran, in order.
    public var responses: [EtcdOperationResult]
}

/// A granted lease.
public struct EtcdLease: Hashable, Sendable {
    /// The lease ID.
    public var id: Int64
    /// The TTL the server granted, in seconds (servers raise TTLs below their minimum).
    public var ttl: Int64
}

/// One change seen by a watch.
public struct EtcdWatchEvent: Hashable, Sendable {
    /// Whether the key was written or deleted.
    public enum Kind: Hashable, Sendable { case put, delete }
    /// Whether the key was written or deleted.
    public var kind: Kind
    /// The key-value pair after the change (for a delete: the key and the delete's mod revision).
    public var kv: EtcdKeyValue
}

/// A maintenance status report of one member.
public struct EtcdStatus: Hashable, Sendable {
    /// The response header.
    public var header: EtcdResponseHeader
    /// The server version, such as `3.4.23`.
    public var version: String
    /// The database size in bytes.
    public var dbSize: Int64
    /// The member ID of the raft leader.
    public var leader: UInt64
    /// The raft index.
    public var raftIndex: UInt64
    /// The raft term.
    public var raftTerm: UInt64
}

/// Returns the range end that selects every key with `prefix` (etcd's `WithPrefix`).
public func etcdPrefixEnd(_ prefix: [UInt8]) -> [UInt8] {
    var end = prefix
    while let last = end.last {
        if last < 0xFF {
            end[end.count - 1] = last + 1
            return end
        }
        end.removeLast()
    }
    return [0]   // every key
}
