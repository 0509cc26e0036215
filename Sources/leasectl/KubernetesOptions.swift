import ArgumentParser
import LeaderElectionService
import Foundation
import Kubernetes

/// The Kubernetes connection options of `elect`, `get` and `release`: which API server, credentials and
/// namespace `kubernetes://` locks use.
///
/// The client configuration is found as `kubectl` and client-go find it: `--kubeconfig`, else the pod's
/// service account when running in a pod (`KUBERNETES_SERVICE_HOST` set and
/// `/var/run/secrets/kubernetes.io/serviceaccount` present) and neither `--kubeconfig` nor `--context` was
/// given, else the first file of `$KUBECONFIG`, else `~/.kube/config`
/// (``KubernetesConfiguration/automatic(environment:serviceAccountDirectory:kubeconfigPath:context:)``).
struct KubernetesOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "kubeconfig file for kubernetes:// locks. (default: in-cluster in a pod, else $KUBECONFIG, else ~/.kube/config)",
        valueName: "path"))
    var kubeconfig: String?

    @Option(help: ArgumentHelp("kubeconfig context to use. (default: the kubeconfig's current-context)", valueName: "name"))
    var context: String?

    @Option(name: .shortAndLong, help: ArgumentHelp(
        "Namespace of kubernetes:// URLs that name none (kubernetes:///NAME, kubernetes://). (default: the context's namespace)",
        valueName: "namespace"))
    var namespace: String?

    @Option(help: ArgumentHelp(
        "Deadline of each Kubernetes API request. (default: max(1s, renew-deadline/2) for elect, 5s otherwise)",
        valueName: "duration"))
    var requestTimeout: GoDuration?

    init() {}

    func validate() throws {
        if let kubeconfig, kubeconfig.isEmpty { throw ValidationError("--kubeconfig must not be empty") }
        if let context, context.isEmpty { throw ValidationError("--context must not be empty") }
        if let namespace, let problem = KubernetesNames.namespaceProblem(namespace) {
            throw ValidationError("--namespace \(namespace): \(problem)")
        }
        if let requestTimeout, requestTimeout.duration <= .zero {
            throw ValidationError("--request-timeout must be positive")
        }
    }

    /// The connection settings these options describe; nothing is read until a `kubernetes://` lock is used.
    ///
    /// - Parameters:
    ///   - defaultTimeout: the request timeout when `--request-timeout` is not given.
    ///   - environment: where `KUBECONFIG`, `HOME` and the in-cluster variables are looked up.
    ///   - serviceAccountDirectory: where a pod's service-account files are mounted.
    func settings(
        defaultTimeout: Duration,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        serviceAccountDirectory: String = KubernetesConfiguration.defaultServiceAccountDirectory
    ) -> KubernetesConnectionSettings {
        KubernetesConnectionSettings(
            kubeconfig: kubeconfig, context: context, namespace: namespace,
            requestTimeout: requestTimeout?.duration ?? defaultTimeout,
            environment: environment, serviceAccountDirectory: serviceAccountDirectory)
    }

    /// The request timeout of `elect` when `--request-timeout` is not given: client-go's rule, half the renew
    /// deadline but at least a second, so that a hung request cannot use up the whole renew deadline.
    static func electTimeout(renewDeadline: Duration) -> Duration {
        KubernetesConfiguration.requestTimeout(forRenewDeadline: renewDeadline)
    }
}

/// How `leasectl` connects to the Kubernetes API server, from the `--kubeconfig`, `--context`,
/// `--namespace` and `--request-timeout` options (see ``KubernetesOptions``).
struct KubernetesConnectionSettings: Sendable {
    /// `--kubeconfig`.
    var kubeconfig: String?
    /// `--context`.
    var context: String?
    /// `--namespace`: the namespace of URLs that name none, instead of the context's.
    var namespace: String?
    /// The deadline of each request.
    var requestTimeout: Duration = .seconds(5)
    /// The process environment (`KUBECONFIG`, `HOME`, `KUBERNETES_SERVICE_HOST`, …).
    var environment: [String: String] = ProcessInfo.processInfo.environment
    /// Where a pod's service-account token, CA and namespace are mounted.
    var serviceAccountDirectory: String = KubernetesConfiguration.defaultServiceAccountDirectory

