import Foundation
import Kubernetes

/// `metadata.managedFields` as kube-apiserver keeps them for `Update` operations (create, PUT): one entry
/// per manager, owning the fields it last changed, in `FieldsV1` form (`{"f:spec":{"f:holderIdentity":{}}}`).
///
/// The manager is the `fieldManager` query parameter, or else the User-Agent up to its first `/`
/// (`kube-golden-recorder/v1.0.0 (linux/amd64)` → `kube-golden-recorder`).
struct ManagedFields {
    /// A field, as the path of `FieldsV1` keys down to it (`["f:spec", "f:renewTime"]`; `"."` marks a map or
    /// set that is present itself).
    typealias Path = [String]

    /// One `managedFields` entry.
    struct Entry {
        var manager: String
        var operation: String
        var apiVersion: String
        var time: String
        var fields: Set<Path>
        /// Members the server does not interpret (`subresource`), kept as they were.
        var extra: [String: JSONValue]
    }

    var entries: [Entry]

    /// The manager a request writes as.
    static func manager(_ request: HTTPRequest) -> String {
        if let manager = request.query["fieldManager"], !manager.isEmpty { return manager }
        let agent = request.headers.first(name: "User-Agent") ?? ""
        return String(agent.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
    }

    /// Reads `metadata.managedFields`; `nil` when absent, empty or not in the expected form.
    init?(_ value: JSONValue?) {
        guard case .array(let items)? = value, !items.isEmpty else { return nil }
        var entries: [Entry] = []
        for item in items {
            guard case .object(var fields) = item,
                  let manager = fields.removeValue(forKey: "manager")?.stringValue,
                  case .object(let fieldsV1)? = fields.removeValue(forKey: "fieldsV1")
            else { return nil }
            let operation = fields.removeValue(forKey: "operation")?.stringValue ?? "Update"
            let apiVersion = fields.removeValue(forKey: "apiVersion")?.stringValue ?? ""
            let time = fields.removeValue(forKey: "time")?.stringValue ?? ""
            fields.removeValue(forKey: "fieldsType")
            var set = Set<Path>()
            Self.collect(fieldsV1, [], into: &set)
            entries.append(Entry(manager: manager, operation: operation, apiVersion: apiVersion, time: time, fields: set, extra: fields))
        }
        self.entries = entries
    }

    init() {
        entries = []
    }

    private static func collect(_ node: [String: JSONValue], _ path: Path, into set: inout Set<Path>) {
        for (key, value) in node {
            if case .object(let children) = value, !children.isEmpty {
                collect(children, path + [key], into: &set)
            } else {
                set.insert(path + [key])
            }
        }
    }

    /// Gives every entry that matches a stored one in all but its time the stored time.
    mutating func keepTimes(of stored: ManagedFields) {
        for index in entries.indices {
            let entry = entries[index]
            if let match = stored.entries.first(where: {
                $0.manager == entry.manager && $0.operation == entry.operation && $0.apiVersion == entry.apiVersion
                    && $0.fields == entry.fields && $0.extra == entry.extra
            }) {
                entries[index].time = match.time
            }
        }
    }

    /// The JSON of `metadata.managedFields`; `nil` when there is no entry.
    var json: JSONValue? {
        guard !entries.isEmpty else { return nil }
        return .array(entries.map { entry in
            var object = entry.extra
            object["manager"] = .string(entry.manager)
            object["operation"] = .string(entry.operation)
            object["apiVersion"] = .string(entry.apiVersion)
            object["time"] = .string(entry.time)
            object["fieldsType"] = .string("FieldsV1")
            object["fieldsV1"] = Self.fieldsV1(entry.fields)
            return .object(object)
        })
    }

    private static func fieldsV1(_ set: Set<Path>) -> JSONValue {
        var root: [String: JSONValue] = [:]
        func insert(_ path: ArraySlice<String>, into node: inout [String: JSONValue]) {
            guard let first = path.first else { return }
            var child: [String: JSONValue]
            if case .object(let existing)? = node[first] { child = existing } else { child = [:] }
            insert(path.dropFirst(), into: &child)
            node[first] = .object(child)
        }
        for path in set { insert(path[...], into: &root) }
        return .object(root)
    }

    /// Records an `Update` by `manager` that turned `old` (nil on create) into `new`: the manager owns every
    /// field it changed, other managers lose those, and removed fields leave every set. Returns whether any
    /// field changed.
    @discardableResult
    mutating func update(manager: String, apiVersion: String, time: String, old: [Path: JSONValue], new: [Path: JSONValue]) -> Bool {
        var changed = Set<Path>()
        for (path, value) in new where old[path] != value { changed.insert(path) }
        let removed = Set(old.keys).subtracting(new.keys)
        guard !changed.isEmpty || !removed.isEmpty else { return false }
        var found = false
        for index in entries.indices {
            entries[index].fields.subtract(removed)
            if entries[index].manager == manager && entries[index].operation == "Update" {
                found = true
                entries[index].fields.formUnion(changed)
                entries[index].time = time
                entries[index].apiVersion = apiVersion
            } else {
                entries[index].fields.subtract(changed)
            }
        }
        if !found && !changed.isEmpty {
            entries.append(Entry(manager: manager, operation: "Update", apiVersion: apiVersion, time: time, fields: changed, extra: [:]))
        }
        entries.removeAll { $0.fields.isEmpty }
        return true
    }

    /// Every field of an object (its JSON), with its value, as `FieldsV1` paths. Server-owned metadata
    /// (name, namespace, uid, resourceVersion, timestamps, generation, managedFields) is not a field.
    static func fields(of object: JSONValue) -> [Path: JSONValue] {
        guard case .object(let top) = object else { return [:] }
        var result: [Path: JSONValue] = [:]
        for (key, value) in top where key != "apiVersion" && key != "kind" {
            if key == "metadata", case .object(let metadata) = value {
                for (field, member) in metadata {
                    switch field {
                    case "labels", "annotations":
                        guard case .object(let map) = member else { continue }
                        result[["f:metadata", "f:\(field)", "."]] = .null
                        for (name, text) in map { result[["f:metadata", "f:\(field)", "f:\(name)"]] = text }
                    case "finalizers":
                        guard case .array(let items) = member else { continue }
                        result[["f:metadata", "f:finalizers", "."]] = .null
                        for item in items {
                            let encoded = (try? String(decoding: ServerJSON.encode(item), as: UTF8.self)) ?? ""
                            result[["f:metadata", "f:finalizers", "v:\(encoded)"]] = .null
                        }
                    case "generateName", "ownerReferences":
                        if member != .null { result[["f:metadata", "f:\(field)"]] = member }
                    default:
                        continue
                    }
                }
            } else {
                add(value, ["f:\(key)"], atomic: atomicFields.contains(key), into: &result)
            }
        }
        return result
    }

    /// Fields owned as a whole (kube's `+structType=atomic` references).
    private static let atomicFields: Set<String> = ["involvedObject", "regarding", "related", "roleRef"]

    private static func add(_ value: JSONValue, _ path: Path, atomic: Bool, into result: inout [Path: JSONValue]) {
        switch value {
        case .null:
            return
        case .object(let members) where !atomic:
            for (key, member) in members { add(member, path + ["f:\(key)"], atomic: false, into: &result) }
        default:
            result[path] = value
        }
    }
}

extension APIObject {
    /// The object as JSON, for field sets and comparisons.
    var jsonValue: JSONValue {
        (try? KubernetesJSON.decode(JSONValue.self, from: ServerJSON.encode(self))) ?? .null
    }
}

extension JSONValue {
    /// The elements, when this is an array.
    var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }
}
