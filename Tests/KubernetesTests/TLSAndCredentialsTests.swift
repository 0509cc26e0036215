import Foundation
import Kubernetes
import NIOHTTP1
import NIOSSL
import Testing

@Suite("TLS and credentials", .timeLimit(.minutes(1)))
struct TLSAndCredentialsTests {
    static let okHandler: ScriptedHTTPServer.Handler = { _, writer in
        try await writer.respond(.ok, json: leaseJSON())
    }

    /// A kubeconfig for `server` with the given cluster and user fields.
    func kubeconfig(server: String, cluster: String, user: String) -> String {
        """
        apiVersion: v1
        kind: Config
        current-context: test
        clusters:
        - name: test
          cluster:
            server: \(server)
        \(cluster.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        users:
        - name: test
          user:
            placeholder: true
        \(user.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        contexts:
        - name: test
          context: {cluster: test, user: test}
        """
    }

    @Test func bearerTokenOverTLSWithCAFromAFile() async throws {
        try await withTemporaryDirectory { dir in
            let pki = try await TestPKI.shared()
            try pki.install(in: dir)
            try await withServer(tls: try pki.serverTLS(), handler: Self.okHandler) { server in
                let path = try dir.write("kube/config", kubeconfig(server: server.url, cluster: "certificate-authority: ../pki/ca.crt", user: "token: abc.def"))
                try await withClient(try KubernetesConfiguration.kubeconfig(path: path)) { client in
                    _ = try await client.getLease(namespace: "default", name: "lock")
                }
                #expect(server.requests.first?.headers["Authorization"] == ["Bearer abc.def"])
                #expect(server.requests.first?.clientCertificate == nil)
            }
        }
    }

    @Test func clientCertificateFilesAreUsedForMutualTLS() async throws {
        try await withTemporaryDirectory { dir in
            let pki = try await TestPKI.shared()
            try pki.install(in: dir)
            try await withServer(tls: try pki.serverTLS(requireClientCertificate: true), handler: Self.okHandler) { server in
                let path = try dir.write("config", kubeconfig(
                    server: server.url,
                    cluster: "certificate-authority: pki/ca.crt",
                    user: "client-certificate: pki/client.crt\nclient-key: pki/client.key"
                ))
                try await withClient(try KubernetesConfiguration.kubeconfig(path: path)) { client in
                    _ = try await client.getLease(namespace: "default", name: "lock")
                }
                #expect(server.requests.first?.clientCertificate == (try pki.clientCertificate()))
                #expect(server.requests.first?.headers["Authorization"] == [])
            }
        }
    }

    @Test func clientCertificateDataIsUsedForMutualTLS() async throws {
        try await withTemporaryDirectory { dir in
            let pki = try await TestPKI.shared()
            try pki.install(in: dir)
            func b64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
            try await withServer(tls: try pki.serverTLS(requireClientCertificate: true), handler: Self.okHandler) { server in
                let path = try dir.write("config", kubeconfig(
                    server: server.url,
                    cluster: "certificate-authority-data: \(b64(pki.caPEM))",
                    user: "client-certificate-data: \(b64(pki.clientCertificatePEM))\nclient-key-data: \(b64(pki.clientKeyPEM))\ntoken: also-a-token"
                ))
                try await withClient(try KubernetesConfiguration.kubeconfig(path: path)) { client in
                    _ = try await client.getLease(namespace: "default", name: "lock")
                }
                #expect(server.requests.first?.clientCertificate == (try pki.clientCertificate()))
                #expect(server.requests.first?.headers["Authorization"] == ["Bearer also-a-token"])
            }
        }
    }

    @Test func mutualTLSServerRejectsAClientWithoutCertificate() async throws {
        try await withTemporaryDirectory { dir in
            let pki = try await TestPKI.shared()
            try pki.install(in: dir)
            try await withServer(tls: try pki.serverTLS(requireClientCertificate: true), handler: Self.okHandler) { server in
                let configuration = KubernetesConfiguration(server: server.url, caPEM: pki.caPEM, requestTimeout: .seconds(3))
                try await withClient(configuration) { client in
                    let error = await kubernetesError { _ = try await client.getLease(namespace: "default", name: "lock") }
                    #expect(error?.code == .unavailable)
                }
                #expect(server.requests.isEmpty)
            }
        }
    }

