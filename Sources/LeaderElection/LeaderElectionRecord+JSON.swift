import Foundation

extension LeaderElectionRecord {
    /// Encodes the record as JSON with client-go's `LeaderElectionRecord` field names
    /// (`holderIdentity`, `leaseDurationSeconds`, `acquireTime`, `renewTime`, `leaderTransitions`,
    /// `strategy`, `preferredHolder`).
    ///
    /// Timestamps are RFC 3339 with microseconds. `leaseDurationSeconds` is an integer when the
    /// duration is whole seconds and a decimal otherwise (sub-second leases, which Kubernetes cannot
    /// store, are allowed on other backends). `extraFields` are written alongside (backends use it for
    /// their own bookkeeping, such as a generation counter); they must not collide with record fields.
    public func jsonBytes(extraFields: [String: Int64] = [:]) -> [UInt8] {
        // Written byte by byte into one buffer: this runs on every renewal, and building it from small strings
        // cost about 5 µs of CPU per 172-byte record (docs/performance.md).
        var out: [UInt8] = []
        out.reserveCapacity(192 + holderIdentity.utf8.count)
        out.append(UInt8(ascii: "{"))
        appendJSONKey("holderIdentity", first: true, to: &out)
        appendJSONString(holderIdentity, to: &out)
        appendJSONKey("leaseDurationSeconds", to: &out)
        let micros = leaseDuration.wholeMicroseconds
        appendDecimal(micros / 1_000_000, to: &out)
        var fraction = micros % 1_000_000
        if fraction != 0 {
            var digits = 6
            while fraction % 10 == 0 {
                fraction /= 10
                digits -= 1
            }
            out.append(UInt8(ascii: "."))
            appendDecimal(fraction, width: digits, to: &out)
        }
        if let acquireTime {
            appendJSONKey("acquireTime", to: &out)
            appendQuotedRFC3339(acquireTime, to: &out)
        }
        if let renewTime {
            appendJSONKey("renewTime", to: &out)
            appendQuotedRFC3339(renewTime, to: &out)
        }
        appendJSONKey("leaderTransitions", to: &out)
        appendDecimal(Int64(leaseTransitions), to: &out)
        if let strategy {
            appendJSONKey("strategy", to: &out)
            appendJSONString(strategy, to: &out)
        }
        if let preferredHolder {
            appendJSONKey("preferredHolder", to: &out)
            appendJSONString(preferredHolder, to: &out)
        }
        for (key, value) in extraFields.sorted(by: { $0.key < $1.key }) {
            out.append(UInt8(ascii: ","))
            appendJSONString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            appendDecimal(value, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// Decodes a record written by ``jsonBytes(extraFields:)`` or by client-go.
    ///
    /// - Parameters:
    ///   - bytes: the JSON document.
    ///   - extraFields: names of integer bookkeeping fields to return alongside the record.
    /// - Throws: ``LeaderElectionError`` with code ``LeaderElectionError/Code/corruptRecord`` for
    ///   anything that is not a well-formed record (bad JSON, wrong types, negative durations or
    ///   transitions, unparsable timestamps).
    public static func decodeJSON(
        _ bytes: some Collection<UInt8>,
        extraFields: [String] = []
    ) throws -> (record: LeaderElectionRecord, extra: [String: Int64]) {
        func corrupt(_ why: String) -> LeaderElectionError {
            .corruptRecord("record is not valid leader-election JSON: \(why)")
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(bytes), options: [])
        } catch {
            throw corrupt("not JSON (\(bytes.count) bytes)")
        }
        guard let dict = object as? [String: Any] else { throw corrupt("top level is not an object") }
        func string(_ key: String) throws -> String? {
            guard let value = dict[key], !(value is NSNull) else { return nil }
            guard let s = value as? String else { throw corrupt("\(key) is not a string") }
            return s
        }
        func number(_ key: String) throws -> NSNumber? {
            guard let value = dict[key], !(value is NSNull) else { return nil }
            guard let n = value as? NSNumber else { throw corrupt("\(key) is not a number") }
            return n
        }
        func time(_ key: String) throws -> MicroTime? {
            guard let s = try string(key) else { return nil }
            guard let t = MicroTime(rfc3339: s) else { throw corrupt("\(key) is not an RFC 3339 time: \(s.prefix(64))") }
            return t
        }
        // client-go always writes these two fields: a JSON document without them is not a record.
        guard dict["holderIdentity"] != nil, dict["leaseDurationSeconds"] != nil else {
            throw corrupt("holderIdentity and leaseDurationSeconds are required (a foreign JSON document?)")
        }
        let holder = try string("holderIdentity") ?? ""
        let durationNumber = try number("leaseDurationSeconds")
        let durationSeconds = durationNumber?.doubleValue ?? 0
        guard durationSeconds.isFinite, durationSeconds >= 0, durationSeconds < 1e12 else {
            throw corrupt("leaseDurationSeconds out of range")
        }
        let transitionsNumber = try number("leaderTransitions")
        let transitionsDouble = transitionsNumber?.doubleValue ?? 0
        guard transitionsDouble >= 0, transitionsDouble < 9e15, transitionsDouble.rounded() == transitionsDouble else {
            throw corrupt("leaderTransitions must be a non-negative integer")
        }
        var extra: [String: Int64] = [:]
        for key in extraFields {
            if let n = try number(key) {
                let d = n.doubleValue
                guard d.rounded() == d, abs(d) < 9e18 else { throw corrupt("\(key) must be an integer") }
                extra[key] = n.int64Value
            }
        }
        let record = LeaderElectionRecord(
            holderIdentity: holder,
            leaseDuration: .microseconds(Int64((durationSeconds * 1_000_000).rounded())),
            acquireTime: try time("acquireTime"),
            renewTime: try time("renewTime"),
            leaseTransitions: Int(transitionsDouble),
            strategy: try string("strategy").flatMap { $0.isEmpty ? nil : $0 },
            preferredHolder: try string("preferredHolder").flatMap { $0.isEmpty ? nil : $0 }
        )
        return (record, extra)
    }
}

/// A JSON string literal for `s`, escaping per RFC 8259.
func jsonString(_ s: String) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(s.utf8.count + 2)
    appendJSONString(s, to: &out)
    return String(decoding: out, as: UTF8.self)
}

/// Appends `s` as a JSON string literal: `"`, `\\`, `\n`, `\r` and `\t` escaped by name, other control
/// characters as `\u00xx`, everything else (including non-ASCII UTF-8) copied as is.
func appendJSONString(_ s: String, to out: inout [UInt8]) {
    let hex = Array("0123456789abcdef".utf8)
    out.append(UInt8(ascii: "\""))
    for byte in s.utf8 {
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"):
            out.append(UInt8(ascii: "\\"))
            out.append(byte)
        case UInt8(ascii: "\n"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
        case UInt8(ascii: "\r"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
        case UInt8(ascii: "\t"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
        case 0..<0x20:
            out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                    hex[Int(byte >> 4)], hex[Int(byte & 0xf)]])
        default:
            out.append(byte)
        }
    }
    out.append(UInt8(ascii: "\""))
}

/// Appends `,"key":` (without the comma for the first key). Keys are plain ASCII names.
private func appendJSONKey(_ key: StaticString, first: Bool = false, to out: inout [UInt8]) {
    if !first { out.append(UInt8(ascii: ",")) }
    out.append(UInt8(ascii: "\""))
    key.withUTF8Buffer { out.append(contentsOf: $0) }
    out.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
}

/// Appends `"<RFC 3339>"`.
private func appendQuotedRFC3339(_ time: MicroTime, to out: inout [UInt8]) {
    out.append(UInt8(ascii: "\""))
    time.appendRFC3339(to: &out)
    out.append(UInt8(ascii: "\""))
}

/// Appends the decimal digits of `value`, left-padded with zeros to `width` digits (a minus sign first for a
/// negative value, not counted in the width).
func appendDecimal(_ value: Int64, width: Int = 1, to out: inout [UInt8]) {
    if value < 0 {
        out.append(UInt8(ascii: "-"))
        // Int64.min has no positive counterpart: its magnitude is written from the unsigned value.
        appendUnsignedDecimal(value.magnitude, width: width, to: &out)
    } else {
        appendUnsignedDecimal(UInt64(value), width: width, to: &out)
    }
}

private func appendUnsignedDecimal(_ value: UInt64, width: Int, to out: inout [UInt8]) {
    var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                 UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    var count = 0
    withUnsafeMutableBytes(of: &digits) { buffer in
        var v = value
        repeat {
            buffer[19 - count] = UInt8(ascii: "0") + UInt8(v % 10)
            v /= 10
            count += 1
        } while v != 0
    }
    if width > count { out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: width - count)) }
    withUnsafeBytes(of: &digits) { out.append(contentsOf: $0[(20 - count)...]) }
}
