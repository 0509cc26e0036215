// All Glibc/syscall code of the record store lives in this file (the inotify change feed is in
// InotifyChangeFeed.swift). Every function here blocks: callers run it on `FileLockStore.queue`, or
// (`RecordReader.change()`) on the change feed's own thread, never on Swift's cooperative pool (see `FileLock`).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
#error("FileLock requires Linux (flock(2), inotify(7))")
#endif
import Dispatch
import LeaderElection
import Synchronization

/// The on-disk store behind one ``FileLock``: record, companion CAS lock, liveness file, temp files.
///
/// One instance per `FileLock` value (copies of the struct share it). It owns the candidate's liveness
/// file descriptor, which it closes — releasing the kernel lock other candidates probe — when it is
/// deinitialised.
final class FileLockStore: Sendable {
    let paths: LockPaths
    let identity: String
    /// The record reads and liveness probes, shared with the change feed's thread.
    let reader: RecordReader
    /// Serial queue on which every blocking operation of this store runs.
    let queue: DispatchQueue
    /// The liveness file descriptor (exclusive `flock` held), or -1 before the first write naming
    /// ``identity`` as holder.
    private let livenessFD = Mutex<Int32>(-1)

    /// Creates the store and, when permitted, the members directory (so that it can be watched).
    ///
    /// `paths.directory` must already have been checked with ``prepareDirectory(_:create:)``.
    init(paths: LockPaths, identity: String) throws {
        self.paths = paths
        self.identity = identity
        self.reader = RecordReader(paths: paths, identity: identity)
        self.queue = DispatchQueue(label: "FileLock \(paths.record)")
        try Self.makeMembersDirectory(paths)
    }

    deinit {
        let fd = livenessFD.withLock { fd in
            defer { fd = -1 }
            return fd
        }
        if fd >= 0 { _ = close(fd) }
    }

    // MARK: - Preparation (synchronous, called from FileLock.init)

