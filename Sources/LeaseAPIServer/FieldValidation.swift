import Foundation

/// The `fieldValidation` query parameter: what the server does with unknown and duplicated fields in a
/// request body (apimachinery's `ValidateFieldValidation` and the strict JSON decoder).
enum FieldValidation: String, Sendable {
    /// Drop them silently.
    case ignore = "Ignore"
    /// Drop them, with one `Warning: 299` header each (the default).
    case warn = "Warn"
    /// Reject the request with 400 `strict decoding error`.
    case strict = "Strict"

    /// Reads the parameter; an unsupported value is kube's 422 on `CreateOptions`/`UpdateOptions`.
    static func parse(_ text: String?, options: String) throws -> FieldValidation {
        switch text ?? "" {
        case "", "Warn": return .warn
        case "Ignore": return .ignore
        case "Strict": return .strict
        case let other:
            throw APIError.invalid(
                kind: options, group: "meta.k8s.io", name: "",
                [.notSupported("fieldValidation", .string(other), supported: ["", "Ignore", "Strict", "Warn"])])
        }
    }
}

/// The fields a type knows, for finding the unknown ones in a request body.
indirect enum FieldSchema: Sendable {
    /// Anything goes below here (free-form values such as `fieldsV1`).
    case any
    /// A scalar; an object or array here is not checked further.
    case scalar
    /// An object with these fields.
    case object([String: FieldSchema])
    /// A map with arbitrary keys whose values follow the schema.
    case map(FieldSchema)
    /// A list whose items follow the schema.
    case list(FieldSchema)

    /// `meta/v1 ObjectMeta`.
    static let objectMeta = FieldSchema.object([
        "name": .scalar, "generateName": .scalar, "namespace": .scalar, "selfLink": .scalar, "uid": .scalar,
        "resourceVersion": .scalar, "generation": .scalar, "creationTimestamp": .scalar, "deletionTimestamp": .scalar,
        "deletionGracePeriodSeconds": .scalar, "labels": .map(.scalar), "annotations": .map(.scalar),
        "ownerReferences": .list(.object([
            "apiVersion": .scalar, "kind": .scalar, "name": .scalar, "uid": .scalar, "controller": .scalar,
            "blockOwnerDeletion": .scalar,
        ])),
        "finalizers": .list(.scalar),
        "managedFields": .list(.object([
            "manager": .scalar, "operation": .scalar, "apiVersion": .scalar, "time": .scalar, "fieldsType": .scalar,
            "fieldsV1": .any, "subresource": .scalar,
        ])),
    ])

    /// A `coordination.k8s.io/v1` Lease of the given generation.
    static func lease(_ generation: LeaseAPIServer.Generation) -> FieldSchema {
        var spec: [String: FieldSchema] = [
            "holderIdentity": .scalar, "leaseDurationSeconds": .scalar, "acquireTime": .scalar, "renewTime": .scalar,
            "leaseTransitions": .scalar,
        ]
        if generation == .v1_31CoordinatedLeaderElection {
            spec["strategy"] = .scalar
            spec["preferredHolder"] = .scalar
        }
        return .object(["apiVersion": .scalar, "kind": .scalar, "metadata": objectMeta, "spec": .object(spec)])
    }

    /// `ObjectReference`.
    static let objectReference = FieldSchema.object([
        "kind": .scalar, "namespace": .scalar, "name": .scalar, "uid": .scalar, "apiVersion": .scalar,
        "resourceVersion": .scalar, "fieldPath": .scalar,
    ])

    /// A core `v1` Event.
    static let coreEvent = FieldSchema.object([
        "apiVersion": .scalar, "kind": .scalar, "metadata": objectMeta, "involvedObject": objectReference,
        "reason": .scalar, "message": .scalar, "source": .object(["component": .scalar, "host": .scalar]),
        "firstTimestamp": .scalar, "lastTimestamp": .scalar, "count": .scalar, "type": .scalar, "eventTime": .scalar,
        "series": .object(["count": .scalar, "lastObservedTime": .scalar]), "action": .scalar,
        "related": objectReference, "reportingComponent": .scalar, "reportingInstance": .scalar,
    ])

    /// A core `v1` Namespace.
    static let namespace = FieldSchema.object([
        "apiVersion": .scalar, "kind": .scalar, "metadata": objectMeta,
        "spec": .object(["finalizers": .list(.scalar)]),
        "status": .object(["phase": .scalar, "conditions": .any]),
    ])
}

/// A problem the strict decoder reports: `unknown field "spec.foo"` or `duplicate field "spec.x"`.
struct FieldProblem: Sendable, Hashable {
    enum Kind: Sendable, Hashable {
        case unknown
        case duplicate
    }

    var kind: Kind
    /// The field's path, such as `spec.foo` or `metadata.ownerReferences[0].bar`.
    var path: String

    /// The decoder's words, as the warning and the strict error quote them.
    var message: String {
        switch kind {
        case .unknown: "unknown field \(goQuote(path))"
        case .duplicate: "duplicate field \(goQuote(path))"
        }
    }
}

/// Finds unknown and duplicated fields in a JSON body, in the order they appear, as sigs.k8s.io/json's
/// strict decoding does. Malformed JSON yields no problems (the ordinary decoder reports it).
struct FieldScanner {
    /// A scalar found in the body, with its path and JSON text (strings unescaped).
    struct Scalar: Sendable {
        enum Kind: Sendable { case string, number, bool, null, array, object }
        var path: String
        var kind: Kind
        var text: String
    }

