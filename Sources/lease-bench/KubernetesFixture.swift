import Etcd
import EtcdTesting
import Foundation
import Kubernetes
import LeaseAPIServer
import Logging
import Synchronization

/// The Kubernetes API server the Kubernetes scenarios run against: a `LeaseAPIServer` in this process, over
/// HTTPS (TLS from `EtcdTesting`'s test CA, HTTP/1.1) with a bearer token, on a free loopback port, storing its
/// objects in the bench's own etcd (the one the etcd rows measure) under a prefix of its own, through an
/// `EtcdClient` of its own (its own gRPC connection, as a separate kube-apiserver process would have).
///
/// This is what `KubernetesTestEnvironment` builds for the tests, except that it reuses the bench's etcd
/// instead of starting the tests' shared one, so every row of the report runs against one etcd.
final class KubernetesFixture: Sendable {
    let server: LeaseAPIServer
    /// The API server's connection to etcd.
    let etcdClient: EtcdClient
    /// Every client of the scenarios is made from this (server URL, CA, token, namespace).
    let configuration: KubernetesConfiguration
    /// The namespace of every Lease the scenarios use (LeaseAPIServer does not require it to exist).
    let namespace = "lease-bench"
    /// The etcd key prefix the API server stores under.
    let etcdPrefix: String

    private init(server: LeaseAPIServer, etcdClient: EtcdClient, configuration: KubernetesConfiguration, etcdPrefix: String) {
        self.server = server
        self.etcdClient = etcdClient
        self.configuration = configuration
        self.etcdPrefix = etcdPrefix
    }

    static func start(etcd: EtcdFixture) async throws -> KubernetesFixture {
        let tls = try await EtcdTLS.shared()
        let token = randomHex(32)
        let prefix = "/lease-bench-registry-\(randomHex(8))"
        let etcdClient = try EtcdClient(configuration: .init(endpoints: [etcd.server.endpoint]))
        let server: LeaseAPIServer
        do {
            server = try await LeaseAPIServer.start(
                configuration: .init(
                    host: "127.0.0.1", port: 0,
                    tls: .init(certificateChainFile: tls.serverCertFile, privateKeyFile: tls.serverKeyFile),
                    bearerTokens: [token], etcdPrefix: prefix),
                etcd: etcdClient)
        } catch {
            etcdClient.close()
            throw error
        }
        let configuration = KubernetesConfiguration(
            server: server.baseURL, namespace: "lease-bench", credentials: .bearerToken(token),
            caPEM: try String(contentsOfFile: tls.caFile, encoding: .utf8))
        let fixture = KubernetesFixture(server: server, etcdClient: etcdClient, configuration: configuration, etcdPrefix: prefix)
        // One request, so that the API server answers (and reaches etcd) before anything is timed.
        do {
            let client = try fixture.makeClient()
            do {
                _ = try await client.createNamespace(fixture.namespace)   // the server enforces namespaces
                _ = try await client.listLeases(namespace: fixture.namespace)
                try await client.shutdown()
            } catch {
                try? await client.shutdown()
                throw error
            }
        } catch {
            await fixture.stop()
            throw BenchError("the LeaseAPIServer at \(server.baseURL) does not answer: \(error)")
        }
        return fixture
    }

    /// A new client with its own connection pool (its own connections, as a separate process would have).
    /// `server`: another URL to reach the API server at (a proxy in front of it). Call `shutdown()` on it.
    func makeClient(requestTimeout: Duration? = nil, server: String? = nil) throws -> KubernetesClient {
        var configuration = self.configuration
        if let requestTimeout { configuration.requestTimeout = requestTimeout }
        if let server { configuration.server = server }
        return try KubernetesClient(configuration: configuration, logger: Logger(label: "lease-bench", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    /// The API server's request counters, by method (`WATCH` for watches).
    var requestCounter: RequestCounter {
        let server = self.server
        return { server.requestCounts }
    }

    /// Stops the API server and deletes what it stored.
    func stop() async {
        await server.shutdown()
        var end = Array((etcdPrefix + "/").utf8)
        end[end.count - 1] += 1   // "/" + 1 = "0": the end of the prefix range
        _ = try? await etcdClient.delete(Array((etcdPrefix + "/").utf8), rangeEnd: end)
        etcdClient.close()
    }
}

/// Starts the Kubernetes fixture once, on first use, and stops it at the end of the run. A failure to start
/// is remembered: every Kubernetes scenario then fails with it (none is skipped silently).
final class KubernetesFixtureHolder: Sendable {
    private let etcd: EtcdFixture
    private let state = Mutex<Task<KubernetesFixture, any Error>?>(nil)

    init(etcd: EtcdFixture) { self.etcd = etcd }

    func fixture() async throws -> KubernetesFixture {
        let etcd = self.etcd
        let task = state.withLock { state in
            if let task = state { return task }
            let task = Task {
                log("lease-bench: starting LeaseAPIServer (HTTPS, bearer token) over etcd \(etcd.server.endpoint) …")
                let fixture = try await KubernetesFixture.start(etcd: etcd)
                log("lease-bench: LeaseAPIServer \(fixture.server.baseURL), etcd prefix \(fixture.etcdPrefix)")
                return fixture
            }
            state = task
            return task
        }
        return try await task.value
    }

    /// Stops the fixture if it was started.
    func stop() async {
        guard let task = state.withLock({ $0 }), let fixture = try? await task.value else { return }
        await fixture.stop()
    }
}

func randomHex(_ count: Int) -> String {
    String((0..<count).map { _ in "0123456789abcdef".randomElement()! })
}