    /// The absolute form of `path` (relative to the working directory), without `.` components,
    /// repeated or trailing slashes. `..` is kept as written.
    static func absolutePath(_ path: String) throws -> String {
        var full = path
        if !full.hasPrefix("/") {
            guard let cwd = getcwd(nil, 0) else {
                throw ioError("determine the working directory for", path, errno)
            }
            defer { free(cwd) }
            full = String(cString: cwd) + "/" + full
        }
        let parts = full.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }
        return "/" + parts.joined(separator: "/")
    }

    /// Checks that `directory` exists (creating it, mode 0700 with parents, when `create`), is a
    /// directory and not a symbolic link to one, is owned by this process's user or by root, and is not on a
    /// network file system.
    static func prepareDirectory(_ directory: String, create: Bool) throws {
        var st = stat()
        if stat(directory, &st) != 0 {
            let code = errno
            guard code == ENOENT else { throw ioError("access lock directory", directory, code) }
            guard create else {
                throw LeaderElectionError.notFound(
                    "lock directory \(directory) does not exist (create it, or pass createDirectory: true)")
            }
            try makeDirectories(directory)
            guard stat(directory, &st) == 0 else { throw ioError("access lock directory", directory, errno) }
        }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            throw LeaderElectionError.invalidConfiguration("lock directory \(directory) exists but is not a directory")
        }
        var link = stat()
        if lstat(directory, &link) == 0, link.st_mode & S_IFMT == S_IFLNK {
            throw LeaderElectionError.invalidConfiguration(
                "lock directory \(directory) is a symbolic link; refusing to follow it (name the directory itself)")
        }
        try requireTrustedOwner(st, of: "lock directory \(directory)")
        let networkFileSystems: [Int: String] = [
            0x6969: "NFS", 0xFF53_4D42: "CIFS", 0xFE53_4D42: "SMB2", 0x517B: "SMB",
        ]
        if let type = try LinuxSymbols.fileSystemType(directory), let kind = networkFileSystems[type & 0xFFFF_FFFF] {
            throw LeaderElectionError.invalidConfiguration(
                "lock directory \(directory) is on \(kind), a network file system: flock(2) and inotify liveness "
                    + "are not reliable across hosts there, so FileLock refuses it (it is for one host only)")
        }
    }

    /// `mkdir -p` with mode 0700 for every directory it creates.
    private static func makeDirectories(_ directory: String) throws {
        var prefix = ""
        for component in directory.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += "/" + component
            if mkdir(prefix, 0o700) != 0 {
                let code = errno
                if code == EEXIST { continue }
                throw ioError("create lock directory", prefix, code)
            }
        }
    }

    /// Refuses a lock directory (or members directory) owned by another user than this process's, unless
    /// root owns it: its owner could replace every file in it — elect anyone, or swap a file for a symbolic
    /// link — and files this process creates there would lock that user out.
    static func requireTrustedOwner(_ st: stat, of what: String) throws {
        let me = geteuid()
        guard st.st_uid == me || st.st_uid == 0 else {
            throw LeaderElectionError.invalidConfiguration(
                "\(what) is owned by user \(st.st_uid), not by this process's user \(me) or root: its owner could rewrite "
                    + "the lock, so FileLock refuses it; use a directory owned by the user the candidates run as")
        }
    }

    /// Creates `.<name>.members` (mode 0700); tolerates a read-only directory.
    private static func makeMembersDirectory(_ paths: LockPaths) throws {
        if mkdir(paths.members, 0o700) != 0 {
            let code = errno
            switch code {
            case EEXIST: break
            case EACCES, EPERM, EROFS: return  // read-only use (get, changes) still works
            case ENOENT: throw missingDirectory(paths.directory)
            default: throw ioError("create members directory", paths.members, code)
            }
        }
        var st = stat()
        guard lstat(paths.members, &st) == 0 else { throw ioError("inspect", paths.members, errno) }
        if st.st_mode & S_IFMT == S_IFLNK { throw symlinkError(paths.members) }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            throw LeaderElectionError.invalidConfiguration("\(paths.members) exists but is not a directory")
        }
        try requireTrustedOwner(st, of: "members directory \(paths.members)")
    }

    /// Names of the records in `directory`: regular files whose names do not start with `.`.
    static func listLocks(in directory: String) throws -> [String] {
        let directory = try absolutePath(directory)
        guard let dir = opendir(directory) else {
            let code = errno
            if code == ENOENT { throw missingDirectory(directory) }
            throw ioError("list lock directory", directory, code)
        }
        defer { closedir(dir) }
        var names: [String] = []
        for entry in readEntries(dir) where !entry.hasPrefix(".") {
            var st = stat()
            if lstat(directory + "/" + entry, &st) == 0, st.st_mode & S_IFMT == S_IFREG {
                names.append(entry)
            }
        }
        return names.sorted()
    }

    // MARK: - ResourceLock operations (blocking; run on `queue`)

    /// Reads the record under the companion's shared lock and probes the holder's liveness.
    func get(commit: () -> Bool) throws -> VersionedRecord? {
        try withCompanion(exclusive: false, commit: commit) { _ in try reader.read() }
    }

    /// Stores `record` if no record file exists.
    func create(_ record: LeaderElectionRecord, commit: () -> Bool) throws -> LockVersion {
        try withCompanion(exclusive: true, commit: commit) { companion in
            removeStaleTemps()
            let stored = try reader.readStored()
            guard case .missing = stored else {
                throw LeaderElectionError.alreadyExists("file:\(paths.record) already exists")
            }
            return try store(record, replacing: stored, companion: companion)
        }
    }

    /// Replaces the record if its current version is `expected`.
    func update(_ record: LeaderElectionRecord, expecting expected: LockVersion, commit: () -> Bool) throws -> LockVersion {
        try withCompanion(exclusive: true, commit: commit) { companion in
            removeStaleTemps()
            let stored = try reader.readStored()
            let current: LockVersion
            switch stored {
            case .missing:
                throw LeaderElectionError.notFound("file:\(paths.record) does not exist")
            case .corrupt(let version, _), .record(_, _, let version):
                current = version
            }
            guard current == expected else {
                throw LeaderElectionError.conflict(
                    "file:\(paths.record) is at version \(current), not \(expected)", current: current)
            }
            return try store(record, replacing: stored, companion: companion)
        }
    }

    /// Atomically replaces the record file with `bytes` (no version bookkeeping).
    func writeRaw(_ bytes: [UInt8]) throws {
        try withCompanion(exclusive: true, commit: { true }) { _ in
            removeStaleTemps()
            try replaceRecordFile(with: bytes)
        }
    }

    /// Removes the record file; a missing record is not an error.
    func delete() throws {
        try withCompanion(exclusive: true, commit: { true }) { _ in
            removeStaleTemps()
            if unlink(paths.record) != 0 {
                let code = errno
                if code != ENOENT { throw ioError("delete", paths.record, code) }
                return
            }
            try syncDirectory()
        }
    }

    /// Closes the liveness file, as if this candidate's process had died. For tests.
    func releaseLiveness() {
        let fd = livenessFD.withLock { fd in
            defer { fd = -1 }
            return fd
        }
        if fd >= 0 { _ = close(fd) }
    }

    // MARK: - Record file

    enum Stored {
        case missing
        case corrupt(LockVersion, String)
        case record(LeaderElectionRecord, generation: Int64?, LockVersion)
    }

    /// Writes `record` with the next generation; the caller holds the companion's exclusive lock.
    ///
    /// When the record names this store's identity as holder, the liveness lock is taken first, so a
    /// record naming a live candidate never exists without that candidate's kernel lock.
    private func store(_ record: LeaderElectionRecord, replacing stored: Stored, companion: Int32) throws -> LockVersion {
        if record.holderIdentity == identity { try acquireLiveness() }
        let highWater = readHighWater(companion)
        let generation: Int64
        var previousHolder: String?
        switch stored {
        case .record(let old, let oldGeneration?, _) where oldGeneration < Int64.max - 1:
            generation = max(oldGeneration, highWater) + 1
            previousHolder = old.holderIdentity
        case .record(let old, _, _):
            generation = max(highWater + 1, MicroTime.now().microsecondsSinceEpoch)
            previousHolder = old.holderIdentity
        case .missing, .corrupt:
            // The last generation is unknowable (deleted or garbage record): continue above both the
            // companion's high-water mark and the wall clock in µs, so no earlier version repeats.
            generation = max(highWater + 1, MicroTime.now().microsecondsSinceEpoch)
        }
        try replaceRecordFile(with: record.jsonBytes(extraFields: ["generation": generation]))
        writeHighWater(companion, generation)
        if previousHolder != record.holderIdentity {
            sweepMembers(keeping: [record.holderIdentity, identity])
        }
        return LockVersion("g\(generation)")
    }

    /// Write temp, fsync, rename over the record, fsync the directory.
    private func replaceRecordFile(with bytes: [UInt8]) throws {
        let temp = paths.tempPrefix + "\(getpid()).\(String(UInt64.random(in: .min ... .max), radix: 16))"
        let tempPath = paths.directory + "/" + temp
        let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 {
            let code = errno
            if code == ENOENT { throw Self.missingDirectory(paths.directory) }
            throw ioError("create temporary file", tempPath, code)
        }
        var renamed = false
        defer { if !renamed { _ = unlink(tempPath) } }
        do {
            defer { _ = close(fd) }
            try writeAll(fd, bytes, tempPath)
            guard fsync(fd) == 0 else { throw ioError("fsync", tempPath, errno) }
        }
        guard rename(tempPath, paths.record) == 0 else { throw ioError("rename \(tempPath) over", paths.record, errno) }
        renamed = true
        try syncDirectory()
    }

    private func syncDirectory() throws {
        let fd = open(paths.directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw ioError("open lock directory", paths.directory, errno) }
        defer { _ = close(fd) }
        guard fsync(fd) == 0 else { throw ioError("fsync lock directory", paths.directory, errno) }
    }

    /// Unlinks `.<name>.tmp.*`. Only writers holding the companion's exclusive lock create temp files,
    /// so under that lock every temp file belongs to a writer that died.
    private func removeStaleTemps() {
        guard let dir = opendir(paths.directory) else { return }
        let stale = Self.readEntries(dir).filter { $0.hasPrefix(paths.tempPrefix) }
        closedir(dir)
        for entry in stale { _ = unlink(paths.directory + "/" + entry) }
    }

    // MARK: - Companion lock file

    /// Runs `body` holding the companion's `flock` (exclusive or shared). The blocking wait happens on
    /// the store's queue; `commit` is asked once the lock is held and aborts with `CancellationError`
    /// when the caller has given up meanwhile.
    private func withCompanion<T>(exclusive: Bool, commit: () -> Bool, _ body: (Int32) throws -> T) throws -> T {
        let base = O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK
        var fd = open(paths.companion, base | O_CREAT | (exclusive ? O_RDWR : O_RDONLY), 0o600)
        if fd < 0, !exclusive, [EACCES, EPERM, EROFS].contains(errno) {
            // A reader without write permission on the directory: use the companion if it exists.
            fd = open(paths.companion, base | O_RDONLY)
            if fd < 0, errno == ENOENT {
                // No writer has ever run here; the record is replaced atomically, so read it as is.
                guard commit() else { throw CancellationError() }
                return try body(-1)
            }
        }
        if fd < 0 {
            let code = errno
            if code == ENOENT { throw Self.missingDirectory(paths.directory) }
            throw ioError("open", paths.companion, code)
        }
        defer { _ = close(fd) }  // closing releases the flock
        try Self.requireRegularFile(fd, paths.companion)
        if exclusive { tightenMode(fd) }
        while flock(fd, exclusive ? LOCK_EX : LOCK_SH) != 0 {
            let code = errno
            if code != EINTR { throw ioError("flock", paths.companion, code) }
        }
        guard commit() else { throw CancellationError() }
        return try body(fd)
    }

    /// The highest generation ever written, kept in the companion file (it outlives deleted records).
    private func readHighWater(_ companion: Int32) -> Int64 {
        var buffer = [UInt8](repeating: 0, count: 24)
        let n = buffer.withUnsafeMutableBytes { pread(companion, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return 0 }
        var value: Int64 = 0
        for byte in buffer[..<n] {
            guard byte >= 48, byte <= 57, value < Int64.max / 10 - 9 else { break }
            value = value * 10 + Int64(byte - 48)
        }
        return value
    }

    /// Best effort: the record itself (fsynced) is authoritative; this only guards against reuse of
    /// versions after the record is deleted.
    private func writeHighWater(_ companion: Int32, _ generation: Int64) {
        let digits = String(generation)
        let text = Array((String(repeating: "0", count: max(0, 20 - digits.count)) + digits + "\n").utf8)
        _ = text.withUnsafeBytes { pwrite(companion, $0.baseAddress, $0.count, 0) }
    }

    // MARK: - Liveness

    /// Takes the exclusive liveness lock on `.<name>.members/<identity>` unless already held.
    ///
    /// Called under the companion's exclusive lock, before the record naming this identity is written.
    private func acquireLiveness() throws {
        if livenessFD.withLock({ $0 }) >= 0 { return }
        try Self.makeMembersDirectory(paths)
        guard let members = try reader.openMembers() else { throw ioError("open members directory", paths.members, ENOENT) }
        defer { _ = close(members) }
        let path = paths.liveness(of: identity)
        let name = LockPaths.encode(identity)
        for _ in 0..<8 {
            let fd = openat(members, name, O_CREAT | O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0o600)
            if fd < 0 { throw ioError("open liveness file", path, errno) }
            if flock(fd, LOCK_EX | LOCK_NB) != 0 {
                let code = errno
                _ = close(fd)
                if code == EWOULDBLOCK {
                    throw LeaderElectionError.invalidConfiguration(
                        "identity \"\(identity)\" is in use by another live process (or another FileLock instance "
                            + "in this process) on file:\(paths.record): its liveness file \(path) is locked")
                }
                throw ioError("flock liveness file", path, code)
            }
            var held = stat()
            var linked = stat()
            guard fstat(fd, &held) == 0 else {
                let code = errno
                _ = close(fd)
                throw ioError("fstat liveness file", path, code)
            }
            if fstatat(members, name, &linked, AT_SYMLINK_NOFOLLOW) == 0, linked.st_dev == held.st_dev, linked.st_ino == held.st_ino {
                guard held.st_mode & S_IFMT == S_IFREG else {
                    _ = close(fd)
                    throw LeaderElectionError.invalidConfiguration("liveness file \(path) is not a regular file")
                }
                livenessFD.withLock { $0 = fd }
                return
            }
            _ = close(fd)  // a sweeper unlinked the file between open and flock: start over
        }
        throw LeaderElectionError.unavailable("could not lock liveness file \(path): it was replaced repeatedly")
    }

    /// Unlinks liveness files of dead candidates other than `keeping`, each while holding its lock.
    /// Runs under the companion's exclusive lock, so no probe or acquisition races with it.
    private func sweepMembers(keeping identities: [String]) {
        let keep = Set(identities.map(LockPaths.encode))
        guard let members = try? reader.openMembers() else { return }
        defer { _ = close(members) }
        let listing = dup(members)
        guard listing >= 0 else { return }
        guard let dir = fdopendir(listing) else {
            _ = close(listing)
            return
        }
        let entries = Self.readEntries(dir).filter { !keep.contains($0) }
        closedir(dir)
        for entry in entries {
            let fd = openat(members, entry, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
            guard fd >= 0 else { continue }
            defer { _ = close(fd) }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { continue }
            var held = stat()
            var linked = stat()
            if fstat(fd, &held) == 0, fstatat(members, entry, &linked, AT_SYMLINK_NOFOLLOW) == 0,
               held.st_dev == linked.st_dev, held.st_ino == linked.st_ino, held.st_mode & S_IFMT == S_IFREG {
                _ = unlinkat(members, entry, 0)
            }
        }
    }

    // MARK: - Helpers

    private static func readEntries(_ dir: OpaquePointer) -> [String] {
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func requireRegularFile(_ fd: Int32, _ path: String) throws {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ioError("fstat", path, errno) }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw LeaderElectionError.invalidConfiguration("\(path) is not a regular file")
        }
    }

    /// Removes group and other permission bits from a file this process's user owns (a companion created by
    /// an older version with mode 0666 minus the umask): whoever can open it can hold its lock and stall writers.
    private func tightenMode(_ fd: Int32) {
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_uid == geteuid(), st.st_mode & 0o077 != 0 else { return }
        _ = fchmod(fd, st.st_mode & 0o700)
    }

    static func readAll(_ fd: Int32, _ path: String) throws -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                bytes.append(contentsOf: chunk[..<n])
            } else if n == 0 {
                return bytes
            } else if errno != EINTR {
                throw ioError("read", path, errno)
            }
        }
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8], _ path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n > 0 {
                offset += n
            } else if n < 0 && errno != EINTR {
                throw ioError("write", path, errno)
            }
        }
    }

    static func missingDirectory(_ directory: String) -> LeaderElectionError {
        .notFound("lock directory \(directory) does not exist")
    }

    static func symlinkError(_ path: String) -> LeaderElectionError {
        .invalidConfiguration("\(path) is a symbolic link; refusing to follow it")
    }

    private func ioError(_ action: String, _ path: String, _ code: Int32) -> LeaderElectionError {
        Self.ioError(action, path, code)
    }

    /// Maps an errno to the matching ``LeaderElectionError``, naming the path.
    static func ioError(_ action: String, _ path: String, _ code: Int32) -> LeaderElectionError {
        let text = String(cString: strerror(code))
        switch code {
        case EACCES, EPERM:
            return .unauthorized("permission denied: cannot \(action) \(path): \(text)")
        case ELOOP:
            return symlinkError(path)
        case ENOTDIR:
            return .invalidConfiguration("cannot \(action) \(path): a component of the path is not a directory")
        case EISDIR:
            return .invalidConfiguration("cannot \(action) \(path): it is a directory, not a regular file")
        default:
            return .unavailable("cannot \(action) \(path): \(text) (errno \(code))")
        }
    }
}

