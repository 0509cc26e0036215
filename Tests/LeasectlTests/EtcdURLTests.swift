import ArgumentParser
import Etcd
import EtcdLock
import Foundation
import LeaderElection
import Testing
@testable import leasectl

/// etcd lock URLs, their mapping onto `EtcdLock`, and the `--etcd-*` options (no etcd needed).
@Suite struct EtcdURLTests {
    @Test func singleEndpointURLMapsTheWholePathToTheKey() throws {
        let url = try LockURL(parsing: "etcd://127.0.0.1:2379/leader-election/default/app")
        #expect(url.scheme == "etcd")
        #expect(url.authority == "127.0.0.1:2379")
        #expect(!url.isCollection)
        #expect(try EtcdLockBackend.endpoints(of: url) == ["127.0.0.1:2379"])
        let configuration = try EtcdLockBackend.configuration(for: url)
        #expect(configuration.keyPrefix == "/leader-election")
        #expect(configuration.namespace == "default")
        #expect(configuration.name == "app")
        #expect(configuration.key == "/leader-election/default/app")
    }

    @Test(arguments: ["/leader-election/default/app", "/x/app", "/app", "/a/b/c/d/e", "/registry/leases/kube-system/sched"])
    func configurationKeyEqualsTheURLPath(path: String) throws {
        let url = try LockURL(parsing: "etcd://h:2379\(path)")
        let configuration = try EtcdLockBackend.configuration(for: url)
        #expect(configuration.key == path)
        #expect(configuration.name == url.lastPathComponent)
        let lock = try LockRegistry.standard.makeLock(at: url, identity: "me")
        let etcdLock = try #require(lock as? EtcdLock)
        #expect(etcdLock.configuration.key == path)
        #expect("\(lock)" == "etcd://h:2379\(path)")
    }

    @Test func shortPathsLeaveNamespaceAndPrefixEmpty() throws {
        let top = try EtcdLockBackend.configuration(for: LockURL(parsing: "etcd://h:1/app"))
        #expect(top.name == "app" && top.namespace == "" && top.keyPrefix == "")
        let two = try EtcdLockBackend.configuration(for: LockURL(parsing: "etcd://h:1/x/app"))
        #expect(two.name == "app" && two.namespace == "x" && two.keyPrefix == "")
    }

    @Test func severalEndpointsDefaultPortAndDuplicates() throws {
        let url = try LockURL(parsing: "etcd://10.0.0.1:2379,10.0.0.2:22379,10.0.0.3,10.0.0.1:2379/leader-election/default/app")
        #expect(url.authority == "10.0.0.1:2379,10.0.0.2:22379,10.0.0.3,10.0.0.1:2379")
        #expect(url.path == "/leader-election/default/app")
        #expect(try EtcdLockBackend.endpoints(of: url) == ["10.0.0.1:2379", "10.0.0.2:22379", "10.0.0.3:2379"])
        #expect(try EtcdLockBackend.endpoints(of: LockURL(parsing: "etcd://etcd.example.com/x")) == ["etcd.example.com:2379"])
        #expect(try EtcdLockBackend.endpoints(of: LockURL(parsing: "etcd://[::1]:2379/x")) == ["[::1]:2379"])
        #expect(try EtcdLockBackend.endpoints(of: LockURL(parsing: "etcd://[::1]/x")) == ["[::1]:2379"])
        let lock = try #require(try LockRegistry.standard.makeLock(at: url, identity: "me") as? EtcdLock)
        #expect(lock.client.configuration.endpoints == ["10.0.0.1:2379", "10.0.0.2:22379", "10.0.0.3:2379"])
    }

    @Test func oneClientPerEndpointSet() throws {
        let pool = EtcdClientPool(settings: EtcdConnectionSettings())
        defer { pool.closeAll() }
        let a = try pool.client(for: ["127.0.0.1:1", "127.0.0.1:2"])
        #expect(a === (try pool.client(for: ["127.0.0.1:2", "127.0.0.1:1"])))
        #expect(a !== (try pool.client(for: ["127.0.0.1:1"])))
    }

