#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LeaderElection
import Testing

@testable import FileLock

@Suite("FileLock liveness and change feed")
struct FileLockLivenessTests {
    @Test("the holder's liveness file is locked by the time create() and update() return")
    func noWindowAfterWrite() async throws {
        try await withTemporaryDirectory { dir in
            let a = try FileLock(directory: dir, name: "app", identity: "a")
            let b = try FileLock(directory: dir, name: "app", identity: "b")
            #expect(!fileExists(dir + "/.app.members/a"))
            let first = try await a.create(sampleRecord(holder: "a"))
            #expect(isLockedByAnyone(dir + "/.app.members/a"))

            #expect(!fileExists(dir + "/.app.members/b"))
            _ = try await b.update(sampleRecord(holder: "b"), expecting: first)
            #expect(isLockedByAnyone(dir + "/.app.members/b"))
            #expect(isLockedByAnyone(dir + "/.app.members/a"))  // a is still alive
        }
    }

    @Test("writing someone else (or nobody) as holder does not take a liveness lock")
    func noLivenessForOthers() async throws {
        try await withTemporaryDirectory { dir in
            let a = try FileLock(directory: dir, name: "app", identity: "a")
            _ = try await a.create(sampleRecord(holder: ""))
            #expect(!fileExists(dir + "/.app.members/a"))
        }
    }