/// The record's reads and the holder's liveness probe, without any lock and without state: ``FileLockStore/get(commit:)``
/// runs ``read()`` under the companion's shared lock, and the change feed's thread runs it without any lock (see
/// ``change()``).
///
/// Reading without the companion's lock is safe: every write replaces the record file by `rename(2)` (after
/// writing and `fsync`ing a temporary file) or unlinks it, so an `open` of the record finds either the complete old
/// file or the complete new one, and the version is taken from the same bytes as the record. The liveness probe
/// only tries a non-blocking shared `flock` on the holder's liveness file, which a live holder's exclusive lock
/// refuses at once; without the companion's lock it can race a takeover's sweep of a dead candidate's file, which
/// then errs towards "alive" (or leaves the file for the next sweep), and the takeover's own rename is reported next.
struct RecordReader: Sendable {
    let paths: LockPaths
    /// The reading candidate's identity: a record naming it as holder is never reported gone.
    let identity: String

    /// The record, its version and whether its holder is verifiably gone; `nil` when there is no record file.
    ///
    /// - Throws: ``LeaderElectionError/Code/corruptRecord`` (with the data's version) when the file does not decode,
    ///   and the matching error when it cannot be read.
    func read() throws -> VersionedRecord? {
        switch try readStored() {
        case .missing:
            return nil
        case .corrupt(let version, let why):
            throw LeaderElectionError.corruptRecord("file:\(paths.record) \(why)", version: version)
        case .record(let record, _, let version):
            let holder = record.holderIdentity
            let gone = !holder.isEmpty && holder != identity && holderIsGone(holder)
            return VersionedRecord(record: record, version: version, holderIsKnownGone: gone)
        }
    }

