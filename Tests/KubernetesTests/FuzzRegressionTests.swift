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
    @Test(.disabled(if: underAddressSanitizer, "ASan's quarantine grows the resident set; LeakSanitizer checks this build"))
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
}
