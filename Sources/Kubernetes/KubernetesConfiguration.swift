import Foundation

/// Where the API server is and how to talk to it: URL, TLS material, credentials, default namespace and
/// request timeout.
///
/// Build one by hand, or load it with ``kubeconfig(path:context:environment:)``,
/// ``inCluster(environment:serviceAccountDirectory:)`` or
/// ``automatic(environment:serviceAccountDirectory:kubeconfigPath:context:)``.
///
/// TLS verification is on unless ``insecureSkipTLSVerify`` is set; no loader sets it unless the kubeconfig
/// explicitly says `insecure-skip-tls-verify: true`.
///
/// ``description`` never prints the token or the private key.
public struct KubernetesConfiguration: Sendable, Hashable, CustomStringConvertible {
    /// How the client authenticates. Its `description` and mirror never show a token.
    public enum Credentials: Sendable, Hashable, CustomStringConvertible, CustomReflectable {
        /// No `Authorization` header (client certificates may still authenticate).
        case none
        /// A fixed bearer token.
        case bearerToken(String)
        /// A bearer token read from a file, re-read whenever the file changes (its inode, size or
        /// modification time), so rotated tokens — such as projected service-account tokens — are used
        /// from the next request on. If the file becomes unreadable or empty, the last token read is
        /// kept.
        case tokenFile(String)

        /// `none`, `bearer token (redacted)` or `token file <path>`.
        public var description: String {
            switch self {
            case .none: "none"
            case .bearerToken: "bearer token (redacted)"
            case .tokenFile(let path): "token file \(path)"
            }
        }

        /// The case, the token redacted (for `dump` and debuggers).
        public var customMirror: Mirror {
            switch self {
            case .none: Mirror(self, children: [], displayStyle: .enum)
            case .bearerToken: Mirror(self, children: ["bearerToken": "<redacted>"], displayStyle: .enum)
            case .tokenFile(let path): Mirror(self, children: ["tokenFile": path], displayStyle: .enum)
            }
        }
    }

    // MARK: Server

    /// The API server URL, such as `https://10.0.0.1:6443` or `https://[::1]:6443`; may carry a path prefix
    /// (`https://proxy/k8s/clusters/c-1`). `http` is accepted for local development servers.
    public var server: String
    /// The namespace used when a call does not name one (`default` unless configured).
    public var namespace: String

    // MARK: TLS

    /// PEM certificates of the certificate authorities to trust for the server; `nil` trusts the system roots.
    public var caPEM: String?
    /// PEM client certificate (chain) for mutual TLS; requires ``clientKeyPEM``.
    public var clientCertificatePEM: String?
    /// PEM private key of ``clientCertificatePEM``.
    public var clientKeyPEM: String?
    /// Disables verification of the server's certificate. Only for throwaway clusters.
    public var insecureSkipTLSVerify: Bool
    /// The name to send as SNI and to verify the server certificate against, instead of the host of
    /// ``server`` (kubeconfig `tls-server-name`).
    public var tlsServerName: String?

    // MARK: Authentication and timeouts

    /// How the client authenticates.
    public var credentials: Credentials
    /// The deadline of each unary request (get, create, replace, delete, list, events), from sending it to
    /// having read the whole response. Watches have no overall deadline; their connection attempt has this
    /// timeout.
    ///
    /// For a leader-election client use ``requestTimeout(forRenewDeadline:)`` so a hung connection cannot
    /// cost the lease.
    public var requestTimeout: Duration

    /// Creates a configuration.
    ///
    /// - Parameters:
    ///   - server: The API server URL (`https://host:port`).
    ///   - namespace: The default namespace.
    ///   - credentials: How the client authenticates.
    ///   - caPEM: PEM certificates of the CAs to trust; `nil` for the system roots.
    ///   - clientCertificatePEM: PEM client certificate for mutual TLS.
    ///   - clientKeyPEM: PEM key of the client certificate.
    ///   - insecureSkipTLSVerify: Whether to skip verifying the server certificate.
    ///   - tlsServerName: The name to verify the server certificate against.
    ///   - requestTimeout: The deadline of each unary request.
    public init(
        server: String,
        namespace: String = "default",
        credentials: Credentials = .none,
        caPEM: String? = nil,
        clientCertificatePEM: String? = nil,
        clientKeyPEM: String? = nil,
        insecureSkipTLSVerify: Bool = false,
        tlsServerName: String? = nil,
        requestTimeout: Duration = .seconds(5)
    ) {
        self.server = server
        self.namespace = namespace
        self.credentials = credentials
        self.caPEM = caPEM
        self.clientCertificatePEM = clientCertificatePEM
        self.clientKeyPEM = clientKeyPEM
        self.insecureSkipTLSVerify = insecureSkipTLSVerify
        self.tlsServerName = tlsServerName
        self.requestTimeout = requestTimeout
    }