    /// What the change feed reports after the record may have changed: ``read()`` (the same read and version
    /// token as `get()`, without the companion's lock) as ``LockChange/stored(_:)``, or ``LockChange/deleted``
    /// when there is no record file.
    ///
    /// ``LockChange/unknown`` (the elector then reads itself) for a corrupt record (whose content version must not be
    /// reported as a record's), any error, and a holder that is verifiably gone: the elector's read then finds it
    /// gone and takes over at once, whereas a delivered record only moves a follower's expiry timer.
    func change() -> LockChange {
        do {
            guard let read = try read() else { return .deleted }
            return read.holderIsKnownGone ? .unknown : .stored(read)
        } catch {
            return .unknown
        }
    }

    /// Reads and decodes the record file. Its version is `g<generation>`, or `x<FNV-1a-64 of the bytes>`
    /// for data without a generation (undecodable, or written by another tool).
    func readStored() throws -> FileLockStore.Stored {
        let fd = open(paths.record, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            let code = errno
            if code == ENOENT { return .missing }
            throw FileLockStore.ioError("open", paths.record, code)
        }
        defer { _ = close(fd) }
        try FileLockStore.requireRegularFile(fd, paths.record)
        let bytes = try FileLockStore.readAll(fd, paths.record)
        let hashVersion = LockVersion("x" + fnv1a64Hex(bytes))
        do {
            let (record, extra) = try LeaderElectionRecord.decodeJSON(bytes, extraFields: ["generation"])
            if let generation = extra["generation"] {
                return .record(record, generation: generation, LockVersion("g\(generation)"))
            }
            return .record(record, generation: nil, hashVersion)
        } catch let error as LeaderElectionError {
            return .corrupt(hashVersion, "holds \(bytes.count) bytes that are not a leader-election record (\(error.message))")
        }
    }

