import AsyncHTTPClient
import Etcd
import Foundation
import Kubernetes
import LeaderElection
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Synchronization
import Testing

/// JSON with the order of object members kept, as the recordings need: request bodies are sent exactly as
/// recorded (field order decides the order of `Warning` headers).
indirect enum OrderedJSON: Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([OrderedJSON])
    case object([(String, OrderedJSON)])

    subscript(_ key: String) -> OrderedJSON? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }

    var string: String? { if case .string(let s) = self { s } else { nil } }
    var array: [OrderedJSON] { if case .array(let a) = self { a } else { [] } }
    var members: [(String, OrderedJSON)] { if case .object(let m) = self { m } else { [] } }
    var int: Int? { if case .number(let n) = self { Int(n) } else { nil } }
    var isNull: Bool { if case .null = self { true } else { false } }

    /// Compact JSON text, members in their order, with Go's escaping of `<`, `>` and `&`.
    var text: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let n): return n
        case .string(let s): return Self.quote(s)
        case .array(let items): return "[" + items.map(\.text).joined(separator: ",") + "]"
        case .object(let members): return "{" + members.map { Self.quote($0.0) + ":" + $0.1.text }.joined(separator: ",") + "}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// The same value, unordered, for structural comparison.
    var value: JSONValue {
        switch self {
        case .null: .null
        case .bool(let b): .bool(b)
        case .number(let n): .number(Double(n) ?? .nan)
        case .string(let s): .string(s)
        case .array(let items): .array(items.map(\.value))
        case .object(let members): .object(Dictionary(members.map { ($0.0, $0.1.value) }, uniquingKeysWith: { _, last in last }))
        }
    }

    /// Rewrites every string (keys stay).
    func mapStrings(_ transform: (String) -> String) -> OrderedJSON {
        switch self {
        case .string(let s): .string(transform(s))
        case .array(let items): .array(items.map { $0.mapStrings(transform) })
        case .object(let members): .object(members.map { ($0.0, $0.1.mapStrings(transform)) })
        default: self
        }
    }

    struct ParseError: Error, CustomStringConvertible {
        var description: String
    }

    static func parse(_ data: [UInt8]) throws -> OrderedJSON {
        var parser = Parser(bytes: data)
        let value = try parser.value()
        parser.space()
        guard parser.index == data.count else { throw ParseError(description: "trailing data at \(parser.index)") }
        return value
    }

    private struct Parser {
        let bytes: [UInt8]
        var index = 0

        mutating func space() {
            while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
        }

        mutating func value() throws -> OrderedJSON {
            space()
            guard index < bytes.count else { throw ParseError(description: "unexpected end") }
            switch bytes[index] {
            case UInt8(ascii: "{"):
                index += 1
                var members: [(String, OrderedJSON)] = []
                space()
                if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
                while true {
                    space()
                    let key = try string()
                    space()
                    guard bytes[index] == UInt8(ascii: ":") else { throw ParseError(description: "expected : at \(index)") }
                    index += 1
                    members.append((key, try value()))
                    space()
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    guard bytes[index] == UInt8(ascii: "}") else { throw ParseError(description: "expected } at \(index)") }
                    index += 1
                    return .object(members)
                }
            case UInt8(ascii: "["):
                index += 1
                var items: [OrderedJSON] = []
                space()
                if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(items) }
                while true {
                    items.append(try value())
                    space()
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    guard bytes[index] == UInt8(ascii: "]") else { throw ParseError(description: "expected ] at \(index)") }
                    index += 1
                    return .array(items)
                }
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "t"):
                index += 4
                return .bool(true)
            case UInt8(ascii: "f"):
                index += 5
                return .bool(false)
            case UInt8(ascii: "n"):
                index += 4
                return .null
            default:
                let start = index
                while index < bytes.count, "+-0123456789.eE".utf8.contains(bytes[index]) { index += 1 }
                guard index > start else { throw ParseError(description: "unexpected byte at \(index)") }
                return .number(String(decoding: bytes[start..<index], as: UTF8.self))
            }
        }

        mutating func string() throws -> String {
            let start = index
            guard bytes[index] == UInt8(ascii: "\"") else { throw ParseError(description: "expected string at \(index)") }
            index += 1
            while index < bytes.count {
                if bytes[index] == UInt8(ascii: "\\") { index += 2; continue }
                if bytes[index] == UInt8(ascii: "\"") {
                    index += 1
                    return try JSONDecoder().decode(String.self, from: Data(bytes[start..<index]))
                }
                index += 1
            }
            throw ParseError(description: "unterminated string")
        }
    }
}

/// Which part of a step's answer differs.
enum FidelityAspect: String, Sendable, CaseIterable {
    case status, contentType, warnings, body
    /// The `resourceVersions` table: `greaterThanPreviousRV`, list RV classes.
    case resourceVersions
    /// The lines of a watch stream (the step is the watch's start step).
    case watch
    /// An `etcdctl` step.
    case etcd
}

