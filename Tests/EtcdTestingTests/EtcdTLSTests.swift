#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

@testable import EtcdTesting

@Suite("EtcdTLS: generated certificates and etcd over TLS")
struct EtcdTLSTests {
    @Test("the server certificate names 127.0.0.1 and localhost and chains to the CA, not to the wrong CA")
    func certificates() throws {
        let tls = try EtcdTLS.generate()
        let openssl = try #require(findExecutable("openssl", override: "ETCDTESTING_OPENSSL"))
        let text = try runCommandBlocking(openssl, ["x509", "-noout", "-text", "-in", tls.serverCertFile], timeout: .seconds(10))
        #expect(text.standardOutput.contains("IP Address:127.0.0.1"))
        #expect(text.standardOutput.contains("DNS:localhost"))
        #expect(text.standardOutput.contains("TLS Web Server Authentication"))

        func verify(_ cert: String, with ca: String) throws -> Bool {
            try runCommandBlocking(openssl, ["verify", "-CAfile", ca, cert], timeout: .seconds(10)).succeeded
        }
        #expect(try verify(tls.serverCertFile, with: tls.caFile))
        #expect(try verify(tls.clientCertFile, with: tls.caFile))
        #expect(try !verify(tls.serverCertFile, with: tls.wrongCAFile))
        #expect(try verify(tls.untrustedClientCertFile, with: tls.wrongCAFile))
        #expect(try !verify(tls.untrustedClientCertFile, with: tls.caFile))
    }

    @Test("a generated temporary directory goes away with the last copy of the value")
    func temporaryDirectoryCleanup() throws {
        var tls: EtcdTLS? = try EtcdTLS.generate()
        let directory = tls!.directory
        #expect(pathExists(tls!.caFile))
        tls = nil
        #expect(!pathExists(directory))
    }

    @Test("etcd over TLS: the right CA works, the wrong CA and plain HTTP fail")
    func serverTLS() async throws {
        let tls = try EtcdTLS.generate()
        try await EtcdServer.withServer(name: "tls", tls: tls) { server in
            #expect(server.clientURL == "https://127.0.0.1:\(server.clientPort)")
            try await server.etcdctl(["put", "secret", "s3cret"])
            #expect(try await value(of: "secret", in: server) == "s3cret")

            let quick = ["--command-timeout", "1s", "--dial-timeout", "1s"]
            let rightCA = try await server.runEtcdctl(["--cacert", tls.caFile, "get", "secret"] + quick, tlsFlags: false)
            #expect(rightCA.succeeded, "\(rightCA)")
            let wrongCA = try await server.runEtcdctl(["--cacert", tls.wrongCAFile, "get", "secret"] + quick, tlsFlags: false)
            #expect(!wrongCA.succeeded)
            #expect(!wrongCA.standardOutput.contains("s3cret"))
            let plain = try await runEtcdctlCommand(
                binaries: server.binaries, endpoints: ["http://\(server.endpoint)"], tls: nil,
                arguments: ["get", "secret"] + quick, timeout: .seconds(10))
            #expect(!plain.succeeded)
        }
    }

    @Test("mutual TLS: a client certificate from the CA is required; one from the wrong CA is rejected")
    func mutualTLS() async throws {
        let tls = try EtcdTLS.generate(clientCertAuth: true)
        try await EtcdServer.withServer(name: "mtls", tls: tls) { server in
            try await server.etcdctl(["put", "m", "tls"])   // etcdctlFlags present the client certificate

            let quick = ["--command-timeout", "1s", "--dial-timeout", "1s"]
            let noCert = try await server.runEtcdctl(["--cacert", tls.caFile, "get", "m"] + quick, tlsFlags: false)
            #expect(!noCert.succeeded)
            let untrusted = try await server.runEtcdctl(
                ["--cacert", tls.caFile, "--cert", tls.untrustedClientCertFile, "--key", tls.untrustedClientKeyFile, "get", "m"]
                    + quick,
                tlsFlags: false)
            #expect(!untrusted.succeeded)
        }
    }

    @Test("a TLS cluster serves https on every member")
    func tlsCluster() async throws {
        let tls = try EtcdTLS.generate(clientCertAuth: true)
        try await EtcdCluster.withCluster(members: 3, tls: tls) { cluster in
            #expect(cluster.clientURLs.allSatisfy { $0.hasPrefix("https://127.0.0.1:") })
            try await cluster.etcdctl(["put", "tls-cluster", "ok"])
            let leader = try await cluster.leader()
            #expect(try await value(of: "tls-cluster", in: cluster.members[(leader + 1) % 3]) == "ok")
        }
    }
}