    @Test("holderIsKnownGone is false while the holder lives and true once its liveness lock is released")
    func holderGoneAfterRelease() async throws {
        try await withTemporaryDirectory { dir in
            let a = try FileLock(directory: dir, name: "app", identity: "a")
            let b = try FileLock(directory: dir, name: "app", identity: "b")
            _ = try await a.create(sampleRecord(holder: "a"))
            let recorder = ChangeRecorder(try #require(b.changes()))
            defer { recorder.stop() }
            #expect(try await b.get()?.holderIsKnownGone == false)
            #expect(try await a.get()?.holderIsKnownGone == false)  // never about oneself
            a.releaseLivenessForTesting()
            // The lock is released when the last reference to the descriptor closes; a child process being
            // spawned concurrently (by another test) holds one until its exec, so await the feed.
            #expect(try await recorder.waitUntil { try await b.get()?.holderIsKnownGone == true })
            #expect(try await a.get()?.holderIsKnownGone == false)
        }
    }

    @Test("a holder whose FileLock is deinitialised is reported gone, and the change feed says so")
    func holderGoneAfterDeinit() async throws {
        try await withTemporaryDirectory { dir in
            let b = try FileLock(directory: dir, name: "app", identity: "b")
            let recorder = ChangeRecorder(try #require(b.changes()))
            defer { recorder.stop() }
            try await createAndDrop(directory: dir, identity: "a")
            let gone = try await recorder.waitUntil { try await b.get()?.holderIsKnownGone == true }
            #expect(gone)
            #expect(!isLockedByAnyone(dir + "/.app.members/a"))
        }
    }

    /// Creates a record held by `identity` through a FileLock that does not outlive this call.
    private func createAndDrop(directory: String, identity: String) async throws {
        let lock = try FileLock(directory: directory, name: "app", identity: identity)
        _ = try await lock.create(sampleRecord(holder: identity))
    }

    @Test("a record naming a holder that never took a liveness lock reads as gone")
    func holderWithoutLivenessIsGone() async throws {
        try await withTemporaryDirectory { dir in
            let a = try FileLock(directory: dir, name: "app", identity: "a")
            _ = try await a.create(sampleRecord(holder: "someone-else"))
            #expect(try await a.get()?.holderIsKnownGone == true)
        }
    }

    @Test("a second live instance claiming the same identity gets invalidConfiguration")
    func duplicateIdentityRejected() async throws {
        try await withTemporaryDirectory { dir in
            let first = try FileLock(directory: dir, name: "app", identity: "a")
            let second = try FileLock(directory: dir, name: "app", identity: "a")
            let version = try await first.create(sampleRecord(holder: "a"))
            let error = await leaderElectionError { try await second.update(sampleRecord(holder: "a", transitions: 1), expecting: version) }
            #expect(error?.code == .invalidConfiguration)
            #expect(error?.message.contains("in use by another live process") == true)
            // Nothing was written, and the duplicate can still read.
            #expect(try await second.get()?.version == version)
            // Once the first is gone, the identity is free again.
            let recorder = ChangeRecorder(try #require(second.changes()))
            defer { recorder.stop() }
            first.releaseLivenessForTesting()
            #expect(await recorder.waitUntil { !isLockedByAnyone(dir + "/.app.members/a") })
            let next = try await second.update(sampleRecord(holder: "a", transitions: 1), expecting: version)
            #expect(try await first.get()?.version == next)
        }
    }

    @Test("liveness files of dead candidates are swept on takeover; live ones stay")
    func sweeper() async throws {
        try await withTemporaryDirectory { dir in
            let a = try FileLock(directory: dir, name: "app", identity: "a")
            let b = try FileLock(directory: dir, name: "app", identity: "b")
            let c = try FileLock(directory: dir, name: "app", identity: "c")
            var version = try await a.create(sampleRecord(holder: "a"))
            version = try await b.update(sampleRecord(holder: "b"), expecting: version)
            let recorder = ChangeRecorder(try #require(c.changes()))
            defer { recorder.stop() }
            a.releaseLivenessForTesting()  // a dies; b (alive, holder) and a's file exist
            #expect(await recorder.waitUntil { !isLockedByAnyone(dir + "/.app.members/a") })
            #expect(fileExists(dir + "/.app.members/a"))
            _ = try await c.update(sampleRecord(holder: "c"), expecting: version)
            #expect(!fileExists(dir + "/.app.members/a"))
            #expect(fileExists(dir + "/.app.members/b"))  // alive: its lock keeps it
            #expect(fileExists(dir + "/.app.members/c"))
            #expect(try await a.get()?.holderIsKnownGone == false)  // c is alive
        }
    }

    @Test("identities are percent-encoded into liveness file names")
    func identityEncoding() async throws {
        try await withTemporaryDirectory { dir in
            for (identity, file) in [("host/x y", "host%2Fx%20y"), (".hidden", "%2Ehidden"), ("a.b_c-d", "a.b_c-d"), ("ü%", "%C3%BC%25")] {
                let lock = try FileLock(directory: dir, name: "app", identity: identity)
                try lock.delete()
                _ = try await lock.create(sampleRecord(holder: identity))
                #expect(isLockedByAnyone(dir + "/.app.members/" + file), "identity \(identity)")
            }
            let long = String(repeating: "x", count: 300)
            let encoded = LockPaths.encode(long)
            #expect(encoded.utf8.count < 200)
            #expect(encoded != LockPaths.encode(long + "y"))
            let lock = try FileLock(directory: dir, name: "app", identity: long)
            try lock.delete()
            _ = try await lock.create(sampleRecord(holder: long))
            #expect(isLockedByAnyone(dir + "/.app.members/" + encoded))
        }
    }

    @Test("the change feed wakes on another instance's writes and on delete")
    func feedWakesOnWrites() async throws {
        try await withTemporaryDirectory { dir in
            let watcher = try FileLock(directory: dir, name: "app", identity: "w")
            let writer = try FileLock(directory: dir, name: "app", identity: "x")
            let recorder = ChangeRecorder(try #require(watcher.changes()))
            defer { recorder.stop() }

            var seen = recorder.count
            let version = try await writer.create(sampleRecord(holder: "x"))
            #expect(await recorder.wait(forCountAbove: seen, timeout: .seconds(10)))

            seen = recorder.count
            _ = try await writer.update(sampleRecord(holder: "x", transitions: 1), expecting: version)
            #expect(await recorder.wait(forCountAbove: seen, timeout: .seconds(10)))

            seen = recorder.count
            try writer.delete()
            #expect(await recorder.wait(forCountAbove: seen, timeout: .seconds(10)))
        }
    }

    @Test("the change feed ignores other locks in the same directory")
    func feedFiltersOtherNames() async throws {
        try await withTemporaryDirectory { dir in
            let watcher = try FileLock(directory: dir, name: "app", identity: "w")
            let other = try FileLock(directory: dir, name: "other", identity: "x")
            let recorder = ChangeRecorder(try #require(watcher.changes()))
            defer { recorder.stop() }
            var version = try await other.create(sampleRecord(holder: ""))
            for i in 1...5 { version = try await other.update(sampleRecord(holder: "", transitions: i), expecting: version) }
            // A write to our record afterwards is seen; the earlier ones of "other" were not.
            let mine = try FileLock(directory: dir, name: "app", identity: "y")
            _ = try await mine.create(sampleRecord(holder: ""))
            #expect(await recorder.wait(forCountAbove: 0, timeout: .seconds(10)))
            #expect(recorder.count <= 1)
        }
    }

    @Test("the change feed wakes when the holder's liveness descriptor is closed")
    func feedWakesOnHolderDeath() async throws {
        try await withTemporaryDirectory { dir in
            let holder = try FileLock(directory: dir, name: "app", identity: "h")
            let watcher = try FileLock(directory: dir, name: "app", identity: "w")
            _ = try await holder.create(sampleRecord(holder: "h"))
            let recorder = ChangeRecorder(try #require(watcher.changes()))
            defer { recorder.stop() }
            #expect(try await watcher.get()?.holderIsKnownGone == false)
            let seen = recorder.count
            holder.releaseLivenessForTesting()
            #expect(await recorder.wait(forCountAbove: seen, timeout: .seconds(10)))
            // Other closes wake the feed too (and a concurrently spawned child may hold the descriptor until
            // its exec), so re-check after each wake-up, bounded.
            #expect(try await recorder.waitUntil { try await watcher.get()?.holderIsKnownGone == true })
        }
    }

    @Test("probing a live holder does not wake the feed (no feedback loop)")
    func probesAreQuiet() async throws {
        try await withTemporaryDirectory { dir in
            let holder = try FileLock(directory: dir, name: "app", identity: "h")
            let watcher = try FileLock(directory: dir, name: "app", identity: "w")
            _ = try await holder.create(sampleRecord(holder: "h"))
            let recorder = ChangeRecorder(try #require(watcher.changes()))
            defer { recorder.stop() }
            for _ in 0..<20 { #expect(try await watcher.get()?.holderIsKnownGone == false) }
            // A marker write: once it is seen, every event caused by the probes would have been seen too.
            let marker = try FileLock(directory: dir, name: "app", identity: "m")
            _ = try await marker.update(sampleRecord(holder: ""), expecting: try #require(try await marker.get()).version)
            #expect(await recorder.wait(forCountAbove: 0, timeout: .seconds(10)))
            // A feedback loop would wake the feed at least once per probe (20+). A few wake-ups are possible
            // without one: the marker write is several inotify events, and processes other tests spawn
            // close inherited descriptors at exec.
            #expect(recorder.count < 10)
        }
    }
}
