import ArgumentParser
import LeaderElection

/// Kube's `--leader-elect*` command-line flags, with their names and defaults
/// (`k8s.io/component-base/config/options`), plus a lock URL.
///
/// Embed it in a command and turn it into a service configuration:
///
/// ```swift
/// struct Controller: AsyncParsableCommand {
///     @OptionGroup(title: "Leader election") var leaderElection: LeaderElectionOptions
///     func run() async throws {
///         var configuration = leaderElection.serviceConfiguration
///         configuration.onLostLeadership = .recampaign
///         let service = LeaderElectionService(configuration: configuration, lockFactory: makeLock, logger: logger) { term in … }
///         try await ServiceGroup(services: [service], gracefulShutdownSignals: [.sigterm], logger: logger).run()
///     }
/// }
/// ```
///
/// ## Flags
/// - `--leader-elect[=true|false]` (default `true`). As with kube's boolean flags, `--leader-elect` alone
///   means `true` and `--leader-elect=false` turns election off. Unlike kube, a separate value
///   (`--leader-elect false`) is also read as the flag's value, so write `--leader-elect=true` (or put the
///   bare flag last) in front of a positional argument.
/// - `--leader-elect-lease-duration` (15s), `--leader-elect-renew-deadline` (10s),
///   `--leader-elect-retry-period` (2s): Go durations (`15s`, `1m30s`, `500ms`, `1.5s`).
/// - `--leader-elect-resource-lock` (`leases`; also `etcd`, `file`). `endpoints`, `configmaps`,
///   `endpointsleases` and `configmapsleases` are rejected: Kubernetes removed them.
/// - `--leader-elect-resource-name`, `--leader-elect-resource-namespace` (`kube-system`).
/// - `--leader-elect-lock-url`: `kubernetes://NAMESPACE/NAME`, `etcd://HOST:PORT[,…]/PREFIX/NAMESPACE/NAME`
///   or `file:///DIR/NAME`.
///
/// ## The lock URL and the resource flags
/// The URL, when given, names the lock completely: its scheme selects the backend (`kubernetes` →
/// `leases`), its last path component is the name, and the namespace is the URL's (the `kubernetes`
/// authority, the etcd path component before the name, the file's directory), falling back to
/// `--leader-elect-resource-namespace` where the URL has none. The resource flags may then be omitted;
/// if given, they must agree with the URL, or validation fails rather than guessing which one is meant.
/// Without a URL, `--leader-elect-resource-name` is required (when election is enabled), and the `file`
/// lock needs the URL (a directory cannot be defaulted).
///
/// Validation follows client-go's rules and wording (`leaseDuration must be greater than renewDeadline`,
/// …) and, as kube's, is skipped when `--leader-elect=false`.
public struct LeaderElectionOptions: ParsableArguments, Sendable {
    /// client-go's `JitterFactor`.
    public static let jitterFactor = 1.2

    @Option(
        name: .customLong("leader-elect"), defaultAsFlag: KubeBool(true), parsing: .next,
        help: ArgumentHelp(
            "Start a leader election client and gain leadership before executing the main loop. Enable this when running replicated components for high availability. (default: true; --leader-elect=false disables it)",
            valueName: "true|false"))
    var leaderElectValue: KubeBool?

    @Option(
        name: .customLong("leader-elect-lease-duration"),
        help: ArgumentHelp(
            "The duration that non-leader candidates will wait after observing a leadership renewal until attempting to acquire leadership of a led but unrenewed leader slot. This is effectively the maximum duration that a leader can be stopped before it is replaced by another candidate. This is only applicable if leader election is enabled. (default: 15s)",
            valueName: "duration"),
        transform: { try GoDuration(parsing: $0) })
    public var leaseDuration: GoDuration = GoDuration(.seconds(15))

