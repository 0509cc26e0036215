@testable import Etcd
import Foundation
import Testing

/// Protobuf wire encoding, enough to build etcd responses by hand (field numbers from protos/etcdv3).
enum Wire {
    static func varint(_ value: UInt64) -> [UInt8] {
        var v = value
        var out: [UInt8] = []
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
        return out
    }
    static func int(_ field: UInt64, _ value: Int64) -> [UInt8] { varint(field << 3) + varint(UInt64(bitPattern: value)) }
    static func bytes(_ field: UInt64, _ value: [UInt8]) -> [UInt8] { varint(field << 3 | 2) + varint(UInt64(value.count)) + value }
    static func string(_ field: UInt64, _ value: String) -> [UInt8] { bytes(field, Array(value.utf8)) }

    /// A `ResponseHeader` (field 1 of every response).
    static func header(revision: Int64) -> [UInt8] {
        bytes(1, int(1, 0x6F8E_2C1B_33D2_A06A) + int(2, 0x7BA7_6C48_BC84_E7E6) + int(3, revision) + int(4, 2))
    }
    /// A `KeyValue`.
    static func keyValue(key: String, value: String, createRevision: Int64, modRevision: Int64, version: Int64 = 1) -> [UInt8] {
        string(1, key) + int(2, createRevision) + int(3, modRevision) + int(4, version) + string(5, value)
    }
    static let record = #"{"holderIdentity":"a","leaseDurationSeconds":15,"leaderTransitions":1}"#
}

/// gRPC servers that misbehave below and inside the protocol (issue 5, "Fuzzing and bad input"): garbage
/// bytes, silence, connections closed or reset at every stage, well-framed responses with undecodable or
/// impossible protobuf. Every case ends in a typed ``EtcdError`` within a bounded time.
@Suite("Misbehaving etcd servers", .timeLimit(.minutes(2)))
struct MisbehavingServerTests {
    private static let requestTimeout = Duration.milliseconds(800)
    /// Everything must fail well within this (the request timeout plus generous slack for a loaded CI machine).
    private static let bound = Duration.seconds(10)

