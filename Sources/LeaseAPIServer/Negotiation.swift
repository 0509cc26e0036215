import Foundation
import Kubernetes
import NIOCore
import NIOHTTP1

/// What a response is rendered as, from the request's `Accept` header (kube-apiserver's content
/// negotiation): JSON, YAML, a `meta.k8s.io/v1` Table or PartialObjectMetadata(List).
enum OutputFormat: Sendable, Equatable {
    case json
    case yaml
    /// `as=Table`; `includeObject` is `None`, `Metadata` (the default) or `Object`.
    case table
    case partialMetadata

    /// The first representation of `accept` this server produces; `nil` when there is none (406).
    /// Protobuf is not produced, so an Accept naming only protobuf gets 406.
    static func negotiate(_ accept: String?) -> OutputFormat? {
        guard let accept, !accept.trimmingCharacters(in: .whitespaces).isEmpty else { return .json }
        for entry in accept.split(separator: ",") {
            let parts = entry.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            let media = parts.first?.lowercased() ?? ""
            var parameters: [String: String] = [:]
            for parameter in parts.dropFirst() {
                let pair = parameter.split(separator: "=", maxSplits: 1).map { String($0).trimmingCharacters(in: .whitespaces) }
                if pair.count == 2 { parameters[pair[0].lowercased()] = pair[1] }
            }
            let json = media == "application/json" || media == "application/*" || media == "*/*"
            if let kind = parameters["as"] {
                guard json, parameters["g"] == "meta.k8s.io", ["v1", "v1beta1"].contains(parameters["v"] ?? "") else { continue }
                switch kind {
                case "Table": return .table
                case "PartialObjectMetadata", "PartialObjectMetadataList": return .partialMetadata
                default: continue
                }
            }
            if json { return .json }
            if media == "application/yaml" { return .yaml }
        }
        return nil
    }

