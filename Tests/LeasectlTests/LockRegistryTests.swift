import FileLock
import Foundation
import LeaderElection
import Testing
@testable import leasectl

/// Lock URLs and the scheme registry.
@Suite struct LockRegistryTests {
    @Test func parsesFileURLs() throws {
        let url = try LockURL(parsing: "file:///var/run/locks/scheduler")
        #expect(url.scheme == "file")
        #expect(url.authority == "")
        #expect(url.path == "/var/run/locks/scheduler")
        #expect(url.lastPathComponent == "scheduler")
        #expect(url.parentPath == "/var/run/locks")
        #expect(!url.isCollection)
        #expect(url.description == "file:///var/run/locks/scheduler")
    }

    @Test func trailingSlashNamesACollection() throws {
        let url = try LockURL(parsing: "file:///var/run/locks/")
        #expect(url.isCollection)
        #expect(url.path == "/var/run/locks/")
        #expect(url.appending("a").description == "file:///var/run/locks/a")
    }

    @Test func acceptsFileLockDescriptionsPlainPathsAndLocalhost() throws {
        #expect(try LockURL(parsing: "file:/d/x") == LockURL(scheme: "file", path: "/d/x"))
        #expect(try LockURL(parsing: "file://localhost/d/x") == LockURL(scheme: "file", path: "/d/x"))
        #expect(try LockURL(parsing: "/d//./x") == LockURL(scheme: "file", path: "/d/x"))
        #expect(try LockURL(parsing: "locks/x", currentDirectory: "/srv") == LockURL(scheme: "file", path: "/srv/locks/x"))
        #expect(try LockURL(parsing: "locks/", currentDirectory: "/srv").isCollection)
        #expect(try LockURL(parsing: "file:///d/with%20space").lastPathComponent == "with space")
    }

    @Test func parsesNetworkSchemes() throws {
        let url = try LockURL(parsing: "etcd://10.0.0.1:2379/elections/x")
        #expect(url.scheme == "etcd")
        #expect(url.authority == "10.0.0.1:2379")
        #expect(url.path == "/elections/x")
    }

    @Test func rejectsMalformedURLs() {
        #expect(throws: LeaseCtlError.self) { try LockURL(parsing: "") }
        #expect(throws: LeaseCtlError.self) { try LockURL(parsing: "file://otherhost/x") }
        #expect(throws: LeaseCtlError.self) { try LockURL(parsing: "file:relative") }
    }

    @Test func unknownSchemeErrorListsKnownSchemes() throws {
        let url = try LockURL(parsing: "zookeeper://zk:2181/x")
        let error = #expect(throws: LeaseCtlError.self) { try LockRegistry.standard.makeLock(at: url, identity: "i") }
        #expect(error?.message.contains("unknown lock scheme \"zookeeper\"") == true)
        #expect(error?.message.contains("known schemes: etcd (etcd://") == true)
        #expect(error?.message.contains("file (file://") == true)
        #expect(error?.message.contains("kubernetes (kubernetes://NAMESPACE/NAME)") == true)
    }

    @Test func fileBackendOpensLocksAndListsDirectories() async throws {
        let directory = try LeasectlHarness.temporaryDirectory()
        defer { LeasectlHarness.cleanUp(directory) }
        let registry = LockRegistry.standard
        let lock = try registry.makeLock("file://\(directory)/alpha", identity: "writer")
        #expect("\(lock)" == "file:\(directory)/alpha")
        _ = try await lock.create(LeaderElectionRecord(holderIdentity: "", leaseDuration: .seconds(1)))
        let beta = try registry.makeLock("\(directory)/beta", identity: "writer")
        _ = try await beta.create(LeaderElectionRecord(holderIdentity: "", leaseDuration: .seconds(1)))

        let expected = [LockURL(scheme: "file", path: "\(directory)/alpha"), LockURL(scheme: "file", path: "\(directory)/beta")]
        #expect(try await registry.locks(at: LockURL(parsing: "file://\(directory)/")) == expected)
        #expect(try await registry.locks(at: LockURL(parsing: directory)) == expected, "an existing directory lists too")
        #expect(try await registry.locks(at: LockURL(parsing: "file://\(directory)/alpha")) == [expected[0]])
        #expect(throws: LeaseCtlError.self) { try registry.makeLock("file://\(directory)/", identity: "x") }
    }
}
