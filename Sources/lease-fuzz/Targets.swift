import Etcd
import EtcdLock
import Foundation
import Kubernetes
import KubernetesLock
import LeaderElection

/// What one input did: decoded to a value, or was rejected with the module's own typed error.
/// Anything else (a crash, an untyped error, a broken round trip) is a finding and stops the process.
enum Outcome {
    case value(String)
    case rejected(String)
}

/// A violated property: the input is a finding even though nothing crashed.
struct Finding: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// One fuzz target per decoder of data a third party can write.
enum FuzzTarget: String, CaseIterable {
    /// A leader-election record as FileLock (file) and EtcdLock (value) store it: `LeaderElectionRecord.decodeJSON`.
    case record
    /// A 2xx API server body decoded as a Lease (and, as the same object shape, a v1 Event and a Namespace);
    /// the Lease then goes through KubernetesLock's Lease → record mapping.
    case lease
    /// A 2xx body decoded as a LeaseList and as an EventList.
    case leaseList = "lease-list"
    /// A watch response body: the client's line splitter (several chunkings) and the event decoder.
    case watch
    /// An error response body for each HTTP status the client distinguishes: the `Status` → KubernetesError mapping.
    case status
    /// A kubeconfig file (YAML).
    case kubeconfig
    /// An etcd response message (protobuf-c unpack + Swift conversion): the first byte selects the message
    /// (`_EtcdFuzzing.Response`, modulo the number of messages), the rest is the message. Range and Txn
    /// responses also go through EtcdLock's handling.
    case etcd

    var summary: String {
        switch self {
        case .record: "record JSON (FileLock file, EtcdLock value)"
        case .lease: "Lease / Event / Namespace JSON bodies"
        case .leaseList: "LeaseList / EventList JSON bodies"
        case .watch: "watch body: line splitting + WatchEvent<Lease> lines"
        case .status: "error bodies (Status) per HTTP status"
        case .kubeconfig: "kubeconfig YAML"
        case .etcd: "etcd protobuf responses (selector byte + message)"
        }
    }

    func run(_ data: [UInt8]) throws -> Outcome {
        switch self {
        case .record: try Self.record(data)
        case .lease: try Self.lease(data)
        case .leaseList: try Self.leaseList(data)
        case .watch: try Self.watch(data)
        case .status: try Self.status(data)
        case .kubeconfig: try Self.kubeconfig(data)
        case .etcd: try Self.etcd(data)
        }
    }

    // MARK: - record

    private static func record(_ data: [UInt8]) throws -> Outcome {
        // EtcdLock reads the record alone; FileLock reads its generation alongside, and so may reject a
        // malformed generation that EtcdLock ignores — but never accept what EtcdLock rejects.
        var outcomes: [Outcome] = []
        for extraFields in [[], ["generation"]] {
            do {
                let (record, extra) = try LeaderElectionRecord.decodeJSON(data, extraFields: extraFields)
                try checkRoundTrip(record, extra: extra, extraFields: extraFields)
                outcomes.append(.value("\(record)"))
            } catch let error as LeaderElectionError {
                outcomes.append(.rejected(error.message))
            } catch let finding as Finding {
                throw finding
            } catch {
                throw Finding("decodeJSON threw an error that is not a LeaderElectionError: \(type(of: error)): \(error)")
            }
        }
        if case .rejected(let why) = outcomes[0], case .value(let record) = outcomes[1] {
            throw Finding("the record decoded with its generation but not without: \(record) / \(why)")
        }
        return outcomes[0]
    }

    /// What a lock writes back after reading `record` must read as the same record.
    private static func checkRoundTrip(_ record: LeaderElectionRecord, extra: [String: Int64], extraFields: [String]) throws {
        let bytes = record.jsonBytes(extraFields: extra)
        let again: LeaderElectionRecord
        let againExtra: [String: Int64]
        do {
            (again, againExtra) = try LeaderElectionRecord.decodeJSON(bytes, extraFields: extraFields)
        } catch {
            throw Finding("a decoded record does not decode after re-encoding: \(error); re-encoded: \(String(decoding: bytes, as: UTF8.self))")
        }
        var expected = record
        // Durations are written in decimal seconds and read through a Double: exact up to 2^50 µs (~35 years).
        let micros = record.leaseDuration.components.seconds * 1_000_000 + record.leaseDuration.components.attoseconds / 1_000_000_000_000
        if micros >= 1 << 50 { expected.leaseDuration = again.leaseDuration }
        guard again == expected, againExtra == extra else {
            throw Finding("record round trip changed it: \(record) \(extra) → \(again) \(againExtra)")
        }
        for time in [record.acquireTime, record.renewTime].compactMap({ $0 }) {
            guard MicroTime(rfc3339: time.rfc3339) == time else {
                throw Finding("MicroTime round trip changed \(time.microsecondsSinceEpoch) µs (\(time.rfc3339))")
            }
        }
    }

