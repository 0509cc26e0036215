import Etcd
import Foundation
import Kubernetes

/// Objects in etcd, where kube-apiserver keeps them: `<prefix>/<resource>/<namespace>/<name>` (or
/// `<prefix>/<resource>/<name>` for cluster-scoped resources), stored as JSON with `apiVersion` and `kind`
/// and without `metadata.resourceVersion`, which is the key's mod revision on every read.
struct Store: Sendable {
    let etcd: EtcdClient
    /// Without a trailing slash (`/registry`).
    let prefix: String

    /// The key prefix of a collection, ending with `/`: `/registry/leases/ns/`, `/registry/leases/`.
    func collectionPrefix<T: APIObject>(_ type: T.Type, namespace: String?) -> String {
        var key = "\(prefix)/\(T.info.resource)/"
        if let namespace, T.info.namespaced { key += "\(namespace)/" }
        return key
    }

    /// The key of one object.
    func key<T: APIObject>(_ type: T.Type, namespace: String?, name: String) -> String {
        collectionPrefix(type, namespace: namespace) + name
    }

    /// Runs an etcd call, mapping its failure to a Status (503 when etcd is unreachable, else 500).
    func call<R: Sendable>(_ what: @autoclosure () -> String, _ body: () async throws -> R) async throws -> R {
        do {
            return try await body()
        } catch {
            throw APIError.etcd(error, what())
        }
    }

    /// Decodes a stored value and sets its resourceVersion to the key's mod revision.
    func decode<T: APIObject>(_ type: T.Type, _ kv: EtcdKeyValue) throws -> T {
        do {
            var object = try T.fromStorage(Data(kv.value))
            object.metadata.resourceVersion = String(kv.modRevision)
            return object
        } catch {
            throw APIError.internalError(
                "could not decode the stored object at \(goQuote(kv.keyString)) as a \(T.info.kind): \(describeDecodingError(error))")
        }
    }

    /// The JSON to store: with `apiVersion` and `kind`, without `metadata.resourceVersion`.
    func encodeForStorage<T: APIObject>(_ object: T) throws -> [UInt8] {
        var copy = object.withTypeMeta
        copy.metadata.resourceVersion = nil
        return Array(try copy.storageData())
    }

    /// Reads one key.
    func read(_ key: String) async throws -> EtcdKeyValue? {
        try await call("reading \(key)") { try await etcd.range(Array(key.utf8)).kvs.first }
    }

    /// Reads one key as it was at `revision` (`nil` when absent then, compacted, or unreadable).
    func read(_ key: String, at revision: Int64) async -> EtcdKeyValue? {
        guard revision > 0 else { return nil }
        return try? await etcd.range(Array(key.utf8), revision: revision).kvs.first
    }

    /// Reads every key in `[from, end of prefix)` at `revision` (0: the latest).
    func range(prefix: String, from start: String? = nil, revision: Int64 = 0) async throws -> EtcdRangeResponse {
        let prefixBytes = Array(prefix.utf8)
        let startBytes = start.map { Array($0.utf8) } ?? prefixBytes
        return try await call("listing \(prefix)") {
            try await etcd.range(startBytes, rangeEnd: etcdPrefixEnd(prefixBytes), revision: revision)
        }
    }

    /// Writes `value` at `key` (attached to the etcd lease `lease`, when not 0) if the key does not exist; `nil`
    /// when it does, else the write's revision.
    func createIfAbsent(_ key: String, _ value: [UInt8], lease: Int64 = 0) async throws -> Int64? {
        let keyBytes = Array(key.utf8)
        let response = try await call("creating \(key)") {
            try await etcd.txn([EtcdCompare(key: keyBytes, .createRevision(0))], success: [.put(key: keyBytes, value: value, lease: lease)])
        }
        return response.succeeded ? response.header.revision : nil
    }

    /// Writes `value` at `key` if its mod revision is still `revision`; `nil` when it is not, else the write's revision.
    func replace(_ key: String, _ value: [UInt8], ifModRevision revision: Int64) async throws -> Int64? {
        let keyBytes = Array(key.utf8)
        let response = try await call("updating \(key)") {
            try await etcd.txn([EtcdCompare(key: keyBytes, .modRevision(revision))], success: [.put(key: keyBytes, value: value)])
        }
        return response.succeeded ? response.header.revision : nil
    }

    /// Deletes `key` (and every prefix in `alsoPrefixes`) if its mod revision is still `revision`; `nil`
    /// when it is not, else the deletion's revision.
    func delete(_ key: String, ifModRevision revision: Int64, alsoPrefixes: [String] = []) async throws -> Int64? {
        let keyBytes = Array(key.utf8)
        var operations: [EtcdOperation] = [.delete(key: keyBytes)]
        for prefix in alsoPrefixes {
            let bytes = Array(prefix.utf8)
            operations.append(.delete(key: bytes, rangeEnd: etcdPrefixEnd(bytes)))
        }
        let response = try await call("deleting \(key)") {
            try await etcd.txn([EtcdCompare(key: keyBytes, .modRevision(revision))], success: operations)
        }
        return response.succeeded ? response.header.revision : nil
    }
}

/// A short description of a JSON decoding failure, with the path of the offending field.
func describeDecodingError(_ error: any Error) -> String {
    guard let error = error as? DecodingError else { return "\(error)" }
    func path(_ context: DecodingError.Context) -> String {
        let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        return path.isEmpty ? "" : " (at \(path))"
    }
    switch error {
    case .typeMismatch(let type, let context):
        return "expected \(type)\(path(context)): \(context.debugDescription)"
    case .valueNotFound(let type, let context):
        return "missing \(type) value\(path(context)): \(context.debugDescription)"
    case .keyNotFound(let key, let context):
        return "missing field \(goQuote(key.stringValue))\(path(context))"
    case .dataCorrupted(let context):
        if let underlying = context.underlyingError {
            return "\(context.debugDescription)\(path(context)) \(underlying.localizedDescription)"
        }
        return "\(context.debugDescription)\(path(context))"
    @unknown default:
        return "\(error)"
    }
}

/// The server's JSON encoder: like ``KubernetesJSON`` (unescaped slashes), with sorted keys so that every
/// response and stored value is byte-for-byte deterministic.
enum ServerJSON {
    static func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return try encoder.encode(value)
    }
}