    /// Opens `.<name>.members` without following a symbolic link (its files are then reached with `openat`
    /// and `unlinkat`, so a members directory swapped for a link later cannot redirect them); `nil` when it
    /// does not exist.
    func openMembers() throws -> Int32? {
        let fd = open(paths.members, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            if code == ENOENT { return nil }
            if code == ELOOP || code == ENOTDIR {
                var st = stat()
                if lstat(paths.members, &st) == 0, st.st_mode & S_IFMT == S_IFLNK { throw FileLockStore.symlinkError(paths.members) }
                throw LeaderElectionError.invalidConfiguration("\(paths.members) exists but is not a directory")
            }
            throw FileLockStore.ioError("open members directory", paths.members, code)
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let code = errno
            _ = close(fd)
            throw FileLockStore.ioError("inspect", paths.members, code)
        }
        do {
            try FileLockStore.requireTrustedOwner(st, of: "members directory \(paths.members)")
        } catch {
            _ = close(fd)
            throw error
        }
        return fd
    }

    /// `true` when the kernel proves that no process holds `holder`'s liveness lock: the file does not
    /// exist, or a shared lock on it can be taken. Any doubt (permissions, errors) means "not known gone".
    func holderIsGone(_ holder: String) -> Bool {
        let opened: Int32?
        do { opened = try openMembers() } catch { return false }
        guard let members = opened else { return true }  // no members directory: no liveness file
        defer { _ = close(members) }
        let fd = openat(members, LockPaths.encode(holder), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 { return errno == ENOENT }
        defer { _ = close(fd) }
        guard flock(fd, LOCK_SH | LOCK_NB) == 0 else { return false }
        _ = flock(fd, LOCK_UN)
        return true
    }
}

/// Linux functions that the `Glibc` module does not import (`sys/statfs.h`, `sys/eventfd.h`),
/// resolved from the C library at run time with their C calling convention.
enum LinuxSymbols {
    private typealias StatfsFunction = @convention(c) (UnsafePointer<CChar>, UnsafeMutableRawPointer) -> Int32
    private typealias EventfdFunction = @convention(c) (UInt32, Int32) -> Int32