    // MARK: - Kubernetes bodies

    private static func kubernetes<T>(_ body: () throws -> T) throws -> Result<T, KubernetesError> {
        do {
            return .success(try body())
        } catch let error as KubernetesError {
            return .failure(error)
        } catch let finding as Finding {
            throw finding
        } catch {
            throw Finding("threw an error that is not a KubernetesError: \(type(of: error)): \(error)")
        }
    }

    private static func lease(_ data: [UInt8]) throws -> Outcome {
        var outcome = Outcome.rejected("")
        switch try kubernetes({ try _KubernetesFuzzing.response(.lease, httpStatus: 200, retryAfter: nil, bytes: data) }) {
        case .success(let value):
            guard let lease = value as? Lease else { throw Finding("a Lease body decoded to \(type(of: value))") }
            try checkLease(lease)
            outcome = .value("\(lease)")
        case .failure(let error):
            outcome = .rejected(error.message)
        }
        for body in [_KubernetesFuzzing.Body.event, .namespace] {
            _ = try kubernetes { try _KubernetesFuzzing.response(body, httpStatus: 201, retryAfter: nil, bytes: data) }
        }
        return outcome
    }

    /// A Lease read from the server: KubernetesLock's mapping to a record and back, and the client's own
    /// encoding of it (sent back on update) must read as the same Lease.
    private static func checkLease(_ lease: Lease) throws {
        if let record = KubernetesLock.record(lease.spec) {
            do {
                let spec = try KubernetesLock.spec(record)
                guard KubernetesLock.record(spec) == record else {
                    throw Finding("Lease spec → record → spec → record changed the record: \(record)")
                }
            } catch is LeaderElectionError {
                // Not writable as a Lease (for example leaseTransitions below zero): the lock reports it.
            }
        }
        let encoded: Data
        do {
            encoded = try KubernetesJSON.encode(lease)
        } catch {
            throw Finding("a decoded Lease does not encode: \(error)")
        }
        switch try kubernetes({ try _KubernetesFuzzing.response(.lease, httpStatus: 200, retryAfter: nil, bytes: Array(encoded)) }) {
        case .success(let value):
            guard let again = value as? Lease, again == lease else {
                throw Finding("Lease round trip changed it: \(lease) → \(value); JSON: \(String(decoding: encoded, as: UTF8.self))")
            }
        case .failure(let error):
            throw Finding("a decoded Lease does not decode after encoding: \(error); JSON: \(String(decoding: encoded, as: UTF8.self))")
        }
    }

    private static func leaseList(_ data: [UInt8]) throws -> Outcome {
        var outcome = Outcome.rejected("")
        switch try kubernetes({ try _KubernetesFuzzing.response(.leaseList, httpStatus: 200, retryAfter: nil, bytes: data) }) {
        case .success(let value):
            guard let list = value as? LeaseList else { throw Finding("a LeaseList body decoded to \(type(of: value))") }
            for lease in list.items { try checkLease(lease) }
            outcome = .value("\(list.items.count) leases at \(list.metadata.resourceVersion ?? "-")")
        case .failure(let error):
            outcome = .rejected(error.message)
        }
        _ = try kubernetes { try _KubernetesFuzzing.response(.eventList, httpStatus: 200, retryAfter: nil, bytes: data) }
        return outcome
    }