    /// The request timeout client-go's leader election uses (`NewFromKubeconfig`): half the renew deadline,
    /// at least one second — so one hung request cannot use up the whole renew deadline.
    ///
    /// - Parameter renewDeadline: The elector's renew deadline.
    /// - Returns: `max(1 s, renewDeadline / 2)`.
    public static func requestTimeout(forRenewDeadline renewDeadline: Duration) -> Duration {
        max(.seconds(1), renewDeadline / 2)
    }

    public var description: String {
        var parts = ["server: \(server)", "namespace: \(namespace)", "auth: \(credentials)"]
        if caPEM != nil { parts.append("custom CA") }
        if clientCertificatePEM != nil { parts.append("client certificate") }
        if clientKeyPEM != nil { parts.append("client key (redacted)") }
        if insecureSkipTLSVerify { parts.append("INSECURE: TLS verification disabled") }
        if let tlsServerName { parts.append("tls-server-name: \(tlsServerName)") }
        parts.append("request timeout: \(requestTimeout)")
        return "KubernetesConfiguration(\(parts.joined(separator: ", ")))"
    }
}

extension KubernetesConfiguration: CustomReflectable {
    /// The fields, with the token and the client key redacted (for `dump` and debuggers).
    public var customMirror: Mirror {
        Mirror(self, children: [
            "server": server, "namespace": namespace, "credentials": credentials, "caPEM": caPEM as Any,
            "clientCertificatePEM": clientCertificatePEM as Any,
            "clientKeyPEM": clientKeyPEM == nil ? "nil" : "<redacted>",
            "insecureSkipTLSVerify": insecureSkipTLSVerify, "tlsServerName": tlsServerName as Any,
            "requestTimeout": requestTimeout,
        ], displayStyle: .struct)
    }
}

// MARK: - Automatic

extension KubernetesConfiguration {
    /// The directory Kubernetes mounts a pod's service-account token, CA and namespace into.
    public static let defaultServiceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// The in-cluster configuration when running in a pod, else a kubeconfig — the order client-go's
    /// `clientcmd` defaults use.
    ///
    /// An explicit `kubeconfigPath` or `context` always selects the kubeconfig. Otherwise, when
    /// `KUBERNETES_SERVICE_HOST` is set and `serviceAccountDirectory` exists, the in-cluster configuration
    /// is used (and its errors are reported); else the kubeconfig from `KUBECONFIG` or `~/.kube/config`.
    ///
    /// - Parameters:
    ///   - environment: The process environment.
    ///   - serviceAccountDirectory: Where the service-account files are mounted.
    ///   - kubeconfigPath: A kubeconfig file to use instead of the defaults.
    ///   - context: A kubeconfig context to use instead of `current-context`.
    /// - Throws: ``KubernetesError`` with code ``KubernetesError/Code/invalidConfiguration``.
    public static func automatic(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        serviceAccountDirectory: String = defaultServiceAccountDirectory,
        kubeconfigPath: String? = nil,
        context: String? = nil
    ) throws -> KubernetesConfiguration {
        if kubeconfigPath == nil, context == nil,
           let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
           isDirectory(serviceAccountDirectory) {
            return try inCluster(environment: environment, serviceAccountDirectory: serviceAccountDirectory)
        }
        return try kubeconfig(path: kubeconfigPath, context: context, environment: environment)
    }

    static func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }
}

// MARK: - In-cluster