/// One difference between our server and the recording.
struct FidelityDifference: Sendable, CustomStringConvertible {
    var scenario: String
    var step: Int
    var aspect: FidelityAspect
    var detail: String

    var description: String { "\(scenario) step \(step) \(aspect.rawValue): \(detail)" }
}

/// Replays one recorded scenario against a fresh ``ServerFixture`` and collects every difference.
final class GoldenReplay: @unchecked Sendable {
    let scenario: String
    let recording: OrderedJSON
    let fixture: ServerFixture
    let namespace: String
    private(set) var differences: [FidelityDifference] = []

    // Placeholder state: our values ↔ the recorder's placeholders.
    private var rvPlaceholders: [String: String] = [:]
    private var rvOrder: [String] = []
    private var uidPlaceholders: [String: String] = [:]
    private var genNames: [String: String] = [:]
    private var continuePlaceholders: [String: String] = [:]
    private var saTokens: [String: String] = [:]
    /// How many list RVs had been handed out when each continue token appeared (its own list's comes next).
    private var continueIssued: [String: Int] = [:]
    private var listRVs: [(placeholder: String, value: String, maxObjectRVSeen: Int64)] = []
    private var values: [String: String] = [:]   // placeholder → our value
    private var watches: [String: WatchLines] = [:]
    private var watchAttribution: [String: [(afterStep: Int, line: String)]] = [:]
    private var watchConsumed: [String: Int] = [:]
    /// When each watch with `timeoutSeconds` must end, on the server's clock.
    private var watchDeadlines: [String: ManualClock.Instant] = [:]

    init(scenario: String, recording: OrderedJSON, fixture: ServerFixture, namespace: String) {
        self.scenario = scenario
        self.recording = recording
        self.fixture = fixture
        self.namespace = namespace
        values["$NS"] = namespace
        values["$ADMIN_TOKEN"] = ServerFixture.token
    }

    private func differ(_ step: Int, _ aspect: FidelityAspect, _ detail: String) {
        differences.append(FidelityDifference(scenario: scenario, step: step, aspect: aspect, detail: detail))
    }

    // MARK: - Substitution

