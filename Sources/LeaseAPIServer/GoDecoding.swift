/// The decoding rules of Go's `encoding/json` and `metav1.MicroTime` that kube-apiserver applies to a body
/// before anything else, with their error texts: an int32 takes only integers in range (`15.0` is an error),
/// a string field takes only strings, and a MicroTime only `2006-01-02T15:04:05.000000Z07:00` (exactly six
/// fractional digits).
enum GoDecoding {
    /// How a field is declared in Go.
    enum FieldType {
        case string, int32, microTime
    }

    /// The first error decoding `scalars` (from ``FieldScanner``) against `fields` (path → type), as
    /// `json: cannot unmarshal …` or `parsing time …`; `nil` when they decode.
    static func firstError(_ scalars: [FieldScanner.Scalar], fields: [String: (type: FieldType, goField: String)]) -> String? {
        for scalar in scalars {
            guard let field = fields[scalar.path], scalar.kind != .null else { continue }
            let typeName: String
            switch scalar.kind {
            case .string: typeName = "string"
            case .number: typeName = "number"
            case .bool: typeName = "bool"
            case .array: typeName = "array"
            case .object: typeName = "object"
            case .null: continue
            }
            switch field.type {
            case .string:
                if scalar.kind != .string {
                    return "json: cannot unmarshal \(typeName) into Go struct field \(field.goField) of type string"
                }
            case .microTime:
                if scalar.kind != .string {
                    return "json: cannot unmarshal \(typeName) into Go struct field \(field.goField) of type string"
                }
                if let error = microTimeError(scalar.text) { return error }
            case .int32:
                guard scalar.kind == .number else {
                    return "json: cannot unmarshal \(typeName) into Go struct field \(field.goField) of type int32"
                }
                let isInteger = !scalar.text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" })
                if !isInteger || Int32(scalar.text) == nil {
                    return "json: cannot unmarshal number \(scalar.text) into Go struct field \(field.goField) of type int32"
                }
            }
        }
        return nil
    }

    static let microTimeLayout = "2006-01-02T15:04:05.000000Z07:00"

    /// Go's `time.Parse(RFC3339Micro-like layout, text)` error, or `nil` when `text` parses.
    static func microTimeError(_ text: String) -> String? {
        let value = Array(text.utf8)
        var rest = value[...]
        func bad(_ element: String) -> String {
            "parsing time \(goQuote(text)) as \(goQuote(microTimeLayout)): cannot parse \(goQuote(String(decoding: rest, as: UTF8.self))) as \(goQuote(element))"
        }
        func isDigit(_ offset: Int) -> Bool {
            rest.count > offset && (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(rest[rest.startIndex + offset])
        }
        func digits(_ count: Int) -> Int {
            rest.prefix(count).reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        }
        func literal(_ text: String) -> Bool {
            let bytes = Array(text.utf8)
            guard rest.starts(with: bytes) else { return false }
            rest = rest.dropFirst(bytes.count)
            return true
        }
        /// `getnum`: one or two digits (two when `fixed`).
        func number(_ fixed: Bool) -> Int? {
            guard isDigit(0) else { return nil }
            if !isDigit(1) {
                if fixed { return nil }
                let n = digits(1)
                rest = rest.dropFirst(1)
                return n
            }
            let n = digits(2)
            rest = rest.dropFirst(2)
            return n
        }
        // 2006
        guard rest.count >= 4, (0..<4).allSatisfy(isDigit) else { return bad("2006") }
        let year = digits(4)
        rest = rest.dropFirst(4)
        guard literal("-") else { return bad("-") }
        guard let month = number(true) else { return bad("01") }
        guard literal("-") else { return bad("-") }
        guard let day = number(true) else { return bad("02") }
        guard literal("T") else { return bad("T") }
        guard let hour = number(false) else { return bad("15") }
        guard literal(":") else { return bad(":") }
        guard let minute = number(true) else { return bad("04") }
        guard literal(":") else { return bad(":") }
        guard let second = number(true) else { return bad("05") }
        // .000000
        guard rest.count >= 7, rest.first == UInt8(ascii: "."), (1...6).allSatisfy(isDigit) else { return bad(".000000") }
        rest = rest.dropFirst(7)
        // Z07:00
        if rest.first == UInt8(ascii: "Z") {
            rest = rest.dropFirst()
        } else {
            guard rest.count >= 6, rest.first == UInt8(ascii: "+") || rest.first == UInt8(ascii: "-"),
                  rest[rest.startIndex + 3] == UInt8(ascii: ":")
            else { return bad("Z07:00") }
            rest = rest.dropFirst()
            guard isDigit(0), isDigit(1) else { return bad("Z07:00") }
            rest = rest.dropFirst(3)
            guard isDigit(0), isDigit(1) else { return bad("Z07:00") }
            rest = rest.dropFirst(2)
        }
        if !rest.isEmpty {
            return "parsing time \(goQuote(text)): extra text: \(goQuote(String(decoding: rest, as: UTF8.self)))"
        }
        func outOfRange(_ what: String) -> String { "parsing time \(goQuote(text)): \(what) out of range" }
        guard (1...12).contains(month) else { return outOfRange("month") }
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        guard (1...days).contains(day) else { return outOfRange("day") }
        guard hour < 24 else { return outOfRange("hour") }
        guard minute < 60 else { return outOfRange("minute") }
        guard second < 60 else { return outOfRange("second") }
        return nil
    }
}