    @Option(
        name: .customLong("leader-elect-renew-deadline"),
        help: ArgumentHelp(
            "The interval between attempts by the acting master to renew a leadership slot before it stops leading. This must be less than the lease duration. This is only applicable if leader election is enabled. (default: 10s)",
            valueName: "duration"),
        transform: { try GoDuration(parsing: $0) })
    public var renewDeadline: GoDuration = GoDuration(.seconds(10))

    @Option(
        name: .customLong("leader-elect-retry-period"),
        help: ArgumentHelp(
            "The duration the clients should wait between attempting acquisition and renewal of a leadership. This is only applicable if leader election is enabled. (default: 2s)",
            valueName: "duration"),
        transform: { try GoDuration(parsing: $0) })
    public var retryPeriod: GoDuration = GoDuration(.seconds(2))

    @Option(
        name: .customLong("leader-elect-resource-lock"),
        help: ArgumentHelp(
            "The type of resource object that is used for locking during leader election. Supported options are 'leases', 'etcd' and 'file'. (default: leases, or the lock URL's)",
            valueName: "leases|etcd|file"))
    var resourceLockValue: String?

    @Option(
        name: .customLong("leader-elect-resource-name"),
        help: ArgumentHelp(
            "The name of resource object that is used for locking during leader election. Required unless --leader-elect-lock-url names the lock.",
            valueName: "name"))
    var resourceNameValue: String?

    @Option(
        name: .customLong("leader-elect-resource-namespace"),
        help: ArgumentHelp(
            "The namespace of resource object that is used for locking during leader election. (default: kube-system, or the lock URL's)",
            valueName: "namespace"))
    var resourceNamespaceValue: String?

    @Option(
        name: .customLong("leader-elect-lock-url"),
        help: ArgumentHelp(
            "The lock as a URL: kubernetes://NAMESPACE/NAME, etcd://HOST:PORT[,HOST:PORT]/PREFIX/NAMESPACE/NAME or file:///DIR/NAME. When given it selects the backend, name and namespace; the resource flags, if also given, must agree.",
            valueName: "url"))
    public var lockURL: String?

    /// Creates options with kube's defaults (as if parsed from an empty command line).
    public init() {}

    // MARK: - Resolved values

    /// `--leader-elect`: whether to elect (default `true`).
    public var leaderElect: Bool {
        get { leaderElectValue?.value ?? true }
        set { leaderElectValue = KubeBool(newValue) }
    }

    /// `--leader-elect-resource-lock`, else the lock URL's backend, else `leases`; `nil` if the flag is
    /// not a supported lock type (``validate()`` reports it).
    public var resourceLock: LeaderElectionService.LockBackend? {
        if let resourceLockValue { return LeaderElectionService.LockBackend(rawValue: resourceLockValue) }
        if let url = try? parsedURL() { return url.backend }
        return .leases
    }

    /// `--leader-elect-resource-name`, else the lock URL's name.
    public var resourceName: String? {
        get { resourceNameValue ?? (try? parsedURL())?.name }
        set { resourceNameValue = newValue }
    }

    /// `--leader-elect-resource-namespace`, else the lock URL's namespace, else `kube-system`.
    public var resourceNamespace: String {
        get { resourceNamespaceValue ?? (try? parsedURL())?.namespace ?? "kube-system" }
        set { resourceNamespaceValue = newValue }
    }

    /// The service configuration: ``resourceName`` as its id, the namespace, backend, URL and timing;
    /// other settings keep ``LeaderElectionService/Configuration``'s defaults. Meaningful once
    /// ``validate()`` has passed (as it has after parsing).
    public var serviceConfiguration: LeaderElectionService.Configuration {
        LeaderElectionService.Configuration(
            id: resourceName ?? "",
            enabled: leaderElect,
            namespace: resourceNamespace,
            resourceLock: resourceLock ?? .leases,
            lockURL: lockURL,
            leaseDuration: leaseDuration.duration,
            renewDeadline: renewDeadline.duration,
            retryPeriod: retryPeriod.duration)
    }

