import ArgumentParser
import Foundation
import Kubernetes
import KubernetesLock
import LeaderElection
import Testing
@testable import leasectl

/// `kubernetes://` URLs, the Kubernetes connection options, Lease formatting and error messages (no API
/// server needed).
@Suite struct KubernetesBackendTests {
    // MARK: URLs

    @Test(arguments: [
        ("kubernetes://team-a/cron", KubernetesLeaseAddress.Scope.namespace("team-a"), "cron" as String?),
        ("kubernetes://team-a/", .namespace("team-a"), nil),
        ("kubernetes://team-a", .namespace("team-a"), nil),
        ("kubernetes:///cron", .defaultNamespace, "cron"),
        ("kubernetes:///", .defaultNamespace, nil),
        ("kubernetes://", .defaultNamespace, nil),
        ("kubernetes://*/", .allNamespaces, nil),
        ("kubernetes://*", .allNamespaces, nil),
        ("KUBERNETES://kube-node-lease/node-1.example.com", .namespace("kube-node-lease"), "node-1.example.com"),
    ])
    func urlsAddressALeaseANamespaceOrEverything(text: String, scope: KubernetesLeaseAddress.Scope, name: String?) throws {
        let url = try LockURL(parsing: text)
        #expect(url.scheme == "kubernetes")
        let address = try KubernetesLeaseAddress(url)
        #expect(address.scope == scope)
        #expect(address.name == name)
        #expect(address.isCollection == (name == nil))
        #expect(url.isCollection == (name == nil), "collections end in a slash once parsed")
    }