    /// A client configuration and where it came from, for messages.
    struct Loaded: Sendable {
        var configuration: KubernetesConfiguration
        /// `kubeconfig /path (context c)` or `the pod's service account (in-cluster)`.
        var source: String
        /// `true` for the in-cluster configuration.
        var isInCluster: Bool
    }

    /// `true` when the in-cluster configuration is used: running in a pod, and neither `--kubeconfig` nor
    /// `--context` was given.
    var usesInCluster: Bool {
        guard kubeconfig == nil, context == nil,
              let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty else { return false }
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: serviceAccountDirectory, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    /// The kubeconfig file read when the in-cluster configuration is not used: `--kubeconfig`, else the first
    /// entry of `$KUBECONFIG`, else `~/.kube/config`.
    var kubeconfigPath: String {
        if let kubeconfig, !kubeconfig.isEmpty { return kubeconfig }
        if let list = environment["KUBECONFIG"], let first = list.split(separator: ":").first { return String(first) }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return (home as NSString).appendingPathComponent(".kube/config")
    }

    /// Reads the client configuration (kubeconfig or in-cluster), applying `--namespace` and the timeout.
    ///
    /// - Throws: ``LeaseCtlError`` naming the file or variable at fault, with what to pass instead.
    func load() throws -> Loaded {
        let inCluster = usesInCluster
        var configuration: KubernetesConfiguration
        do {
            configuration = try KubernetesConfiguration.automatic(
                environment: environment, serviceAccountDirectory: serviceAccountDirectory,
                kubeconfigPath: kubeconfig, context: context)
        } catch let error as KubernetesError {
            let hint = inCluster
                ? "running in a pod, leasectl uses its service account; pass --kubeconfig to use a kubeconfig instead"
                : kubeconfig == nil
                    ? "pass --kubeconfig PATH or set $KUBECONFIG to name a kubeconfig file, and --context to pick a context"
                    : "check --kubeconfig and --context"
            throw LeaseCtlError("cannot load the Kubernetes client configuration: \(error.message) (\(hint))")
        }
        if let namespace { configuration.namespace = namespace }
        configuration.requestTimeout = requestTimeout
        let source: String
        if inCluster {
            source = "the pod's service account (in-cluster)"
        } else {
            source = "kubeconfig \(kubeconfigPath)" + (context.map { " (context \($0))" } ?? "")
        }
        return Loaded(configuration: configuration, source: source, isInCluster: inCluster)
    }
}

/// Checks of Kubernetes object names, so that a malformed URL is reported before any request.
enum KubernetesNames {
    /// Why `name` is not a namespace (an RFC 1123 DNS label), or `nil` when it is one.
    static func namespaceProblem(_ name: String) -> String? {
        if name.isEmpty { return "a namespace must not be empty" }
        if name.utf8.count > 63 { return "a namespace has at most 63 characters" }
        guard name.utf8.allSatisfy({ isLowerAlphanumeric($0) || $0 == UInt8(ascii: "-") }),
              isLowerAlphanumeric(name.utf8.first!), isLowerAlphanumeric(name.utf8.last!) else {
            return "a namespace consists of lower-case letters, digits and '-', starting and ending with a letter or digit"
        }
        return nil
    }

    /// Why `name` is not a Lease name (an RFC 1123 DNS subdomain), or `nil` when it is one.
    static func leaseNameProblem(_ name: String) -> String? {
        if name.isEmpty { return "a Lease name must not be empty" }
        if name.utf8.count > 253 { return "a Lease name has at most 253 characters" }
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            guard let first = label.utf8.first, let last = label.utf8.last, isLowerAlphanumeric(first), isLowerAlphanumeric(last),
                  label.utf8.allSatisfy({ isLowerAlphanumeric($0) || $0 == UInt8(ascii: "-") }) else {
                return "a Lease name consists of lower-case letters, digits, '-' and '.', each '.'-separated part starting and ending with a letter or digit"
            }
        }
        return nil
    }

    private static func isLowerAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }
}
