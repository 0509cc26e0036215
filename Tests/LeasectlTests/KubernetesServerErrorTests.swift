import Foundation
import Kubernetes
import KubernetesLock
import LeaderElection
import Testing
@testable import leasectl

/// An API server that answers with an error status is reported as that status with its message; "cannot
/// reach … is the API server running there?" is only for a server that did not answer at all (issue 13).
@Suite(.timeLimit(.minutes(1))) struct KubernetesServerErrorTests {
    static let internalError = #"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Internal error occurred: etcdserver: request timed out","reason":"InternalError","code":500}"#

    /// Through the lock (a LeaderElectionError), as `elect` and `release` see it.
    @Test func aServerErrorThroughTheLockIsReportedAsItsStatus() async throws {
        let server = try FixedResponseServer(status: 500, reason: "Internal Server Error", body: Self.internalError)
        defer { server.stop() }
        let directory = try LeasectlHarness.temporaryDirectory()
        defer { LeasectlHarness.cleanUp(directory) }
        let kubeconfig = try KubernetesBackendTests.writeKubeconfig(in: directory, server: server.url)
        try await KubernetesBackendTests.withBackend(.init(kubeconfig: kubeconfig, environment: [:])) { backend in
            let url = try LockURL(parsing: "kubernetes://team-a/x")
            let lock = try backend.makeLock(at: url, identity: "me", createDirectory: false)
            let error = await #expect(throws: LeaderElectionError.self) { _ = try await lock.get() }
            let failure = try #require(error)
            #expect(failure.code == .unavailable)
            let message = backend.describe(failure, for: url)
            #expect(message == "the Kubernetes API server at \(server.url) answered HTTP 500: Internal error occurred: etcdserver: request timed out (the API server, or its etcd, failed this request; it is retried)", "\(message)")
            #expect(!message.contains("cannot reach"), "\(message)")
        }
    }

    /// Through the client (a KubernetesError), as `get` sees it; and a status that is not a 5xx.
    @Test func aServerErrorFromTheClientIsReportedAsItsStatus() async throws {
        let server = try FixedResponseServer(status: 429, reason: "Too Many Requests",
                                             body: #"{"kind":"Status","status":"Failure","message":"too many requests, please try again later","reason":"TooManyRequests","code":429}"#)
        defer { server.stop() }
        let directory = try LeasectlHarness.temporaryDirectory()
        defer { LeasectlHarness.cleanUp(directory) }
        let kubeconfig = try KubernetesBackendTests.writeKubeconfig(in: directory, server: server.url)
        try await KubernetesBackendTests.withBackend(.init(kubeconfig: kubeconfig, environment: [:])) { backend in
            let url = try LockURL(parsing: "kubernetes://team-a/x")
            let error = await #expect(throws: KubernetesError.self) { _ = try await backend.snapshots(at: url) }
            let message = backend.describe(try #require(error), for: url)
            #expect(message == "the Kubernetes API server at \(server.url) answered HTTP 429: too many requests, please try again later", "\(message)")
        }
    }

    /// Nothing listening: "cannot reach", typed from the connection failure.
    @Test func nothingListeningIsCannotReach() async throws {
        let server = try FixedResponseServer(status: 500, reason: "x", body: "{}")
        let port = server.port
        server.stop()   // the port is now closed
        let directory = try LeasectlHarness.temporaryDirectory()
        defer { LeasectlHarness.cleanUp(directory) }
        let kubeconfig = try KubernetesBackendTests.writeKubeconfig(in: directory, server: "http://127.0.0.1:\(port)")
        try await KubernetesBackendTests.withBackend(.init(kubeconfig: kubeconfig, environment: [:])) { backend in
            let url = try LockURL(parsing: "kubernetes://team-a/x")
            let lock = try backend.makeLock(at: url, identity: "me", createDirectory: false)
            let error = await #expect(throws: LeaderElectionError.self) { _ = try await lock.get() }
            let message = backend.describe(try #require(error), for: url)
            #expect(message.hasPrefix("cannot reach the Kubernetes API server at http://127.0.0.1:\(port): "), "\(message)")
            #expect(message.contains("is the API server running there?"), "\(message)")
        }
    }

    /// The whole CLI: `leasectl release` against a server answering 500.
    @Test func releaseAgainstAFailingServerSaysWhatItAnswered() async throws {
        let server = try FixedResponseServer(status: 500, reason: "Internal Server Error", body: Self.internalError)
        defer { server.stop() }
        let directory = try LeasectlHarness.temporaryDirectory()
        defer { LeasectlHarness.cleanUp(directory) }
        let kubeconfig = try KubernetesBackendTests.writeKubeconfig(in: directory, server: server.url)
        let release = try await LeasectlHarness.run(["release", "kubernetes://team-a/x", "--kubeconfig", kubeconfig])
        #expect(release.status != .exited(0), "\(release)")
        #expect(release.stderr.contains("answered HTTP 500: Internal error occurred: etcdserver: request timed out"), "\(release)")
        #expect(!release.stderr.contains("cannot reach"), "\(release)")
        #expect(server.answered >= 1)
    }
}
