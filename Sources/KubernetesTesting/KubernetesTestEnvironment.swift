import Etcd
import EtcdTesting
import Foundation
import Kubernetes
import LeaseAPIServer
import Logging

/// An API server for the Kubernetes tests: by default a ``LeaseAPIServer`` over HTTPS with a bearer token,
/// on a free loopback port, storing its objects in a real etcd (the process's shared test etcd, under a
/// key prefix of its own), with ``namespace`` created through the API; or, when `LEADER_ELECTION_TEST_KUBECONFIG` names a kubeconfig, that real
/// cluster's API server, in a test namespace created for the environment and deleted afterwards.
///
/// The same tests run against either; only ``storeRawLease(name:bytes:)`` (which writes behind the API
/// server's back) needs the local server.
///
/// ```swift
/// try await KubernetesTestEnvironment.with { env in
///     let lease = try await env.client.createLease(…, namespace: env.namespace)
/// }
/// ```
public final class KubernetesTestEnvironment: Sendable {
    /// The environment variable naming a real cluster's kubeconfig.
    public static let kubeconfigVariable = "LEADER_ELECTION_TEST_KUBECONFIG"

    /// Whether tests that need the local LeaseAPIServer (they write behind its back or count its requests) run:
    /// always in CI (`CI=true`, where an external cluster makes them fail with a clear error instead of
    /// skipping), otherwise only when no external cluster is configured.
    public static var localServerTestsRun: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["CI"] == "true" || environment[kubeconfigVariable] == nil
    }

    /// The namespace the tests use (unique per environment).
    public let namespace: String
    /// A kubeconfig file for this API server, for child processes. For the local server it has its CA,
    /// token and ``namespace``; for a real cluster it is the user's file, so pass ``namespace`` explicitly.
    public let kubeconfigPath: String
    /// The client configuration, as read from ``kubeconfigPath``.
    public let configuration: KubernetesConfiguration
    /// A client for the tests; closed by the environment.
    public let client: KubernetesClient
    /// `true` when running against the cluster named by `LEADER_ELECTION_TEST_KUBECONFIG`.
    public let isExternal: Bool
    /// The local API server, `nil` for a real cluster.
    public let server: LeaseAPIServer?
    /// The bearer token the local API server accepts, `nil` for a real cluster.
    public let token: String?
    /// The etcd key prefix the local API server stores objects under.
    public let etcdPrefix: String?
    /// The etcd the local API server stores in.
    public let etcd: EtcdServer?
    private let etcdClient: EtcdClient?
    private let directory: String?

    private init(
        namespace: String, kubeconfigPath: String, configuration: KubernetesConfiguration, client: KubernetesClient,
        isExternal: Bool, server: LeaseAPIServer?, token: String?, etcdPrefix: String?, etcd: EtcdServer?,
        etcdClient: EtcdClient?, directory: String?
    ) {
        self.namespace = namespace
        self.kubeconfigPath = kubeconfigPath
        self.configuration = configuration
        self.client = client
        self.isExternal = isExternal
        self.server = server
        self.token = token
        self.etcdPrefix = etcdPrefix
        self.etcd = etcd
        self.etcdClient = etcdClient
        self.directory = directory
    }

    /// Runs `body` in a new environment and tears it down afterwards, whether `body` throws or not.
    ///
    /// - Parameters:
    ///   - generation: the kube-apiserver generation the local server answers as (ignored for a real cluster,
    ///     which is whatever it is).
    public static func with<R>(
        generation: LeaseAPIServer.Generation = .v1_26,
        logger: Logger = Logger(label: "kubernetes-test", factory: { _ in SwiftLogNoOpLogHandler() }),
        _ body: (KubernetesTestEnvironment) async throws -> R
    ) async throws -> R {
        if let path = ProcessInfo.processInfo.environment[kubeconfigVariable], !path.isEmpty {
            let environment = try await external(kubeconfig: path, logger: logger)
            return try await run(environment, body)
        }
        return try await SharedEtcdServer.withServer { etcd in
            let environment = try await local(etcd: etcd, generation: generation, logger: logger)
            return try await run(environment, body)
        }
    }

    private static func run<R>(_ environment: KubernetesTestEnvironment, _ body: (KubernetesTestEnvironment) async throws -> R) async throws -> R {
        do {
            let result = try await body(environment)
            await environment.tearDown()
            return result
        } catch {
            await environment.tearDown()
            throw error
        }
    }

    /// A new client for this API server (for example with another request timeout). Call `shutdown()` on it.
    public func makeClient(requestTimeout: Duration? = nil, logger: Logger = Logger(label: "kubernetes-test", factory: { _ in SwiftLogNoOpLogHandler() })) throws -> KubernetesClient {
        var configuration = self.configuration
        if let requestTimeout { configuration.requestTimeout = requestTimeout }
        return try KubernetesClient(configuration: configuration, logger: logger)
    }

    /// Stores `bytes` as the Lease `name` of ``namespace`` directly in etcd, behind the API server's back
    /// (local server only), to test how clients see undecodable stored objects.
    public func storeRawLease(name: String, bytes: [UInt8]) async throws {
        guard let etcdClient, let etcdPrefix else {
            throw KubernetesTestingError("storeRawLease needs the local LeaseAPIServer; a real cluster's etcd is out of reach")
        }
        _ = try await etcdClient.put(Array("\(etcdPrefix)/leases/\(namespace)/\(name)".utf8), bytes)
    }

    /// Deletes the Lease `name` of ``namespace`` directly in etcd (local server only), for objects the API
    /// server cannot decode.
    public func deleteRawLease(name: String) async throws {
        guard let etcdClient, let etcdPrefix else {
            throw KubernetesTestingError("deleteRawLease needs the local LeaseAPIServer; a real cluster's etcd is out of reach")
        }
        _ = try await etcdClient.delete(Array("\(etcdPrefix)/leases/\(namespace)/\(name)".utf8))
    }

    private func tearDown() async {
        if isExternal {
            try? await client.deleteNamespace(namespace)
        }
        try? await client.shutdown()
        await server?.shutdown()
        if let etcdClient, let etcdPrefix {
            _ = try? await etcdClient.delete(Array((etcdPrefix + "/").utf8), rangeEnd: Self.prefixEnd(etcdPrefix + "/"))
            etcdClient.close()
        }
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    private static func local(etcd: EtcdServer, generation: LeaseAPIServer.Generation, logger: Logger) async throws -> KubernetesTestEnvironment {
        let suffix = randomHex(8)
        let directory = try makeTemporaryDirectory("kubernetes-test")
        let tls = try await EtcdTLS.shared()
        let token = randomHex(32)
        let prefix = "/registry-\(suffix)"
        let etcdClient = try EtcdClient(configuration: .init(endpoints: [etcd.endpoint]))
        let server: LeaseAPIServer
        do {
            server = try await LeaseAPIServer.start(
                configuration: .init(
                    host: "127.0.0.1", port: 0,
                    tls: .init(certificateChainFile: tls.serverCertFile, privateKeyFile: tls.serverKeyFile),
                    bearerTokens: [token], etcdPrefix: prefix, generation: generation),
                etcd: etcdClient, logger: logger)
        } catch {
            etcdClient.close()
            throw error
        }
        let namespace = "test-\(suffix)"
        let caPEM = try String(contentsOfFile: tls.caFile, encoding: .utf8)
        let kubeconfigPath = directory + "/kubeconfig.yaml"
        try kubeconfigYAML(server: server.baseURL, caPEM: caPEM, token: token, namespace: namespace)
            .write(toFile: kubeconfigPath, atomically: true, encoding: .utf8)
        let configuration = try KubernetesConfiguration.kubeconfig(path: kubeconfigPath)
        let client = try KubernetesClient(configuration: configuration, logger: logger)
        do {
            // The server enforces namespaces as kube-apiserver does: create the test namespace through the API.
            _ = try await client.createNamespace(namespace)
        } catch {
            try? await client.shutdown()
            await server.shutdown()
            etcdClient.close()
            throw KubernetesTestingError("cannot create test namespace \(namespace) on the local LeaseAPIServer: \(error)")
        }
        return KubernetesTestEnvironment(
            namespace: namespace, kubeconfigPath: kubeconfigPath, configuration: configuration, client: client,
            isExternal: false, server: server, token: token, etcdPrefix: prefix, etcd: etcd, etcdClient: etcdClient,
            directory: directory)
    }

    private static func external(kubeconfig path: String, logger: Logger) async throws -> KubernetesTestEnvironment {
        let base = try KubernetesConfiguration.kubeconfig(path: path)
        let namespace = "sle-test-\(randomHex(8))"
        var configuration = base
        configuration.namespace = namespace
        let client = try KubernetesClient(configuration: configuration, logger: logger)
        do {
            _ = try await client.createNamespace(namespace)
        } catch {
            try? await client.shutdown()
            throw KubernetesTestingError("cannot create test namespace \(namespace) in the cluster of \(path): \(error)")
        }
        return KubernetesTestEnvironment(
            namespace: namespace, kubeconfigPath: path, configuration: configuration, client: client,
            isExternal: true, server: nil, token: nil, etcdPrefix: nil, etcd: nil, etcdClient: nil, directory: nil)
    }

    /// A kubeconfig for one cluster, user and context, with the CA inline.
    static func kubeconfigYAML(server: String, caPEM: String, token: String, namespace: String) -> String {
        """
        apiVersion: v1
        kind: Config
        clusters:
        - name: lease-apiserver
          cluster:
            server: \(server)
            certificate-authority-data: \(Data(caPEM.utf8).base64EncodedString())
        users:
        - name: test
          user:
            token: \(token)
        contexts:
        - name: test
          context:
            cluster: lease-apiserver
            user: test
            namespace: \(namespace)
        current-context: test

        """
    }

    static func prefixEnd(_ prefix: String) -> [UInt8] {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xFF { bytes[bytes.count - 1] = last + 1; return bytes }
            bytes.removeLast()
        }
        return [0]
    }
}

/// A failure to set up a Kubernetes test environment.
public struct KubernetesTestingError: Error, CustomStringConvertible {
    /// What went wrong.
    public var description: String
    init(_ description: String) { self.description = description }
}

private func randomHex(_ count: Int) -> String {
    String((0..<count).map { _ in "0123456789abcdef".randomElement()! })
}

private func makeTemporaryDirectory(_ label: String) throws -> String {
    let path = NSTemporaryDirectory() + "\(label)-\(randomHex(12))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
