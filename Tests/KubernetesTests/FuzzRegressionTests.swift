import Foundation
@testable import Kubernetes
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Regressions for what `lease-fuzz kubeconfig` found (fuzz/regressions/kubeconfig).
@Suite("Kubernetes fuzz regressions")
struct KubernetesFuzzRegressionTests {
    private static let regressions = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../fuzz/regressions/kubeconfig").standardizedFileURL.path

    /// The input LeakSanitizer flagged: a kubeconfig whose user's tokenFile is an empty file. Reading it with
    /// `String(contentsOfFile:)` leaked 4 KiB per read (a Foundation bug on Linux for files of size 0); the
    /// configuration error itself was and is right.
    @Test func emptyTokenFileIsAConfigurationError() async throws {
        try await withTemporaryDirectory { directory in
            _ = try directory.write("empty", "")
            let text = try String(contentsOfFile: Self.regressions + "/empty-token-file-leak.yaml", encoding: .utf8)
            #expect {
                try _KubernetesFuzzing.kubeconfig(text, directory: directory.path)
            } throws: { error in
                guard let error = error as? KubernetesError else { return false }
                return error.code == .invalidConfiguration && error.message.contains("tokenFile") && error.message.contains("is empty")
            }
        }
    }

    /// The process's resident set, from /proc/self/statm (pages × page size).
    private static func residentBytes() throws -> Int {
        let fields = try KubernetesConfiguration.readUTF8File("/proc/self/statm").split(separator: " ")
        return (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Whether this process runs under AddressSanitizer, whose quarantine of freed memory makes the resident
    /// set grow without a leak (LeakSanitizer checks leaks there instead).
    private static let underAddressSanitizer = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__asan_init") != nil

    /// Reading empty (and /proc-like, size-0) files no longer leaks: 40,000 reads used to leak ~160 MiB.
    @Test(.disabled(if: underAddressSanitizer && ProcessInfo.processInfo.environment["CI"] != "true", "ASan's quarantine grows the resident set; LeakSanitizer checks this build"))
    func readingAnEmptyFileDoesNotLeak() async throws {
        try await withTemporaryDirectory { directory in
            let path = try directory.write("empty", "")
            #expect(try KubernetesConfiguration.readUTF8File(path) == "")
            #expect(try KubernetesConfiguration.readUTF8File(try directory.write("token", "abc\n")) == "abc\n")
            let before = try Self.residentBytes()
            for _ in 0..<40_000 { _ = try KubernetesConfiguration.readConfigFile(path, what: "test") }
            let grown = try Self.residentBytes() - before
            // Other tests run in parallel in this process: allow them plenty, far below the ~160 MiB of the leak.
            #expect(grown < 64 * 1024 * 1024, "resident memory grew by \(grown) bytes over 40,000 reads of an empty file")
        }
    }

    @Test func unreadableAndNonUTF8FilesAreConfigurationErrors() async throws {
        try await withTemporaryDirectory { directory in
            let binary = directory.file("binary")
            FileManager.default.createFile(atPath: binary, contents: Data([0xFF, 0xFE, 0x00, 0xC3]))
            #expect(throws: KubernetesError.self) { _ = try KubernetesConfiguration.readConfigFile(binary, what: "test") }
            #expect(throws: KubernetesError.self) { _ = try KubernetesConfiguration.readConfigFile(directory.path, what: "test") }
            #expect(throws: KubernetesError.self) { _ = try KubernetesConfiguration.readConfigFile(directory.file("missing"), what: "test") }
        }
    }

    /// The input libFuzzer timed out on: a 1 KiB kubeconfig with nested aliases on which Yams spent 20 s of
    /// CPU (it hashes the expansion of every mapping key while checking duplicates). Now rejected at once.
    @Test func aliasExpansionIsRejectedQuickly() async throws {
        let text = try String(contentsOfFile: Self.regressions + "/alias-expansion-timeout.yaml", encoding: .utf8)
        let start = ContinuousClock.now
        #expect {
            try _KubernetesFuzzing.kubeconfig(text, directory: NSTemporaryDirectory())
        } throws: { error in
            (error as? KubernetesError)?.code == .invalidConfiguration && "\(error)".contains("YAML aliases")
        }
        #expect(ContinuousClock.now - start < .seconds(1))

        // The classic form, with the expansion as a mapping key (9^9 nodes to hash).
        var laughs = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
        for level in 1...8 { laughs.append("l\(level): &l\(level) [" + Array(repeating: "*l\(level - 1)", count: 9).joined(separator: ", ") + "]") }
        laughs.append("? *l8\n: boom")
        #expect(throws: KubernetesError.self) { try _KubernetesFuzzing.kubeconfig(laughs.joined(separator: "\n"), directory: NSTemporaryDirectory()) }
    }

    /// A few aliases (sharing a cluster definition, say) still work.
    @Test func aFewAliasesAreAccepted() throws {
        let text = """
            clusters:
            - name: a
              cluster: &shared {server: "https://10.0.0.1:6443", insecure-skip-tls-verify: true}
            - name: b
              cluster: *shared
            contexts:
            - {name: b, context: {cluster: b, user: u, namespace: "*not-an-alias*"}}
            users:
            - {name: u, user: {token: "abc*def"}}
            current-context: b
            """
        #expect(KubernetesConfiguration.yamlAliasCount(text) == 1)
        let configuration = try _KubernetesFuzzing.kubeconfig(text, directory: NSTemporaryDirectory())
        #expect(configuration.server == "https://10.0.0.1:6443" && configuration.namespace == "*not-an-alias*")
    }

    @Test func aliasCountIsAnUpperBound() {
        #expect(KubernetesConfiguration.yamlAliasCount("a: *x\nb: [*x, *y]\n- *z\n? *k\n: v") == 5)
        #expect(KubernetesConfiguration.yamlAliasCount("a: 'quoted *x, *y'\n# comment: *z") == 2)  // inside quotes and comments: over-counted on purpose
        #expect(KubernetesConfiguration.yamlAliasCount("a: b*c\ntoken: abc*def\nurl: https://x/*") == 0)
    }
}