    @Test func trailingSlashNamesAPrefix() throws {
        let url = try LockURL(parsing: "etcd://127.0.0.1:2379/leader-election/default/")
        #expect(url.isCollection)
        #expect(url.path == "/leader-election/default/")
        #expect(url.appending("app").description == "etcd://127.0.0.1:2379/leader-election/default/app")
        let error = #expect(throws: LeaseCtlError.self) { try LockRegistry.standard.makeLock(at: url, identity: "me") }
        #expect(error?.message.contains("key prefix") == true)
        #expect(try LockURL(parsing: "etcd://127.0.0.1:2379").isCollection, "no path: every key")
        #expect(LeaseGetter.displayName(
            of: LockURL(scheme: "etcd", authority: "h:1", path: "/leader-election/default/app"),
            in: LockURL(scheme: "etcd", authority: "h:1", path: "/leader-election/")) == "default/app")
        #expect(LeaseGetter.displayName(
            of: LockURL(scheme: "etcd", authority: "h:1", path: "/le/default/app"),
            in: LockURL(scheme: "etcd", authority: "h:1", path: "/le/default/app")) == "app")
    }

    @Test func singleLockURLsListThemselvesWithoutIO() async throws {
        let url = try LockURL(parsing: "etcd://127.0.0.1:1/leader-election/default/app")
        #expect(try await LockRegistry.standard.locks(at: url) == [url])
    }

    @Test(arguments: [
        ("etcd:///leader-election/x", "names no endpoint"),
        ("etcd://user:pw@h:2379/x", "carry no credentials"),
        ("etcd://h:notaport/x", "port must be a number"),
        ("etcd://h:70000/x", "port must be a number"),
        ("etcd://h:1,,h2:1/x", "empty"),
        ("etcd://::1:2379/x", "brackets"),
    ])
    func malformedEndpointsAreRejected(text: String, message: String) throws {
        let url = try LockURL(parsing: text)
        let error = #expect(throws: LeaseCtlError.self) { try LockRegistry.standard.makeLock(at: url, identity: "me") }
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "no error")")
    }

    // MARK: --etcd-* options

    @Test func tlsOptionsReadPEMFilesAndPasswordComesFromTheEnvironmentOrAFile() throws {
        let directory = try LeasectlHarness.temporaryDirectory()
        defer { LeasectlHarness.cleanUp(directory) }
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        for name in ["ca.pem", "cert.pem", "key.pem"] {
            try pem.write(toFile: "\(directory)/\(name)", atomically: true, encoding: .utf8)
        }
        try "s3cret\n".write(toFile: "\(directory)/password", atomically: true, encoding: .utf8)

        let plain = try EtcdOptions.parse([]).settings(defaultTimeout: .seconds(5), environment: ["ETCD_PASSWORD": "ignored"])
        #expect(plain.tls == nil && plain.credentials == nil && plain.requestTimeout == .seconds(5))

        let tls = try EtcdOptions.parse([
            "--etcd-cacert", "\(directory)/ca.pem", "--etcd-cert", "\(directory)/cert.pem", "--etcd-key", "\(directory)/key.pem",
            "--etcd-dial-timeout", "750ms",
        ]).settings(defaultTimeout: .seconds(5), environment: [:])
        #expect(tls.tls?.caPEM == pem && tls.tls?.certificatePEM == pem && tls.tls?.privateKeyPEM == pem)
        #expect(tls.requestTimeout == .milliseconds(750))
        let caOnly = try EtcdOptions.parse(["--etcd-cacert", "\(directory)/ca.pem"]).settings(defaultTimeout: .seconds(5), environment: [:])
        #expect(caOnly.tls?.caPEM == pem && caOnly.tls?.certificatePEM == nil)

        let fromEnvironment = try EtcdOptions.parse(["--etcd-user", "root"]).settings(defaultTimeout: .seconds(5), environment: ["ETCD_PASSWORD": "pw"])
        #expect(fromEnvironment.credentials?.user == "root" && fromEnvironment.credentials?.password == "pw")
        let fromFile = try EtcdOptions.parse(["--etcd-user", "root", "--etcd-password-file", "\(directory)/password"])
            .settings(defaultTimeout: .seconds(5), environment: ["ETCD_PASSWORD": "not this"])
        #expect(fromFile.credentials?.password == "s3cret", "the file wins, without its newline")

        let noPassword = #expect(throws: LeaseCtlError.self) {
            try EtcdOptions.parse(["--etcd-user", "root"]).settings(defaultTimeout: .seconds(5), environment: [:])
        }
        #expect(noPassword?.message.contains("ETCD_PASSWORD") == true)
        let unreadable = #expect(throws: LeaseCtlError.self) {
            try EtcdOptions.parse(["--etcd-cacert", "\(directory)/missing.pem"]).settings(defaultTimeout: .seconds(5), environment: [:])
        }
        #expect(unreadable?.message == "cannot read --etcd-cacert \(directory)/missing.pem: No such file or directory")
        let notPEM = #expect(throws: LeaseCtlError.self) {
            try EtcdOptions.parse(["--etcd-cacert", "\(directory)/password"]).settings(defaultTimeout: .seconds(5), environment: [:])
        }
        #expect(notPEM?.message.contains("holds no PEM data") == true)
    }

    @Test func passwordsAreNeverCommandLineValues() {
        #expect(throws: (any Error).self) { try EtcdOptions.parse(["--etcd-user", "root:secret"]) }
        #expect(throws: (any Error).self) { try EtcdOptions.parse(["--etcd-password", "secret"]) }
        #expect(throws: (any Error).self) { try EtcdOptions.parse(["--etcd-password-file", "/p"]) }
        #expect(throws: (any Error).self) { try EtcdOptions.parse(["--etcd-cert", "/c"]) }
        #expect(throws: (any Error).self) { try EtcdOptions.parse(["--etcd-dial-timeout", "0s"]) }
    }

    @Test func electTimeoutIsHalfTheRenewDeadlineButAtLeastASecond() throws {
        #expect(EtcdOptions.electTimeout(renewDeadline: .seconds(10)) == .seconds(5))
        #expect(EtcdOptions.electTimeout(renewDeadline: .milliseconds(1500)) == .seconds(1))
        #expect(EtcdOptions.electTimeout(renewDeadline: .seconds(3)) == .milliseconds(1500))
        // The commands include the options.
        let elect = try ElectCommand.parse(["--lock", "etcd://h:1/x", "--etcd-user", "u", "--etcd-dial-timeout", "2s"])
        #expect(elect.etcd.etcdUser == "u" && elect.etcd.etcdDialTimeout?.duration == .seconds(2))
        #expect(try GetCommand.parse(["--etcd-cacert", "/ca", "etcd://h:1/"]).etcd.etcdCacert == "/ca")
        #expect(try ReleaseCommand.parse(["--etcd-password-file", "/p", "--etcd-user", "u", "etcd://h:1/x"]).etcd.etcdPasswordFile == "/p")
    }
}
