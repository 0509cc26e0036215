import LeaderElection
import Testing

@Suite struct RecordCodingTests {
    @Test func microTimeFormatsLikeKubernetes() {
        let t = MicroTime(microsecondsSinceEpoch: 1_136_214_245_000_123) // 2006-01-02T15:04:05.000123Z
        #expect(t.rfc3339 == "2006-01-02T15:04:05.000123Z")
        #expect(MicroTime(microsecondsSinceEpoch: 0).rfc3339 == "1970-01-01T00:00:00.000000Z")
        #expect(MicroTime(microsecondsSinceEpoch: -1).rfc3339 == "1969-12-31T23:59:59.999999Z")
    }

    @Test(arguments: [
        ("2006-01-02T15:04:05.000123Z", Int64(1_136_214_245_000_123)),
        ("2006-01-02T15:04:05Z", Int64(1_136_214_245_000_000)),
        ("2006-01-02T16:04:05.5+01:00", Int64(1_136_214_245_500_000)),
        ("2006-01-02T15:04:05.123456789Z", Int64(1_136_214_245_123_456)),
        ("2024-02-29T00:00:00Z", Int64(1_709_164_800_000_000)),
    ])
    func microTimeParses(_ text: String, _ micros: Int64) {
        #expect(MicroTime(rfc3339: text)?.microsecondsSinceEpoch == micros)
    }

    @Test(arguments: ["", "2006-01-02", "2006-13-02T15:04:05Z", "2023-02-29T00:00:00Z", "2006-01-02T15:04:05", "2006-01-02T15:04:05.Z", "x006-01-02T15:04:05Z", "2006-01-02T15:04:05Zjunk"])
    func microTimeRejectsGarbage(_ text: String) {
        #expect(MicroTime(rfc3339: text) == nil)
    }

    @Test func recordRoundTripsThroughJSON() throws {
        let record = LeaderElectionRecord(
            holderIdentity: "host_\"quoted\"\n", leaseDuration: .milliseconds(1500),
            acquireTime: MicroTime(microsecondsSinceEpoch: 1_700_000_000_000_001),
            renewTime: MicroTime(microsecondsSinceEpoch: 1_700_000_001_999_999),
            leaseTransitions: 7, strategy: "OldestEmulationVersion", preferredHolder: "b")
        let bytes = record.jsonBytes(extraFields: ["generation": 42])
        let (decoded, extra) = try LeaderElectionRecord.decodeJSON(bytes, extraFields: ["generation"])
        #expect(decoded == record)
        #expect(extra["generation"] == 42)
    }

    /// The exact bytes the encoder writes (every backend stores them; client-go and older versions of this package
    /// read them): field order, escapes, integer and decimal durations, six-digit timestamps.
    @Test func recordEncodesToExactBytes() {
        let full = LeaderElectionRecord(
            holderIdentity: "h\"\\\n\r\t\u{01}\u{1f}é😀 ", leaseDuration: .milliseconds(1050),
            acquireTime: MicroTime(microsecondsSinceEpoch: 1_136_214_245_000_123),
            renewTime: MicroTime(microsecondsSinceEpoch: 253_402_300_799_999_999),  // 9999-12-31T23:59:59.999999Z
            leaseTransitions: 12_345, strategy: "OldestEmulationVersion", preferredHolder: "b")
        #expect(String(decoding: full.jsonBytes(extraFields: ["zeta": -9_223_372_036_854_775_808, "generation": 0]), as: UTF8.self)
            == #"{"holderIdentity":"h\"\\\n\r\t\u0001\u001fé😀 ","leaseDurationSeconds":1.05,"#
            + #""acquireTime":"2006-01-02T15:04:05.000123Z","renewTime":"9999-12-31T23:59:59.999999Z","#
            + #""leaderTransitions":12345,"strategy":"OldestEmulationVersion","preferredHolder":"b","#
            + #""generation":0,"zeta":-9223372036854775808}"#)
        let minimal = LeaderElectionRecord(holderIdentity: "", leaseDuration: .seconds(15), acquireTime: nil, renewTime: nil,
                                           leaseTransitions: 0)
        #expect(String(decoding: minimal.jsonBytes(), as: UTF8.self)
            == #"{"holderIdentity":"","leaseDurationSeconds":15,"leaderTransitions":0}"#)
        let subSecond = LeaderElectionRecord(holderIdentity: "a", leaseDuration: .microseconds(250_001), acquireTime: nil,
                                             renewTime: nil, leaseTransitions: 1)
        #expect(String(decoding: subSecond.jsonBytes(), as: UTF8.self)
            == #"{"holderIdentity":"a","leaseDurationSeconds":0.250001,"leaderTransitions":1}"#)
    }

    @Test func readsClientGoRecords() throws {
        let json = #"{"holderIdentity":"node-1_abc","leaseDurationSeconds":15,"acquireTime":"2024-05-01T10:00:00Z","renewTime":"2024-05-01T10:05:00Z","leaderTransitions":3}"#
        let (record, _) = try LeaderElectionRecord.decodeJSON(Array(json.utf8))
        #expect(record.holderIdentity == "node-1_abc")
        #expect(record.leaseDuration == .seconds(15))
        #expect(record.leaseTransitions == 3)
        #expect(record.strategy == nil && record.preferredHolder == nil)
        let written = String(decoding: record.jsonBytes(), as: UTF8.self)
        #expect(written.contains(#""leaseDurationSeconds":15,"#))
        #expect(written.contains(#""leaderTransitions":3"#))
    }

    @Test(arguments: [
        "", "null", "[]", "{\"holderIdentity\": 5}", "{\"leaseDurationSeconds\": -1}", "{\"leaderTransitions\": 1.5}",
        "{\"renewTime\": \"yesterday\"}", "{\"leaseDurationSeconds\": \"15\"}", "{}", "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\"}", "\u{0}\u{1}", "{\"holderIdentity\":\"a\"",
    ])
    func garbageIsATypedCorruptRecordError(_ text: String) {
        #expect {
            _ = try LeaderElectionRecord.decodeJSON(Array(text.utf8))
        } throws: { error in
            (error as? LeaderElectionError)?.code == .corruptRecord
        }
    }

    @Test func goDurations() {
        #expect(parseDuration("15s") == .seconds(15))
        #expect(parseDuration("1m30s") == .seconds(90))
        #expect(parseDuration("500ms") == .milliseconds(500))
        #expect(parseDuration("1.5h") == .seconds(5400))
        #expect(parseDuration("0") == .zero)
        #expect(parseDuration("15") == nil)
        #expect(parseDuration("abc") == nil)
        #expect(parseDuration("") == nil)
        #expect(formatDuration(.seconds(15)) == "15s")
        #expect(formatDuration(.seconds(90)) == "1m30s")
        #expect(formatDuration(.milliseconds(500)) == "500ms")
        #expect(formatDuration(.milliseconds(1500)) == "1.5s")
    }
}
