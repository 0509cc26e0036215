#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LeaderElection
import Testing

@testable import FileLock

@Suite("FileLock records and compare-and-swap")
struct FileLockRecordTests {
    @Test("get returns nil before any record exists")
    func missingRecordIsNil() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            #expect(try await lock.get() == nil)
        }
    }

    @Test("every field round-trips: µs timestamps, sub-second lease, strategy, preferredHolder")
    func roundTrip() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            let record = sampleRecord(holder: "a", transitions: 7, strategy: "OldestEmulationVersion", preferredHolder: "b")
            let version = try await lock.create(record)
            let read = try #require(try await lock.get())
            #expect(read.record == record)
            #expect(read.version == version)
            #expect(read.holderIsKnownGone == false)
            #expect(read.record.acquireTime?.microsecondsSinceEpoch == 1_700_000_000_123_456)
            #expect(generation(of: version) != nil)

            // Another instance (another candidate) reads the same.
            let other = try FileLock(directory: dir, name: "app", identity: "b")
            let seen = try #require(try await other.get())
            #expect(seen.record == record)
            #expect(seen.version == version)
        }
    }

    @Test("an empty holder round-trips and is never reported gone")
    func emptyHolder() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            var record = sampleRecord(holder: "")
            record.acquireTime = nil
            record.renewTime = nil
            _ = try await lock.create(record)
            let read = try #require(try await lock.get())
            #expect(read.record == record)
            #expect(read.record.isReleased)
            #expect(read.holderIsKnownGone == false)
        }
    }

    @Test("the record file is client-go JSON plus a generation")
    func onDiskFormat() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            let version = try await lock.create(sampleRecord(holder: "a"))
            let data = try #require(FileManager.default.contents(atPath: dir + "/app"))
            let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            #expect(object["holderIdentity"] as? String == "a")
            #expect(object["leaseDurationSeconds"] as? Double == 15.25)
            #expect(object["renewTime"] as? String == "2023-11-14T22:13:32.654321Z")
            let stored = try #require(object["generation"] as? NSNumber)
            #expect(version == LockVersion("g\(stored.int64Value)"))
            #expect(fileExists(dir + "/.app.lock"))
            #expect(fileExists(dir + "/.app.members/a"))
        }
    }

    @Test("create on an existing record throws alreadyExists, even when the record is garbage")
    func createExisting() async throws {
        try await withTemporaryDirectory { dir in
            let a = try FileLock(directory: dir, name: "app", identity: "a")
            let b = try FileLock(directory: dir, name: "app", identity: "b")
            let version = try await a.create(sampleRecord(holder: "a"))
            let error = await leaderElectionError { try await b.create(sampleRecord(holder: "b")) }
            #expect(error?.code == .alreadyExists)
            #expect(try await a.get()?.version == version)

            try a.writeRaw(Array("garbage".utf8))
            #expect(await leaderElectionError { try await b.create(sampleRecord(holder: "b")) }?.code == .alreadyExists)
        }
    }

    @Test("update without a record throws notFound")
    func updateMissing() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            let error = await leaderElectionError { try await lock.update(sampleRecord(holder: "a"), expecting: LockVersion("g1")) }
            #expect(error?.code == .notFound)
            #expect(try await lock.get() == nil)
        }
    }

    @Test("a stale version conflicts and the error carries the current version")
    func staleVersionConflicts() async throws {
        try await withTemporaryDirectory { dir in
            let a = try FileLock(directory: dir, name: "app", identity: "a")
            let b = try FileLock(directory: dir, name: "app", identity: "b")
            let first = try await a.create(sampleRecord(holder: "a"))
            let second = try await a.update(sampleRecord(holder: "a", transitions: 1), expecting: first)
            let error = await leaderElectionError { try await b.update(sampleRecord(holder: "b"), expecting: first) }
            #expect(error?.code == .conflict)
            #expect(error?.version == second)
            let read = try #require(try await b.get())
            #expect(read.record.holderIdentity == "a")
            #expect(read.version == second)
        }
    }

    @Test("every write returns a new version, including after delete and after garbage")
    func versionsNeverRepeat() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            var seen: Set<LockVersion> = []
            var version = try await lock.create(sampleRecord(holder: "a"))
            seen.insert(version)
            for i in 1...20 {
                let next = try await lock.update(sampleRecord(holder: "a", transitions: i), expecting: version)
                #expect(generation(of: next)! == generation(of: version)! + 1)
                version = next
                seen.insert(version)
            }
            // Deleting the record must not restart the sequence.
            try lock.delete()
            #expect(try await lock.get() == nil)
            version = try await lock.create(sampleRecord(holder: "a"))
            #expect(!seen.contains(version))
            seen.insert(version)
            // Nor does garbage.
            try lock.writeRaw(Array("{not json".utf8))
            let corrupt = await leaderElectionError { try await lock.get() }
            let corruptVersion = try #require(corrupt?.version)
            version = try await lock.update(sampleRecord(holder: "a"), expecting: corruptVersion)
            #expect(!seen.contains(version))
            seen.insert(version)
            #expect(seen.count == 23)
        }
    }

    @Test("of 16 concurrent updaters presenting one version exactly one wins (8 rounds)")
    func concurrentUpdaters() async throws {
        try await withTemporaryDirectory { dir in
            let setup = try FileLock(directory: dir, name: "app", identity: "setup")
            var version = try await setup.create(sampleRecord(holder: ""))
            let locks = try (0..<16).map { try FileLock(directory: dir, name: "app", identity: "c\($0)") }
            for round in 0..<8 {
                let expected = version
                let outcomes = await withTaskGroup(of: (String, Result<LockVersion, LeaderElectionError>).self) { group in
                    for lock in locks {
                        group.addTask {
                            let record = sampleRecord(holder: lock.identity, transitions: round)
                            do {
                                return (lock.identity, .success(try await lock.update(record, expecting: expected)))
                            } catch let error as LeaderElectionError {
                                return (lock.identity, .failure(error))
                            } catch {
                                return (lock.identity, .failure(.unavailable("\(error)")))
                            }
                        }
                    }
                    return await group.reduce(into: []) { $0.append($1) }
                }
                let winners = outcomes.filter { if case .success = $0.1 { true } else { false } }
                #expect(winners.count == 1, "round \(round)")
                for (_, outcome) in outcomes {
                    if case .failure(let error) = outcome { #expect(error.code == .conflict, "round \(round): \(error)") }
                }
                let winner = try #require(winners.first)
                let read = try #require(try await setup.get())
                #expect(read.record.holderIdentity == winner.0)
                #expect(read.record.leaseTransitions == round)
                version = try winner.1.get()
                #expect(read.version == version)
            }
        }
    }

    @Test("garbage reads as corruptRecord with an x-version; update with it replaces the data")
    func garbageIsReplaceable() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            let garbage = Array("\u{1}\u{2} definitely not a record".utf8)
            try lock.writeRaw(garbage)
            let error = try #require(await leaderElectionError { try await lock.get() })
            #expect(error.code == .corruptRecord)
            #expect(error.message.contains(dir + "/app"))
            let version = try #require(error.version)
            #expect(version == LockVersion("x" + fnv1a64Hex(garbage)))
            // Same bytes, same version: it is computed from the data.
            #expect(await leaderElectionError { try await lock.get() }?.version == version)

            let wrong = await leaderElectionError { try await lock.update(sampleRecord(holder: "a"), expecting: LockVersion("g1")) }
            #expect(wrong?.code == .conflict)
            #expect(wrong?.version == version)

            let record = sampleRecord(holder: "a", transitions: 3)
            let replaced = try await lock.update(record, expecting: version)
            let read = try #require(try await lock.get())
            #expect(read.record == record)
            #expect(read.version == replaced)
        }
    }

    @Test("valid JSON with wrong types, and an empty file, are corrupt too")
    func otherCorruptShapes() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            for bytes in [[], Array("[]".utf8), Array(#"{"holderIdentity":5}"#.utf8), Array(#"{"generation":"x"}"#.utf8)] {
                try lock.writeRaw(bytes)
                let error = await leaderElectionError { try await lock.get() }
                #expect(error?.code == .corruptRecord)
                #expect(error?.version == LockVersion("x" + fnv1a64Hex(bytes)))
            }
        }
    }

    @Test("a client-go record without a generation is readable and replaceable by its content version")
    func foreignRecordWithoutGeneration() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            let bytes = sampleRecord(holder: "").jsonBytes()
            try lock.writeRaw(bytes)
            let read = try #require(try await lock.get())
            #expect(read.record == sampleRecord(holder: ""))
            #expect(read.version == LockVersion("x" + fnv1a64Hex(bytes)))
            let next = try await lock.update(sampleRecord(holder: "a"), expecting: read.version)
            #expect(generation(of: next) != nil)
        }
    }

    @Test("leftover temp files of dead writers are removed by the next write")
    func staleTempsRemoved() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            let stale = dir + "/.app.tmp.999999.deadbeef"
            #expect(FileManager.default.createFile(atPath: stale, contents: Data("half a rec".utf8)))
            let unrelated = dir + "/.other.tmp.1.2"
            #expect(FileManager.default.createFile(atPath: unrelated, contents: Data()))
            _ = try await lock.create(sampleRecord(holder: "a"))
            #expect(!fileExists(stale))
            #expect(fileExists(unrelated))
        }
    }

    @Test("delete removes the record and is idempotent")
    func deleteRecord() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            _ = try await lock.create(sampleRecord(holder: "a"))
            try lock.delete()
            #expect(try await lock.get() == nil)
            try lock.delete()
            #expect(await leaderElectionError { try await lock.update(sampleRecord(holder: "a"), expecting: LockVersion("g1")) }?.code == .notFound)
        }
    }

    @Test("listLocks names the records and hides companions, members and temps")
    func listLocks() async throws {
        try await withTemporaryDirectory { dir in
            _ = try await FileLock(directory: dir, name: "beta", identity: "a").create(sampleRecord(holder: "a"))
            _ = try await FileLock(directory: dir, name: "alpha", identity: "a").create(sampleRecord(holder: ""))
            try FileLock(directory: dir, name: "gamma", identity: "a").writeRaw(Array("junk".utf8))
            _ = try FileLock(directory: dir, name: "never-written", identity: "a")
            #expect(FileManager.default.createFile(atPath: dir + "/.beta.tmp.1.2", contents: Data()))
            #expect(try FileLock.listLocks(in: dir) == ["alpha", "beta", "gamma"])
            let error = leaderElectionError { try FileLock.listLocks(in: dir + "/missing") }
            #expect(error?.code == .notFound)
        }
    }

    @Test("a task cancelled while waiting for the companion lock throws CancellationError and writes nothing")
    func cancellationWhileWaiting() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            let version = try await lock.create(sampleRecord(holder: "a"))
            // Hold the companion lock exclusively, as a concurrent writer would.
            let companion = open(dir + "/.app.lock", O_RDWR | O_CLOEXEC)
            #expect(companion >= 0)
            #expect(flock(companion, LOCK_EX) == 0)
            let task = Task { try await lock.update(sampleRecord(holder: "a", transitions: 9), expecting: version) }
            // Give the update time to block in flock (the outcome must be the same if it has not yet).
            try await Task.sleep(for: .milliseconds(30))
            task.cancel()
            let result = await task.result
            #expect(throws: CancellationError.self) { try result.get() }
            close(companion)
            let read = try #require(try await lock.get())
            #expect(read.version == version)
            #expect(read.record.leaseTransitions == 0)
        }
    }
}
