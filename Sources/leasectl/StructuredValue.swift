/// A JSON-shaped value with ordered object keys, rendered by hand as JSON or YAML (no dependencies).
///
/// `leasectl get -o json|yaml` and `elect --events json` build these so field order is stable and
/// matches client-go's record layout.
indirect enum StructuredValue: Sendable, Equatable {
    case string(String)
    /// A number, kept as its literal text (`15`, `0.5`).
    case number(String)
    case bool(Bool)
    case null
    case object([(String, StructuredValue)])
    case array([StructuredValue])

    static func int<T: BinaryInteger>(_ value: T) -> StructuredValue { .number(String(value)) }

    static func == (lhs: StructuredValue, rhs: StructuredValue) -> Bool {
        lhs.json() == rhs.json()
    }

    // MARK: JSON

    /// JSON text: compact on one line, or indented by two spaces.
    func json(pretty: Bool = false) -> String {
        var out = ""
        writeJSON(into: &out, pretty: pretty, indent: 0)
        return out
    }

    private func writeJSON(into out: inout String, pretty: Bool, indent: Int) {
        switch self {
        case .string(let s): out += Self.quoted(s)
        case .number(let n): out += n
        case .bool(let b): out += b ? "true" : "false"
        case .null: out += "null"
        case .object(let fields):
            if fields.isEmpty { out += "{}"; return }
            out += "{"
            for (i, (key, value)) in fields.enumerated() {
                if i > 0 { out += "," }
                if pretty { out += "\n" + String(repeating: " ", count: indent + 2) }
                out += Self.quoted(key) + (pretty ? ": " : ":")
                value.writeJSON(into: &out, pretty: pretty, indent: indent + 2)
            }
            if pretty { out += "\n" + String(repeating: " ", count: indent) }
            out += "}"
        case .array(let items):
            if items.isEmpty { out += "[]"; return }
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                if pretty { out += "\n" + String(repeating: " ", count: indent + 2) }
                item.writeJSON(into: &out, pretty: pretty, indent: indent + 2)
            }
            if pretty { out += "\n" + String(repeating: " ", count: indent) }
            out += "]"
        }
    }

    /// A JSON string literal (also a valid YAML double-quoted scalar).
    static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7f {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    // MARK: YAML

    /// Block-style YAML, kubectl-like: lists of objects as `- key: value` at the parent's indentation.
    /// Ends with a newline.
    func yaml() -> String {
        var lines: [String] = []
        switch self {
        case .object(let fields) where !fields.isEmpty: Self.yamlFields(fields, indent: "", into: &lines)
        case .array(let items) where !items.isEmpty: Self.yamlItems(items, indent: "", into: &lines)
        default: lines.append(yamlScalar)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func yamlFields(_ fields: [(String, StructuredValue)], indent: String, into lines: inout [String]) {
        for (key, value) in fields {
            let k = indent + plainOrQuoted(key) + ":"
            switch value {
            case .object(let sub) where !sub.isEmpty:
                lines.append(k)
                yamlFields(sub, indent: indent + "  ", into: &lines)
            case .array(let items) where !items.isEmpty:
                lines.append(k)
                yamlItems(items, indent: indent, into: &lines)
            default:
                lines.append(k + " " + value.yamlScalar)
            }
        }
    }

    private static func yamlItems(_ items: [StructuredValue], indent: String, into lines: inout [String]) {
        for item in items {
            switch item {
            case .object(let fields) where !fields.isEmpty:
                var sub: [String] = []
                yamlFields(fields, indent: indent + "  ", into: &sub)
                sub[0] = indent + "- " + sub[0].dropFirst(indent.count + 2)
                lines.append(contentsOf: sub)
            case .array(let inner) where !inner.isEmpty:
                var sub: [String] = []
                yamlItems(inner, indent: indent + "  ", into: &sub)
                sub[0] = indent + "- " + sub[0].dropFirst(indent.count + 2)
                lines.append(contentsOf: sub)
            default:
                lines.append(indent + "- " + item.yamlScalar)
            }
        }
    }

    private var yamlScalar: String {
        switch self {
        case .string(let s): Self.plainOrQuoted(s)
        case .number(let n): n
        case .bool(let b): b ? "true" : "false"
        case .null: "null"
        case .object: "{}"
        case .array: "[]"
        }
    }

    /// `s` unquoted when YAML reads it back as the same string, double-quoted otherwise.
    static func plainOrQuoted(_ s: String) -> String {
        let reserved: Set<String> = ["true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"]
        guard let first = s.unicodeScalars.first,
              ("a"..."z").contains(first) || ("A"..."Z").contains(first) || first == "/" || first == "_",
              !reserved.contains(s.lowercased()),
              s.unicodeScalars.allSatisfy({ c in
                  ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c)
                      || c == "_" || c == "-" || c == "." || c == "/" || c == "@"
              })
        else { return quoted(s) }
        return s
    }
}
