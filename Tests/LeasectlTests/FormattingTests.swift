import Foundation
import LeaderElection
import Testing
@testable import leasectl

/// Output formats: event lines, tables, JSON, YAML, durations; and the overlap checker.
@Suite struct FormattingTests {
    @Test func shortHumanDurationsAreKubectlStyle() {
        #expect(LeaseSnapshot.shortHumanDuration(.seconds(5)) == "5s")
        #expect(LeaseSnapshot.shortHumanDuration(.seconds(59)) == "59s")
        #expect(LeaseSnapshot.shortHumanDuration(.seconds(3 * 60 + 10)) == "3m")
        #expect(LeaseSnapshot.shortHumanDuration(.seconds(2 * 3600 + 5)) == "2h")
        #expect(LeaseSnapshot.shortHumanDuration(.seconds(4 * 86400 + 7)) == "4d")
        #expect(LeaseSnapshot.shortHumanDuration(.seconds(400 * 86400)) == "1y")
        #expect(LeaseSnapshot.shortHumanDuration(.milliseconds(-500)) == "0s")
    }

    @Test func eventLinesAreOneJSONObjectEach() throws {
        let line = EventOutput.jsonLine(
            for: .newLeader("b\"x"), identity: "a", time: MicroTime(microsecondsSinceEpoch: 1_500_000), monotonicNanos: 42)
        #expect(line == #"{"time":"1970-01-01T00:00:01.500000Z","monotonicNanos":42,"identity":"a","event":"newLeader","leader":"b\"x"}"#)
        let decoded = try #require(ElectionEventLine(line: line))
        #expect(decoded.leader == "b\"x")
        #expect(decoded.fencingToken == nil)
    }

    @Test func yamlQuotesOnlyWhatNeedsIt() {
        let value = StructuredValue.object([
            ("items", .array([
                .object([("name", .string("a")), ("time", .string("2025-01-01T00:00:00Z")), ("count", .int(3))]),
                .object([("name", .string("yes")), ("empty", .string("")), ("ok", .bool(true))]),
            ])),
        ])
        #expect(value.yaml() == """
            items:
            - name: a
              time: "2025-01-01T00:00:00Z"
              count: 3
            - name: "yes"
              empty: ""
              ok: true

            """)
        #expect(StructuredValue.object([("n", .bool(false))]).yaml() == "\"n\": false\n", "YAML 1.1 reads a bare n as a boolean")
        #expect(value.json() == #"{"items":[{"name":"a","time":"2025-01-01T00:00:00Z","count":3},{"name":"yes","empty":"","ok":true}]}"#)
    }

    @Test func snapshotRowsAndFields() {
        let now = MicroTime(microsecondsSinceEpoch: 1_000_000_000_000)
        let record = LeaderElectionRecord(
            holderIdentity: "alice", leaseDuration: .seconds(15), acquireTime: now.advanced(by: .seconds(-125)),
            renewTime: now.advanced(by: .seconds(-2)), leaseTransitions: 4)
        let url = LockURL(scheme: "file", path: "/d/x")
        let held = LeaseSnapshot(url: url, name: "x", state: .record(VersionedRecord(record: record, version: LockVersion("g7"))), readAt: now)
        #expect(held.cells == ["x", "alice", "2m", "4", "13s"])
        var released = record
        released.holderIdentity = ""
        let free = LeaseSnapshot(url: url, name: "x", state: .record(VersionedRecord(record: released, version: LockVersion("g8"))), readAt: now)
        #expect(free.cells == ["x", "<none>", "2m", "4", "<none>"])
        let gone = LeaseSnapshot(url: url, name: "x", state: .record(VersionedRecord(record: record, version: LockVersion("g9"), holderIsKnownGone: true)), readAt: now)
        #expect(gone.cells[4] == "expired")
        let corrupt = LeaseSnapshot(url: url, name: "x", state: .corrupt(message: "bad", version: LockVersion("x1")), readAt: now)
        #expect(corrupt.cells[1] == "<corrupt>")
        #expect(held.structured.json() == #"{"name":"x","lock":"file:///d/x","version":"g7","holderIdentity":"alice","leaseDurationSeconds":15,"acquireTime":"1970-01-12T13:44:35.000000Z","renewTime":"1970-01-12T13:46:38.000000Z","leaderTransitions":4,"holderIsKnownGone":false}"#)
    }

    @Test func tableColumnsAlign() {
        let lines = TextTable.render(header: ["NAME", "HOLDER"], rows: [["a", "<none>"], ["longer-name", "x"]])
        #expect(lines == ["NAME          HOLDER", "a             <none>", "longer-name   x"])
    }

    @Test func timelineFindsOverlaps() throws {
        func line(_ json: String) throws -> ElectionEventLine { try #require(ElectionEventLine(line: json)) }
        let a1 = try line(#"{"time":"t","monotonicNanos":10,"identity":"a","event":"startedLeading","leader":"a","fencingToken":0}"#)
        let a2 = try line(#"{"time":"t","monotonicNanos":30,"identity":"a","event":"stoppedLeading","fencingToken":0,"reason":"released","workStoppedMonotonicNanos":20}"#)
        let b1 = try line(#"{"time":"t","monotonicNanos":25,"identity":"b","event":"startedLeading","leader":"b","fencingToken":1}"#)
        let c1 = try line(#"{"time":"t","monotonicNanos":15,"identity":"c","event":"startedLeading","leader":"c","fencingToken":1}"#)
        #expect(LeadershipTimeline(entries: [a1, a2, b1], kills: [:]).overlaps.isEmpty)
        #expect(LeadershipTimeline(entries: [a1, a2, c1], kills: [:]).overlaps.count == 1)
        #expect(LeadershipTimeline(entries: [a1, c1], kills: ["a": 12]).overlaps.isEmpty, "a was killed before c started")
    }
}
