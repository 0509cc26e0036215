import Foundation
import Kubernetes
import Testing

@Suite("Kubeconfig")
struct KubeconfigTests {
    static let caPEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    static let certPEM = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"
    static let keyPEM = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"

    static func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    /// A kubeconfig with two contexts: `dev` (current; token, CA data, namespace) and `prod` (tokenFile,
    /// CA file, client certificate files, tls-server-name).
    static func twoContexts() -> String {
        """
        apiVersion: v1
        kind: Config
        current-context: dev
        clusters:
        - name: dev-cluster
          cluster:
            server: https://10.0.0.1:6443
            certificate-authority-data: \(base64(caPEM))
        - name: prod-cluster
          cluster:
            server: https://[fd00::1]:6443
            certificate-authority: certs/ca.crt
            tls-server-name: kubernetes.default.svc
        users:
        - name: dev-user
          user:
            token: 0123456789
        - name: prod-user
          user:
            tokenFile: token.txt
            client-certificate: certs/client.crt
            client-key: certs/client.key
        contexts:
        - name: dev
          context:
            cluster: dev-cluster
            user: dev-user
            namespace: team-a
        - name: prod
          context:
            cluster: prod-cluster
            user: prod-user
        """
    }

    func writeTwoContexts(_ dir: TemporaryDirectory) throws -> String {
        try dir.write("certs/ca.crt", Self.caPEM)
        try dir.write("certs/client.crt", Self.certPEM)
        try dir.write("certs/client.key", Self.keyPEM)
        try dir.write("token.txt", "file-token\n")
        return try dir.write("config", Self.twoContexts())
    }

    @Test func currentContextWithTokenCADataAndNamespace() async throws {
        try await withTemporaryDirectory { dir in
            let path = try writeTwoContexts(dir)
            let configuration = try KubernetesConfiguration.kubeconfig(path: path)
            #expect(configuration.server == "https://10.0.0.1:6443")
            #expect(configuration.credentials == .bearerToken("0123456789"), "a numeric-looking token stays a string")
            #expect(configuration.caPEM == Self.caPEM)
            #expect(configuration.namespace == "team-a")
            #expect(configuration.insecureSkipTLSVerify == false)
            #expect(configuration.clientCertificatePEM == nil)
        }
    }

    @Test func namedContextWithFilesResolvedRelativeToTheKubeconfig() async throws {
        try await withTemporaryDirectory { dir in
            let path = try writeTwoContexts(dir)
            let configuration = try KubernetesConfiguration.kubeconfig(path: path, context: "prod")
            #expect(configuration.server == "https://[fd00::1]:6443")
            #expect(configuration.credentials == .tokenFile(dir.file("token.txt")))
            #expect(configuration.caPEM == Self.caPEM)
            #expect(configuration.clientCertificatePEM == Self.certPEM)
            #expect(configuration.clientKeyPEM == Self.keyPEM)
            #expect(configuration.tlsServerName == "kubernetes.default.svc")
            #expect(configuration.namespace == "default")
        }
    }

    @Test func clientCertificateData() async throws {
        try await withTemporaryDirectory { dir in
            let path = try dir.write("config", """
                current-context: c
                clusters: [{name: k, cluster: {server: "https://k:6443"}}]
                users: [{name: u, user: {client-certificate-data: \(Self.base64(Self.certPEM)), client-key-data: \(Self.base64(Self.keyPEM))}}]
                contexts: [{name: c, context: {cluster: k, user: u}}]
                """)
            let configuration = try KubernetesConfiguration.kubeconfig(path: path)
            #expect(configuration.clientCertificatePEM == Self.certPEM)
            #expect(configuration.clientKeyPEM == Self.keyPEM)
            #expect(configuration.credentials == .none)
            #expect(configuration.caPEM == nil)
        }
    }

    @Test func insecureSkipTLSVerifyOnlyWhenSet() async throws {
        try await withTemporaryDirectory { dir in
            func load(_ flag: String) throws -> KubernetesConfiguration {
                let path = try dir.write("config", """
                    current-context: c
                    clusters: [{name: k, cluster: {server: "https://k:6443"\(flag)}}]
                    contexts: [{name: c, context: {cluster: k}}]
                    """)
                return try KubernetesConfiguration.kubeconfig(path: path)
            }
            let unset = try load("")
            let off = try load(", insecure-skip-tls-verify: false")
            let on = try load(", insecure-skip-tls-verify: true")
            #expect(unset.insecureSkipTLSVerify == false)
            #expect(off.insecureSkipTLSVerify == false)
            #expect(on.insecureSkipTLSVerify == true)
            let error = await kubernetesError { _ = try load(", insecure-skip-tls-verify: maybe") }
            #expect(error?.code == .invalidConfiguration)
        }
    }

    @Test func kubeconfigEnvironmentAndHomeDefaults() async throws {
        try await withTemporaryDirectory { dir in
            let path = try writeTwoContexts(dir)
            let fromEnv = try KubernetesConfiguration.kubeconfig(environment: ["KUBECONFIG": "\(path):/does/not/exist"])
            #expect(fromEnv.namespace == "team-a")
            try dir.write("home/.kube/config", Self.twoContexts())
            let fromHome = try KubernetesConfiguration.kubeconfig(environment: ["HOME": dir.file("home")])
            #expect(fromHome.caPEM == Self.caPEM)
            #expect(fromHome.server == "https://10.0.0.1:6443")
        }
    }