    @Test func untrustedServerCertificateFailsUnlessInsecureSkipIsSet() async throws {
        try await withTemporaryDirectory { dir in
            let pki = try await TestPKI.shared()
            try pki.install(in: dir)
            try await withServer(tls: try pki.serverTLS(), handler: Self.okHandler) { server in
                // Trusting another CA: the handshake fails with a typed error.
                let otherCA = try dir.write("other/config", kubeconfig(
                    server: server.url, cluster: "certificate-authority: ../pki/other-ca.crt", user: "token: t"
                ))
                try await withClient(try KubernetesConfiguration.kubeconfig(path: otherCA)) { client in
                    let error = await kubernetesError { _ = try await client.getLease(namespace: "default", name: "lock") }
                    #expect(error?.code == .unavailable)
                    #expect(error?.message.contains("TLS") == true, "\(error?.message ?? "")")
                }
                // No CA at all (system roots): also refused.
                let systemRoots = try dir.write("system/config", kubeconfig(server: server.url, cluster: "", user: "token: t"))
                try await withClient(try KubernetesConfiguration.kubeconfig(path: systemRoots)) { client in
                    let error = await kubernetesError { _ = try await client.getLease(namespace: "default", name: "lock") }
                    #expect(error?.code == .unavailable)
                }
                #expect(server.requests.isEmpty)
                // Only the explicit flag skips verification.
                let insecure = try dir.write("insecure/config", kubeconfig(
                    server: server.url, cluster: "insecure-skip-tls-verify: true", user: "token: t"
                ))
                try await withClient(try KubernetesConfiguration.kubeconfig(path: insecure)) { client in
                    _ = try await client.getLease(namespace: "default", name: "lock")
                }
                #expect(server.requests.count == 1)
            }
        }
    }

    @Test func tlsServerNameIsTheNameVerified() async throws {
        try await withTemporaryDirectory { dir in
            let pki = try await TestPKI.shared()
            try pki.install(in: dir)
            // The certificate names only kube.test; the server is reached at 127.0.0.1.
            try await withServer(tls: try pki.serverTLS(namedOnly: true), handler: Self.okHandler) { server in
                var configuration = KubernetesConfiguration(server: server.url, caPEM: pki.caPEM, tlsServerName: "kube.test")
                try await withClient(configuration) { client in
                    _ = try await client.getLease(namespace: "default", name: "lock")
                }
                #expect(server.requests.count == 1)
                for name in [nil, "not-in-the-certificate.example"] {
                    configuration.tlsServerName = name
                    try await withClient(configuration) { client in
                        let error = await kubernetesError { _ = try await client.getLease(namespace: "default", name: "lock") }
                        #expect(error?.code == .unavailable, "tls-server-name \(name ?? "unset")")
                    }
                }
                #expect(server.requests.count == 1)
            }
        }
    }