    private static let statfsFunction: StatfsFunction? = symbol("statfs")
    private static let eventfdFunction: EventfdFunction? = symbol("eventfd")

    private static func symbol<F>(_ name: String) -> F? {
        guard let handle = dlopen(nil, RTLD_NOW), let address = dlsym(handle, name) else { return nil }
        return unsafeBitCast(address, to: F.self)
    }

    /// `statfs(2)`'s `f_type` for `path` (the first member of `struct statfs`, a C `long` on Linux), or
    /// `nil` when `statfs` cannot be resolved.
    static func fileSystemType(_ path: String) throws -> Int? {
        guard let statfsFunction else { return nil }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 512, alignment: 16)  // sizeof(struct statfs) is 120
        defer { buffer.deallocate() }
        guard statfsFunction(path, buffer) == 0 else {
            throw FileLockStore.ioError("inspect the file system of", path, errno)
        }
        return buffer.load(as: Int.self)
    }

    /// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`, or -1.
    static func eventfd() -> Int32 {
        guard let eventfdFunction else { return -1 }
        return eventfdFunction(0, O_CLOEXEC | O_NONBLOCK)  // EFD_CLOEXEC == O_CLOEXEC, EFD_NONBLOCK == O_NONBLOCK
    }

    /// Signals an eventfd.
    static func signal(_ fd: Int32) {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(fd, $0.baseAddress, 8) }
    }
}

