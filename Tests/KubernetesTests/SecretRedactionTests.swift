import Foundation
import Kubernetes
import Logging
import NIOHTTP1
import NIOSSL
import Synchronization
import Testing

/// Everything a logger received, at every level: labels, messages, metadata (nested values included),
/// sources and attached errors.
final class CapturedLogs: Sendable {
    struct Entry: Sendable, CustomStringConvertible {
        var label: String
        var level: Logger.Level
        var message: String
        var metadata: String
        var extra: String
        var description: String { "\(level) \(label): \(message) \(metadata) \(extra)" }
    }

    private let entries = Mutex<[Entry]>([])

    /// A trace-level logger feeding this capture.
    func logger(_ label: String = "secret-redaction") -> Logger {
        var logger = Logger(label: label) { label in CapturingLogHandler(label: label, capture: self) }
        logger.logLevel = .trace
        return logger
    }

    func append(_ entry: Entry) { entries.withLock { $0.append(entry) } }

    var all: [Entry] { entries.withLock { $0 } }

    /// All of it as one text.
    var text: String { all.map(\.description).joined(separator: "\n") }
}

struct CapturingLogHandler: LogHandler {
    let label: String
    let capture: CapturedLogs
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
        let flattened = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        capture.append(.init(
            label: label, level: event.level, message: event.message.description, metadata: flattened,
            extra: "source=\(event.source) error=\(event.error.map { "\($0)" } ?? "-")"))
    }
}

/// The pieces of a secret that must never show up: the whole text, and each long line of it (a PEM key's
/// base64 lines).
func secretFragments(_ secret: String) -> [String] {
    [secret.trimmingCharacters(in: .whitespacesAndNewlines)]
        + secret.split(whereSeparator: \.isNewline).map(String.init).filter { $0.count >= 16 && !$0.hasPrefix("-----") }
}

/// Records an issue for every fragment of `secrets` found in `text`.
func expectNoSecrets(_ secrets: [String], in text: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    for secret in secrets {
        for fragment in secretFragments(secret) where text.contains(fragment) {
            Issue.record("\(what) contains a secret (\(fragment.prefix(8))…)", sourceLocation: sourceLocation)
        }
    }
}

@Suite("Secrets are never logged or printed", .timeLimit(.minutes(1)))
struct SecretRedactionTests {
    /// One API server script: 200 for `ok`, 401 for `unauthorized`, 500 for `broken`, 201 for creates, a watch
    /// with one event, and 401 for a watch of `refused`.
    static let handler: ScriptedHTTPServer.Handler = { request, writer in
        if request.query["watch"] == "true" {
            if request.query["fieldSelector"] == "metadata.name=refused" {
                try await writer.respond(.unauthorized, json: statusJSON(code: 401, reason: "Unauthorized", message: "Unauthorized"))
                return
            }
            try await writer.head(.ok)
            try await writer.body(watchLine("ADDED", leaseJSON(resourceVersion: "3")))
            try await writer.end()
            return
        }
        switch (request.method, request.path.split(separator: "/").last ?? "") {
        case (.POST, _):
            try await writer.respond(.created, json: leaseJSON(name: "made", resourceVersion: "2"))
        case (_, "unauthorized"):
            try await writer.respond(.unauthorized, json: statusJSON(code: 401, reason: "Unauthorized", message: "Unauthorized"))
        case (_, "broken"):
            try await writer.respond(.internalServerError, json: statusJSON(code: 500, reason: "InternalError", message: "etcd is sad"))
        default:
            try await writer.respond(.ok, json: leaseJSON())
        }
    }

    /// Every kind of request and failure a client makes, errors collected.
    static func exercise(_ client: KubernetesClient, errors: inout [String]) async {
        func attempt(_ body: () async throws -> Void) async {
            do { try await body() } catch { errors.append("\(error)"); errors.append(String(reflecting: error)) }
        }
        await attempt { _ = try await client.getLease(namespace: "default", name: "ok") }
        await attempt { _ = try await client.getLease(namespace: "default", name: "unauthorized") }
        await attempt { _ = try await client.getLease(namespace: "default", name: "broken") }
        await attempt { _ = try await client.createLease(Lease(metadata: ObjectMeta(name: "made")), namespace: "default") }
        await attempt { for try await _ in client.watchLeases(namespace: "default", name: "ok", resourceVersion: "1") {} }
        await attempt { for try await _ in client.watchLeases(namespace: "default", name: "refused", resourceVersion: "1") {} }
    }

