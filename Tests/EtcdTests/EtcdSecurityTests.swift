import EtcdTesting
import Foundation
import Logging
import Synchronization
import Testing

@testable import Etcd

/// Everything a logger received, at every level: messages, metadata, sources and attached errors.
final class EtcdCapturedLogs: Sendable {
    struct Entry: Sendable, CustomStringConvertible {
        var level: Logger.Level
        var message: String
        var metadata: String
        var description: String { "\(level): \(message) \(metadata)" }
    }

    private let entries = Mutex<[Entry]>([])

    /// A trace-level logger feeding this capture.
    func logger() -> Logger {
        var logger = Logger(label: "etcd-security") { _ in Handler(capture: self) }
        logger.logLevel = .trace
        return logger
    }

    var all: [Entry] { entries.withLock { $0 } }
    var text: String { all.map(\.description).joined(separator: "\n") }

    struct Handler: LogHandler {
        let capture: EtcdCapturedLogs
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        var metadataProvider: Logger.MetadataProvider?

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var all = metadata
            if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
            if let extra = event.metadata { all.merge(extra) { _, new in new } }
            let text = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                + " source=\(event.source) error=\(event.error.map { "\($0)" } ?? "-")"
            capture.entries.withLock { $0.append(Entry(level: event.level, message: event.message.description, metadata: text)) }
        }
    }
}

/// Records an issue for every secret (or long line of one, such as a PEM key's base64) found in `text`.
private func expectNoSecrets(_ secrets: [String], in text: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    for secret in secrets {
        let fragments = [secret.trimmingCharacters(in: .whitespacesAndNewlines)]
            + secret.split(whereSeparator: \.isNewline).map(String.init).filter { $0.count >= 16 && !$0.hasPrefix("-----") }
        for fragment in fragments where !fragment.isEmpty && text.contains(fragment) {
            Issue.record("\(what) contains a secret (\(fragment.prefix(6))…)", sourceLocation: sourceLocation)
        }
    }
}

@Suite struct EtcdSecurityTests {
    private func pem(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }

    /// TLS, mutual TLS and a password all at once; the password, every auth token the client held and the
    /// client key appear in no log line (trace level) and in no error — through authentication, a wrong
    /// password, token expiry and re-authentication, and a watch.
    @Test(.timeLimit(.minutes(1)))
    func secretsAreNeverLoggedOverMutualTLSWithAPassword() async throws {
        let tls = try EtcdTLS.generate(clientCertAuth: true)
        let password = "pw-\(UUID().uuidString)"
        try await EtcdServer.withServer(name: "secrets", tls: tls, extraArguments: ["--auth-token", "simple", "--auth-token-ttl", "1"]) { server in
            _ = try await server.etcdctl(["user", "add", "root:\(password)"])
            _ = try await server.etcdctl(["auth", "enable"])
            let logs = EtcdCapturedLogs()
            var tokens = Set<String>()
            var errors: [String] = []
            let material = EtcdClient.Configuration.TLS(
                caPEM: try pem(tls.caFile), certificatePEM: try pem(tls.clientCertFile), privateKeyPEM: try pem(tls.clientKeyFile))
            let etcd = try EtcdClient(
                configuration: .init(endpoints: [server.endpoint], tls: material, credentials: .init(user: "root", password: password)),
                logger: logs.logger())
            defer { etcd.close() }
            #expect(logs.all.filter { $0.level >= .warning }.isEmpty, "TLS: no warning: \(logs.text)")

            try await etcd.put("/secure/k", "1")
            tokens.formUnion([etcd.cachedToken].compactMap { $0 })
            var watch = etcd.watch(Array("/secure/w".utf8)).makeAsyncIterator()
            guard case .established? = try await watch.next() else {
                Issue.record("no watch established")
                return
            }
            try await etcd.put("/secure/w", "x")
            var event: EtcdWatchEvent?
            while event == nil, let message = try await watch.next() {
                if case .event(let e) = message { event = e }
            }
            #expect(event?.kind == .put)
            // Simple tokens expire after a second idle: the next call is rejected, logged, and re-authenticated.
            try await Task.sleep(for: .seconds(3))
            #expect(try await etcd.get("/secure/k")?.value == Array("1".utf8))
            tokens.formUnion([etcd.cachedToken].compactMap { $0 })
            #expect(!tokens.isEmpty)

            let wrong = try EtcdClient(
                configuration: .init(endpoints: [server.endpoint], tls: material, credentials: .init(user: "root", password: password + "-wrong")),
                logger: logs.logger())
            defer { wrong.close() }
            do {
                _ = try await wrong.get("/secure/k")
                Issue.record("a wrong password was accepted")
            } catch {
                errors += ["\(error)", String(reflecting: error)]
            }
            // A password sent to the wrong server certificate never leaves: still no trace of it anywhere.
            let untrusted = try EtcdClient(
                configuration: .init(endpoints: [server.endpoint], tls: .init(caPEM: try pem(tls.wrongCAFile)),
                                     credentials: .init(user: "root", password: password), requestTimeout: .seconds(3)),
                logger: logs.logger())
            defer { untrusted.close() }
            do {
                _ = try await untrusted.get("/secure/k")
                Issue.record("an untrusted server was accepted")
            } catch {
                errors += ["\(error)", String(reflecting: error)]
            }

            #expect(logs.all.contains { $0.message == "etcd authenticated" }, "debug output was captured: \(logs.text)")
            #expect(logs.all.contains { $0.message.contains("re-authenticating") }, "the expired token was logged about: \(logs.text)")
            let secrets = [password, try pem(tls.clientKeyFile)] + Array(tokens)
            expectNoSecrets(secrets, in: logs.text, "the log")
            expectNoSecrets(secrets, in: errors.joined(separator: "\n"), "an error")
        }
    }