    /// kube's 406.
    static let notAcceptable = APIError(
        code: 406, reason: "NotAcceptable",
        message: "406: Not Acceptable\n\nAvailable representations: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        details: Status.Details())

    /// `response` rendered in this format (a successful Lease or LeaseList as Table or metadata; any JSON
    /// body as YAML).
    func render(_ response: HTTPResponse, includeObject: String?) -> HTTPResponse {
        guard response.headers.first(name: "Content-Type") == "application/json" else { return response }
        var result = response
        let isEvent = response.body.readableBytesView.firstRange(of: Array(#""kind":"Event"#.utf8)) != nil
        if isEvent, var value = try? KubernetesJSON.decode(JSONValue.self, from: Data(response.body.readableBytesView)) {
            value = GoShape.event(value)
            result.body = ByteBuffer(bytes: (try? ServerJSON.encode(value)) ?? Data())
        }
        guard self != .json, let value = try? KubernetesJSON.decode(JSONValue.self, from: Data(result.body.readableBytesView))
        else { return result }
        switch self {
        case .json:
            return response
        case .yaml:
            result.body = ByteBuffer(string: YAMLEncoder.encode(value))
            result.headers.replaceOrAdd(name: "Content-Type", value: "application/yaml")
            return result
        case .table, .partialMetadata:
            guard response.status == .ok, case .object(let object) = value,
                  let converted = self == .table ? Self.table(object, includeObject: includeObject) : Self.partial(object)
            else { return response }
            result.body = ByteBuffer(bytes: (try? ServerJSON.encode(converted)) ?? Data())
            return result
        }
    }

    private static func partialItem(_ object: [String: JSONValue]) -> JSONValue {
        .object(["kind": .string("PartialObjectMetadata"), "apiVersion": .string("meta.k8s.io/v1"), "metadata": object["metadata"] ?? .object([:])])
    }

    private static func partial(_ object: [String: JSONValue]) -> JSONValue? {
        guard let kind = object["kind"]?.stringValue else { return nil }
        if kind.hasSuffix("List"), case .array(let items)? = object["items"] {
            return .object([
                "kind": .string("PartialObjectMetadataList"), "apiVersion": .string("meta.k8s.io/v1"),
                "metadata": object["metadata"] ?? .object([:]),
                "items": .array(items.compactMap { if case .object(let item) = $0 { partialItem(item) } else { nil } }),
            ])
        }
        return partialItem(object)
    }

    private static let leaseColumns: JSONValue = .array([
        column("Name", format: "name", "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: http://kubernetes.io/docs/user-guide/identifiers#names"),
        column("Holder", format: "", "holderIdentity contains the identity of the holder of a current lease."),
        column("Age", format: "", "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"),
    ])

    private static func column(_ name: String, format: String, _ description: String) -> JSONValue {
        .object(["name": .string(name), "type": .string("string"), "format": .string(format),
                 "description": .string(description), "priority": .number(0)])
    }

    /// kube's Lease printer (`printLease`): Name, Holder, Age. Other kinds are not converted.
    private static func table(_ object: [String: JSONValue], includeObject: String?) -> JSONValue? {
        let kind = object["kind"]?.stringValue
        let items: [[String: JSONValue]]
        let metadata: JSONValue
        switch kind {
        case "LeaseList":
            guard case .array(let list)? = object["items"] else { return nil }
            items = list.compactMap {
                guard case .object(var item) = $0 else { return nil }
                item["kind"] = .string("Lease")
                item["apiVersion"] = .string("coordination.k8s.io/v1")
                return item
            }
            metadata = object["metadata"] ?? .object([:])
        case "Lease":
            items = [object]
            guard case .object(let meta)? = object["metadata"] else { return nil }
            metadata = .object(["resourceVersion": meta["resourceVersion"] ?? .string("")])
        default:
            return nil
        }
        let rows: [JSONValue] = items.map { item in
            var meta: [String: JSONValue] = [:]
            if case .object(let m)? = item["metadata"] { meta = m }
            var holder = ""
            if case .object(let spec)? = item["spec"] { holder = spec["holderIdentity"]?.stringValue ?? "" }
            var row: [String: JSONValue] = [
                "cells": .array([meta["name"] ?? .string(""), .string(holder), .string(age(meta["creationTimestamp"]?.stringValue))]),
            ]
            switch includeObject ?? "Metadata" {
            case "None": break
            case "Object": row["object"] = .object(item)
            default: row["object"] = partialItem(item)
            }
            return .object(row)
        }
        return .object([
            "kind": .string("Table"), "apiVersion": .string("meta.k8s.io/v1"), "metadata": metadata,
            "columnDefinitions": leaseColumns, "rows": .array(rows),
        ])
    }

    /// `translateTimestampSince`: `duration.HumanDuration` of the time since `timestamp`.
    static func age(_ timestamp: String?, now: Date = Date()) -> String {
        guard let timestamp, let date = ISO8601DateFormatter().date(from: timestamp) else { return "<unknown>" }
        let seconds = Int(now.timeIntervalSince(date).rounded(.down))
        if seconds < -1 { return "<invalid>" }
        if seconds < 0 { return "0s" }
        if seconds < 120 { return "\(seconds)s" }
        let minutes = seconds / 60
        if minutes < 10 { return seconds % 60 == 0 ? "\(minutes)m" : "\(minutes)m\(seconds % 60)s" }
        if minutes < 180 { return "\(minutes)m" }
        let hours = minutes / 60
        if hours < 8 { return minutes % 60 == 0 ? "\(hours)h" : "\(hours)h\(minutes % 60)m" }
        if hours < 48 { return "\(hours)h" }
        if hours < 192 { return hours % 24 == 0 ? "\(hours / 24)d" : "\(hours / 24)d\(hours % 24)h" }
        if hours < 24 * 365 * 2 { return "\(hours / 24)d" }
        let years = hours / 24 / 365
        if years < 8 { return "\(years)y\((hours / 24) % 365)d" }
        return "\(years)y"
    }
}

/// JSON as `sigs.k8s.io/yaml` writes it (keys sorted, go-yaml's quoting).
enum YAMLEncoder {
    static func encode(_ value: JSONValue) -> String {
        var out = ""
        switch value {
        case .object(let members) where !members.isEmpty: object(members, indent: 0, into: &out)
        case .array(let items) where !items.isEmpty: array(items, indent: 0, into: &out)
        default: out = scalar(value) + "\n"
        }
        return out
    }

    private static func object(_ members: [String: JSONValue], indent: Int, into out: inout String, firstLinePrefix: String? = nil) {
        var first = true
        for key in members.keys.sorted() {
            let pad = first && firstLinePrefix != nil ? firstLinePrefix! : String(repeating: " ", count: indent)
            first = false
            let value = members[key]!
            out += pad + string(key) + ":"
            switch value {
            case .object(let nested) where !nested.isEmpty:
                out += "\n"
                object(nested, indent: indent + 2, into: &out)
            case .array(let items) where !items.isEmpty:
                out += "\n"
                array(items, indent: indent, into: &out)
            default:
                out += " " + scalar(value) + "\n"
            }
        }
    }

    private static func array(_ items: [JSONValue], indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for item in items {
            switch item {
            case .object(let members) where !members.isEmpty:
                object(members, indent: indent + 2, into: &out, firstLinePrefix: pad + "- ")
            case .array(let nested) where !nested.isEmpty:
                out += pad + "-\n"
                array(nested, indent: indent + 2, into: &out)
            default:
                out += pad + "- " + scalar(item) + "\n"
            }
        }
    }

    private static func scalar(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool(let b): b ? "true" : "false"
        case .number(let n): n == n.rounded() && abs(n) < 1e15 ? String(Int64(n)) : String(n)
        case .string(let s): string(s)
        case .array: "[]"
        case .object: "{}"
        }
    }

    private static let reserved: Set<String> = ["", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE",
                                                "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", "y", "Y", "n", "N"]

    /// A string, plain when go-yaml would read it back as the same string, else double-quoted.
    static func string(_ s: String) -> String {
        let needsQuotes = reserved.contains(s) || Double(s) != nil || Int64(s) != nil
            || s.range(of: #"^\d{4}-\d\d?-\d\d?([Tt ]|$)"#, options: .regularExpression) != nil
            || s.first.map { "-?:,[]{}#&*!|>'\"%@` ".contains($0) } == true || s.last == " "
            || s.contains(": ") || s.contains(" #") || s.contains("\n") || s.contains("\t")
            || s.unicodeScalars.contains { $0.value < 0x20 }
        guard needsQuotes else { return s }
        return String(decoding: (try? ServerJSON.encode(s)) ?? Data(), as: UTF8.self)
    }
}

/// The fields Go always serializes for a core `v1` Event (non-pointer structs and strings, nil times as
/// `null`), which the shared model leaves out when unset.
enum GoShape {
    static func event(_ value: JSONValue) -> JSONValue {
        guard case .object(var object) = value else { return value }
        switch object["kind"]?.stringValue {
        case "Event" where object["apiVersion"]?.stringValue == "v1":
            return .object(fill(object))
        case "EventList":
            if case .array(let items)? = object["items"] {
                object["items"] = .array(items.map { item in
                    if case .object(let fields) = item { return .object(fill(fields)) }
                    return item
                })
            }
            return .object(object)
        default:
            return value
        }
    }

    private static func fill(_ event: [String: JSONValue]) -> [String: JSONValue] {
        var event = event
        let defaults: [String: JSONValue] = [
            "involvedObject": .object([:]), "source": .object([:]), "firstTimestamp": .null, "lastTimestamp": .null,
            "eventTime": .null, "reportingComponent": .string(""), "reportingInstance": .string(""),
        ]
        for (key, value) in defaults where event[key] == nil { event[key] = value }
        return event
    }
}