    @Test func bearerTokenAndClientKeyNeverReachTheLogsOverMutualTLS() async throws {
        let pki = try await TestPKI.shared()
        let token = "sekrit-\(UUID().uuidString)"
        let logs = CapturedLogs()
        var errors: [String] = []
        try await withServer(tls: try pki.serverTLS(requireClientCertificate: true), handler: Self.handler) { server in
            let configuration = KubernetesConfiguration(
                server: server.url, credentials: .bearerToken(token), caPEM: pki.caPEM,
                clientCertificatePEM: pki.clientCertificatePEM, clientKeyPEM: pki.clientKeyPEM, requestTimeout: .seconds(5))
            let client = try KubernetesClient(configuration: configuration, logger: logs.logger())
            await Self.exercise(client, errors: &errors)
            try await client.shutdown()
            #expect(server.requests.contains { $0.headers["Authorization"] == ["Bearer \(token)"] }, "the token was sent")

            // A server the client cannot trust: the TLS failure is logged and thrown.
            var untrusting = configuration
            untrusting.caPEM = pki.otherCAPEM
            let refused = try KubernetesClient(configuration: untrusting, logger: logs.logger())
            await Self.exercise(refused, errors: &errors)
            try await refused.shutdown()
        }
        #expect(logs.all.contains { $0.level == .trace }, "trace-level output was captured")
        #expect(logs.all.contains { $0.message == "Kubernetes request failed" }, "failures were logged")
        #expect(errors.count >= 6, "\(errors)")
        expectNoSecrets([token, pki.clientKeyPEM], in: logs.text, "the log")
        expectNoSecrets([token, pki.clientKeyPEM], in: errors.joined(separator: "\n"), "an error")
    }

    @Test func rotatedTokenFilesNeverReachTheLogs() async throws {
        try await withTemporaryDirectory { dir in
            let first = "first-\(UUID().uuidString)"
            let second = "second-\(UUID().uuidString)"
            let path = try dir.write("token", first + "\n")
            let logs = CapturedLogs()
            var errors: [String] = []
            try await withServer(handler: Self.handler) { server in
                let configuration = KubernetesConfiguration(server: server.url, credentials: .tokenFile(path))
                let client = try KubernetesClient(configuration: configuration, logger: logs.logger())
                await Self.exercise(client, errors: &errors)
                try dir.write("token", second + "\n")  // rotated (a new inode)
                await Self.exercise(client, errors: &errors)
                try FileManager.default.removeItem(atPath: path)  // gone: the last token is kept
                await Self.exercise(client, errors: &errors)
                try await client.shutdown()
                let sent = Set(server.requests.compactMap { $0.headers["Authorization"].first })
                #expect(sent == ["Bearer \(first)", "Bearer \(second)"])
            }
            #expect(!logs.all.isEmpty)
            expectNoSecrets([first, second], in: logs.text, "the log")
            expectNoSecrets([first, second], in: errors.joined(separator: "\n"), "an error")
        }
    }

    @Test func descriptionsAndMirrorsRedactTheTokenAndTheKey() async throws {
        let pki = try await TestPKI.shared()
        let token = "sekrit-\(UUID().uuidString)"
        let configuration = KubernetesConfiguration(
            server: "https://127.0.0.1:6443", credentials: .bearerToken(token), caPEM: pki.caPEM,
            clientCertificatePEM: pki.clientCertificatePEM, clientKeyPEM: pki.clientKeyPEM)
        var dumped = ""
        dump(configuration, to: &dumped)
        var dumpedCredentials = ""
        dump(configuration.credentials, to: &dumpedCredentials)
        let texts = [
            "\(configuration)", String(reflecting: configuration), dumped,
            "\(configuration.credentials)", String(reflecting: configuration.credentials), dumpedCredentials,
            "\(Mirror(reflecting: configuration).children.map { "\($0.label ?? ""): \($0.value)" })",
        ]
        for text in texts {
            expectNoSecrets([token, pki.clientKeyPEM], in: text, "a description")
        }
        #expect("\(configuration)".contains("bearer token (redacted)"))
        #expect(dumped.contains("<redacted>"))
        #expect("\(KubernetesConfiguration.Credentials.tokenFile("/var/run/t"))" == "token file /var/run/t")
    }

