import ArgumentParser
import FileLock
import Foundation
import LeaderElection

/// `leasectl _torture-write`: hammers a `FileLock` with get → update (creating the record when missing)
/// as fast as it can, for the crash tests that SIGKILL writers at random instants.
///
/// Prints `ready` once, on its own line, after its first successful write. Conflicts and races with other
/// writers are expected and retried; any other error (a corrupt record above all) ends the command with
/// a failure.
struct TortureWriteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "_torture-write",
        abstract: "Write a file lock in a tight get/update loop (crash testing; internal).",
        shouldDisplay: false
    )

    @Option(help: "The record's path, DIR/NAME.")
    var path: String

    @Option(help: "The identity to write as holder.")
    var identity: String

    @Option(help: "Stop after this many successful writes (default: never).")
    var count: Int?

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
    }

    func run() async throws {
        let lock = try FileLock(path: path, identity: identity)
        var written = 0
        while count.map({ written < $0 }) ?? true {
            let now = MicroTime.now()
            do {
                if let current = try await lock.get() {
                    var next = current.record
                    if next.holderIdentity != identity {
                        next.holderIdentity = identity
                        next.acquireTime = now
                        next.leaseTransitions += 1
                    }
                    next.renewTime = now
                    _ = try await lock.update(next, expecting: current.version)
                } else {
                    let record = LeaderElectionRecord(
                        holderIdentity: identity, leaseDuration: .seconds(15), acquireTime: now, renewTime: now)
                    _ = try await lock.create(record)
                }
            } catch let error as LeaderElectionError
                where error.code == .conflict || error.code == .alreadyExists || error.code == .notFound
            {
                continue
            }
            written += 1
            if written == 1 {
                FileHandle.standardOutput.write(Data("ready\n".utf8))
            }
        }
    }
}