    private let bytes: [UInt8]
    private var index = 0
    private var problems: [FieldProblem] = []
    private var scalars: [Scalar] = []

    private init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// The problems in `bytes` against `schema`.
    static func problems(in bytes: [UInt8], schema: FieldSchema) -> [FieldProblem] {
        scan(bytes, schema: schema).problems
    }

    /// The problems in `bytes` against `schema`, and every value with its path, in body order (arrays and
    /// objects are listed as such, then their members).
    static func scan(_ bytes: [UInt8], schema: FieldSchema) -> (problems: [FieldProblem], scalars: [Scalar]) {
        var scanner = FieldScanner(bytes)
        do {
            try scanner.value(schema, path: "")
            return (scanner.problems, scanner.scalars)
        } catch {
            return ([], [])
        }
    }

    private struct Malformed: Error {}

    /// Go's `encoding/json` syntax error for malformed `bytes` (`unexpected end of JSON input`, or the
    /// first invalid character).
    static func syntaxError(_ bytes: [UInt8]) -> String {
        var scanner = FieldScanner(bytes)
        do {
            try scanner.value(.any, path: "")
            scanner.skipSpace()
            guard scanner.index < bytes.count else { return "unexpected end of JSON input" }
            return "invalid character \(goCharacter(bytes[scanner.index])) after top-level value"
        } catch {
            scanner.skipSpace()
            guard scanner.index < bytes.count else { return "unexpected end of JSON input" }
            return "invalid character \(goCharacter(bytes[scanner.index])) looking for beginning of value"
        }
    }

    private static func goCharacter(_ byte: UInt8) -> String {
        byte == UInt8(ascii: "'") ? "'\\''" : "'\(Character(UnicodeScalar(byte)))'"
    }

    private mutating func skipSpace() {
        while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
    }

    private mutating func value(_ schema: FieldSchema?, path: String) throws {
        skipSpace()
        guard index < bytes.count else { throw Malformed() }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            scalars.append(Scalar(path: path, kind: .object, text: ""))
            index += 1
            var seen = Set<String>()
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                return
            }
            while true {
                skipSpace()
                let key = try string()
                skipSpace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw Malformed() }
                index += 1
                let child = path.isEmpty ? key : "\(path).\(key)"
                var childSchema: FieldSchema?
                switch schema {
                case .object(let fields)?:
                    childSchema = fields[key]
                    if childSchema == nil { problems.append(FieldProblem(kind: .unknown, path: child)) }
                case .map(let values)?:
                    childSchema = values
                case .any?:
                    childSchema = .any
                default:
                    childSchema = nil
                }
                if !seen.insert(key).inserted, childSchema != nil {
                    problems.append(FieldProblem(kind: .duplicate, path: child))
                }
                try value(childSchema, path: child)
                skipSpace()
                guard index < bytes.count else { throw Malformed() }
                if bytes[index] == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                guard bytes[index] == UInt8(ascii: "}") else { throw Malformed() }
                index += 1
                return
            }
        case UInt8(ascii: "["):
            scalars.append(Scalar(path: path, kind: .array, text: ""))
            index += 1
            skipSpace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return
            }
            var element = 0
            while true {
                var itemSchema: FieldSchema?
                switch schema {
                case .list(let item)?: itemSchema = item
                case .any?: itemSchema = .any
                default: itemSchema = nil
                }
                try value(itemSchema, path: "\(path)[\(element)]")
                element += 1
                skipSpace()
                guard index < bytes.count else { throw Malformed() }
                if bytes[index] == UInt8(ascii: ",") {
                    index += 1
                    continue
                }
                guard bytes[index] == UInt8(ascii: "]") else { throw Malformed() }
                index += 1
                return
            }
        case UInt8(ascii: "\""):
            scalars.append(Scalar(path: path, kind: .string, text: try string()))
        default:
            // A number, true, false or null.
            let start = index
            while index < bytes.count, !([UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x09, 0x0A, 0x0D]
                .contains(bytes[index])) {
                index += 1
            }
            guard index > start else { throw Malformed() }
            let text = String(decoding: bytes[start..<index], as: UTF8.self)
            let kind: Scalar.Kind = text == "null" ? .null : (text == "true" || text == "false") ? .bool : .number
            scalars.append(Scalar(path: path, kind: kind, text: text))
        }
    }

    /// A JSON string (at `"`), unescaped.
    private mutating func string() throws -> String {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw Malformed() }
        let start = index
        index += 1
        var escaped = false
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            if escaped {
                escaped = false
            } else if byte == UInt8(ascii: "\\") {
                escaped = true
            } else if byte == UInt8(ascii: "\"") {
                let raw = Array(bytes[start..<index])
                if !raw.contains(UInt8(ascii: "\\")) { return String(decoding: raw.dropFirst().dropLast(), as: UTF8.self) }
                return (try? KubernetesJSONString.decode(raw)) ?? String(decoding: raw.dropFirst().dropLast(), as: UTF8.self)
            }
        }
        throw Malformed()
    }
}

/// Decodes one JSON string literal with escapes.
enum KubernetesJSONString {
    static func decode(_ literal: [UInt8]) throws -> String {
        try JSONDecoder().decode(String.self, from: Data(literal))
    }
}
