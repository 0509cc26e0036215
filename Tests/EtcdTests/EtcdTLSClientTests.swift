import Etcd
import EtcdTesting
import Foundation
import Testing

@Suite struct EtcdTLSClientTests {
    private func pem(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }

    @Test func tlsWithTheRightCAWorksAndAWrongCAFailsClearly() async throws {
        let tls = try EtcdTLS.generate()
        try await EtcdServer.withServer(name: "tls", tls: tls) { server in
            let etcd = try EtcdClient(configuration: .init(endpoints: [server.endpoint], tls: .init(caPEM: try pem(tls.caFile))))
            defer { etcd.close() }
            try await etcd.put("/tls", "ok")
            #expect(try await etcd.get("/tls")?.value == Array("ok".utf8))

            let wrong = try EtcdClient(configuration: .init(endpoints: [server.endpoint], tls: .init(caPEM: try pem(tls.wrongCAFile)), requestTimeout: .seconds(5)))
            defer { wrong.close() }
            await #expect { _ = try await wrong.get("/tls") } throws: { error in
                guard let e = error as? EtcdError else { return false }
                return e.code == .unavailable && !e.message.isEmpty
            }
            let plaintext = try EtcdClient(configuration: .init(endpoints: [server.endpoint], requestTimeout: .seconds(5)))
            defer { plaintext.close() }
            await #expect(throws: EtcdError.self) { _ = try await plaintext.get("/tls") }
        }
    }

    @Test func mutualTLSRequiresTheClientCertificate() async throws {
        let tls = try EtcdTLS.generate(clientCertAuth: true)
        try await EtcdServer.withServer(name: "mtls", tls: tls) { server in
            let ca = try pem(tls.caFile)
            let etcd = try EtcdClient(configuration: .init(endpoints: [server.endpoint], tls: .init(
                caPEM: ca, certificatePEM: try pem(tls.clientCertFile), privateKeyPEM: try pem(tls.clientKeyFile))))
            defer { etcd.close() }
            try await etcd.put("/mtls", "ok")
            #expect(try await etcd.get("/mtls") != nil)

            let anonymous = try EtcdClient(configuration: .init(endpoints: [server.endpoint], tls: .init(caPEM: ca), requestTimeout: .seconds(5)))
            defer { anonymous.close() }
            await #expect(throws: EtcdError.self) { _ = try await anonymous.get("/mtls") }
            let untrusted = try EtcdClient(configuration: .init(endpoints: [server.endpoint], tls: .init(
                caPEM: ca, certificatePEM: try pem(tls.untrustedClientCertFile), privateKeyPEM: try pem(tls.untrustedClientKeyFile)),
                requestTimeout: .seconds(5)))
            defer { untrusted.close() }
            await #expect(throws: EtcdError.self) { _ = try await untrusted.get("/mtls") }
        }
    }
}