    @Test func invalidPEMIsInvalidConfiguration() throws {
        let configuration = KubernetesConfiguration(server: "https://127.0.0.1:1", caPEM: "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        #expect(throws: KubernetesError.self) { _ = try KubernetesClient(configuration: configuration, logger: testLogger) }
        do {
            _ = try KubernetesClient(configuration: KubernetesConfiguration(server: "not a url"), logger: testLogger)
            Issue.record("expected an error")
        } catch let error as KubernetesError {
            #expect(error.code == .invalidConfiguration)
        }
    }

    // MARK: In-cluster

    /// A fake service-account directory.
    func serviceAccount(in dir: TemporaryDirectory, ca: String, token: String = "token-1", namespace: String? = "apps") throws -> String {
        try dir.write("sa/token", token)
        try dir.write("sa/ca.crt", ca)
        if let namespace { try dir.write("sa/namespace", namespace) }
        return dir.file("sa")
    }

    @Test func inClusterRereadsTheRotatedToken() async throws {
        try await withTemporaryDirectory { dir in
            let pki = try await TestPKI.shared()
            try pki.install(in: dir)
            try await withServer(tls: try pki.serverTLS(), handler: Self.okHandler) { server in
                let sa = try serviceAccount(in: dir, ca: pki.caPEM)
                let configuration = try KubernetesConfiguration.inCluster(
                    environment: ["KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": String(server.port)],
                    serviceAccountDirectory: sa
                )
                #expect(configuration.server == "https://127.0.0.1:\(server.port)")
                #expect(configuration.namespace == "apps")
                #expect(configuration.credentials == .tokenFile(sa + "/token"))
                try await withClient(configuration) { client in
                    _ = try await client.getLease(namespace: configuration.namespace, name: "lock")
                    _ = try await client.getLease(namespace: configuration.namespace, name: "lock")
                    // kubelet rotates the projected token.
                    try dir.write("sa/token", "token-2-rotated\n")
                    _ = try await client.getLease(namespace: configuration.namespace, name: "lock")
                    // A token file that disappears keeps the last token.
                    try FileManager.default.removeItem(atPath: sa + "/token")
                    _ = try await client.getLease(namespace: configuration.namespace, name: "lock")
                }
                #expect(server.requests.map { $0.headers["Authorization"].first } == [
                    "Bearer token-1", "Bearer token-1", "Bearer token-2-rotated", "Bearer token-2-rotated",
                ])
                #expect(server.requests.first?.path == "/apis/coordination.k8s.io/v1/namespaces/apps/leases/lock")
            }
        }
    }

    @Test func inClusterIPv6HostIsBracketed() async throws {
        try await withTemporaryDirectory { dir in
            let pki = try await TestPKI.shared()
            try pki.install(in: dir)
            let sa = try serviceAccount(in: dir, ca: pki.caPEM, namespace: nil)
            let configuration = try KubernetesConfiguration.inCluster(
                environment: ["KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "443"],
                serviceAccountDirectory: sa
            )
            #expect(configuration.server == "https://[fd00:10:96::1]:443")
            #expect(configuration.namespace == "default", "no namespace file: default")
            let automatic = try KubernetesConfiguration.automatic(
                environment: ["KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "443", "POD_NAMESPACE": "from-env"],
                serviceAccountDirectory: sa
            )
            #expect(automatic.server == configuration.server)
            #expect(automatic.namespace == "from-env")
            // The IPv6 URL is accepted by the client.
            try await withClient(configuration) { _ in }
        }
    }

    @Test func inClusterReportsWhatIsMissing() async throws {
        try await withTemporaryDirectory { dir in
            let env = ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"]
            var error = await kubernetesError { _ = try KubernetesConfiguration.inCluster(environment: [:], serviceAccountDirectory: dir.path) }
            #expect(error?.code == .invalidConfiguration)
            #expect(error?.message.contains("KUBERNETES_SERVICE_HOST") == true)

            error = await kubernetesError {
                _ = try KubernetesConfiguration.inCluster(environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1"], serviceAccountDirectory: dir.path)
            }
            #expect(error?.message.contains("KUBERNETES_SERVICE_PORT") == true)

            error = await kubernetesError { _ = try KubernetesConfiguration.inCluster(environment: env, serviceAccountDirectory: dir.path) }
            #expect(error?.message.contains(dir.file("token")) == true, "\(error?.message ?? "")")

            try dir.write("token", "t")
            error = await kubernetesError { _ = try KubernetesConfiguration.inCluster(environment: env, serviceAccountDirectory: dir.path) }
            #expect(error?.code == .invalidConfiguration)
            #expect(error?.message.contains(dir.file("ca.crt")) == true, "\(error?.message ?? "")")
        }
    }
}