    /// The core elector's configuration for these options (see ``serviceConfiguration``).
    public var electionConfiguration: LeaderElectionConfiguration {
        serviceConfiguration.electionConfiguration
    }

    // MARK: - Validation

    /// Checks the flags with client-go's rules and wording, in client-go's order, and the lock flags'
    /// consistency. Skipped, like kube's, when `--leader-elect=false`.
    ///
    /// - Throws: `ValidationError` with the message ArgumentParser prints.
    public func validate() throws {
        if let invalid = leaderElectValue, invalid.value == nil {
            // ArgumentParser would otherwise read an unparsable value as the bare flag (true).
            throw ValidationError("invalid argument \"\(invalid.text)\" for \"--leader-elect\" flag: strconv.ParseBool: parsing \"\(invalid.text)\": invalid syntax (write --leader-elect=true or --leader-elect=false)")
        }
        guard leaderElect else { return }
        let lease = leaseDuration.duration, renew = renewDeadline.duration, retry = retryPeriod.duration
        func flags(_ pairs: (String, GoDuration)...) -> String {
            "(" + pairs.map { "--leader-elect-\($0.0)=\($0.1)" }.joined(separator: ", ") + ")"
        }
        if lease <= renew {
            throw ValidationError("leaseDuration must be greater than renewDeadline \(flags(("lease-duration", leaseDuration), ("renew-deadline", renewDeadline)))")
        }
        if renew <= retry * Self.jitterFactor {
            throw ValidationError("renewDeadline must be greater than retryPeriod*JitterFactor(\(Self.jitterFactor)) \(flags(("renew-deadline", renewDeadline), ("retry-period", retryPeriod)))")
        }
        if lease <= .zero { throw ValidationError("leaseDuration must be greater than zero \(flags(("lease-duration", leaseDuration)))") }
        if renew <= .zero { throw ValidationError("renewDeadline must be greater than zero \(flags(("renew-deadline", renewDeadline)))") }
        if retry <= .zero { throw ValidationError("retryPeriod must be greater than zero \(flags(("retry-period", retryPeriod)))") }
        if lease < .seconds(1) {
            // The record stores whole seconds (leaseDurationSeconds); the Kubernetes API rejects 0.
            throw ValidationError("leaseDuration must be at least 1s: the lease stores whole seconds \(flags(("lease-duration", leaseDuration)))")
        }

        if let value = resourceLockValue, LeaderElectionService.LockBackend(rawValue: value) == nil {
            let supported = LeaderElectionService.LockBackend.allCases.map(\.rawValue).joined(separator: ", ")
            if ["endpoints", "configmaps", "endpointsleases", "configmapsleases"].contains(value) {
                throw ValidationError("--leader-elect-resource-lock=\(value): \(value) lock is removed, migrate to leases (Kubernetes removed the \(value) lock type; supported: \(supported))")
            }
            throw ValidationError("--leader-elect-resource-lock=\(value): unknown lock type \"\(value)\" (supported: \(supported))")
        }

        if let lockURL {
            let url: ParsedLockURL
            do { url = try parsedURL()! } catch { throw ValidationError("\(error)") }
            if let value = resourceLockValue, value != url.backend.rawValue {
                throw ValidationError("--leader-elect-resource-lock=\(value) conflicts with --leader-elect-lock-url \(lockURL), which names a \(url.backend) lock; omit one of them")
            }
            if let name = resourceNameValue, name != url.name {
                throw ValidationError("--leader-elect-resource-name=\(name) conflicts with --leader-elect-lock-url \(lockURL), which names \"\(url.name)\"; omit one of them")
            }
            if let namespace = resourceNamespaceValue, let urlNamespace = url.namespace, namespace != urlNamespace {
                throw ValidationError("--leader-elect-resource-namespace=\(namespace) conflicts with --leader-elect-lock-url \(lockURL), whose namespace is \"\(urlNamespace)\"; omit one of them")
            }
        } else {
            if resourceLockValue == LeaderElectionService.LockBackend.file.rawValue {
                throw ValidationError("--leader-elect-resource-lock=file needs --leader-elect-lock-url file:///DIR/NAME (the directory has no default)")
            }
            guard let name = resourceNameValue, !name.isEmpty else {
                throw ValidationError("--leader-elect-resource-name is required when leader election is enabled (or name the lock with --leader-elect-lock-url)")
            }
        }
        if let namespace = resourceNamespaceValue, namespace.isEmpty {
            throw ValidationError("--leader-elect-resource-namespace must not be empty")
        }
    }