    @Test(arguments: [
        ("kubernetes://10.0.0.1:6443/default/x", "names a namespace, not a server"),
        ("kubernetes://admin@default/x", "names a namespace, not a server"),
        ("kubernetes://Default/x", "does not name a namespace"),
        ("kubernetes://-ns/x", "does not name a namespace"),
        ("kubernetes://default/My_Lease", "does not name a Lease"),
        ("kubernetes://default/a/b", "expected kubernetes://NAMESPACE/NAME"),
        ("kubernetes://default/x/", "expected kubernetes://NAMESPACE/NAME"),
        ("kubernetes://*/x", "cannot be named across all namespaces"),
    ])
    func malformedURLsAreRejectedBeforeAnyRequest(text: String, message: String) throws {
        let error = #expect(throws: LeaseCtlError.self) { try KubernetesLeaseAddress(LockURL(parsing: text)) }
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "no error")")
    }

    @Test func namesFollowKubernetesRules() {
        #expect(KubernetesNames.namespaceProblem("kube-node-lease") == nil)
        #expect(KubernetesNames.namespaceProblem(String(repeating: "a", count: 64)) != nil)
        #expect(KubernetesNames.namespaceProblem("a.b") != nil, "a namespace is a DNS label: no dots")
        #expect(KubernetesNames.leaseNameProblem("ip-10-0-0-1.eu-west-1.compute.internal") == nil)
        #expect(KubernetesNames.leaseNameProblem("a..b") != nil)
        #expect(KubernetesNames.leaseNameProblem("x-") != nil)
    }

    @Test func theRegistryServesKubernetes() throws {
        #expect(LockRegistry.standard.schemes == ["etcd", "file", "kubernetes"])
        #expect(LockRegistry.plannedSchemes.isEmpty)
        #expect(try LockRegistry.standard.backend(for: LockURL(parsing: "kubernetes://default/x")) is KubernetesLockBackend)
        #expect(LockRegistry.standard.listingBackend(for: try LockURL(parsing: "kubernetes://default/")) != nil)
        #expect(LockRegistry.standard.listingBackend(for: try LockURL(parsing: "etcd://h:1/x/")) == nil)
    }

    @Test func urlsWithoutNamespaceUseTheContextsOrTheNamespaceOption() async throws {
        let directory = try LeasectlHarness.temporaryDirectory()
        defer { LeasectlHarness.cleanUp(directory) }
        let kubeconfig = try Self.writeKubeconfig(in: directory)

        try await Self.withBackend(.init(kubeconfig: kubeconfig, environment: [:])) { backend in
            #expect(try backend.resolve(LockURL(parsing: "kubernetes:///cron")).description == "kubernetes://team-a/cron")
            #expect(try backend.resolve(LockURL(parsing: "kubernetes://")).description == "kubernetes://team-a/")
            #expect(try backend.resolve(LockURL(parsing: "kubernetes://b/x")).description == "kubernetes://b/x")
            #expect(try backend.resolve(LockURL(parsing: "kubernetes://*")).description == "kubernetes://*/")
            let lock = try backend.makeLock(at: LockURL(parsing: "kubernetes:///cron"), identity: "me", createDirectory: false)
            #expect("\(lock)" == "kubernetes://team-a/cron")
            let kubernetesLock = try #require((lock as? KubernetesURLLock)?.base)
            #expect(kubernetesLock.configuration.namespace == "team-a" && kubernetesLock.configuration.name == "cron")
            #expect(kubernetesLock.configuration.eventComponent == "leasectl")
            let collection = #expect(throws: LeaseCtlError.self) {
                try backend.makeLock(at: LockURL(parsing: "kubernetes://team-a/"), identity: "me", createDirectory: false)
            }
            #expect(collection?.message.contains("name one, such as kubernetes://team-a/NAME") == true, "\(collection?.message ?? "")")
            #expect(backend.pool.loaded?.source == "kubeconfig \(kubeconfig)")
            #expect(backend.pool.loaded?.configuration.server == "https://127.0.0.1:6443")
        }

        // --namespace replaces the context's, and conflicts with another namespace in the URL.
        let options = try KubernetesOptions.parse(["--kubeconfig", kubeconfig, "-n", "team-b", "--context", "plain"])
        try await Self.withBackend(options.settings(defaultTimeout: .seconds(5), environment: [:])) { overridden in
            #expect(try overridden.resolve(LockURL(parsing: "kubernetes:///cron")).description == "kubernetes://team-b/cron")
            #expect(overridden.pool.loaded == nil, "-n needs no configuration to resolve a URL")
            let conflict = #expect(throws: LeaseCtlError.self) { try overridden.resolve(LockURL(parsing: "kubernetes://team-a/cron")) }
            #expect(conflict?.message.contains("names namespace team-a, but --namespace says team-b") == true)
            _ = try overridden.makeLock(at: LockURL(parsing: "kubernetes:///cron"), identity: "me", createDirectory: false)
            #expect(overridden.pool.loaded?.configuration.namespace == "team-b")
            #expect(overridden.pool.loaded?.source == "kubeconfig \(kubeconfig) (context plain)")
        }

        // The context without a namespace: `default`.
        try await Self.withBackend(.init(kubeconfig: kubeconfig, context: "plain", environment: [:])) { plain in
            let resolved = try plain.resolve(LockURL(parsing: "kubernetes:///x"))
            #expect(resolved.description == "kubernetes://default/x")
        }
    }

    // MARK: Options

    @Test func configurationComesFromTheKubeconfigOptionOrTheEnvironment() throws {
        let directory = try LeasectlHarness.temporaryDirectory()
        defer { LeasectlHarness.cleanUp(directory) }
        let kubeconfig = try Self.writeKubeconfig(in: directory)

        let fromVariable = try KubernetesOptions.parse([]).settings(defaultTimeout: .seconds(5), environment: ["KUBECONFIG": kubeconfig + ":/other"])
        #expect(fromVariable.kubeconfigPath == kubeconfig)
        let loaded = try fromVariable.load()
        #expect(loaded.configuration.namespace == "team-a" && !loaded.isInCluster)
        #expect(loaded.configuration.requestTimeout == .seconds(5))
        #expect(loaded.configuration.credentials == .bearerToken("t0ken"))

        let fromHome = KubernetesConnectionSettings(environment: ["HOME": directory])
        #expect(fromHome.kubeconfigPath == "\(directory)/.kube/config")
        let missing = #expect(throws: LeaseCtlError.self) { try fromHome.load() }
        #expect(missing?.message.contains("cannot load the Kubernetes client configuration") == true)
        #expect(missing?.message.contains("\(directory)/.kube/config") == true)
        #expect(missing?.message.contains("pass --kubeconfig PATH or set $KUBECONFIG") == true, "\(missing?.message ?? "")")

        let unknownContext = #expect(throws: LeaseCtlError.self) {
            try KubernetesOptions.parse(["--kubeconfig", kubeconfig, "--context", "nope"]).settings(defaultTimeout: .seconds(5)).load()
        }
        #expect(unknownContext?.message.contains("context \"nope\" not found") == true, "\(unknownContext?.message ?? "")")
    }

    @Test func inAPodTheServiceAccountIsUsedUnlessAKubeconfigIsNamed() throws {
        let directory = try LeasectlHarness.temporaryDirectory()
        defer { LeasectlHarness.cleanUp(directory) }
        let kubeconfig = try Self.writeKubeconfig(in: directory)
        let serviceAccount = "\(directory)/serviceaccount"
        try FileManager.default.createDirectory(atPath: serviceAccount, withIntermediateDirectories: true)
        try "pod-token\n".write(toFile: "\(serviceAccount)/token", atomically: true, encoding: .utf8)
        try "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".write(toFile: "\(serviceAccount)/ca.crt", atomically: true, encoding: .utf8)
        try "batch\n".write(toFile: "\(serviceAccount)/namespace", atomically: true, encoding: .utf8)
        let pod = ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "KUBECONFIG": kubeconfig]

        let inCluster = try KubernetesOptions.parse([]).settings(defaultTimeout: .seconds(5), environment: pod, serviceAccountDirectory: serviceAccount)
        #expect(inCluster.usesInCluster)
        let loaded = try inCluster.load()
        #expect(loaded.isInCluster && loaded.source == "the pod's service account (in-cluster)")
        #expect(loaded.configuration.server == "https://10.96.0.1:443")
        #expect(loaded.configuration.namespace == "batch")
        #expect(loaded.configuration.credentials == .tokenFile("\(serviceAccount)/token"))

        let namespaced = try KubernetesOptions.parse(["-n", "other"]).settings(defaultTimeout: .seconds(5), environment: pod, serviceAccountDirectory: serviceAccount)
        #expect(try namespaced.load().configuration.namespace == "other")

        let explicit = try KubernetesOptions.parse(["--kubeconfig", kubeconfig]).settings(defaultTimeout: .seconds(5), environment: pod, serviceAccountDirectory: serviceAccount)
        #expect(!explicit.usesInCluster)
        #expect(try explicit.load().configuration.server == "https://127.0.0.1:6443")
        let context = try KubernetesOptions.parse(["--context", "plain"]).settings(defaultTimeout: .seconds(5), environment: pod, serviceAccountDirectory: serviceAccount)
        #expect(!context.usesInCluster, "--context picks a kubeconfig context")

        let notAPod = try KubernetesOptions.parse([]).settings(defaultTimeout: .seconds(5), environment: ["KUBECONFIG": kubeconfig], serviceAccountDirectory: "\(directory)/absent")
        #expect(!notAPod.usesInCluster)
    }

    @Test func requestTimeoutIsHalfTheRenewDeadlineForElectAndFiveSecondsOtherwise() throws {
        #expect(KubernetesOptions.electTimeout(renewDeadline: .seconds(10)) == .seconds(5))
        #expect(KubernetesOptions.electTimeout(renewDeadline: .milliseconds(1500)) == .seconds(1))
        #expect(try KubernetesOptions.parse([]).settings(defaultTimeout: .seconds(5)).requestTimeout == .seconds(5))
        #expect(try KubernetesOptions.parse(["--request-timeout", "750ms"]).settings(defaultTimeout: .seconds(5)).requestTimeout == .milliseconds(750))
        #expect(throws: (any Error).self) { try KubernetesOptions.parse(["--request-timeout", "0s"]) }
        #expect(throws: (any Error).self) { try KubernetesOptions.parse(["-n", "Not_A_Namespace"]) }
        #expect(throws: (any Error).self) { try KubernetesOptions.parse(["--kubeconfig", ""]) }
        // The commands include the options.
        let elect = try ElectCommand.parse(["--lock", "kubernetes:///x", "--kubeconfig", "/k", "--context", "c", "-n", "ns"])
        #expect(elect.kubernetes.kubeconfig == "/k" && elect.kubernetes.context == "c" && elect.kubernetes.namespace == "ns")
        #expect(try ReleaseCommand.parse(["--namespace", "ns", "kubernetes:///x"]).kubernetes.namespace == "ns")
        #expect(try GetCommand.parse(["-A"]).allNamespaces)
    }

    @Test func electRejectsLeaseDurationsALeaseCannotStore() throws {
        for (duration, shown) in [("1500ms", "1.5s"), ("500ms", "500ms")] {
            let error = #expect(throws: (any Error).self) {
                try ElectCommand.parse(["--lock", "kubernetes://default/x", "--lease-duration", duration, "--renew-deadline", "400ms", "--retry-period", "100ms"])
            }
            let message = ElectCommand.message(for: error!)
            #expect(message.contains("--lease-duration \(shown) cannot be used with kubernetes://default/x"), "\(message)")
            #expect(message.contains("whole seconds"), "\(message)")
        }
        _ = try ElectCommand.parse(["--lock", "kubernetes://default/x", "--lease-duration", "2s", "--renew-deadline", "1500ms", "--retry-period", "300ms"])
        _ = try ElectCommand.parse(["--lock", "etcd://h:1/x", "--lease-duration", "1500ms", "--renew-deadline", "1s", "--retry-period", "300ms"])
    }

    // MARK: get

    @Test func getMapsNamespaceAndAllNamespacesFlagsOntoURLs() throws {
        let registry = LockRegistry.standard(etcd: EtcdConnectionSettings(), kubernetes: KubernetesConnectionSettings(namespace: "kube-node-lease"))
        let byNamespace = try GetCommand.parse(["-n", "kube-node-lease"])
        #expect(try byNamespace.resolveTargets(registry).map(\.url.description) == ["kubernetes://kube-node-lease/"])
        let named = try GetCommand.parse(["-n", "kube-node-lease", "kubernetes:///node-1", "kubernetes://"])
        #expect(try named.resolveTargets(registry).map(\.url.description) == ["kubernetes://kube-node-lease/node-1", "kubernetes://kube-node-lease/"])

        let all = try GetCommand.parse(["-A"])
        #expect(try all.resolveTargets(.standard).map(\.url.description) == ["kubernetes://*/"])
        let allExplicit = try GetCommand.parse(["--all-namespaces", "kubernetes://", "kubernetes:///"])
        #expect(try allExplicit.resolveTargets(.standard).map(\.url.description) == ["kubernetes://*/", "kubernetes://*/"])

        #expect(LeaseGetter(targets: [.init(url: try LockURL(parsing: "kubernetes://*/"))], format: .table).showsNamespace)
        #expect(!LeaseGetter(targets: [.init(url: try LockURL(parsing: "kubernetes://a/"))], format: .table).showsNamespace)
        #expect(LeaseGetter(targets: [.init(url: try LockURL(parsing: "kubernetes://a/")), .init(url: try LockURL(parsing: "kubernetes://b/x"))], format: .table).showsNamespace)

        for arguments in [["-A", "-n", "x"], ["-A", "kubernetes://ns/"], ["-A", "kubernetes:///name"], ["-A", "file:///tmp/"]] {
            #expect(throws: (any Error).self, "\(arguments)") { try GetCommand.parse(arguments) }
        }
    }

    /// A kubelet's node heartbeat: holder = node name, 40 s, renewed, no acquireTime and no leaseTransitions.
    @Test func nodeHeartbeatLeasesShowTheirAgeSinceCreation() throws {
        let now = MicroTime(microsecondsSinceEpoch: 1_750_000_000_000_000)
        let created = now.advanced(by: .seconds(-5 * 86_400 - 100))
        let lease = Lease(
            metadata: ObjectMeta(
                name: "node-1", namespace: "kube-node-lease", uid: "u1", resourceVersion: "812",
                creationTimestamp: "2025-06-10T09:05:00Z",
                ownerReferences: [OwnerReference(apiVersion: "v1", kind: "Node", name: "node-1", uid: "n1")]),
            spec: LeaseSpec(holderIdentity: "node-1", leaseDurationSeconds: 40, renewTime: now.advanced(by: .seconds(-3))))
        var snapshot = LeaseSnapshot(lease: lease, readAt: now)
        #expect(snapshot.url.description == "kubernetes://kube-node-lease/node-1")
        #expect(snapshot.name == "node-1" && snapshot.namespace == "kube-node-lease")
        #expect(snapshot.created == MicroTime(rfc3339: "2025-06-10T09:05:00Z"))
        snapshot.created = created
        #expect(snapshot.cells == ["node-1", "node-1", "5d", "0", "37s"])
        #expect(snapshot.cells(showingNamespace: true) == ["kube-node-lease", "node-1", "node-1", "5d", "0", "37s"])
        #expect(LeaseSnapshot.columns(showingNamespace: true) == ["NAMESPACE", "NAME", "HOLDER", "AGE", "TRANSITIONS", "EXPIRES IN"])

        let json = snapshot.structured.json()
        #expect(json.hasPrefix(#"{"name":"node-1","namespace":"kube-node-lease","lock":"kubernetes://kube-node-lease/node-1","creationTimestamp":""#), "\(json)")
        #expect(json.contains(#""version":"812","holderIdentity":"node-1","leaseDurationSeconds":40,"renewTime":"#), "\(json)")
        #expect(!json.contains("acquireTime"), "\(json)")
        #expect(json.contains(#""leaderTransitions":0"#))

        // Without a creation time either, AGE is unknown; a lapsed heartbeat is expired.
        var bare = lease
        bare.metadata.creationTimestamp = nil
        bare.spec?.renewTime = now.advanced(by: .seconds(-41))
        #expect(LeaseSnapshot(lease: bare, readAt: now).cells == ["node-1", "node-1", "<unknown>", "0", "expired"])
        // No renewTime at all: nothing to estimate from.
        bare.spec?.renewTime = nil
        #expect(LeaseSnapshot(lease: bare, readAt: now).cells == ["node-1", "node-1", "<unknown>", "0", "<unknown>"])
    }

    @Test func leasesTheElectorCannotHonourShowAsCorrupt() {
        let lease = Lease(metadata: ObjectMeta(name: "x", namespace: "ns", resourceVersion: "5"), spec: LeaseSpec(holderIdentity: "someone"))
        let snapshot = LeaseSnapshot(lease: lease, readAt: .now())
        #expect(snapshot.cells == ["x", "<corrupt>", "<unknown>", "<unknown>", "<unknown>"])
        #expect(snapshot.fingerprint == "corrupt:5")
        let empty = LeaseSnapshot(lease: Lease(metadata: ObjectMeta(name: "e", namespace: "ns", resourceVersion: "6")), readAt: .now())
        #expect(empty.cells == ["e", "<none>", "<unknown>", "0", "<none>"], "a Lease without spec is a free lock")
    }

    // MARK: Errors

    @Test func errorsNameTheirLikelyCause() async throws {
        let directory = try LeasectlHarness.temporaryDirectory()
        defer { LeasectlHarness.cleanUp(directory) }
        let kubeconfig = try Self.writeKubeconfig(in: directory)
        try await Self.withBackend(.init(kubeconfig: kubeconfig, environment: [:])) { backend in
            _ = try backend.resolve(LockURL(parsing: "kubernetes:///x"))   // loads the configuration
            let url = try LockURL(parsing: "kubernetes://team-a/x")
            let path = "/apis/coordination.k8s.io/v1/namespaces/team-a/leases/x"

            let unauthorized = backend.describe(
                KubernetesError(status: Status(status: "Failure", message: "Unauthorized", reason: "Unauthorized", code: 401), httpStatus: 401), for: url)
            #expect(unauthorized.hasPrefix("the Kubernetes API server at https://127.0.0.1:6443 rejected the credentials (HTTP 401): Unauthorized"), "\(unauthorized)")
            #expect(unauthorized.contains("token or client certificate from kubeconfig \(kubeconfig)"), "\(unauthorized)")

            let forbiddenMessage = #"leases.coordination.k8s.io "x" is forbidden: User "system:serviceaccount:team-a:app" cannot get resource "leases""#
            let forbidden = backend.describe(
                KubernetesError(code: .forbidden, message: "GET \(path): \(forbiddenMessage)", httpStatus: 403), for: url)
            #expect(forbidden.contains("forbids the request (HTTP 403): \(forbiddenMessage)"), "\(forbidden)")
            #expect(forbidden.contains("needs get, create and update on leases.coordination.k8s.io in namespace team-a"), "\(forbidden)")
            #expect(forbidden.contains("create on events"), "\(forbidden)")
            // Through KubernetesLock, which reports 401 and 403 with one code.
            let lockForbidden = backend.describe(LeaderElectionError.unauthorized("leases/team-a/x: GET \(path): \(forbiddenMessage)"), for: url)
            #expect(lockForbidden == forbidden, "\(lockForbidden)")
            let lockUnauthorized = backend.describe(LeaderElectionError.unauthorized("leases/team-a/x: GET \(path): Unauthorized"), for: url)
            #expect(lockUnauthorized.contains("rejected the credentials (HTTP 401): Unauthorized ("), "\(lockUnauthorized)")
            let allForbidden = backend.describe(KubernetesError(code: .forbidden, message: "forbidden", httpStatus: 403), for: try LockURL(parsing: "kubernetes://*/"))
            #expect(allForbidden.contains("in all namespaces (a ClusterRole)"), "\(allForbidden)")

            let refused = backend.describe(
                LeaderElectionError.unavailable("leases/team-a/x: KubernetesError(unavailable): GET \(path): cannot reach https://127.0.0.1:6443: connection refused"),
                for: url)
            #expect(refused == "cannot reach the Kubernetes API server at https://127.0.0.1:6443: cannot reach https://127.0.0.1:6443: connection refused (is the API server running there? Check --kubeconfig and --context (using kubeconfig \(kubeconfig)); if it serves TLS, the kubeconfig's certificate-authority must have signed its certificate)")
            let tls = backend.describe(KubernetesError.unavailable("GET \(path): TLS failure with https://127.0.0.1:6443: handshake failed"), for: url)
            #expect(tls.hasPrefix("cannot reach the Kubernetes API server at https://127.0.0.1:6443 over TLS: TLS failure"), "\(tls)")
            #expect(tls.contains("certificate-authority of kubeconfig \(kubeconfig) signed"), "\(tls)")
            let timeout = backend.describe(KubernetesError.timeout("GET \(path): no response within 5.0 seconds"), for: url)
            #expect(timeout.contains("did not answer in time: no response within 5.0 seconds") && timeout.contains("--request-timeout"), "\(timeout)")
            let conflict = backend.describe(LeaderElectionError.conflict("leases/team-a/x: PUT \(path): the object has been modified"), for: url)
            #expect(conflict == "the object has been modified")
            #expect(backend.describe(LeaseCtlError("plain"), for: url) == "plain")
        }
    }

    // MARK: Helpers

    /// Runs `body` with a Kubernetes backend on `settings`, then shuts its client down.
    static func withBackend(_ settings: KubernetesConnectionSettings, _ body: (KubernetesLockBackend) async throws -> Void) async throws {
        let backend = KubernetesLockBackend(pool: KubernetesClientPool(settings: settings))
        do {
            try await body(backend)
        } catch {
            await backend.shutdown()
            throw error
        }
        await backend.shutdown()
    }

    /// A kubeconfig with contexts `ctx` (current; namespace team-a) and `plain` (no namespace), both on `server`
    /// with the token `t0ken`.
    static func writeKubeconfig(in directory: String, server: String = "https://127.0.0.1:6443") throws -> String {
        let path = "\(directory)/kubeconfig"
        try """
            apiVersion: v1
            kind: Config
            clusters:
            - name: local
              cluster:
                server: \(server)
            users:
            - name: tester
              user:
                token: t0ken
            contexts:
            - name: ctx
              context:
                cluster: local
                user: tester
                namespace: team-a
            - name: plain
              context:
                cluster: local
                user: tester
            current-context: ctx

            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}
