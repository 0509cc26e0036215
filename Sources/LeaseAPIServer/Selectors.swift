import Kubernetes

/// A parsed `labelSelector` (apimachinery `labels.Parse`): requirements ANDed together.
struct LabelSelector: Sendable, Hashable {
    enum Operator: Sendable, Hashable {
        case equals, notEquals, exists, doesNotExist, `in`, notIn
    }

    struct Requirement: Sendable, Hashable {
        var key: String
        var op: Operator
        var values: [String]

        func matches(_ labels: [String: String]) -> Bool {
            let value = labels[key]
            switch op {
            case .equals: return value == values.first
            case .notEquals: return value != values.first
            case .exists: return value != nil
            case .doesNotExist: return value == nil
            case .in: return value.map(values.contains) ?? false
            case .notIn: return value.map { !values.contains($0) } ?? true
            }
        }
    }

    var requirements: [Requirement]

    var isEmpty: Bool { requirements.isEmpty }

    func matches(_ labels: [String: String]?) -> Bool {
        let labels = labels ?? [:]
        return requirements.allSatisfy { $0.matches(labels) }
    }

    private enum Token: Equatable {
        case identifier(String), comma, open, close, not, equals, doubleEquals, notEquals, end

        var text: String {
            switch self {
            case .identifier(let text): text
            case .comma: ","
            case .open: "("
            case .close: ")"
            case .not: "!"
            case .equals: "="
            case .doubleEquals: "=="
            case .notEquals: "!="
            case .end: "end of string"
            }
        }
    }

    private static func tokenize(_ text: String) throws(APIError) -> [Token] {
        var tokens: [Token] = []
        let characters = Array(text)
        var index = 0
        let special: Set<Character> = [" ", "\t", "\n", ",", "(", ")", "=", "!", "<", ">"]
        while index < characters.count {
            let character = characters[index]
            switch character {
            case " ", "\t", "\n":
                index += 1
            case ",": tokens.append(.comma); index += 1
            case "(": tokens.append(.open); index += 1
            case ")": tokens.append(.close); index += 1
            case "!":
                if index + 1 < characters.count && characters[index + 1] == "=" {
                    tokens.append(.notEquals); index += 2
                } else {
                    tokens.append(.not); index += 1
                }
            case "=":
                if index + 1 < characters.count && characters[index + 1] == "=" {
                    tokens.append(.doubleEquals); index += 2
                } else {
                    tokens.append(.equals); index += 1
                }
            case "<", ">":
                throw APIError.badRequest("unable to parse requirement: operator \(character) is not supported by this server")
            default:
                var identifier = ""
                while index < characters.count && !special.contains(characters[index]) {
                    identifier.append(characters[index])
                    index += 1
                }
                tokens.append(.identifier(identifier))
            }
        }
        tokens.append(.end)
        return tokens
    }

    /// Parses `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, separated by commas.
    static func parse(_ text: String) throws(APIError) -> LabelSelector {
        let tokens = try tokenize(text)
        var position = 0
        var requirements: [Requirement] = []
        func fail(_ detail: String) -> APIError {
            APIError.badRequest("unable to parse requirement: \(detail)")
        }
        if tokens == [.end] { return LabelSelector(requirements: []) }
        while true {
            var requirement: Requirement
            if tokens[position] == .not {
                position += 1
                guard case .identifier(let key) = tokens[position] else {
                    throw fail("found '\(tokens[position].text)', expected: identifier after '!'")
                }
                position += 1
                requirement = Requirement(key: key, op: .doesNotExist, values: [])
            } else {
                guard case .identifier(let key) = tokens[position] else {
                    throw fail("found '\(tokens[position].text)', expected: !, identifier, or 'end of string'")
                }
                position += 1
                switch tokens[position] {
                case .comma, .end:
                    requirement = Requirement(key: key, op: .exists, values: [])
                case .equals, .doubleEquals, .notEquals:
                    let op: Operator = tokens[position] == .notEquals ? .notEquals : .equals
                    position += 1
                    var value = ""
                    if case .identifier(let text) = tokens[position] {
                        value = text
                        position += 1
                    } else if tokens[position] != .comma && tokens[position] != .end {
                        // `parseExactValue`.
                        throw fail("found '\(tokens[position].text)', expected: identifier")
                    }
                    requirement = Requirement(key: key, op: op, values: [value])
                case .identifier(let word) where word == "in" || word == "notin":
                    position += 1
                    guard tokens[position] == .open else {
                        throw fail("found '\(tokens[position].text)', expected: '('")
                    }
                    position += 1
                    var values: [String] = []
                    while true {
                        if case .identifier(let value) = tokens[position] {
                            values.append(value)
                            position += 1
                        } else {
                            values.append("")
                        }
                        if tokens[position] == .comma {
                            position += 1
                            continue
                        }
                        guard tokens[position] == .close else {
                            throw fail("found '\(tokens[position].text)', expected: ',' or ')'")
                        }
                        position += 1
                        break
                    }
                    requirement = Requirement(key: key, op: word == "in" ? .in : .notIn, values: values)
                default:
                    throw fail("found '\(tokens[position].text)', expected: in, notin, =, ==, !=, gt, lt")
                }
            }
            requirements.append(requirement)
            switch tokens[position] {
            case .end:
                return LabelSelector(requirements: requirements)
            case .comma:
                position += 1
            default:
                throw fail("found '\(tokens[position].text)', expected: ',' or 'end of string'")
            }
        }
    }
}