    /// Runs `body` with a client of a server behaving as `behaviour`; returns the EtcdError it threw.
    private func failure(
        _ behaviour: MisbehavingGRPCServer.Behaviour,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: (EtcdClient) async throws -> Void
    ) async throws -> EtcdError? {
        let server = try MisbehavingGRPCServer(behaviour)
        defer { server.stop() }
        let etcd = try EtcdClient(configuration: .init(endpoints: [server.endpoint], requestTimeout: Self.requestTimeout))
        defer { etcd.close() }
        let start = ContinuousClock.now
        defer { #expect(ContinuousClock.now - start < Self.bound, "took \(ContinuousClock.now - start)", sourceLocation: sourceLocation) }
        do {
            try await body(etcd)
            Issue.record("expected an EtcdError, but the call succeeded", sourceLocation: sourceLocation)
            return nil
        } catch let error as EtcdError {
            return error
        } catch {
            Issue.record("expected an EtcdError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }

    // MARK: - Below gRPC

    @Test func garbageBytesInsteadOfHTTP2() async throws {
        let garbage = Array("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".utf8) + (0..<512).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        let error = try await failure(.garbage(garbage)) { _ = try await $0.get("/x") }
        #expect(error?.code == .unavailable, "\(String(describing: error))")
    }

    @Test func acceptsAndNeverAnswers() async throws {
        let error = try await failure(.acceptAndNeverAnswer) { _ = try await $0.get("/x") }
        #expect(error.map { [.deadlineExceeded, .unavailable].contains($0.code) } == true, "\(String(describing: error))")
    }

    @Test func closesAfterTheHTTP2Preface() async throws {
        let error = try await failure(.closeAfterPreface) { _ = try await $0.get("/x") }
        #expect(error.map { [.unavailable, .deadlineExceeded].contains($0.code) } == true, "\(String(describing: error))")
    }

    @Test func resetsAfterTheHTTP2Preface() async throws {
        let error = try await failure(.resetAfterPreface) { _ = try await $0.get("/x") }
        #expect(error.map { [.unavailable, .deadlineExceeded].contains($0.code) } == true, "\(String(describing: error))")
    }

    // MARK: - Inside gRPC

    @Test func undecodableProtobufIsInvalidResponse() async throws {
        let error = try await failure(.respond(messages: [[0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x12, 0x7F, 0x00]])) { _ = try await $0.get("/x") }
        #expect(error?.code == .invalidResponse, "\(String(describing: error))")
    }

    @Test func truncatedMessageThenResetIsUnavailable() async throws {
        // A gRPC length prefix announcing 100 bytes, 3 of them sent, then RST.
        let error = try await failure(.rawData([0, 0, 0, 0, 100, 0x0A, 0x18, 0x08])) { _ = try await $0.get("/x") }
        #expect(error.map { [.unavailable, .other, .deadlineExceeded].contains($0.code) } == true, "\(String(describing: error))")
    }

    @Test func oversizedMessageIsRejected() async throws {
        // A length prefix of 64 MiB, beyond the client's receive limit (4 MiB by default).
        let error = try await failure(.rawData([0, 0x04, 0, 0, 0, 0x0A])) { _ = try await $0.get("/x") }
        #expect(error.map { [.resourceExhausted, .unavailable, .other].contains($0.code) } == true, "\(String(describing: error))")
    }

    @Test func errorStatusWithoutMessageIsMapped() async throws {
        let error = try await failure(.respond(messages: [], grpcStatus: 16)) { _ = try await $0.get("/x") }
        #expect(error?.code == .unauthenticated, "\(String(describing: error))")
        let empty = try await failure(.respond(messages: [])) { _ = try await $0.get("/x") }
        #expect(empty.map { [.invalidResponse, .other, .unavailable].contains($0.code) } == true, "OK without a message: \(String(describing: empty))")
    }

    @Test func watchCutMidStreamReconnectsAndStops() async throws {
        let created = Wire.header(revision: 5) + Wire.int(3, 1)
        let event = Wire.header(revision: 6) + Wire.bytes(11, Wire.bytes(2, Wire.keyValue(key: "/w", value: "v", createRevision: 6, modRevision: 6)))
        let server = try MisbehavingGRPCServer(.respond(messages: [created, event], resetAfterMessages: true))
        defer { server.stop() }
        let etcd = try EtcdClient(configuration: .init(endpoints: [server.endpoint], requestTimeout: Self.requestTimeout))
        defer { etcd.close() }
        var messages: [EtcdClient.WatchMessage] = []
        let start = ContinuousClock.now
        for try await message in etcd.watch(Array("/w".utf8)) {
            messages.append(message)
            // Every reset is followed by a reconnect that replays the same two messages.
            if messages.count == 6 { break }
        }
        #expect(ContinuousClock.now - start < Self.bound)
        #expect(messages.prefix(2) == [.established(revision: 5), .event(EtcdWatchEvent(kind: .put, kv: EtcdKeyValue(key: Array("/w".utf8), value: Array("v".utf8), createRevision: 6, modRevision: 6, version: 1)))])
        #expect(server.acceptedConnections >= 2, "the watch reconnected after the reset")
    }

    @Test func watchAgainstAServerThatAlwaysResetsBacksOffAndStopsWhenCancelled() async throws {
        let server = try MisbehavingGRPCServer(.resetAfterPreface)
        defer { server.stop() }
        let etcd = try EtcdClient(configuration: .init(endpoints: [server.endpoint], requestTimeout: Self.requestTimeout))
        defer { etcd.close() }
        let watching = Task {
            var received = 0
            for try await _ in etcd.watch(Array("/w".utf8)) { received += 1 }
            return received
        }
        // The first attempt (bounded: a loaded machine may take a while to get there), then a 2 s window.
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        while server.acceptedConnections == 0 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        let first = server.acceptedConnections
        try await Task.sleep(for: .seconds(2))
        let inWindow = server.acceptedConnections - first
        watching.cancel()
        let start = ContinuousClock.now
        let received = try await watching.value
        #expect(received == 0)
        #expect(ContinuousClock.now - start < .seconds(2), "cancelling ends the watch promptly")
        // The watch retries with a backoff (25 ms doubling to 1 s), not in a tight loop.
        #expect(first >= 1, "the watch never connected within 30 s")
        #expect(inWindow < 40, "\(inWindow) connections in 2 s")
    }

    @Test func watchWithUndecodableMessageEndsWithInvalidResponse() async throws {
        let server = try MisbehavingGRPCServer(.respond(messages: [[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]]))
        defer { server.stop() }
        let etcd = try EtcdClient(configuration: .init(endpoints: [server.endpoint], requestTimeout: Self.requestTimeout))
        defer { etcd.close() }
        let start = ContinuousClock.now
        await #expect { for try await _ in etcd.watch(Array("/w".utf8)) {} } throws: { ($0 as? EtcdError)?.code == .invalidResponse }
        #expect(ContinuousClock.now - start < Self.bound)
    }

    @Test func keepAliveWithUndecodableMessageEndsWithInvalidResponse() async throws {
        let server = try MisbehavingGRPCServer(.respond(messages: [[0x10, 0xFF]]))
        defer { server.stop() }
        let etcd = try EtcdClient(configuration: .init(endpoints: [server.endpoint], requestTimeout: Self.requestTimeout))
        defer { etcd.close() }
        await #expect { for try await _ in etcd.keepAlive(42) {} } throws: { ($0 as? EtcdError)?.code == .invalidResponse }
    }

    // MARK: - Impossible values (regressions for what `lease-fuzz etcd` found), over the wire

    @Test func negativeModRevisionIsInvalidResponse() async throws {
        let range = Wire.header(revision: 5) + Wire.bytes(2, Wire.keyValue(key: "/x", value: Wire.record, createRevision: 2, modRevision: -1)) + Wire.int(4, 1)
        let error = try await failure(.respond(messages: [range])) { _ = try await $0.get("/x") }
        #expect(error?.code == .invalidResponse, "\(String(describing: error))")
        #expect(error?.message.contains("mod_revision") == true)
    }

    @Test func watchEstablishedAtInt64MaxEndsWithInvalidResponse() async throws {
        let server = try MisbehavingGRPCServer(.respond(messages: [Wire.header(revision: Int64.max) + Wire.int(3, 1)]))
        defer { server.stop() }
        let etcd = try EtcdClient(configuration: .init(endpoints: [server.endpoint], requestTimeout: Self.requestTimeout))
        defer { etcd.close() }
        var established: [EtcdClient.WatchMessage] = []
        await #expect {
            for try await message in etcd.watch(Array("/w".utf8)) { established.append(message) }
        } throws: { ($0 as? EtcdError)?.code == .invalidResponse }
        #expect(established.isEmpty)
    }

    @Test func keepAliveWithAHugeTTLKeepsGoing() async throws {
        let server = try MisbehavingGRPCServer(.respond(messages: [Wire.header(revision: 1) + Wire.int(2, 42) + Wire.int(3, Int64.max)]))
        defer { server.stop() }
        let etcd = try EtcdClient(configuration: .init(endpoints: [server.endpoint], requestTimeout: Self.requestTimeout))
        defer { etcd.close() }
        for try await ttl in etcd.keepAlive(42) {
            #expect(ttl == Int64.max)
            break
        }
    }
}