/// The file names of one lock.
struct LockPaths: Sendable {
    /// Absolute directory, no trailing slash.
    let directory: String
    let name: String

    /// `<dir>/<name>`: the record.
    var record: String { directory == "/" ? "/" + name : directory + "/" + name }
    /// `<dir>/.<name>.lock`: the companion file whose `flock` makes compare-and-swap atomic.
    var companion: String { prefixPath + ".lock" }
    /// `<dir>/.<name>.members`: one liveness file per candidate that ever wrote itself as holder.
    var members: String { prefixPath + ".members" }
    /// The name prefix of temp files: `.<name>.tmp.` (followed by `<pid>.<random>`).
    var tempPrefix: String { ".\(name).tmp." }

    private var prefixPath: String { (directory == "/" ? "" : directory) + "/." + name }

    /// `<dir>/.<name>.members/<encoded identity>`.
    func liveness(of identity: String) -> String { members + "/" + Self.encode(identity) }

    /// Percent-encodes an identity into a file name: bytes outside `[A-Za-z0-9_.-]` (and a leading
    /// `.`) become `%XX`. Names longer than 200 bytes are shortened to a prefix, `~`, and an FNV-1a-64
    /// hash of the identity (`~` never appears in encoded names, so both forms are distinct).
    static func encode(_ identity: String) -> String {
        var out = ""
        for (index, byte) in identity.utf8.enumerated() {
            let keep = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2D || byte == 0x5F || (byte == 0x2E && index > 0)
            if keep {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        if out.utf8.count > 200 {
            out = String(out.prefix(160)) + "~" + fnv1a64Hex(Array(identity.utf8))
        }
        return out
    }
}

/// FNV-1a 64-bit of `bytes`, as 16 lowercase hex digits.
func fnv1a64Hex(_ bytes: some Sequence<UInt8>) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash &*= 0x0000_0100_0000_01b3
    }
    let hex = String(hash, radix: 16)
    return String(repeating: "0", count: 16 - hex.count) + hex
}
