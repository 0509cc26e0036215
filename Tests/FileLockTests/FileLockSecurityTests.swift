#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LeaderElection
import Testing

@testable import FileLock

private func mode(_ path: String) -> mode_t? {
    var st = stat()
    guard lstat(path, &st) == 0 else { return nil }
    return st.st_mode & 0o7777
}

private func octal(_ mode: mode_t?) -> String { mode.map { String($0, radix: 8) } ?? "missing" }

/// `nobody`'s user id.
private let nobody: uid_t = 65534

@Suite("FileLock security: modes, ownership, symbolic links")
struct FileLockSecurityTests {
    @Test("record, companion, liveness and temporary files are 0600; the members directory 0700")
    func fileModes() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir + "/locks", name: "app", identity: "a", createDirectory: true)
            #expect(mode(dir + "/locks") == 0o700, "\(octal(mode(dir + "/locks")))")
            let version = try await lock.create(sampleRecord(holder: "a"))
            _ = try await lock.update(sampleRecord(holder: "a", transitions: 1), expecting: version)
            for file in ["app", ".app.lock", ".app.members/a"] {
                let found = mode(dir + "/locks/" + file)
                // The umask can only remove bits: nothing for group or others, whatever it is.
                #expect(found != nil && found! & 0o077 == 0, "\(file) has mode \(octal(found))")
            }
            let members = mode(dir + "/locks/.app.members")
            #expect(members != nil && members! & 0o077 == 0, ".app.members has mode \(octal(members))")
        }
    }

    @Test("a companion left group- and world-readable by an older version is tightened by the next write")
    func looseCompanionIsTightened() async throws {
        try await withTemporaryDirectory { dir in
            let companion = dir + "/.app.lock"
            #expect(FileManager.default.createFile(atPath: companion, contents: nil))
            #expect(chmod(companion, 0o666) == 0)
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            _ = try await lock.get()
            #expect(mode(companion) == 0o666, "a read changes nothing")
            _ = try await lock.create(sampleRecord(holder: "a"))
            #expect(mode(companion) == 0o600, "\(octal(mode(companion)))")
        }
    }

    @Test("a lock directory that is a symbolic link is refused; symbolic links above it are fine")
    func symlinkedLockDirectory() async throws {
        try await withTemporaryDirectory { dir in
            #expect(mkdir(dir + "/real", 0o700) == 0)
            #expect(symlink(dir + "/real", dir + "/link") == 0)
            for make in [
                { try FileLock(directory: dir + "/link", name: "app", identity: "a") },
                { try FileLock(directory: dir + "/link/", name: "app", identity: "a", createDirectory: true) },
                { try FileLock(path: dir + "/link/app", identity: "a") },
            ] {
                let error = leaderElectionError(make)
                #expect(error?.code == .invalidConfiguration)
                #expect(error?.message.contains("\(dir)/link is a symbolic link; refusing to follow it") == true, "\(error?.message ?? "")")
            }
            #expect(!fileExists(dir + "/real/.app.members"), "nothing was created through the link")
            // A link among the parents (like /var/run -> /run) is not the lock directory.
            #expect(mkdir(dir + "/real/locks", 0o700) == 0)
            let lock = try FileLock(directory: dir + "/link/locks", name: "app", identity: "a")
            _ = try await lock.create(sampleRecord(holder: "a"))
            #expect(fileExists(dir + "/real/locks/app"))
        }
    }

    @Test("a record that is a symbolic link is never read or written through, by any operation")
    func symlinkedRecordTargetIsNeverTouched() async throws {
        try await withTemporaryDirectory { dir in
            let target = dir + "/precious"
            let original = Data(sampleRecord(holder: "target").jsonBytes())
            #expect(FileManager.default.createFile(atPath: target, contents: original))
            #expect(chmod(target, 0o600) == 0)
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            #expect(symlink(target, dir + "/app") == 0)
            #expect(await leaderElectionError { try await lock.get() }?.code == .invalidConfiguration)
            #expect(await leaderElectionError { try await lock.create(sampleRecord(holder: "a")) }?.code == .invalidConfiguration)
            #expect(await leaderElectionError { try await lock.update(sampleRecord(holder: "a"), expecting: LockVersion("g1")) }?
                .code == .invalidConfiguration)
            // Replacing or deleting the record replaces or removes the link itself, never its target.
            try lock.writeRaw(Array("{}".utf8))
            #expect(mode(dir + "/app").map { $0 & 0o077 == 0 } == true)
            try lock.delete()
            #expect(FileManager.default.contents(atPath: target) == original)
            #expect(mode(target) == 0o600)
        }
    }

    @Test("a companion that is a symbolic link is refused, for readers and writers, and its target stays untouched")
    func symlinkedCompanion() async throws {
        try await withTemporaryDirectory { dir in
            let target = dir + "/elsewhere"
            #expect(FileManager.default.createFile(atPath: target, contents: Data("00000000000000000042\n".utf8)))
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            #expect(symlink(target, dir + "/.app.lock") == 0)
            for error in [
                await leaderElectionError { try await lock.get() },
                await leaderElectionError { try await lock.create(sampleRecord(holder: "a")) },
                leaderElectionError { try lock.delete() },
            ] {
                #expect(error?.code == .invalidConfiguration)
                #expect(error?.message.contains(".app.lock is a symbolic link") == true, "\(error?.message ?? "")")
            }
            #expect(FileManager.default.contents(atPath: target) == Data("00000000000000000042\n".utf8))
            #expect(!fileExists(dir + "/app"))
        }
    }

    @Test("a members directory that is a symbolic link is refused at init and when taking the liveness lock")
    func symlinkedMembersDirectory() async throws {
        try await withTemporaryDirectory { dir in
            #expect(mkdir(dir + "/outside", 0o700) == 0)
            #expect(symlink(dir + "/outside", dir + "/.app.members") == 0)
            let atInit = leaderElectionError { try FileLock(directory: dir, name: "app", identity: "a") }
            #expect(atInit?.code == .invalidConfiguration)
            #expect(atInit?.message.contains(".app.members is a symbolic link") == true, "\(atInit?.message ?? "")")

            // Swapped for a link after init: the candidate refuses to take its liveness lock through it.
            #expect(unlink(dir + "/.app.members") == 0)
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            #expect(rename(dir + "/.app.members", dir + "/.app.members.old") == 0)
            #expect(symlink(dir + "/outside", dir + "/.app.members") == 0)
            let error = await leaderElectionError { try await lock.create(sampleRecord(holder: "a")) }
            #expect(error?.code == .invalidConfiguration)
            #expect(error?.message.contains("symbolic link") == true, "\(error?.message ?? "")")
            #expect(!fileExists(dir + "/outside/a"), "no liveness file was created through the link")
            #expect(!fileExists(dir + "/app"))
        }
    }

    /// The members sweep unlinks dead candidates' liveness files. Were it to follow a members directory
    /// swapped for a link, whoever can write the lock directory could make a candidate delete files elsewhere.
    @Test("the members sweep never deletes through a members directory swapped for a symbolic link")
    func sweepDoesNotFollowASwappedMembersDirectory() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            let follower = try FileLock(directory: dir, name: "app", identity: "b")
            let held = try await lock.create(sampleRecord(holder: "a"))
            #expect(fileExists(dir + "/.app.members/a"))
            #expect(mkdir(dir + "/victims", 0o700) == 0)
            #expect(FileManager.default.createFile(atPath: dir + "/victims/victim", contents: Data("keep me".utf8)))
            #expect(rename(dir + "/.app.members", dir + "/.app.members.old") == 0)
            #expect(symlink(dir + "/victims", dir + "/.app.members") == 0)
            // A follower cannot probe the holder through the link (no liveness file "a" there): any doubt
            // means "alive", so it does not take over early.
            #expect(try await follower.get()?.holderIsKnownGone == false)
            // Releasing (holder "a" → none) sweeps the members directory.
            _ = try await lock.update(sampleRecord(holder: ""), expecting: held)
            #expect(FileManager.default.contents(atPath: dir + "/victims/victim") == Data("keep me".utf8))
        }
    }

    @Test("a lock directory owned by another user than this process's and root is refused")
    func foreignOwnerIsRefused() async throws {
        // The rule itself, whoever runs the test.
        var st = stat()
        st.st_uid = geteuid() == nobody ? nobody - 1 : nobody
        let rule = leaderElectionError { try FileLockStore.requireTrustedOwner(st, of: "lock directory /x") }
        #expect(rule?.code == .invalidConfiguration)
        #expect(rule?.message.contains("owned by user \(st.st_uid)") == true, "\(rule?.message ?? "")")
        st.st_uid = 0
        #expect(throws: Never.self) { try FileLockStore.requireTrustedOwner(st, of: "lock directory /x") }
        st.st_uid = geteuid()
        #expect(throws: Never.self) { try FileLockStore.requireTrustedOwner(st, of: "lock directory /x") }

        // For real: as root, a directory handed to `nobody`.
        guard geteuid() == 0 else { return }
        try await withTemporaryDirectory { dir in
            let foreign = dir + "/foreign"
            #expect(mkdir(foreign, 0o700) == 0)
            #expect(chown(foreign, nobody, gid_t(nobody)) == 0)
            let error = leaderElectionError { try FileLock(directory: foreign, name: "app", identity: "a") }
            #expect(error?.code == .invalidConfiguration)
            #expect(error?.message.contains("lock directory \(foreign) is owned by user \(nobody)") == true, "\(error?.message ?? "")")
            #expect(!fileExists(foreign + "/.app.members"), "nothing was created in it")

            // A members directory handed to another user is refused too.
            let mine = dir + "/mine"
            _ = try FileLock(directory: mine, name: "app", identity: "a", createDirectory: true)
            #expect(chown(mine + "/.app.members", nobody, gid_t(nobody)) == 0)
            let members = leaderElectionError { try FileLock(directory: mine, name: "app", identity: "a") }
            #expect(members?.code == .invalidConfiguration)
            #expect(members?.message.contains("members directory \(mine)/.app.members is owned by user \(nobody)") == true,
                    "\(members?.message ?? "")")
        }
    }
}
