#if canImport(Glibc)
import Glibc
#endif
import EtcdTesting
import Foundation
import Testing

/// `lease-apiserver`'s options: secrets come from files; the one exception, `--token`, is deprecated and warns.
@Suite(.timeLimit(.minutes(1)))
struct CommandLineSecretsTests {
    /// `(names, valueName, abstract)` of every option, from ArgumentParser's `--experimental-dump-help`.
    static func options() throws -> [(names: [String], valueName: String?, abstract: String)] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ServerProcess.executable)
        process.arguments = ["--experimental-dump-help"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let command = root["command"] as? [String: Any],
              let arguments = command["arguments"] as? [[String: Any]] else {
            throw TestFailure("unexpected --experimental-dump-help output: \(String(decoding: data, as: UTF8.self).prefix(200))")
        }
        let subcommands = (command["subcommands"] as? [[String: Any]] ?? []).compactMap { $0["commandName"] as? String }
        #expect(subcommands.allSatisfy { $0 == "help" }, "a new subcommand needs scanning too: \(subcommands)")
        return arguments.filter { $0["kind"] as? String == "option" }.map { argument in
            let names = (argument["names"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }.map { "--" + $0 }
            return (names, argument["valueName"] as? String, argument["abstract"] as? String ?? "")
        }
    }

    @Test func secretsComeFromFilesAndTheDeprecatedTokenOptionSaysSo() throws {
        let options = try Self.options()
        #expect(options.contains { $0.names == ["--token-file"] && $0.valueName == "path" })
        let words = ["pass", "token", "secret", "key", "credential", "auth", "bearer", "private"]
        for option in options where option.names.contains(where: { name in words.contains { name.lowercased().contains($0) } }) {
            if option.names == ["--token"] {
                #expect(option.abstract.hasPrefix("DEPRECATED"), "\(option)")
                #expect(option.abstract.contains("--token-file"), "\(option)")
            } else {
                #expect(option.valueName == "path", "\(option.names) takes a value that is not a file path")
            }
        }
    }

    @Test func theTokenOptionAndANonLoopbackAddressAreWarnedAbout() async throws {
        let port = try EtcdServer.freePort()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lease-apiserver-secrets-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let tokenFile = directory.appendingPathComponent("tokens").path
        try "from-a-file\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)

        let deprecated = try ServerProcess.start([
            "--etcd-endpoints", "127.0.0.1:\(port)", "--port", "0", "--token", "on-the-command-line", "--log-level", "critical",
        ])
        defer { deprecated.kill() }
        #expect(await deprecated.firstLine(timeout: .seconds(30))?.hasPrefix("lease-apiserver listening on http://127.0.0.1:") == true)
        #expect(deprecated.standardError.contains("lease-apiserver: warning: --token is deprecated"), "\(deprecated.standardError)")
        #expect(deprecated.standardError.contains("--token-file"), "\(deprecated.standardError)")
        #expect(!deprecated.standardError.contains("on-the-command-line"), "the warning does not repeat the token")
        #expect(!deprecated.standardError.contains("not a loopback address"), "\(deprecated.standardError)")

        let quiet = try ServerProcess.start([
            "--etcd-endpoints", "127.0.0.1:\(port)", "--port", "0", "--token-file", tokenFile, "--log-level", "critical",
        ])
        defer { quiet.kill() }
        #expect(await quiet.firstLine(timeout: .seconds(30)) != nil)
        #expect(!quiet.standardError.contains("warning"), "\(quiet.standardError)")

        let exposed = try ServerProcess.start([
            "--etcd-endpoints", "127.0.0.1:\(port)", "--port", "0", "--bind-address", "0.0.0.0", "--token-file", tokenFile,
            "--log-level", "critical",
        ])
        defer { exposed.kill() }
        #expect(await exposed.firstLine(timeout: .seconds(30)) != nil, "\(exposed.standardError)")
        exposed.kill()
        #expect(exposed.standardError.contains("listening on 0.0.0.0, not a loopback address"), "\(exposed.standardError)")
        #expect(exposed.standardError.contains("any static token may do everything") && exposed.standardError.contains("do not expose it"))
        #expect(exposed.standardError.contains("without --tls-cert-file"), "\(exposed.standardError)")
        #expect(!exposed.standardError.contains("from-a-file"))
    }
}
