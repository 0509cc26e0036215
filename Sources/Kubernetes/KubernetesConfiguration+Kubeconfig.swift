import Foundation
import Yams

extension KubernetesConfiguration {
    /// Loads a kubeconfig file, as `kubectl` does for one file.
    ///
    /// The file is `path` if given; else the **first** entry of `KUBECONFIG` (a colon-separated list;
    /// merging several files is not supported); else `~/.kube/config`.
    ///
    /// Reads the context named `context`, or `current-context`, and from it:
    /// - cluster: `server`, `certificate-authority` (a file; relative paths are resolved against the
    ///   kubeconfig's directory) or `certificate-authority-data` (base64 PEM), `insecure-skip-tls-verify`,
    ///   `tls-server-name`;
    /// - user: `token` or `tokenFile` (`token` wins when both are set, as the kubeconfig reference says),
    ///   `client-certificate`/`client-certificate-data`, `client-key`/`client-key-data`;
    /// - context: `namespace` (else `default`).
    ///
    /// `exec`, `auth-provider` and `username`/`password` authentication and `proxy-url` are not supported
    /// and are reported as errors rather than ignored.
    ///
    /// - Parameters:
    ///   - path: The kubeconfig file; `nil` for the defaults above.
    ///   - context: The context to use; `nil` for `current-context`.
    ///   - environment: The process environment (for `KUBECONFIG` and `HOME`).
    /// - Throws: ``KubernetesError`` with code ``KubernetesError/Code/invalidConfiguration`` naming the file
    ///   and field at fault.
    public static func kubeconfig(
        path: String? = nil,
        context: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> KubernetesConfiguration {
        let file = resolveKubeconfigPath(path, environment: environment)
        let text = try readConfigFile(file, what: "kubeconfig")
        return try kubeconfig(text: text, file: file, context: context)
    }

    /// Parses the text of the kubeconfig file `file` (named in errors; relative paths in it are resolved
    /// against its directory).
    static func kubeconfig(text: String, file: String, context: String?) throws -> KubernetesConfiguration {
        let aliases = yamlAliasCount(text)
        guard aliases <= maximumYAMLAliases else {
            throw KubernetesError.invalidConfiguration(
                "kubeconfig \(file) uses \(aliases) YAML aliases (*name); at most \(maximumYAMLAliases) are accepted")
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw KubernetesError.invalidConfiguration("kubeconfig \(file) is not valid YAML: \(describeYAMLError(error))")
        }
        guard let root, root.mapping != nil else {
            throw KubernetesError.invalidConfiguration("kubeconfig \(file) is empty or not a YAML mapping")
        }
        return try KubeconfigReader(file: file, root: root).configuration(context: context)
    }

    /// A YAML error with its position but without the excerpt of the file Yams quotes: the line at fault may
    /// hold a token or key.
    static func describeYAMLError(_ error: any Error) -> String {
        guard let error = error as? YamlError else { return "\(type(of: error))" }
        switch error {
        case .reader(let problem, let offset, _, _):
            return "\(problem)" + (offset.map { " at byte \($0)" } ?? "")
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let around = context.map { " (\($0.text) at line \($0.mark.line), column \($0.mark.column))" } ?? ""
            return "line \(mark.line), column \(mark.column): \(problem)\(around)"
        case .duplicatedKeysInMapping(let duplicates, let context):
            return "duplicate keys \(duplicates.sorted().joined(separator: ", ")) at line \(context.mark.line)"
        default:
            return "\(error)"
        }
    }

    /// The most YAML aliases a kubeconfig may use. Each alias is a copy of the anchored node, so a handful of
    /// nested aliases expand exponentially ("billion laughs"); Yams then hashes the expansion of every
    /// mapping key while checking for duplicates. A 1 KiB kubeconfig found by `lease-fuzz kubeconfig` took
    /// 20 s of CPU that way, and a slightly larger one would take years. kubectl never writes aliases; 16
    /// nested aliases expand at most ~256-fold.
    static let maximumYAMLAliases = 16

    /// An upper bound on the alias nodes (`*name`) in `text`: every `*` whose preceding non-blank byte on its
    /// line is nothing (line start), `[`, `{`, `,`, `:`, `-` or `?` — every position where YAML can start an
    /// alias. Deliberately ignores quoting, comments and block scalars, so nothing can hide an alias from it;
    /// such a `*` in a real kubeconfig (whose values are URLs, paths, base64 and tokens) is unheard of.
    static func yamlAliasCount(_ text: String) -> Int {
        var count = 0
        var previous: UInt8? = nil  // the last non-blank byte on the current line
        for b in text.utf8 {
            switch b {
            case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                previous = nil
            case UInt8(ascii: " "), UInt8(ascii: "\t"):
                break
            case UInt8(ascii: "*"):
                if previous == nil || "[{,:-?".utf8.contains(previous!) { count += 1 }
                previous = b
            default:
                previous = b
            }
        }
        return count
    }

    /// `path`, else the first entry of `KUBECONFIG`, else `~/.kube/config`.
    static func resolveKubeconfigPath(_ path: String?, environment: [String: String]) -> String {
        if let path, !path.isEmpty { return path }
        if let list = environment["KUBECONFIG"],
           let first = list.split(separator: ":", omittingEmptySubsequences: true).first {
            return String(first)
        }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return (home as NSString).appendingPathComponent(".kube/config")
    }
}

/// Reads the fields of one kubeconfig file, naming the file and field in every error.
private struct KubeconfigReader {
    let file: String
    let root: Node

    var directory: String { (file as NSString).deletingLastPathComponent }

    func fail(_ message: String) -> KubernetesError {
        KubernetesError.invalidConfiguration("kubeconfig \(file): \(message)")
    }