    @Test func plaintextToANonLoopbackEndpointIsAWarning() throws {
        let logs = EtcdCapturedLogs()
        let remote = try EtcdClient(
            configuration: .init(endpoints: ["192.0.2.10:2379"], credentials: .init(user: "u", password: "sekrit-pw")),
            logger: logs.logger())
        remote.close()
        let warnings = logs.all.filter { $0.level == .warning }
        #expect(warnings.count == 1, "\(logs.text)")
        #expect(warnings.first?.message.contains("without TLS to a non-loopback endpoint") == true, "\(logs.text)")
        #expect(warnings.first?.message.contains("the password") == true, "\(logs.text)")
        #expect(warnings.first?.metadata.contains("192.0.2.10:2379") == true, "\(logs.text)")
        expectNoSecrets(["sekrit-pw"], in: logs.text, "the warning")
    }

    @Test func loopbackPlaintextAndTLSAreNotWarnedAbout() throws {
        let logs = EtcdCapturedLogs()
        for endpoints in [["127.0.0.1:2379"], ["localhost:2379"], ["[::1]:2379"], ["127.0.0.2:2379", "localhost:2380"]] {
            let client = try EtcdClient(configuration: .init(endpoints: endpoints), logger: logs.logger())
            client.close()
        }
        let tls = try EtcdClient(configuration: .init(endpoints: ["192.0.2.10:2379"], tls: .init()), logger: logs.logger())
        tls.close()
        #expect(logs.all.filter { $0.level >= .warning }.isEmpty, "\(logs.text)")
    }

    @Test func plaintextRemoteEndpoints() {
        #expect(EtcdClient.Configuration(endpoints: ["127.0.0.1:2379", "10.0.0.1:2379", "[::1]:1", "[fd00::1]:1", "etcd.example:2379"])
            .plaintextRemoteEndpoints == ["10.0.0.1:2379", "[fd00::1]:1", "etcd.example:2379"])
        #expect(EtcdClient.Configuration(endpoints: ["10.0.0.1:2379"], tls: .init()).plaintextRemoteEndpoints.isEmpty)
        for host in ["127.0.0.1", "127.255.0.9", "localhost", "LOCALHOST", "etcd.localhost", "[::1]", "::1", "[::ffff:127.0.0.1]"] {
            #expect(isLoopbackHost(host), "\(host)")
        }
        for host in ["10.0.0.1", "0.0.0.0", "128.0.0.1", "[::]", "[fd00::1]", "localhost.example", "example.com", "127.0.0.1.nip.io"] {
            #expect(!isLoopbackHost(host), "\(host)")
        }
    }

    @Test func configurationDescriptionsRedactThePasswordAndTheKey() throws {
        let tls = try EtcdTLS.generate(clientCertAuth: true)
        let key = try pem(tls.clientKeyFile)
        let configuration = EtcdClient.Configuration(
            endpoints: ["127.0.0.1:2379"],
            tls: .init(caPEM: try pem(tls.caFile), certificatePEM: try pem(tls.clientCertFile), privateKeyPEM: key),
            credentials: .init(user: "root", password: "sekrit-pw"))
        var dumped = ""
        dump(configuration, to: &dumped)
        let texts = [
            "\(configuration)", String(reflecting: configuration), dumped,
            "\(configuration.credentials!)", String(reflecting: configuration.credentials!),
            "\(configuration.tls!)", String(reflecting: configuration.tls!),
        ]
        for text in texts { expectNoSecrets(["sekrit-pw", key], in: text, "a description") }
        #expect("\(configuration)".contains("user root (password redacted)"), "\(configuration)")
        #expect("\(configuration)".contains("client key (redacted)"), "\(configuration)")
        #expect(dumped.contains("<redacted>"), "\(dumped)")
    }
}
