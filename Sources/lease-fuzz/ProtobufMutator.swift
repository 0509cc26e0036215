/// A structure-aware mutation for protobuf inputs (the `etcd` target): byte-level mutations almost never
/// turn a varint nested two messages deep into a 10-byte negative number without breaking the enclosing
/// lengths, so this parses the wire format, changes one field and re-serializes with correct lengths.
/// libFuzzer's own mutations are still used for half of the mutations (see `LLVMFuzzerCustomMutator`).
enum ProtobufMutator {
    indirect enum Value: Equatable {
        case varint(UInt64)
        case fixed64(UInt64)
        case fixed32(UInt32)
        case bytes([UInt8])
        case message([Field])
    }

    struct Field: Equatable {
        var number: UInt64
        var value: Value
    }

    /// Values that break arithmetic and conversions on the Swift side.
    static let interesting: [UInt64] = [
        0, 1, 2, UInt64(bitPattern: -1), UInt64(bitPattern: Int64.min), UInt64(Int64.max), UInt64(Int64.max - 1),
        UInt64.max - 1, 1 << 31, 1 << 32, (1 << 31) - 1, 1 << 53, UInt64(Int64.max / 1000 + 1), 9_000_000_000,
        UInt64(bitPattern: -2), UInt64(bitPattern: Int64.min + 1), 127, 128, 255, 256, 65_535,
    ]

    /// Mutates `input` (selector byte + message); `nil` when it does not parse as protobuf.
    static func mutate(_ input: [UInt8], seed: UInt32) -> [UInt8]? {
        guard input.count >= 1 else { return nil }
        var rng = SplitMix(seed: UInt64(seed))
        guard var fields = parse(input[1...]) else { return nil }
        var paths: [[Int]] = []
        collect(fields, prefix: [], into: &paths)
        switch rng.next() % 4 {
        case 0, 1:  // set a varint somewhere to an interesting value
            let varints = paths.filter { path in if case .varint = field(at: path, in: fields).value { true } else { false } }
            guard let path = varints.randomElement(using: &rng) else { return nil }
            update(&fields, at: path) { $0.value = .varint(interesting.randomElement(using: &rng)!) }
        case 2:  // add a varint field (or a repeated copy of a field) to some message
            let messages = [[]] + paths.filter { path in if case .message = field(at: path, in: fields).value { true } else { false } }
            let target = messages.randomElement(using: &rng)!
            let added = Field(number: 1 + rng.next() % 12, value: .varint(interesting.randomElement(using: &rng)!))
            if target.isEmpty {
                fields.append(added)
            } else {
                update(&fields, at: target) { field in
                    if case .message(var inner) = field.value {
                        if let copy = inner.randomElement(using: &rng), rng.next() % 2 == 0 { inner.append(copy) } else { inner.append(added) }
                        field.value = .message(inner)
                    }
                }
            }
        default:  // remove a field
            guard let path = paths.randomElement(using: &rng) else { return nil }
            remove(&fields, at: path)
        }
        return [input[0]] + serialize(fields)
    }

    // MARK: - Wire format

    static func parse(_ bytes: ArraySlice<UInt8>, depth: Int = 0) -> [Field]? {
        var i = bytes.startIndex
        var fields: [Field] = []
        func varint() -> UInt64? {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while i < bytes.endIndex, shift < 64 {
                let b = bytes[i]
                i += 1
                result |= UInt64(b & 0x7F) << shift
                if b < 0x80 { return result }
                shift += 7
            }
            return nil
        }
        while i < bytes.endIndex {
            guard let key = varint(), key >> 3 > 0, key >> 3 < 1 << 29 else { return nil }
            switch key & 7 {
            case 0:
                guard let v = varint() else { return nil }
                fields.append(Field(number: key >> 3, value: .varint(v)))
            case 1:
                guard bytes.endIndex - i >= 8 else { return nil }
                let v = bytes[i..<i + 8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                i += 8
                fields.append(Field(number: key >> 3, value: .fixed64(v)))
            case 5:
                guard bytes.endIndex - i >= 4 else { return nil }
                let v = bytes[i..<i + 4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                i += 4
                fields.append(Field(number: key >> 3, value: .fixed32(v)))
            case 2:
                guard let n = varint(), n <= UInt64(bytes.endIndex - i) else { return nil }
                let payload = bytes[i..<i + Int(n)]
                i += Int(n)
                if depth < 8, !payload.isEmpty, let inner = parse(payload, depth: depth + 1) {
                    fields.append(Field(number: key >> 3, value: .message(inner)))
                } else {
                    fields.append(Field(number: key >> 3, value: .bytes(Array(payload))))
                }
            default:
                return nil
            }
        }
        return fields
    }

    static func serialize(_ fields: [Field]) -> [UInt8] {
        var out: [UInt8] = []
        func varint(_ value: UInt64) {
            var v = value
            while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
            out.append(UInt8(v))
        }
        for field in fields {
            switch field.value {
            case .varint(let v): varint(field.number << 3); varint(v)
            case .fixed64(let v): varint(field.number << 3 | 1); for k in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(k)))) }
            case .fixed32(let v): varint(field.number << 3 | 5); for k in 0..<4 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(k)))) }
            case .bytes(let b): varint(field.number << 3 | 2); varint(UInt64(b.count)); out += b
            case .message(let inner): let b = serialize(inner); varint(field.number << 3 | 2); varint(UInt64(b.count)); out += b
            }
        }
        return out
    }

    // MARK: - Paths into the tree

    private static func collect(_ fields: [Field], prefix: [Int], into paths: inout [[Int]]) {
        for (index, field) in fields.enumerated() {
            paths.append(prefix + [index])
            if case .message(let inner) = field.value { collect(inner, prefix: prefix + [index], into: &paths) }
        }
    }

    private static func field(at path: [Int], in fields: [Field]) -> Field {
        var current = fields[path[0]]
        for index in path.dropFirst() {
            guard case .message(let inner) = current.value else { break }
            current = inner[index]
        }
        return current
    }

    private static func update(_ fields: inout [Field], at path: [Int], _ body: (inout Field) -> Void) {
        if path.count == 1 {
            body(&fields[path[0]])
            return
        }
        guard case .message(var inner) = fields[path[0]].value else { return }
        update(&inner, at: Array(path.dropFirst()), body)
        fields[path[0]].value = .message(inner)
    }

    private static func remove(_ fields: inout [Field], at path: [Int]) {
        if path.count == 1 {
            fields.remove(at: path[0])
            return
        }
        guard case .message(var inner) = fields[path[0]].value else { return }
        remove(&inner, at: Array(path.dropFirst()))
        fields[path[0]].value = .message(inner)
    }
}

/// A small deterministic generator (so a mutation is reproducible from libFuzzer's seed).
struct SplitMix: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