    func configuration(context requested: String?) throws -> KubernetesConfiguration {
        let contextName: String
        if let requested, !requested.isEmpty {
            contextName = requested
        } else if let current = string(root["current-context"]), !current.isEmpty {
            contextName = current
        } else {
            throw fail("no context given and current-context is not set")
        }
        guard let context = try namedEntry(in: "contexts", name: contextName, field: "context") else {
            throw fail("context \"\(contextName)\" not found in contexts")
        }
        guard let clusterName = string(context["cluster"]), !clusterName.isEmpty else {
            throw fail("context \"\(contextName)\" has no cluster")
        }
        guard let cluster = try namedEntry(in: "clusters", name: clusterName, field: "cluster") else {
            throw fail("cluster \"\(clusterName)\" (of context \"\(contextName)\") not found in clusters")
        }
        let userName = string(context["user"]) ?? ""
        let user: Node?
        if userName.isEmpty {
            user = nil
        } else {
            guard let found = try namedEntry(in: "users", name: userName, field: "user") else {
                throw fail("user \"\(userName)\" (of context \"\(contextName)\") not found in users")
            }
            user = found
        }

        // Cluster.
        let clusterField = "clusters[\(clusterName)].cluster"
        guard let server = string(cluster["server"]), !server.isEmpty else {
            throw fail("\(clusterField).server is not set")
        }
        guard let url = URL(string: server), let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http",
              let host = url.host, !host.isEmpty else {
            throw fail("\(clusterField).server is not an http(s) URL: \(server)")
        }
        if cluster["proxy-url"] != nil {
            throw fail("\(clusterField).proxy-url is not supported by this client")
        }
        var configuration = KubernetesConfiguration(server: server)
        configuration.caPEM = try pem(
            node: cluster, fileKey: "certificate-authority", dataKey: "certificate-authority-data", field: clusterField
        )
        if let skip = cluster["insecure-skip-tls-verify"] {
            guard let value = skip.bool else {
                throw fail("\(clusterField).insecure-skip-tls-verify is not a boolean: \(skip.scalar?.string ?? "?")")
            }
            configuration.insecureSkipTLSVerify = value
        }
        if let name = string(cluster["tls-server-name"]), !name.isEmpty {
            configuration.tlsServerName = name
        }

        // User.
        if let user {
            let userField = "users[\(userName)].user"
            for unsupported in ["exec", "auth-provider", "username", "password"] where user[unsupported] != nil {
                let kind = unsupported == "exec" ? "exec credential plugins" :
                    unsupported == "auth-provider" ? "auth-provider plugins" : "basic authentication (username/password)"
                throw fail("\(userField).\(unsupported) is not supported by this client (\(kind)); use a token, tokenFile or client certificate")
            }
            if let token = string(user["token"]), !token.isEmpty {
                configuration.credentials = .bearerToken(token)
            } else if let tokenFile = string(user["tokenFile"]), !tokenFile.isEmpty {
                let path = resolve(tokenFile)
                let text = try KubernetesConfiguration.readConfigFile(path, what: "kubeconfig \(file): \(userField).tokenFile")
                if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                    throw fail("\(userField).tokenFile \(path) is empty")
                }
                configuration.credentials = .tokenFile(path)
            }
            configuration.clientCertificatePEM = try pem(
                node: user, fileKey: "client-certificate", dataKey: "client-certificate-data", field: userField
            )
            configuration.clientKeyPEM = try pem(node: user, fileKey: "client-key", dataKey: "client-key-data", field: userField)
            if (configuration.clientCertificatePEM == nil) != (configuration.clientKeyPEM == nil) {
                throw fail("\(userField) has a client certificate without a key or a key without a certificate")
            }
        }

        // Context.
        if let namespace = string(context["namespace"]), !namespace.isEmpty {
            configuration.namespace = namespace
        }
        return configuration
    }

    /// The `field` mapping of the entry named `name` in the top-level list `list`.
    func namedEntry(in list: String, name: String, field: String) throws -> Node? {
        guard let entries = root[list] else { return nil }
        guard let sequence = entries.sequence else { throw fail("\(list) is not a list") }
        for entry in sequence where string(entry["name"]) == name {
            guard let value = entry[field] else { throw fail("\(list)[\(name)] has no \(field)") }
            guard value.mapping != nil else { throw fail("\(list)[\(name)].\(field) is not a mapping") }
            return value
        }
        return nil
    }

    /// A PEM value given inline (base64 in `dataKey`, which wins) or as a file (`fileKey`).
    func pem(node: Node, fileKey: String, dataKey: String, field: String) throws -> String? {
        if let data = string(node[dataKey]), !data.isEmpty {
            let compact = data.filter { !$0.isWhitespace }
            guard let decoded = Data(base64Encoded: compact), let text = String(data: decoded, encoding: .utf8) else {
                throw fail("\(field).\(dataKey) is not valid base64")
            }
            try KubernetesConfiguration.checkPEM(text, what: "kubeconfig \(file): \(field).\(dataKey)")
            return text
        }
        if let path = string(node[fileKey]), !path.isEmpty {
            let resolved = resolve(path)
            let text = try KubernetesConfiguration.readConfigFile(resolved, what: "kubeconfig \(file): \(field).\(fileKey)")
            try KubernetesConfiguration.checkPEM(text, what: "kubeconfig \(file): \(field).\(fileKey) \(resolved)")
            return text
        }
        return nil
    }

    /// A path from the file, relative ones resolved against the kubeconfig's directory.
    func resolve(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        return (directory as NSString).appendingPathComponent(path)
    }

    /// The scalar's text, exactly as written (so a numeric-looking token stays a string).
    func string(_ node: Node?) -> String? {
        node?.scalar?.string
    }
}
