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
        var fields: [(String, String)] = []
        fields.append(("holderIdentity", jsonString(holderIdentity)))
        let micros = leaseDuration.wholeMicroseconds
        if micros % 1_000_000 == 0 {
            fields.append(("leaseDurationSeconds", String(micros / 1_000_000)))
        } else {
            let whole = micros / 1_000_000
            var frac = String(micros % 1_000_000)
            frac = String(repeating: "0", count: 6 - frac.count) + frac
            while frac.hasSuffix("0") { frac.removeLast() }
            fields.append(("leaseDurationSeconds", "\(whole).\(frac)"))
        }
        if let acquireTime { fields.append(("acquireTime", jsonString(acquireTime.rfc3339))) }
        if let renewTime { fields.append(("renewTime", jsonString(renewTime.rfc3339))) }
        fields.append(("leaderTransitions", String(leaseTransitions)))
        if let strategy { fields.append(("strategy", jsonString(strategy))) }
        if let preferredHolder { fields.append(("preferredHolder", jsonString(preferredHolder))) }
        for (key, value) in extraFields.sorted(by: { $0.key < $1.key }) {
            fields.append((key, String(value)))
        }
        let body = fields.map { "\(jsonString($0.0)):\($0.1)" }.joined(separator: ",")
        return Array("{\(body)}".utf8)
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
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}
