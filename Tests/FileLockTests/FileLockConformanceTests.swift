import FileLock
import Foundation
import LeaderElection
import LockConformance
import Testing

/// FileLock passes the whole shared suite: every check gets a fresh lock name in its own temp directory.
@Suite struct FileLockConformanceTests {
    static let suite = LockConformanceSuite(name: "FileLock") {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("filelock-conformance-\(UUID().uuidString)").path
        let name = "lock"
        return .init(
            makeLock: { identity in try FileLock(directory: directory, name: name, identity: identity, createDirectory: true) },
            writeGarbage: { bytes in
                try FileLock(directory: directory, name: name, identity: "garbage-writer-\(UUID().uuidString)", createDirectory: true)
                    .writeRaw(bytes)
            },
            tearDown: { try? FileManager.default.removeItem(atPath: directory) })
    }

    @Test(arguments: LockConformanceSuite.Check.all)
    func conformance(_ check: LockConformanceSuite.Check) async throws {
        try await Self.suite.run(check)
    }
}