    @Test func automaticUsesTheKubeconfigOutsideAPod() async throws {
        try await withTemporaryDirectory { dir in
            let path = try writeTwoContexts(dir)
            let configuration = try KubernetesConfiguration.automatic(
                environment: ["KUBECONFIG": path, "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"],
                serviceAccountDirectory: dir.file("no-such-dir")
            )
            #expect(configuration.server == "https://10.0.0.1:6443")
        }
    }

    struct BadCase: Sendable, CustomTestStringConvertible {
        var name: String
        var yaml: String
        var context: String? = nil
        var expectedFragment: String
        var testDescription: String { name }
    }

    static let badCases: [BadCase] = [
        BadCase(name: "unknown context", yaml: twoContexts(), context: "staging", expectedFragment: "context \"staging\" not found"),
        BadCase(name: "bad base64", yaml: """
            current-context: c
            clusters: [{name: k, cluster: {server: "https://k:6443", certificate-authority-data: "not base64 !!"}}]
            contexts: [{name: c, context: {cluster: k}}]
            """, expectedFragment: "certificate-authority-data is not valid base64"),
        BadCase(name: "exec auth", yaml: """
            current-context: c
            clusters: [{name: k, cluster: {server: "https://k:6443"}}]
            users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: aws}}}]
            contexts: [{name: c, context: {cluster: k, user: u}}]
            """, expectedFragment: "users[u].user.exec is not supported"),
        BadCase(name: "auth-provider", yaml: """
            current-context: c
            clusters: [{name: k, cluster: {server: "https://k:6443"}}]
            users: [{name: u, user: {auth-provider: {name: gcp}}}]
            contexts: [{name: c, context: {cluster: k, user: u}}]
            """, expectedFragment: "auth-provider is not supported"),
        BadCase(name: "basic auth", yaml: """
            current-context: c
            clusters: [{name: k, cluster: {server: "https://k:6443"}}]
            users: [{name: u, user: {username: admin, password: secret}}]
            contexts: [{name: c, context: {cluster: k, user: u}}]
            """, expectedFragment: "username is not supported"),
        BadCase(name: "bad YAML", yaml: "clusters: [unclosed\n  - : :", expectedFragment: "not valid YAML"),
        BadCase(name: "no current context", yaml: "clusters: []\n", expectedFragment: "current-context is not set"),
        BadCase(name: "missing CA file", yaml: """
            current-context: c
            clusters: [{name: k, cluster: {server: "https://k:6443", certificate-authority: missing-ca.crt}}]
            contexts: [{name: c, context: {cluster: k}}]
            """, expectedFragment: "missing-ca.crt does not exist"),
        BadCase(name: "CA data that is not PEM", yaml: """
            current-context: c
            clusters: [{name: k, cluster: {server: "https://k:6443", certificate-authority-data: \(base64("hello"))}}]
            contexts: [{name: c, context: {cluster: k}}]
            """, expectedFragment: "is not PEM"),
        BadCase(name: "certificate without key", yaml: """
            current-context: c
            clusters: [{name: k, cluster: {server: "https://k:6443"}}]
            users: [{name: u, user: {client-certificate-data: \(base64(certPEM))}}]
            contexts: [{name: c, context: {cluster: k, user: u}}]
            """, expectedFragment: "without a key"),
        BadCase(name: "unknown cluster", yaml: """
            current-context: c
            contexts: [{name: c, context: {cluster: nowhere}}]
            """, expectedFragment: "cluster \"nowhere\""),
        BadCase(name: "server not a URL", yaml: """
            current-context: c
            clusters: [{name: k, cluster: {server: "k:6443"}}]
            contexts: [{name: c, context: {cluster: k}}]
            """, expectedFragment: "server is not an http(s) URL"),
    ]

    @Test(arguments: badCases)
    func badKubeconfigIsInvalidConfiguration(_ badCase: BadCase) async throws {
        try await withTemporaryDirectory { dir in
            try dir.write("certs/ca.crt", Self.caPEM)
            try dir.write("certs/client.crt", Self.certPEM)
            try dir.write("certs/client.key", Self.keyPEM)
            try dir.write("token.txt", "t")
            let path = try dir.write("config", badCase.yaml)
            let error = await kubernetesError { _ = try KubernetesConfiguration.kubeconfig(path: path, context: badCase.context) }
            #expect(error?.code == .invalidConfiguration)
            #expect(error?.message.contains(badCase.expectedFragment) == true, "\(error?.message ?? "")")
            #expect(error?.message.contains(path) == true, "the message names the file")
        }
    }

    @Test func missingFileIsInvalidConfiguration() async throws {
        let error = await kubernetesError { _ = try KubernetesConfiguration.kubeconfig(path: "/nonexistent/kubeconfig") }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains("/nonexistent/kubeconfig") == true)
    }
}
