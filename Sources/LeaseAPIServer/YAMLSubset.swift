import Foundation

/// The YAML kube-apiserver accepts with `Content-Type: application/yaml`, as far as this server reads it:
/// block mappings (nested by indentation) of plain or quoted scalars — what `kubectl` and client libraries
/// send for a Lease or an Event. Sequences, flow collections, anchors and multi-line scalars are not read
/// (the request gets 400, as a malformed body does).
enum YAMLSubset {
    /// The JSON form of `data`.
    static func json(from data: Data) throws -> Data {
        struct Frame {
            var indent: Int
            var members: [(String, String)]
            var key: String?
        }
        var stack = [Frame(indent: -1, members: [], key: nil)]
        func close(to indent: Int) {
            while stack.count > 1, stack[stack.count - 1].indent >= indent {
                let frame = stack.removeLast()
                let text = "{" + frame.members.map { "\(quote($0.0)):\($0.1)" }.joined(separator: ",") + "}"
                if let key = frame.key { stack[stack.count - 1].members.append((key, text)) }
            }
        }
        var pendingKey: (String, Int)?
        for rawLine in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(rawLine)
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") || trimmed == "---" { continue }
            let indent = line.prefix { $0 == " " }.count
            guard let colon = trimmed.range(of: ":"), !trimmed.hasPrefix("- ") else { throw APIError.badRequest("unsupported YAML: \(trimmed)") }
            if let (key, keyIndent) = pendingKey {
                if indent > keyIndent {
                    stack.append(Frame(indent: indent, members: [], key: key))
                } else {
                    stack[stack.count - 1].members.append((key, "null"))
                }
                pendingKey = nil
            }
            close(to: indent + 1)
            while stack.count > 1, stack[stack.count - 1].indent > indent { close(to: stack[stack.count - 1].indent) }
            let key = unquote(String(trimmed[..<colon.lowerBound]).trimmingCharacters(in: .whitespaces))
            let value = String(trimmed[colon.upperBound...]).trimmingCharacters(in: .whitespaces)
            if value.isEmpty {
                pendingKey = (key, indent)
            } else {
                stack[stack.count - 1].members.append((key, scalar(value)))
            }
        }
        if let (key, _) = pendingKey { stack[stack.count - 1].members.append((key, "null")) }
        close(to: 0)
        let root = stack[0]
        return Data(("{" + root.members.map { "\(quote($0.0)):\($0.1)" }.joined(separator: ",") + "}").utf8)
    }

    private static func scalar(_ text: String) -> String {
        if text.hasPrefix("\"") || text.hasPrefix("'") { return quote(unquote(text)) }
        switch text {
        case "null", "~": return "null"
        case "true", "false": return text
        default: break
        }
        if Int64(text) != nil || (Double(text) != nil && text.contains(".")) { return text }
        return quote(text)
    }

    private static func unquote(_ text: String) -> String {
        guard text.count >= 2, let first = text.first, first == "\"" || first == "'", text.last == first else { return text }
        return String(text.dropFirst().dropLast())
    }

    private static func quote(_ text: String) -> String {
        String(decoding: (try? JSONEncoder().encode(text)) ?? Data("\"\"".utf8), as: UTF8.self)
    }
}