/// A parsed `fieldSelector` (apimachinery `fields.ParseSelector`): `field=value`, `field==value`,
/// `field!=value`, ANDed with commas; `\` escapes `,`, `=`, `!` and `\`.
struct FieldSelector: Sendable, Hashable {
    struct Requirement: Sendable, Hashable {
        var field: String
        var equals: Bool
        var value: String
    }

    var requirements: [Requirement]

    var isEmpty: Bool { requirements.isEmpty }

    func matches<T: APIObject>(_ object: T) -> Bool {
        requirements.allSatisfy { ($0.equals) == (object.fieldValue($0.field) == $0.value) }
    }

    /// Parses a selector and checks its fields against those `info` supports.
    static func parse(_ text: String, for info: ResourceInfo) throws(APIError) -> FieldSelector {
        var requirements: [Requirement] = []
        for term in splitUnescaped(text, on: ",") where !term.isEmpty {
            guard let (field, equals, value) = splitTerm(term) else {
                throw APIError.badRequest("invalid selector: '\(text)'; can't understand '\(term)'")
            }
            let unescapedField = unescape(field)
            guard info.selectableFields.contains(unescapedField) else {
                throw APIError.badRequest(info.unsupportedFieldMessage(unescapedField))
            }
            requirements.append(Requirement(field: unescapedField, equals: equals, value: unescape(value)))
        }
        return FieldSelector(requirements: requirements)
    }

    private static func splitUnescaped(_ text: String, on separator: Character) -> [String] {
        var parts: [String] = []
        var current = ""
        var escaped = false
        for character in text {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" {
                current.append(character)
                escaped = true
            } else if character == separator {
                parts.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        parts.append(current)
        return parts
    }

    /// Splits `field<op>value` at the first unescaped operator (`!=`, `==` or `=`).
    private static func splitTerm(_ term: String) -> (String, Bool, String)? {
        let characters = Array(term)
        var index = 0
        while index < characters.count {
            let character = characters[index]
            if character == "\\" {
                index += 2
                continue
            }
            if character == "!" && index + 1 < characters.count && characters[index + 1] == "=" {
                return (String(characters[..<index]), false, String(characters[(index + 2)...]))
            }
            if character == "=" {
                let skip = index + 1 < characters.count && characters[index + 1] == "=" ? 2 : 1
                return (String(characters[..<index]), true, String(characters[(index + skip)...]))
            }
            index += 1
        }
        return nil
    }

    private static func unescape(_ text: String) -> String {
        var result = ""
        var escaped = false
        for character in text {
            if escaped {
                result.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else {
                result.append(character)
            }
        }
        return result
    }
}

/// The label and field selectors of a list or watch.
struct Selectors: Sendable {
    var labels: LabelSelector
    var fields: FieldSelector

    var isEmpty: Bool { labels.isEmpty && fields.isEmpty }

    init(query: [String: String], info: ResourceInfo) throws(APIError) {
        labels = try LabelSelector.parse(query["labelSelector"] ?? "")
        fields = try FieldSelector.parse(query["fieldSelector"] ?? "", for: info)
    }

    func matches<T: APIObject>(_ object: T) -> Bool {
        labels.matches(object.metadata.labels) && fields.matches(object)
    }
}
