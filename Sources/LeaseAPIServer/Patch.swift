import Foundation
import Kubernetes

/// PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch, which for
/// the types served here (no lists with merge keys) merges as a merge patch does.
enum Patch {
    /// A patch that cannot be applied, as kube reports it.
    static let testFailed = APIError(code: 422, reason: "Invalid", message: "the server rejected our request due to an error in our request",
                                     details: Status.Details())

    /// RFC 7386.
    static func merge(_ target: JSONValue, _ patch: JSONValue) -> JSONValue {
        guard case .object(let changes) = patch else { return patch }
        var result: [String: JSONValue] = [:]
        if case .object(let members) = target { result = members }
        for (key, value) in changes {
            if value == .null {
                result.removeValue(forKey: key)
            } else {
                result[key] = merge(result[key] ?? .null, value)
            }
        }
        return .object(result)
    }

    /// RFC 6902; a failing `test` or a bad path is kube's generic 422.
    static func apply(_ document: JSONValue, operations: JSONValue) throws -> JSONValue {
        guard case .array(let list) = operations else {
            throw APIError.badRequest("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        }
        var document = document
        for operation in list {
            guard case .object(let fields) = operation, let op = fields["op"]?.stringValue, let path = fields["path"]?.stringValue else {
                throw testFailed
            }
            let pointer = try parse(path)
            switch op {
            case "test":
                guard get(document, pointer) == fields["value"] else { throw testFailed }
            case "add":
                document = try set(document, pointer, fields["value"] ?? .null, insert: true)
            case "replace":
                guard get(document, pointer) != nil else { throw testFailed }
                document = try set(document, pointer, fields["value"] ?? .null, insert: false)
            case "remove":
                document = try remove(document, pointer)
            case "move", "copy":
                guard let from = fields["from"]?.stringValue, let value = get(document, try parse(from)) else { throw testFailed }
                if op == "move" { document = try remove(document, try parse(from)) }
                document = try set(document, pointer, value, insert: true)
            default:
                throw testFailed
            }
        }
        return document
    }

    private static func parse(_ path: String) throws -> [String] {
        guard path.isEmpty || path.hasPrefix("/") else { throw testFailed }
        return path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map {
            $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
        }
    }

    private static func get(_ value: JSONValue, _ pointer: [String]) -> JSONValue? {
        guard let first = pointer.first else { return value }
        switch value {
        case .object(let members): return members[first].flatMap { get($0, Array(pointer.dropFirst())) }
        case .array(let items):
            guard let index = Int(first), items.indices.contains(index) else { return nil }
            return get(items[index], Array(pointer.dropFirst()))
        default: return nil
        }
    }

    private static func set(_ value: JSONValue, _ pointer: [String], _ new: JSONValue, insert: Bool) throws -> JSONValue {
        guard let first = pointer.first else { return new }
        let rest = Array(pointer.dropFirst())
        switch value {
        case .object(var members):
            if rest.isEmpty {
                members[first] = new
            } else {
                guard let child = members[first] else { throw testFailed }
                members[first] = try set(child, rest, new, insert: insert)
            }
            return .object(members)
        case .array(var items):
            if rest.isEmpty {
                if first == "-" && insert { items.append(new); return .array(items) }
                guard let index = Int(first), index >= 0, index <= items.count else { throw testFailed }
                if insert { items.insert(new, at: index) } else if index < items.count { items[index] = new } else { throw testFailed }
                return .array(items)
            }
            guard let index = Int(first), items.indices.contains(index) else { throw testFailed }
            items[index] = try set(items[index], rest, new, insert: insert)
            return .array(items)
        default:
            throw testFailed
        }
    }

    private static func remove(_ value: JSONValue, _ pointer: [String]) throws -> JSONValue {
        guard let first = pointer.first else { throw testFailed }
        let rest = Array(pointer.dropFirst())
        switch value {
        case .object(var members):
            guard let child = members[first] else { throw testFailed }
            if rest.isEmpty { members.removeValue(forKey: first) } else { members[first] = try remove(child, rest) }
            return .object(members)
        case .array(var items):
            guard let index = Int(first), items.indices.contains(index) else { throw testFailed }
            if rest.isEmpty { items.remove(at: index) } else { items[index] = try remove(items[index], rest) }
            return .array(items)
        default:
            throw testFailed
        }
    }
}