    private static func watch(_ data: [UInt8]) throws -> Outcome {
        // The whole body at once, one byte at a time, and an odd chunk size derived from the input.
        let odd = 2 + Int(data.reduce(UInt32(0)) { $0 &* 31 &+ UInt32($1) } % 61)
        var results: [Result<[WatchEvent<Lease>], KubernetesError>] = []
        for chunkSize in [max(1, data.count), 1, odd] {
            results.append(try kubernetes { try _KubernetesFuzzing.watchBody(data, chunkSize: chunkSize) })
        }
        switch results[0] {
        case .success(let events):
            for other in results.dropFirst() {
                guard case .success(let same) = other, same == events else {
                    throw Finding("the watch body decodes differently when chunked differently: \(events) vs \(other)")
                }
            }
            for event in events {
                switch event {
                case .added(let lease), .modified(let lease), .deleted(let lease): try checkLease(lease)
                case .bookmark: break
                case .error(let status): _ = KubernetesError(status: status)  // as the informer throws it
                }
            }
            return .value("\(events.count) events")
        case .failure(let error):
            for other in results.dropFirst() {
                guard case .failure = other else {
                    throw Finding("the watch body fails in one chunking and decodes in another: \(error) vs \(other)")
                }
            }
            return .rejected(error.message)
        }
    }

    private static func status(_ data: [UInt8]) throws -> Outcome {
        var messages: [String] = []
        for (httpStatus, retryAfter) in [(400, nil), (401, nil), (404, nil), (409, nil), (410, nil), (422, nil), (429, "3"), (500, nil), (503, "x"), (418, nil)] as [(Int, String?)] {
            switch try kubernetes({ try _KubernetesFuzzing.response(.lease, httpStatus: httpStatus, retryAfter: retryAfter, bytes: data) }) {
            case .success(let value):
                throw Finding("HTTP \(httpStatus) decoded to a value: \(value)")
            case .failure(let error):
                guard error.httpStatus == httpStatus else {
                    throw Finding("HTTP \(httpStatus) became an error without that status: \(error)")
                }
                messages.append("\(error.code)")
            }
        }
        return .rejected(messages.joined(separator: ","))
    }

    // MARK: - kubeconfig

    /// A directory with the files the seed kubeconfigs refer to (token, CA, client certificate and key).
    static let kubeconfigDirectory: String = {
        let directory = NSTemporaryDirectory() + "lease-fuzz-kubeconfig-\(getpid())"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let pem = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
        let files = ["token": "fuzz-token\n", "ca.crt": pem, "client.crt": pem,
                     "client.key": "-----BEGIN PRIVATE KEY-----\nMIIBfake\n-----END PRIVATE KEY-----\n", "empty": ""]
        for (name, text) in files {
            _ = FileManager.default.createFile(atPath: directory + "/" + name, contents: Data(text.utf8))
        }
        atexit { try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "lease-fuzz-kubeconfig-\(getpid())") }
        return directory
    }()

    private static func kubeconfig(_ data: [UInt8]) throws -> Outcome {
        // The file is read as UTF-8 (`String(contentsOfFile:encoding:)`): other bytes are a configuration error.
        guard let text = String(validating: data, as: UTF8.self) else { return .rejected("not UTF-8") }
        switch try kubernetes({ try _KubernetesFuzzing.kubeconfig(text, directory: kubeconfigDirectory) }) {
        case .success(let configuration):
            // URL schemes are case-insensitive (RFC 3986): `HTTPS://` is fine, and AsyncHTTPClient lowercases it too.
            let server = configuration.server.lowercased()
            guard server.hasPrefix("http://") || server.hasPrefix("https://") else {
                throw Finding("kubeconfig accepted server \(configuration.server)")
            }
            return .value(configuration.server)
        case .failure(let error):
            guard error.code == .invalidConfiguration else { throw Finding("kubeconfig failed with \(error.code), not invalidConfiguration: \(error)") }
            return .rejected(error.message)
        }
    }

    // MARK: - etcd

    private static func etcd(_ data: [UInt8]) throws -> Outcome {
        guard let selector = data.first else { return .rejected("empty") }
        let all = _EtcdFuzzing.Response.allCases
        let response = all[Int(selector) % all.count]
        let message = Array(data.dropFirst())
        do {
            let description = try _EtcdFuzzing.decode(response, message)
            switch response {
            case .range: _ = try EtcdLock._fuzzGet(rangeResponse: message)
            case .txn: _ = try EtcdLock._fuzzWrite(txnResponse: message)
            default: break
            }
            return .value("\(response): \(description)")
        } catch let error as EtcdError {
            return .rejected("\(response): \(error)")
        } catch let error as LeaderElectionError {
            return .rejected("\(response) (EtcdLock): \(error)")
        } catch {
            throw Finding("\(response): threw an error that is neither EtcdError nor LeaderElectionError: \(type(of: error)): \(error)")
        }
    }
}