    @Test func kubeconfigErrorsDoNotQuoteTheFile() async throws {
        try await withTemporaryDirectory { dir in
            let token = "sekrit-\(UUID().uuidString)"
            // Malformed YAML on the token's line: Yams would quote that line.
            let path = try dir.write("config", """
                apiVersion: v1
                current-context: c
                users:
                - name: u
                  user: {token: "\(token)", : : ]
                """)
            let error = #expect(throws: KubernetesError.self) { try KubernetesConfiguration.kubeconfig(path: path) }
            #expect(error?.message.contains("not valid YAML") == true, "\(error?.message ?? "")")
            #expect(error?.message.contains("line 5") == true, "the position is kept: \(error?.message ?? "")")
            expectNoSecrets([token], in: "\(error.map { "\($0)" } ?? "") \(error?.message ?? "")", "the YAML error")

            // A well-formed kubeconfig whose user is unsupported: the error names the field, not its value.
            let basic = try dir.write("basic", """
                apiVersion: v1
                current-context: c
                clusters: [{name: k, cluster: {server: "https://127.0.0.1:6443"}}]
                users: [{name: u, user: {username: admin, password: "\(token)"}}]
                contexts: [{name: c, context: {cluster: k, user: u}}]
                """)
            let unsupported = #expect(throws: KubernetesError.self) { try KubernetesConfiguration.kubeconfig(path: basic) }
            expectNoSecrets([token], in: unsupported?.message ?? "", "the unsupported-user error")
        }
    }
}

@Suite("Insecure Kubernetes transports are warned about", .timeLimit(.minutes(1)))
struct KubernetesTransportWarningTests {
    static func warnings(_ configuration: KubernetesConfiguration) async throws -> [CapturedLogs.Entry] {
        let logs = CapturedLogs()
        let client = try KubernetesClient(configuration: configuration, logger: logs.logger())
        try await client.shutdown()
        return logs.all.filter { $0.level >= .warning }
    }

    @Test func insecureSkipTLSVerifyFromAKubeconfigIsAWarning() async throws {
        try await withTemporaryDirectory { dir in
            let token = "sekrit-\(UUID().uuidString)"
            let path = try dir.write("config", """
                apiVersion: v1
                current-context: c
                clusters: [{name: k, cluster: {server: "https://10.1.2.3:6443", insecure-skip-tls-verify: true}}]
                users: [{name: u, user: {token: "\(token)"}}]
                contexts: [{name: c, context: {cluster: k, user: u}}]
                """)
            let configuration = try KubernetesConfiguration.kubeconfig(path: path)
            #expect(configuration.insecureSkipTLSVerify)
            let warnings = try await Self.warnings(configuration)
            #expect(warnings.count == 1, "\(warnings)")
            #expect(warnings.first?.message.contains("TLS verification disabled (insecure-skip-tls-verify)") == true, "\(warnings)")
            #expect(warnings.first?.metadata.contains("https://10.1.2.3:6443") == true, "\(warnings)")
            expectNoSecrets([token], in: warnings.map(\.description).joined(), "the warning")
            #expect("\(configuration)".contains("INSECURE: TLS verification disabled"))
        }
    }

    @Test func verifiedTLSAndLoopbackHTTPAreNotWarnedAbout() async throws {
        let pki = try await TestPKI.shared()
        for server in ["https://10.1.2.3:6443", "http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"] {
            let warnings = try await Self.warnings(KubernetesConfiguration(server: server, credentials: .bearerToken("t"), caPEM: pki.caPEM))
            #expect(warnings.isEmpty, "\(server): \(warnings)")
        }
    }

    @Test func plainHTTPToAnotherHostIsAWarning() async throws {
        let warnings = try await Self.warnings(KubernetesConfiguration(server: "http://10.1.2.3:8080", credentials: .bearerToken("t")))
        #expect(warnings.count == 1 && warnings[0].message.contains("plain HTTP"), "\(warnings)")
        #expect(warnings.first?.message.contains("the bearer token") == true, "\(warnings)")
    }
}