extension KubernetesConfiguration {
    /// The configuration of a pod's service account, as client-go's `rest.InClusterConfig`.
    ///
    /// - The server is `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` (an IPv6 host is put in
    ///   brackets).
    /// - Credentials are ``Credentials/tokenFile(_:)`` on `<directory>/token`, re-read when kubelet rotates it.
    /// - The CA is `<directory>/ca.crt`.
    /// - The namespace is `POD_NAMESPACE` if set, else `<directory>/namespace`, else `default`.
    ///
    /// - Parameters:
    ///   - environment: The process environment.
    ///   - serviceAccountDirectory: Where the service-account files are mounted.
    /// - Throws: ``KubernetesError`` with code ``KubernetesError/Code/invalidConfiguration`` naming the
    ///   missing variable or file.
    public static func inCluster(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        serviceAccountDirectory: String = defaultServiceAccountDirectory
    ) throws -> KubernetesConfiguration {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty else {
            throw KubernetesError.invalidConfiguration("in-cluster configuration: KUBERNETES_SERVICE_HOST is not set (not running in a pod?)")
        }
        guard let port = environment["KUBERNETES_SERVICE_PORT"], !port.isEmpty else {
            throw KubernetesError.invalidConfiguration("in-cluster configuration: KUBERNETES_SERVICE_PORT is not set")
        }
        guard let portNumber = Int(port), (1...65535).contains(portNumber) else {
            throw KubernetesError.invalidConfiguration("in-cluster configuration: KUBERNETES_SERVICE_PORT is not a port number: \(port)")
        }
        let directory = serviceAccountDirectory.hasSuffix("/") ? String(serviceAccountDirectory.dropLast()) : serviceAccountDirectory
        let tokenPath = directory + "/token"
        let token = try readConfigFile(tokenPath, what: "in-cluster service-account token")
        if token.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            throw KubernetesError.invalidConfiguration("in-cluster configuration: the service-account token \(tokenPath) is empty")
        }
        let caPath = directory + "/ca.crt"
        let ca = try readConfigFile(caPath, what: "in-cluster service-account CA certificate")
        try checkPEM(ca, what: "the in-cluster CA certificate \(caPath)")

        var namespace = "default"
        if let podNamespace = environment["POD_NAMESPACE"], !podNamespace.isEmpty {
            namespace = podNamespace
        } else if let text = try? readUTF8File(directory + "/namespace") {
            let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if !trimmed.isEmpty { namespace = trimmed }
        }

        let hostPart = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        return KubernetesConfiguration(
            server: "https://\(hostPart):\(portNumber)",
            namespace: namespace,
            credentials: .tokenFile(tokenPath),
            caPEM: ca
        )
    }

    /// Reads a UTF-8 configuration file; a missing or unreadable file is an `invalidConfiguration` error
    /// naming it.
    static func readConfigFile(_ path: String, what: String) throws -> String {
        guard FileManager.default.fileExists(atPath: path) else {
            throw KubernetesError.invalidConfiguration("\(what): file \(path) does not exist")
        }
        do {
            return try readUTF8File(path)
        } catch {
            throw KubernetesError.invalidConfiguration("\(what): cannot read \(path): \(error.localizedDescription)")
        }
    }

    /// The contents of a UTF-8 text file.
    ///
    /// Not `String(contentsOfFile:encoding:)`: in the Swift 6.3 Foundation on Linux it (like
    /// `Data(contentsOf:)` and `FileManager.contents(atPath:)`) leaks a 4 KiB buffer every time it reads a
    /// file whose size is reported as 0 — an empty token file re-read on every request, for example
    /// (found by `lease-fuzz kubeconfig` under LeakSanitizer).
    static func readUTF8File(_ path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CocoaError(.fileReadNoPermission, userInfo: [NSFilePathErrorKey: path])
        }
        defer { try? handle.close() }
        let data = try handle.readToEnd() ?? Data()
        guard let text = String(data: data, encoding: .utf8) else {
            throw CocoaError(.fileReadInapplicableStringEncoding, userInfo: [NSFilePathErrorKey: path])
        }
        return text
    }

    /// Checks that text looks like PEM, so a wrong file is reported as configuration, not as a TLS failure.
    static func checkPEM(_ text: String, what: String) throws {
        guard text.contains("-----BEGIN ") else {
            throw KubernetesError.invalidConfiguration("\(what) is not PEM (no -----BEGIN line)")
        }
    }
}