    private func parsedURL() throws -> ParsedLockURL? {
        guard let lockURL else { return nil }
        return try ParsedLockURL(parsing: lockURL)
    }
}

/// A boolean in Go's `strconv.ParseBool` spellings, as pflag's boolean flags take them. Any text is
/// accepted here and an invalid one (``value`` `nil`) is reported by ``LeaderElectionOptions/validate()``,
/// because ArgumentParser reads a `defaultAsFlag` option whose value does not parse as the bare flag.
struct KubeBool: ExpressibleByArgument, Sendable, Hashable, CustomStringConvertible {
    var value: Bool?
    var text: String
    init(_ value: Bool) {
        self.value = value
        self.text = value ? "true" : "false"
    }
    init?(argument: String) {
        text = argument
        switch argument {
        case "1", "t", "T", "true", "TRUE", "True": value = true
        case "0", "f", "F", "false", "FALSE", "False": value = false
        default: value = nil
        }
    }
    static var allValueStrings: [String] { ["true", "false"] }
    var description: String { text }
}

/// What a `--leader-elect-lock-url` names.
struct ParsedLockURL: Sendable, Hashable {
    var backend: LeaderElectionService.LockBackend
    /// The URL's namespace, or `nil` when it has none.
    var namespace: String?
    var name: String

    init(parsing text: String) throws {
        func fail(_ why: String) -> LeaderElectionServiceError {
            .invalidConfiguration("--leader-elect-lock-url \(text): \(why)")
        }
        guard let schemeEnd = text.range(of: "://") else {
            throw fail("expected a URL such as kubernetes://NAMESPACE/NAME, etcd://HOST:2379/PREFIX/NAMESPACE/NAME or file:///DIR/NAME")
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        let rest = text[schemeEnd.upperBound...]
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = String(rest[..<slash])
        let path = String(rest[slash...])
        let components = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        guard let last = components.last, !last.isEmpty, !components.dropLast().contains("") || scheme == "file" else {
            throw fail("the path must name a lock (no empty components, no trailing slash)")
        }
        switch scheme {
        case "kubernetes", "k8s":
            guard components.count == 1 else { throw fail("expected kubernetes://NAMESPACE/NAME (one path component, the Lease name)") }
            backend = .leases
            namespace = authority.isEmpty ? nil : authority
            name = last
        case "etcd", "etcds":
            guard !authority.isEmpty else { throw fail("expected etcd://HOST:PORT[,HOST:PORT…]/PREFIX/NAMESPACE/NAME (the endpoints are missing)") }
            backend = .etcd
            namespace = components.count >= 2 ? components[components.count - 2] : nil
            name = last
        case "file":
            guard authority.isEmpty || authority == "localhost" else {
                throw fail("file URLs name a path on this host: write file:///DIR/NAME")
            }
            guard components.count >= 2 else { throw fail("expected file:///DIR/NAME (a directory and a lock name)") }
            backend = .file
            namespace = "/" + components.dropLast().filter { !$0.isEmpty }.joined(separator: "/")
            name = last
        default:
            throw fail("unsupported scheme \"\(scheme)\" (supported: kubernetes, etcd, file)")
        }
    }
}
