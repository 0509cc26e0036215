#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LeaderElection
import Testing

@testable import FileLock

@Suite("FileLock configuration and bad input")
struct FileLockConfigurationTests {
    @Test("description is file:<absolute dir>/<name>; path and directory forms agree")
    func description() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir + "//./", name: "app", identity: "a")
            #expect(lock.description == "file:\(dir)/app")
            #expect(lock.directory == dir)
            #expect(lock.name == "app")
            #expect(lock.path == dir + "/app")
            let byPath = try FileLock(path: dir + "/app", identity: "a")
            #expect(byPath.description == lock.description)
            #expect(byPath.directory == dir)
        }
    }

    @Test("relative directories are resolved against the working directory")
    func relativeDirectory() throws {
        let cwd = FileManager.default.currentDirectoryPath
        let prefix = cwd == "/" ? "" : cwd
        #expect(try FileLockStore.absolutePath("locks/./x/") == prefix + "/locks/x")
        #expect(try FileLockStore.absolutePath(".") == (cwd == "/" ? "/" : cwd))
        #expect(try FileLockStore.absolutePath("/") == "/")
        #expect(LockPaths(directory: "/", name: "app").record == "/app")
        #expect(LockPaths(directory: "/", name: "app").companion == "/.app.lock")
    }

    @Test(
        "invalid names and identities are rejected",
        arguments: [
            ("", "a"), ("a/b", "a"), (".hidden", "a"), (".", "a"), ("..", "a"), ("app", ""),
            ("nul\u{0}", "a"), (String(repeating: "n", count: 201), "a"),
        ])
    func invalidNames(name: String, identity: String) async throws {
        try await withTemporaryDirectory { dir in
            let error = leaderElectionError { try FileLock(directory: dir, name: name, identity: identity) }
            #expect(error?.code == .invalidConfiguration)
        }
    }

    @Test("a path ending in / names no lock")
    func pathWithoutName() async throws {
        try await withTemporaryDirectory { dir in
            #expect(leaderElectionError { try FileLock(path: dir + "/", identity: "a") }?.code == .invalidConfiguration)
        }
    }

    @Test("a missing directory is notFound naming it, unless createDirectory")
    func missingDirectory() async throws {
        try await withTemporaryDirectory { dir in
            let missing = dir + "/does/not/exist"
            let error = leaderElectionError { try FileLock(directory: missing, name: "app", identity: "a") }
            #expect(error?.code == .notFound)
            #expect(error?.message.contains(missing) == true)
            #expect(!fileExists(missing))
        }
    }

    @Test("createDirectory creates the directory and its parents with mode 0700")
    func createDirectory() async throws {
        try await withTemporaryDirectory { dir in
            let nested = dir + "/one/two"
            let lock = try FileLock(directory: nested, name: "app", identity: "a", createDirectory: true)
            for path in [dir + "/one", nested] {
                var st = stat()
                #expect(stat(path, &st) == 0)
                #expect(st.st_mode & S_IFMT == S_IFDIR)
                #expect(st.st_mode & 0o777 == 0o700, "\(path) has mode \(String(st.st_mode & 0o777, radix: 8))")
            }
            _ = try await lock.create(sampleRecord(holder: "a"))
            #expect(try await lock.get()?.record.holderIdentity == "a")
            // An existing directory is fine with createDirectory too.
            _ = try FileLock(directory: nested, name: "app", identity: "b", createDirectory: true)
        }
    }

    @Test("the directory was deleted after init: operations report notFound naming it")
    func directoryDeletedLater() async throws {
        try await withTemporaryDirectory { dir in
            let sub = dir + "/sub"
            let lock = try FileLock(directory: sub, name: "app", identity: "a", createDirectory: true)
            try FileManager.default.removeItem(atPath: sub)
            let error = await leaderElectionError { try await lock.get() }
            #expect(error?.code == .notFound)
            #expect(error?.message.contains(sub) == true)
            #expect(await leaderElectionError { try await lock.create(sampleRecord(holder: "a")) }?.code == .notFound)
        }
    }

    @Test("a file where the directory should be is a clear invalidConfiguration")
    func fileInsteadOfDirectory() async throws {
        try await withTemporaryDirectory { dir in
            let file = dir + "/plain"
            #expect(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
            let direct = leaderElectionError { try FileLock(directory: file, name: "app", identity: "a") }
            #expect(direct?.code == .invalidConfiguration)
            #expect(direct?.message.contains("not a directory") == true)
            // ENOTDIR: a file as an intermediate component.
            let below = leaderElectionError { try FileLock(directory: file + "/sub", name: "app", identity: "a") }
            #expect(below?.code == .invalidConfiguration)
            #expect(below?.message.contains("not a directory") == true)
            let creating = leaderElectionError { try FileLock(directory: file + "/sub", name: "app", identity: "a", createDirectory: true) }
            #expect(creating?.code == .invalidConfiguration)
        }
    }

    @Test("a symbolic link at the record path is refused, and its target is untouched")
    func symlinkAtRecord() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            let target = dir + "/target"
            #expect(FileManager.default.createFile(atPath: target, contents: Data("precious".utf8)))
            #expect(symlink(target, dir + "/app") == 0)
            for error in [
                await leaderElectionError { try await lock.get() },
                await leaderElectionError { try await lock.create(sampleRecord(holder: "a")) },
                await leaderElectionError { try await lock.update(sampleRecord(holder: "a"), expecting: LockVersion("g1")) },
            ] {
                #expect(error?.code == .invalidConfiguration)
                #expect(error?.message.contains("is a symbolic link; refusing to follow it") == true)
            }
            #expect(FileManager.default.contents(atPath: target) == Data("precious".utf8))
        }
    }

    @Test("a symbolic link at the companion path is refused")
    func symlinkAtCompanion() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            #expect(symlink(dir + "/elsewhere", dir + "/.app.lock") == 0)
            for error in [
                await leaderElectionError { try await lock.get() },
                await leaderElectionError { try await lock.create(sampleRecord(holder: "a")) },
            ] {
                #expect(error?.code == .invalidConfiguration)
                #expect(error?.message.contains(".app.lock is a symbolic link") == true)
            }
            #expect(!fileExists(dir + "/elsewhere"))
            #expect(!fileExists(dir + "/app"))
        }
    }

    @Test("a symbolic link at the liveness path is refused and nothing is written")
    func symlinkAtLiveness() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            #expect(symlink(dir + "/elsewhere", dir + "/.app.members/a") == 0)
            let error = await leaderElectionError { try await lock.create(sampleRecord(holder: "a")) }
            #expect(error?.code == .invalidConfiguration)
            #expect(error?.message.contains("is a symbolic link") == true)
            #expect(!fileExists(dir + "/app"))
            #expect(!fileExists(dir + "/elsewhere"))
        }
    }

    @Test("a directory or FIFO at the record path is refused without blocking")
    func nonRegularRecord() async throws {
        try await withTemporaryDirectory { dir in
            let lock = try FileLock(directory: dir, name: "app", identity: "a")
            #expect(mkfifo(dir + "/app", 0o600) == 0)
            let fifo = await leaderElectionError { try await lock.get() }
            #expect(fifo?.code == .invalidConfiguration)
            #expect(fifo?.message.contains("not a regular file") == true)
            #expect(unlink(dir + "/app") == 0)
            #expect(mkdir(dir + "/app", 0o700) == 0)
            #expect(await leaderElectionError { try await lock.get() }?.code == .invalidConfiguration)
        }
    }

    /// Never skipped: root bypasses permission checks, so as root the same write is attempted by a child
    /// `leasectl` process running as `nobody` (setpriv), and its error must be the same typed one.
    @Test("permission denied is unauthorized naming the path")
    func permissionDenied() async throws {
        try await withTemporaryDirectory { dir in
            let sub = dir + "/locked"
            let lock = try FileLock(directory: sub, name: "app", identity: "a", createDirectory: true)
            if geteuid() != 0 {
                #expect(chmod(sub, 0o500) == 0)
                defer { chmod(sub, 0o700) }
                let error = await leaderElectionError { try await lock.create(sampleRecord(holder: "a")) }
                #expect(error?.code == .unauthorized)
                #expect(error?.message.contains(sub) == true)
                return
            }
            // Readable and searchable by everyone, writable by root only.
            #expect(chmod(dir, 0o755) == 0)
            #expect(chmod(sub, 0o755) == 0)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups",
                                 try locateLeasectl(), "_torture-write", "--path", sub + "/app", "--identity", "a", "--count", "1"]
            let stderr = Pipe()
            process.standardError = stderr
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let output = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus != 0, "a write as nobody into a root-only directory must fail")
            #expect(output.contains("LeaderElectionError(unauthorized)"), "\(output)")
            #expect(output.contains(sub), "\(output)")
        }
    }
}