    private static let placeholderPattern = try! NSRegularExpression(pattern: #"\$(?:NS|TIME|ADMIN_TOKEN|SA_TOKEN\d+|RV\d+|UID\d+|LISTRV\d+|CONTINUE\d+|GENNAME\d+|ETCDREV_[A-Z0-9_]+)"#)

    /// The request text with the recorder's placeholders replaced by our values.
    func substitute(_ text: String) -> String {
        let ns = text as NSString
        var result = ""
        var last = 0
        for match in Self.placeholderPattern.matches(in: text, range: NSRange(location: 0, length: ns.length)) {
            result += ns.substring(with: NSRange(location: last, length: match.range.location - last))
            let placeholder = ns.substring(with: match.range)
            result += values[placeholder] ?? placeholder
            last = match.range.location + match.range.length
        }
        return result + ns.substring(from: last)
    }

    // MARK: - Normalization of our answers

    private func rvPlaceholder(_ value: String) -> String {
        guard !value.isEmpty, Int64(value) != nil, !["1", "12345", "999999999"].contains(value) || rvPlaceholders[value] != nil else { return value }
        if let known = rvPlaceholders[value] { return known }
        let placeholder = "$RV\(rvPlaceholders.count + 1)"
        rvPlaceholders[value] = placeholder
        rvOrder.append(value)
        values[placeholder] = value
        return placeholder
    }

    private func uidPlaceholder(_ value: String) -> String {
        guard !value.isEmpty, value != "00000000-0000-0000-0000-000000000000" else { return value }
        if let known = uidPlaceholders[value] { return known }
        let placeholder = "$UID\(uidPlaceholders.count + 1)"
        uidPlaceholders[value] = placeholder
        values[placeholder] = value
        return placeholder
    }

    private var maxObjectRV: Int64 { rvOrder.compactMap { Int64($0) }.max() ?? 0 }

    /// Our object (metadata with uid, resourceVersion, times) normalized.
    private func normalizeObject(_ object: OrderedJSON) -> OrderedJSON {
        guard case .object(let members) = object else { return object }
        return .object(members.map { key, value in
            guard key == "metadata", case .object(let metadata) = value else { return (key, value) }
            // uid before resourceVersion, as kube orders them.
            var normalized: [(String, OrderedJSON)] = []
            for (field, member) in metadata {
                switch (field, member) {
                case ("uid", .string(let uid)): normalized.append((field, .string(uidPlaceholder(uid))))
                case ("resourceVersion", .string(let rv)): normalized.append((field, .string(rvPlaceholder(rv))))
                case ("creationTimestamp", .string(let time)), ("deletionTimestamp", .string(let time)):
                    values["$TIME"] = time
                    normalized.append((field, .string("$TIME")))
                case ("managedFields", .array(let entries)):
                    normalized.append((field, .array(entries.map { entry in
                        .object(entry.members.map { key, value in
                            guard key == "time" else { return (key, value) }
                            values["$TIME"] = value.string
                            return (key, .string("$TIME"))
                        })
                    })))
                default: normalized.append((field, member))
                }
            }
            return (key, .object(normalized))
        })
    }

    private func normalizeList(_ list: OrderedJSON, fromContinue: Bool, single: Bool) -> OrderedJSON {
        .object(list.members.map { key, value in
            switch key {
            case "metadata":
                return (key, .object(value.members.map { field, member in
                    switch (field, member) {
                    case ("resourceVersion", .string(let rv)) where single:
                        return (field, .string(rvPlaceholder(rv)))
                    case ("resourceVersion", .string(let rv)):
                        if fromContinue, let previous = listRVs.last(where: { $0.value == rv }) {
                            return (field, .string(previous.placeholder))
                        }
                        let placeholder = "$LISTRV\(listRVs.count + 1)"
                        listRVs.append((placeholder, rv, maxObjectRV))
                        values[placeholder] = rv
                        return (field, .string(placeholder))
                    case ("continue", .string(let token)):
                        let placeholder = continuePlaceholders[token] ?? "$CONTINUE\(continuePlaceholders.count + 1)"
                        if continueIssued[placeholder] == nil { continueIssued[placeholder] = listRVs.count }
                        continuePlaceholders[token] = placeholder
                        values[placeholder] = token
                        return (field, .string(placeholder))
                    default:
                        return (field, member)
                    }
                }))
            case "items":
                return (key, .array(value.array.map(normalizeObject)))
            case "rows":
                return (key, .array(value.array.map { row in
                    .object(row.members.map { field, member in
                        field == "object" ? (field, normalizeObject(member)) : (field, member)
                    })
                }))
            default:
                return (key, value)
            }
        })
    }

    /// Table cells of the `Age` column become `$AGE`.
    private func normalizeTable(_ table: OrderedJSON) -> OrderedJSON {
        let columns = table["columnDefinitions"]?.array.map { $0["name"]?.string ?? "" } ?? []
        guard let age = columns.firstIndex(of: "Age") else { return table }
        return .object(table.members.map { key, value in
            guard key == "rows" else { return (key, value) }
            return (key, .array(value.array.map { row in
                .object(row.members.map { field, member in
                    guard field == "cells" else { return (field, member) }
                    var cells = member.array
                    if age < cells.count { cells[age] = .string("$AGE") }
                    return (field, .array(cells))
                })
            }))
        })
    }

    /// Strings: our namespace, token, uids, generated names and (in messages) resourceVersions.
    private func normalizeStrings(_ json: OrderedJSON) -> OrderedJSON {
        json.mapStrings(normalizeText)
    }

    private static let cacheOldest = try! NSRegularExpression(pattern: #"(too old resource version: [0-9]+ \()[0-9]+(\))"#)
    private static let cacheCurrent = try! NSRegularExpression(pattern: #"(Too large resource version: [0-9]+, current: )[0-9]+"#)

    func normalizeText(_ text: String) -> String {
        var text = Self.normalizeCache(text)
        for (uid, placeholder) in uidPlaceholders { text = text.replacingOccurrences(of: uid, with: placeholder) }
        for (name, placeholder) in genNames { text = text.replacingOccurrences(of: name, with: placeholder) }
        text = text.replacingOccurrences(of: ServerFixture.token, with: "$ADMIN_TOKEN")
        text = text.replacingOccurrences(of: namespace, with: "$NS")
        return text
    }

    /// The watch cache's revisions in `too old` / `Too large` messages.
    static func normalizeCache(_ text: String) -> String {
        var text = text
        text = Self.cacheOldest.stringByReplacingMatches(in: text, range: NSRange(location: 0, length: (text as NSString).length), withTemplate: "$1\\$CACHE_OLDEST_RV$2")
        text = Self.cacheCurrent.stringByReplacingMatches(in: text, range: NSRange(location: 0, length: (text as NSString).length), withTemplate: "$1\\$CACHE_CURRENT_RV")
        return text
    }

    /// A YAML body of ours: resourceVersions, uids and times as in JSON bodies.
    private func normalizeRaw(_ text: String) -> String {
        var lines: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            var line = line
            if let match = line.range(of: #"(resourceVersion): "([0-9]+)"$"#, options: .regularExpression) {
                let value = String(line[match]).split(separator: "\"")[1]
                line = line.replacingCharacters(in: match, with: "resourceVersion: \"\(rvPlaceholder(String(value)))\"")
            } else if let match = line.range(of: #"(creationTimestamp|deletionTimestamp|time): "[^"]*"$"#, options: .regularExpression) {
                let key = String(line[match]).split(separator: ":")[0]
                line = line.replacingCharacters(in: match, with: "\(key): \"$TIME\"")
            } else if let match = line.range(of: #"uid: [0-9a-f-]{36}$"#, options: .regularExpression) {
                let uid = String(String(line[match]).dropFirst(5))
                line = line.replacingCharacters(in: match, with: "uid: \(uidPlaceholder(uid))")
            }
            lines.append(line)
        }
        return normalizeText(lines.joined(separator: "\n"))
    }

    /// Numbers inside a message that are resourceVersions we handed out.
    private func normalizeMessage(_ text: String) -> String {
        var text = Self.normalizeCache(text)
        for (uid, placeholder) in uidPlaceholders { text = text.replacingOccurrences(of: uid, with: placeholder) }
        let regex = try! NSRegularExpression(pattern: #"(?<=\(|: |version )[0-9]+(?=\)|,| |$)"#)
        let ns = text as NSString
        var result = ""
        var last = 0
        for match in regex.matches(in: text, range: NSRange(location: 0, length: ns.length)) {
            result += ns.substring(with: NSRange(location: last, length: match.range.location - last))
            let number = ns.substring(with: match.range)
            result += rvPlaceholders[number] ?? number
            last = match.range.location + match.range.length
        }
        return result + ns.substring(from: last)
    }

    /// A TokenRequest's `status`: the token becomes `$SA_TOKENn` (and is sent where the recorder sent that),
    /// the expiration time `$TIME`.
    private func normalizeTokenRequest(_ json: OrderedJSON) -> OrderedJSON {
        .object(json.members.map { key, value in
            guard key == "status" else { return (key, value) }
            return (key, .object(value.members.map { field, member in
                switch (field, member) {
                case ("token", .string(let token)):
                    let placeholder = saTokens[token] ?? "$SA_TOKEN\(saTokens.count + 1)"
                    saTokens[token] = placeholder
                    values[placeholder] = token
                    return (field, .string(placeholder))
                case ("expirationTimestamp", .string):
                    return (field, .string("$TIME"))
                default:
                    return (field, member)
                }
            }))
        })
    }

    /// A response body of ours, normalized the way the README normalizes the recorder's.
    func normalize(_ body: OrderedJSON, fromContinue: Bool = false, single: Bool = false) -> OrderedJSON {
        var json = body
        if json["items"] != nil || json["kind"]?.string == "Table" {
            // A Table of one object (GET by name) carries the object's resourceVersion.
            json = normalizeList(json, fromContinue: fromContinue, single: single && json["kind"]?.string == "Table")
            json = normalizeTable(json)
        } else if json["type"] != nil, let object = json["object"] {
            let type = json["type"]?.string
            json = .object(json.members.map { key, value in
                guard key == "object" else { return (key, value) }
                if type == "BOOKMARK" {
                    return (key, .object(object.members.map { field, member in
                        field == "metadata" ? (field, .object(member.members.map { $0.0 == "resourceVersion" ? ($0.0, .string("$BOOKMARKRV")) : $0 })) : (field, member)
                    }))
                }
                return (key, object["kind"]?.string == "Status" ? object : normalizeObject(object))
            })
        } else if json["kind"]?.string == "Status" {
            json = .object(json.members.map { key, value in
                switch key {
                case "details":
                    return (key, .object(value.members.map { $0.0 == "uid" ? ($0.0, .string(uidPlaceholder($0.1.string ?? ""))) : $0 }))
                case "message":
                    return (key, .string(normalizeMessage(value.string ?? "")))
                case "metadata":
                    return (key, .object(value.members.map { field, member in
                        guard field == "continue", let token = member.string else { return (field, member) }
                        let placeholder = continuePlaceholders[token] ?? "$CONTINUE\(continuePlaceholders.count + 1)"
                        continuePlaceholders[token] = placeholder
                        values[placeholder] = token
                        return (field, .string(placeholder))
                    }))
                default:
                    return (key, value)
                }
            })
        } else {
            json = normalizeObject(json)
            if json["kind"]?.string == "TokenRequest" { json = normalizeTokenRequest(json) }
        }
        return normalizeStrings(json)
    }

    // MARK: - Replaying

    /// Replays every step, then compares watch streams and the resourceVersion table.
    func run() async throws {
        let userAgent = recording["client"]?["userAgent"]?.string ?? "kube-golden-recorder"
        for step in recording["steps"]?.array ?? [] {
            let number = step["step"]?.int ?? 0
            if let etcdctl = step["etcdctl"] {
                try await runEtcdctl(number, etcdctl)
            } else if let request = step["request"], let response = step["response"] {
                if step["label"]?.string?.contains("once it is rejected") == true {
                    // The recorder polled until kube's 10 s cache of successful token authentications had
                    // let go of a deleted ServiceAccount's token (10 step 24): the server's clock moves past it.
                    fixture.clock.advance(by: .seconds(11))
                }
                try await runRequest(number, request, response, userAgent: userAgent)
            }
            await settleWatches(after: number)
        }
        try await finishWatches()
        checkResourceVersions()
        checkContinueTokens()
    }

    private func runEtcdctl(_ step: Int, _ etcdctl: OrderedJSON) async throws {
        let args = etcdctl["args"]?.array.compactMap(\.string) ?? []
        if args.first == "endpoint" {
            let revision = try await fixture.etcd.status().header.revision
            values[etcdctl["revision"]?.string ?? "$ETCDREV_BEFORE_WRITES"] = String(revision)
        } else if args.first == "compact" {
            let latest = try await fixture.etcd.status().header.revision
            values["$ETCDREV_LATEST"] = String(latest)
            values["$ETCDREV_LATEST_MINUS_1"] = String(latest - 1)
            try compact(at: latest - 1)
        } else {
            differ(step, .etcd, "etcdctl \(args) not replayed")
        }
    }

    /// `etcdctl compact REV` against the fixture's own etcd.
    private func compact(at revision: Int64) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["etcdctl", "--endpoints=\(fixture.etcdServer.endpoint)", "compact", String(revision)]
        process.environment = ["ETCDCTL_API": "3", "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw FixtureError("etcdctl compact \(revision) failed") }
    }

    private func runRequest(_ step: Int, _ request: OrderedJSON, _ expected: OrderedJSON, userAgent: String) async throws {
        let method = request["method"]?.string ?? "GET"
        var url = fixture.baseURL + substitute(request["path"]?.string ?? "/")
        let query = request["query"]?.members ?? []
        if !query.isEmpty {
            var allowed = CharacterSet.urlQueryAllowed
            allowed.remove(charactersIn: "&=+;")
            url += "?" + query.map { key, value in
                let text = substitute(value.string ?? value.text)
                return key + "=" + (text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text)
            }.joined(separator: "&")
        }
        var http = HTTPClientRequest(url: url)
        http.method = HTTPMethod(rawValue: method)
        http.headers.add(name: "User-Agent", value: userAgent)
        for (name, value) in request["headers"]?.members ?? [] {
            http.headers.add(name: name, value: substitute(value.string ?? ""))
        }
        if let body = request["body"], !body.isNull {
            let text: String
            if request["bodyIsRawText"] != nil, let raw = body.string {
                text = substitute(raw)
            } else {
                text = body.mapStrings(substitute).text
            }
            http.body = .bytes(ByteBuffer(string: text))
        } else if request["body"]?.isNull == true, request["bodyIsRawText"] != nil {
            http.body = .bytes(ByteBuffer(string: "null"))
        }
        let isWatch = expected["stream"] != nil
        let response: HTTPClientResponse
        if !isWatch, expected["status"]?.int == 504, expected["body"]?["reason"]?.string == "Timeout" {
            // kube's watch cache waited 3 s for the resourceVersion from the future before its 504: once the
            // server parks on its clock, 3 s pass there.
            let parked = fixture.clock.sleepers
            let client = fixture.http
            let sent = http
            let answer = Task { try await client.execute(sent, timeout: .seconds(30)) }
            if await fixture.clock.waitForSleepers(atLeast: parked + 1, timeout: .seconds(10)) {
                fixture.clock.advance(by: .seconds(3))
            } else {
                differ(step, .status, "the server answered without waiting on its clock for the resourceVersion from the future")
            }
            response = try await answer.value
        } else {
            response = try await fixture.http.execute(http, timeout: .seconds(isWatch ? 120 : 30))
        }
        compareHead(step, response, expected)
        if isWatch, let id = expected["stream"]?.string {
            watches[id] = WatchLines.reading(response)
            if let seconds = (request["query"]?["timeoutSeconds"]?.string).flatMap({ Int64($0) }), seconds > 0 {
                watchDeadlines[id] = fixture.clock.now.advanced(by: .seconds(seconds))
            }
            return
        }
        let bytes = try await response.body.collect(upTo: 16 << 20)
        compareBody(step, Array(bytes.readableBytesView), expected, request: request)
    }

    private func compareHead(_ step: Int, _ response: HTTPClientResponse, _ expected: OrderedJSON) {
        let status = expected["status"]?.int ?? 0
        if Int(response.status.code) != status { differ(step, .status, "ours \(response.status.code), recorded \(status)") }
        let headers = expected["headers"]
        let contentType = headers?["Content-Type"]?.string
        let ours = response.headers.first(name: "Content-Type")
        if ours != contentType { differ(step, .contentType, "ours \(ours ?? "none"), recorded \(contentType ?? "none")") }
        let warnings = headers?["Warning"]?.array.compactMap(\.string) ?? []
        let ourWarnings = response.headers["Warning"].map(normalizeText)
        if ourWarnings != warnings { differ(step, .warnings, "ours \(ourWarnings), recorded \(warnings)") }
    }

    private func compareBody(_ step: Int, _ bytes: [UInt8], _ expected: OrderedJSON, request: OrderedJSON) {
        if let prefix = expected["rawPrefixHex"]?.string {
            let ours = bytes.prefix(4).map { String(format: "%02x", $0) }.joined()
            if ours != prefix { differ(step, .body, "protobuf prefix ours \(ours), recorded \(prefix)") }
            return
        }
        if let raw = expected["raw"]?.string {
            let ours = normalizeRaw(String(decoding: bytes, as: UTF8.self))
            if ours != raw { differ(step, .body, "raw ours \(ours.prefix(300)), recorded \(raw.prefix(300))") }
            return
        }
        guard let body = expected["body"], !body.isNull else {
            if !bytes.isEmpty { differ(step, .body, "ours has a body, recorded none") }
            return
        }
        guard let ours = try? OrderedJSON.parse(bytes) else {
            differ(step, .body, "ours is not JSON: \(String(decoding: bytes.prefix(300), as: UTF8.self))")
            return
        }
        // Names made from generateName.
        if request["body"]?["metadata"]?["generateName"] != nil, request["body"]?["metadata"]?["name"] == nil,
           let name = ours["metadata"]?["name"]?.string, genNames[name] == nil {
            let placeholder = "$GENNAME\(genNames.count + 1)"
            genNames[name] = placeholder
            values[placeholder] = name
        }
        // A page read with a continue token keeps the first page's list RV, unless the token is an
        // inconsistent one (rv -1), which reads the newest revision.
        var fromContinue = false
        if let placeholder = request["query"]?["continue"]?.string {
            var base64 = substitute(placeholder).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            while base64.count % 4 != 0 { base64 += "=" }
            let token = Data(base64Encoded: base64).flatMap { try? OrderedJSON.parse(Array($0)) }
            fromContinue = token?["rv"]?.int != -1
        }
        let path = request["path"]?.string ?? ""
        let single = !["leases", "events", "namespaces"].contains(path.split(separator: "/").last.map(String.init) ?? "")
        let normalized = normalize(ours, fromContinue: fromContinue, single: single)
        if normalized.value != body.value {
            differ(step, .body, "ours \(normalized.text.prefix(1500)), recorded \(body.text.prefix(1500))")
        }
    }

    // MARK: - Watches

    /// After a step: waits (bounded) until every open watch has the lines the recording saw by then, and
    /// attributes the lines that arrived to this step.
    /// A BOOKMARK comes from the server's clock, not from a step: when the recording saw one after `step`, the
    /// step's events arrive first, then the clock moves to the latest such BOOKMARK (2 s before its watch's
    /// `timeoutSeconds`).
    private func settleWatches(after step: Int) async {
        let isBookmark: ((afterStep: Int, line: OrderedJSON)) -> Bool = { $0.line["type"]?.string == "BOOKMARK" }
        let bookmarkTimes = watches.keys.compactMap { id -> ManualClock.Instant? in
            guard expectedLines(id).contains(where: { $0.afterStep == step && isBookmark($0) }) else { return nil }
            return watchDeadlines[id]?.advanced(by: .seconds(-2))
        }
        if let latest = bookmarkTimes.max(), latest > fixture.clock.now {
            for (id, lines) in watches {
                let events = expectedLines(id).filter { $0.afterStep < step || ($0.afterStep == step && !isBookmark($0)) }.count
                _ = await lines.waitForCount(events, timeout: .seconds(3))
            }
            await waitForParkedTimers()
            fixture.clock.advance(by: fixture.clock.now.duration(to: latest))
        }
        for (id, lines) in watches.sorted(by: { $0.key < $1.key }) {
            let expected = expectedLines(id).filter { $0.afterStep <= step }.count
            _ = await lines.waitForCount(expected, timeout: .seconds(3))
            let all = lines.lines
            let consumed = watchConsumed[id, default: 0]
            for line in all[consumed...] { watchAttribution[id, default: []].append((step, normalizeWatchLine(line))) }
            watchConsumed[id] = all.count
        }
    }

    private func normalizeWatchLine(_ line: String) -> String {
        guard let json = try? OrderedJSON.parse(Array(line.utf8)) else { return line }
        return normalize(json).text
    }

    private func expectedLines(_ id: String) -> [(afterStep: Int, line: OrderedJSON)] {
        let watch = recording["watches"]?.array.first { $0["id"]?.string == id }
        return watch?["lines"]?.array.map { ($0["afterStep"]?.int ?? 0, $0["line"] ?? .null) } ?? []
    }

    /// How the recording says a watch ended (`end.when`): by itself, or when its `timeoutSeconds` ran out.
    private func endsImmediately(_ id: String) -> Bool {
        let watch = recording["watches"]?.array.first { $0["id"]?.string == id }
        return watch?["end"]?["when"]?.string?.hasPrefix("immediately") == true
    }

    /// After the last step: the watches that end by themselves do so without the clock moving; then the server's
    /// clock moves deadline by deadline (the BOOKMARKs 2 s before `timeoutSeconds`, then the timeouts) until
    /// every watch has ended. Before each move, every open watch must have parked its timer, so no outcome
    /// depends on how fast the steps ran. A watch recorded as ending at its timeout must not end before it.
    private func runOutWatches(lastStep: Int) async {
        for (id, lines) in watches.sorted(by: { $0.key < $1.key }) where endsImmediately(id) {
            if !(await lines.waitForEnd(timeout: .seconds(10))) {
                differ(lastStep, .watch, "\(id) is still open, recorded ending immediately")
            }
        }
        // At most a BOOKMARK's and a timeout's deadline per watch.
        for _ in 0...(2 * watches.count) {
            for (id, lines) in watches.sorted(by: { $0.key < $1.key }) where !endsImmediately(id) && lines.ended {
                if let deadline = watchDeadlines.removeValue(forKey: id), fixture.clock.now < deadline {
                    differ(lastStep, .watch, "\(id) ended at \(fixture.clock.now), before its timeoutSeconds (\(deadline))")
                }
            }
            let open = { self.watches.values.filter { !$0.ended }.count }
            if open() == 0 { return }
            await waitForParkedTimers()
            if open() == 0 { continue }
            guard fixture.clock.advanceToNextDeadline() != nil else {
                differ(lastStep, .watch, "\(open()) watches are open with no timer on the server's clock")
                return
            }
        }
        let open = watches.filter { !$0.value.ended }.map(\.key).sorted()
        if !open.isEmpty { differ(lastStep, .watch, "\(open) still open after every deadline on the server's clock") }
    }

    /// Waits (bounded) until every open watch has parked its timer on the server's clock: each has one at a time
    /// (its BOOKMARK's, then its timeout's), so moving the clock before then could skip one.
    private func waitForParkedTimers() async {
        let open = { self.watches.filter { self.watchDeadlines[$0.key] != nil && !$0.value.ended }.count }
        let real = ContinuousClock()
        let limit = real.now.advanced(by: .seconds(10))
        while fixture.clock.sleepers < open() && real.now < limit { try? await real.sleep(for: .milliseconds(1)) }
    }

    /// Runs out every watch on the server's clock (``runOutWatches(lastStep:)``), then compares its lines.
    private func finishWatches() async throws {
        let lastStep = recording["steps"]?.array.last?["step"]?.int ?? 0
        await runOutWatches(lastStep: lastStep)
        for (id, lines) in watches.sorted(by: { $0.key < $1.key }) {
            let watch = recording["watches"]?.array.first { $0["id"]?.string == id }
            let start = watch?["startedAtStep"]?.int ?? 0
            _ = await lines.waitForEnd(timeout: .seconds(10))
            let all = lines.lines
            for line in all[watchConsumed[id, default: 0]...] { watchAttribution[id, default: []].append((lastStep, normalizeWatchLine(line))) }
            lines.cancel()
            checkBookmarks(id, start: start, lines: all)
            let ours = watchAttribution[id] ?? []
            var expected = expectedLines(id)
            // Consecutive bookmarks are recorded once (`repeat`).
            var oursDeduplicated: [(afterStep: Int, line: String)] = []
            for entry in ours {
                if let previous = oursDeduplicated.last, previous.line == entry.line, entry.line.contains("\"BOOKMARK\"") { continue }
                oursDeduplicated.append(entry)
            }
            // The recorder sorted the initial ADDED events of RV-0 watches by name (`order`).
            expected = expected.map { ($0.afterStep, $0.line) }
            let oursValues = oursDeduplicated.map { ($0.afterStep, (try? OrderedJSON.parse(Array($0.line.utf8)).value) ?? .string($0.line)) }
            let expectedValues = expected.map { ($0.afterStep, $0.line.value) }
            if oursValues.count != expectedValues.count || zip(oursValues, expectedValues).contains(where: { $0.0 != $1.0 || $0.1 != $1.1 }) {
                let describe: ([(Int, String)]) -> String = { lines in
                    lines.map { step, text in
                        let json = try? OrderedJSON.parse(Array(text.utf8))
                        let type = json?["type"]?.string ?? "?"
                        let object = json?["object"]
                        let summary = "\(type) \(object?["metadata"]?["name"]?.string ?? object?["message"]?.string ?? "")@\(object?["metadata"]?["resourceVersion"]?.string ?? "")"
                        return "after \(step): \(summary)"
                    }.joined(separator: " | ")
                }
                var detail = "\(id) ours [\(describe(oursDeduplicated.map { ($0.afterStep, $0.line) }))], recorded [\(describe(expected.map { ($0.afterStep, $0.line.text) }))]"
                if let index = Array(zip(oursValues, expectedValues)).firstIndex(where: { $0.0 != $1.0 || $0.1 != $1.1 }) {
                    detail += "; first difference at line \(index + 1): ours \(oursDeduplicated[index].line.prefix(1500)), recorded \(expected[index].line.text.prefix(1500))"
                }
                differ(start, .watch, detail)
            }
        }
    }

    /// `bookmarkRV.geAllEventRVsOnThisWatch`: our BOOKMARK's resourceVersion is not older than any event
    /// sent before it on the same watch.
    private func checkBookmarks(_ id: String, start: Int, lines: [String]) {
        let recorded = expectedLines(id).contains { $0.line["type"]?.string == "BOOKMARK" }
        guard recorded else { return }
        var highest: Int64 = 0
        for line in lines {
            guard let json = try? OrderedJSON.parse(Array(line.utf8)),
                  let rv = json["object"]?["metadata"]?["resourceVersion"]?.string.flatMap({ Int64($0) }) else { continue }
            if json["type"]?.string == "BOOKMARK" {
                if rv < highest { differ(start, .watch, "\(id): BOOKMARK at \(rv) is older than an event it follows (\(highest))") }
            } else {
                highest = max(highest, rv)
            }
        }
    }

    /// The decoded continue tokens (`continueTokens`): version, start key, and the revision they read at.
    private func checkContinueTokens() {
        for (placeholder, recorded) in recording["continueTokens"]?.members ?? [] {
            guard let token = values[placeholder] else {
                differ(0, .body, "continue token \(placeholder) never appeared in our answers")
                continue
            }
            var base64 = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            while base64.count % 4 != 0 { base64 += "=" }
            guard let decoded = Data(base64Encoded: base64).flatMap({ try? OrderedJSON.parse(Array($0)) }) else {
                differ(0, .body, "continue token \(placeholder) is not base64url JSON: \(token)")
                continue
            }
            var rv = decoded["rv"].map { $0.text } ?? ""
            let seen = listRVs.prefix((continueIssued[placeholder] ?? listRVs.count) + 1)
            if let listRV = seen.last(where: { $0.value == rv }) { rv = listRV.placeholder }
            let expectedRV = recorded["rv"]?.string ?? recorded["rv"]?.text ?? ""
            if decoded["v"]?.string != recorded["v"]?.string || decoded["start"]?.string != recorded["start"]?.string || rv != expectedRV {
                differ(0, .body, "continue token \(placeholder): ours \(decoded.text) (rv \(rv)), recorded \(recorded.text)")
            }
        }
    }

    // MARK: - resourceVersion relations

    private func checkResourceVersions() {
        for (placeholder, info) in recording["resourceVersions"]?.members ?? [] {
            guard let ours = values[placeholder] else {
                differ(0, .resourceVersions, "\(placeholder) never appeared in our answers")
                continue
            }
            if placeholder.hasPrefix("$RV"), case .bool(let greater)? = info["greaterThanPreviousRV"],
               let n = Int(placeholder.dropFirst(3)), n > 1, let previous = values["$RV\(n - 1)"] {
                if ((Int64(ours) ?? 0) > (Int64(previous) ?? 0)) != greater {
                    differ(0, .resourceVersions, "\(placeholder) > $RV\(n - 1) should be \(greater): ours \(ours) vs \(previous)")
                }
            }
            if placeholder.hasPrefix("$LISTRV"), case .bool(let ge)? = info["geAllObjectRVsSeenBefore"],
               let sighting = listRVs.first(where: { $0.placeholder == placeholder }) {
                if ((Int64(sighting.value) ?? 0) >= sighting.maxObjectRVSeen) != ge {
                    differ(0, .resourceVersions, "\(placeholder) ≥ every object RV seen before should be \(ge)")
                }
            }
        }
        let recordedCount = (recording["resourceVersions"]?.members ?? []).filter { $0.0.hasPrefix("$RV") }.count
        if rvPlaceholders.count != recordedCount {
            differ(0, .resourceVersions, "ours handed out \(rvPlaceholders.count) object resourceVersions, recorded \(recordedCount)")
        }
    }
}

extension WatchLines {
    /// Collects the lines of an already-sent streaming response.
    static func reading(_ response: HTTPClientResponse) -> WatchLines {
        let lines = WatchLines()
        lines.startReading(response)
        return lines
    }
}
