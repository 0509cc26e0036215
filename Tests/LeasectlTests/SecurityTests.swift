#if canImport(Glibc)
import Glibc
#endif
import Etcd
import EtcdTesting
import Foundation
import Testing
@testable import leasectl

/// One option of a command, from ArgumentParser's `--experimental-dump-help`.
struct DumpedOption: CustomStringConvertible {
    var command: String
    var names: [String]
    var kind: String
    var valueName: String?
    var abstract: String
    var description: String { "\(command) \(names.joined(separator: "/")) <\(valueName ?? "")> (\(kind))" }
}

/// Every argument of `executable` and all its subcommands (hidden ones included), from `--experimental-dump-help`.
func dumpedOptions(of executable: String) throws -> [DumpedOption] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = ["--experimental-dump-help"]
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any], let command = root["command"] as? [String: Any] else {
        throw LeaseCtlError("unexpected --experimental-dump-help output: \(String(decoding: data, as: UTF8.self).prefix(200))")
    }
    var options: [DumpedOption] = []
    func walk(_ command: [String: Any], path: String) {
        for argument in command["arguments"] as? [[String: Any]] ?? [] {
            let names = (argument["names"] as? [[String: Any]] ?? []).compactMap { name -> String? in
                guard let text = name["name"] as? String else { return nil }
                return (name["kind"] as? String) == "short" ? "-" + text : "--" + text
            }
            options.append(DumpedOption(
                command: path, names: names, kind: argument["kind"] as? String ?? "?",
                valueName: argument["valueName"] as? String, abstract: argument["abstract"] as? String ?? ""))
        }
        for sub in command["subcommands"] as? [[String: Any]] ?? [] {
            walk(sub, path: path + " " + (sub["commandName"] as? String ?? "?"))
        }
    }
    walk(command, path: command["commandName"] as? String ?? "?")
    return options
}

/// `true` for an option name that suggests a secret: a password, token, key, credential or the like.
func soundsSecret(_ name: String) -> Bool {
    let lower = name.lowercased()
    return ["pass", "token", "secret", "key", "credential", "auth", "bearer", "cookie", "private"].contains { lower.contains($0) }
}

