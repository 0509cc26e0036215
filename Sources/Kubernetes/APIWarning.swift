/// One `Warning` header of an API server response (RFC 7234 `warn-code SP warn-agent SP "warn-text"`), such
/// as `299 - "unknown field \"spec.preferredHolder\""`, which kube-apiserver sends for every field of a write
/// it does not know and drops (its default `fieldValidation=Warn`).
public struct APIWarning: Hashable, Sendable, CustomStringConvertible {
    /// The warn-code; kube-apiserver always sends `299` ("miscellaneous persistent warning").
    public var code: Int
    /// The warn-agent; kube-apiserver sends `-`.
    public var agent: String
    /// The warning text, unquoted and unescaped.
    public var text: String

    /// Creates a warning.
    public init(code: Int = 299, agent: String = "-", text: String) {
        self.code = code
        self.agent = agent
        self.text = text
    }

    /// Reads one header value; `nil` when it is not `CODE AGENT "TEXT"`.
    public init?(headerValue: String) {
        let value = headerValue.drop { $0 == " " }
        let parts = value.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
        guard parts.count == 3, let code = Int(parts[0]), parts[2].first == "\"" else { return nil }
        var text = ""
        var escaped = false
        var closed = false
        for character in parts[2].dropFirst() {
            if escaped {
                text.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else if character == "\"" {
                closed = true
                break
            } else {
                text.append(character)
            }
        }
        guard closed else { return nil }
        self.init(code: code, agent: String(parts[1]), text: text)
    }

    /// Every warning in `Warning` header values: one per header line as kube-apiserver sends them, or several
    /// in one line separated by commas (outside the quoted texts) as a proxy may combine them. Values that are
    /// not warnings are skipped.
    public static func parse(headerValues: [String]) -> [APIWarning] {
        var warnings: [APIWarning] = []
        for value in headerValues {
            var current = ""
            var quoted = false
            var escaped = false
            for character in value {
                if escaped {
                    escaped = false
                } else if quoted && character == "\\" {
                    escaped = true
                } else if character == "\"" {
                    quoted.toggle()
                } else if character == "," && !quoted {
                    if let warning = APIWarning(headerValue: current) { warnings.append(warning) }
                    current = ""
                    continue
                }
                current.append(character)
            }
            if let warning = APIWarning(headerValue: current) { warnings.append(warning) }
        }
        return warnings
    }

    /// For kube-apiserver's `unknown field "spec.preferredHolder"` warning: the field's path
    /// (`spec.preferredHolder`); `nil` for other warnings.
    public var unknownField: String? {
        let prefix = "unknown field \""
        guard text.hasPrefix(prefix), text.hasSuffix("\""), text.count > prefix.count + 1 else { return nil }
        return String(text.dropFirst(prefix.count).dropLast())
    }

    public var description: String { "\(code) \(agent) \"\(text)\"" }
}

/// An object the API server returned for a write, with the `Warning` headers it sent along (such as the
/// fields it did not know and dropped).
public struct KubernetesResponse<Object: Sendable>: Sendable {
    /// The object as stored.
    public var object: Object
    /// The response's `Warning` headers, in order.
    public var warnings: [APIWarning]

    /// Creates a response.
    public init(object: Object, warnings: [APIWarning] = []) {
        self.object = object
        self.warnings = warnings
    }
}