@Suite("leasectl security", .timeLimit(.minutes(1)))
struct LeasectlSecurityTests {
    /// No leasectl option takes a secret as its value: options that sound secret take a file path (a password
    /// file, a key file). Passwords come from files or the environment only.
    @Test func noOptionTakesASecretValue() throws {
        let options = try dumpedOptions(of: LeasectlHarness.executable)
        let commands = Set(options.map(\.command))
        #expect(commands.isSuperset(of: ["leasectl elect", "leasectl get", "leasectl release", "leasectl demo", "leasectl _torture-write"]),
                "\(commands.sorted())")
        let secretSounding = options.filter { $0.kind == "option" && $0.names.contains(where: soundsSecret) }
        #expect(!secretSounding.isEmpty, "the scan sees the secret-sounding file options")
        for option in secretSounding {
            #expect(option.valueName == "path", "\(option) takes a value that is not a file path")
        }
        for option in options where option.kind == "option" {
            #expect(!option.names.contains { ["--password", "--token", "--etcd-password", "--bearer-token"].contains($0) }, "\(option)")
        }
        // The etcd password: from the environment or a file; a user:password value is refused.
        #expect(options.contains { $0.names == ["--etcd-password-file"] && $0.valueName == "path" })
        #expect(throws: (any Error).self) { try EtcdOptions.parse(["--etcd-user", "root:secret"]) }
    }

    @Test func plaintextToANonLoopbackEtcdNeedsTheFlag() throws {
        let refusing = EtcdClientPool(settings: try EtcdOptions.parse([]).settings(defaultTimeout: .seconds(1), environment: [:]))
        let error = #expect(throws: LeaseCtlError.self) { try refusing.client(for: ["10.0.0.1:2379", "127.0.0.1:2379"]) }
        #expect(error?.message.contains("refusing to connect to etcd at 10.0.0.1:2379 without TLS") == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("--etcd-plaintext") == true && error?.message.contains("--etcd-cacert") == true)
        // Loopback plaintext is normal (tests, a local etcd).
        for endpoints in [["127.0.0.1:2379"], ["localhost:2379"], ["[::1]:2379"]] {
            #expect(throws: Never.self) { try refusing.client(for: endpoints) }
        }
        refusing.closeAll()

        let allowing = EtcdClientPool(settings: try EtcdOptions.parse(["--etcd-plaintext"]).settings(defaultTimeout: .seconds(1), environment: [:]))
        #expect(throws: Never.self) { try allowing.client(for: ["10.0.0.1:2379"]) }
        allowing.closeAll()
        let tls = EtcdClientPool(settings: EtcdConnectionSettings(tls: .init()))
        #expect(throws: Never.self) { try tls.client(for: ["10.0.0.1:2379"]) }
        tls.closeAll()

        #expect(throws: (any Error).self) { try EtcdOptions.parse(["--etcd-plaintext", "--etcd-cacert", "/ca.pem"]) }
    }

    @Test func plaintextRefusalAndWarningAsPrinted() async throws {
        let url = "etcd://192.0.2.1:2379/leader-election/"   // TEST-NET-1: never answers
        let refused = try await LeasectlHarness.run(["get", "--etcd-dial-timeout", "1s", url])
        #expect(refused.status == .exited(1), "\(refused)")
        #expect(refused.stderr.contains("refusing to connect to etcd at 192.0.2.1:2379 without TLS"), "\(refused)")

        let warned = try await LeasectlHarness.run(["get", "--etcd-plaintext", "--etcd-dial-timeout", "1s", url])
        #expect(warned.status == .exited(1), "unreachable: \(warned)")
        #expect(warned.stderr.contains("warning") && warned.stderr.contains("without TLS to a non-loopback endpoint"), "\(warned)")
        #expect(!warned.stdout.contains("warning"), "warnings never go to standard output: \(warned)")

        let port = try EtcdServer.freePort()
        let local = try await LeasectlHarness.run(["get", "--etcd-dial-timeout", "1s", "etcd://127.0.0.1:\(port)/leader-election/"])
        #expect(local.status == .exited(1), "\(local)")
        #expect(!local.stderr.contains("TLS to a non-loopback") && !local.stderr.contains("refusing"), "\(local)")
    }

    @Test func insecureSkipTLSVerifyIsPrintedAsAWarning() async throws {
        let directory = try LeasectlHarness.temporaryDirectory()
        defer { LeasectlHarness.cleanUp(directory) }
        let token = "sekrit-\(UUID().uuidString)"
        let port = try EtcdServer.freePort()
        let kubeconfig = directory + "/config"
        try """
            apiVersion: v1
            current-context: c
            clusters: [{name: k, cluster: {server: "https://127.0.0.1:\(port)", insecure-skip-tls-verify: true}}]
            users: [{name: u, user: {token: "\(token)"}}]
            contexts: [{name: c, context: {cluster: k, user: u, namespace: default}}]
            """.write(toFile: kubeconfig, atomically: true, encoding: .utf8)
        for command in [["get", "kubernetes://default/"], ["release", "kubernetes://default/x"]] {
            let run = try await LeasectlHarness.run(
                command + ["--kubeconfig", kubeconfig, "--request-timeout", "1s"], environment: ["KUBERNETES_SERVICE_HOST": nil])
            #expect(run.status == .exited(1), "nothing listens there: \(run)")
            #expect(run.stderr.contains("warning") && run.stderr.contains("TLS verification disabled (insecure-skip-tls-verify)"), "\(run)")
            #expect(!run.stdout.contains("insecure"), "\(run)")
            #expect(!run.stdout.contains(token) && !run.stderr.contains(token), "the token is never printed: \(run)")
        }
    }
}
