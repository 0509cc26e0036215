import Dispatch
import LeaderElection
import Synchronization

/// A ``ResourceLock`` stored as a file in a local directory: leader election among processes of
/// **one host**, with no server, and kernel-verified crash detection.
///
/// ```swift
/// let lock = try FileLock(directory: "/var/run/locks", name: "reconciler", identity: "\(hostname)-\(pid)")
/// let elector = try LeaderElector(lock: lock, configuration: .init(name: "reconciler"), clock: .continuous)
/// ```
///
/// ## On-disk layout
/// Inside the directory, a lock named `<name>` uses:
/// - `<name>`: the record, client-go's `LeaderElectionRecord` JSON plus an integer `"generation"`;
/// - `.<name>.lock`: the companion file whose `flock(2)` makes compare-and-swap atomic (exclusive for
///   writes, shared for reads) and which keeps the highest generation written;
/// - `.<name>.members/<identity>`: one liveness file per candidate (identity percent-encoded);
/// - `.<name>.tmp.<pid>.<random>`: temporary files of writes in progress.
///
/// ## What it guarantees
/// - Compare-and-swap: ``update(_:expecting:)`` checks the version and replaces the record while holding
///   the companion's exclusive lock, so of N concurrent updates presenting one version exactly one wins.
/// - No torn records: every write goes to a temporary file, is `fsync`ed, renamed over the record and the
///   directory is `fsync`ed. A process killed at any instant leaves either the old or the new record;
///   temporary files it leaves are removed by the next writer.
/// - Versions are `g<generation>`; each write stores generation + 1. After a deleted or undecodable record,
///   whose generation cannot be known, the next generation is the larger of the companion's high-water
///   mark + 1 and the wall clock in microseconds, so versions of a record never repeat. Undecodable data
///   (or a record written by another tool, without a generation) has version `x<FNV-1a-64 of the bytes>`;
///   ``get()`` throws ``LeaderElectionError/Code/corruptRecord`` carrying it, and an update presenting it
///   replaces the data.
/// - ``changes()`` and ``recordChanges()`` are driven by inotify: they yield when the record is written,
///   replaced or deleted by anyone, and when a candidate's liveness file is closed or removed (a holder dying).
///   ``recordChanges()`` reads the record once per (coalesced) batch of events on its own thread, as ``get()``
///   does but without taking the companion's lock, and reports it with its version, so a ``LeaderElector``
///   following a live lease reads nothing between expiries. Liveness events, a corrupt record, a holder that is
///   verifiably gone and any read error are reported as ``LockChange/unknown``: the elector then reads itself,
///   and takes over at once from a dead holder.
///
/// ## Crash detection
/// A candidate takes an exclusive `flock` on its liveness file `.<name>.members/<identity>` the first
/// time it writes a record naming itself as holder, and keeps it until this value (and every copy of it)
/// is deinitialised. The lock is taken *inside* the compare-and-swap, under the companion's exclusive
/// lock and *before* the record is written, so there is no instant at which a record names a live
/// candidate that does not hold its liveness lock. When a process dies, however it dies, the kernel
/// closes its descriptors and releases that lock. ``get()`` probes the holder's liveness file under the
/// companion's shared lock: if it does not exist or a shared lock on it can be taken, the holder is
/// verifiably gone and ``VersionedRecord/holderIsKnownGone`` is `true`, so the elector takes over at once
/// instead of waiting for the lease to expire. Any doubt (an unreadable file, an error) reports "alive".
/// A second live process (or a second `FileLock` value) writing itself as holder under an identity whose
/// liveness lock is held fails with ``LeaderElectionError/Code/invalidConfiguration``.
///
/// ## What it does not guarantee
/// - **Single host only.** `flock(2)` and inotify do not work reliably across hosts; directories on NFS,
///   CIFS or SMB are refused with ``LeaderElectionError/Code/invalidConfiguration``. Other network or FUSE
///   file systems are not detected: do not use them.
/// - Liveness is only known for holders written by a `FileLock` under their own identity. A record naming
///   a holder that never took its liveness lock (written by hand, by another tool, or by a `FileLock`
///   with another identity) reads as `holderIsKnownGone`.
/// - Deleting `.<name>.members` or its files while candidates run makes live holders look gone.
/// - A process that is alive but stuck (stopped, deadlocked) still holds its liveness lock: only lease
///   expiry, judged by the elector, removes it.
/// - `flock` locks belong to open file descriptions, which `fork` shares: a child forked without `exec`
///   (all descriptors are opened `O_CLOEXEC`) keeps the holder's liveness lock alive after the holder dies,
///   and a child being spawned holds it until its `exec`. The holder then only looks alive for longer —
///   the elector falls back to lease expiry — which is never unsafe.
///
/// ## Security
/// Whoever can write the lock directory can elect anyone (and read every identity): protect it.
/// - The candidates of one lock run as **one user**. Directories made by `createDirectory` have mode 0700,
///   the members directory 0700, and the record, companion, liveness and temporary files 0600 (a companion
///   left with group or other bits by an older version is tightened by the next writer that owns it).
/// - The lock directory must be owned by this process's user or by root; one owned by another user is
///   refused with ``LeaderElectionError/Code/invalidConfiguration`` (its owner could rewrite every file, and
///   files this process created there would lock that user out). The same holds for the members directory.
///   A root-owned shared directory (such as a sticky `/run/locks`) is accepted: prefer a directory of your own.
/// - No symbolic link is followed: a lock directory, record, companion, members directory or liveness file
///   that is a symbolic link is refused with ``LeaderElectionError/Code/invalidConfiguration``; files in the
///   members directory are reached relative to a descriptor of it, so swapping it for a link later cannot
///   redirect them. The *parent* components of the directory path are trusted (`/var/run` → `/run` is fine):
///   they must be writable only by their owner and root.
///
/// Blocking system calls run on a serial `DispatchQueue` per lock value, never on Swift's cooperative
/// pool; a task cancelled while waiting for the companion lock returns `CancellationError` without
/// writing. The initialisers, ``changes()``, ``recordChanges()``, ``writeRaw(_:)``, ``delete()`` and
/// ``listLocks(in:)`` make short synchronous system calls on the calling thread; the change feeds' reads run on
/// their own threads.
public struct FileLock: ResourceLock {
    /// The identity this lock writes as holder.
    public let identity: String
    /// The absolute path of the lock directory.
    public let directory: String
    /// The lock's name: the record's file name inside ``directory``.
    public let name: String

    let store: FileLockStore

    /// Opens the lock `name` in `directory` for the candidate `identity`.
    ///
    /// - Parameters:
    ///   - directory: the lock directory; relative paths are resolved against the working directory.
    ///   - name: the record's file name: non-empty, at most 200 bytes, without `/`, not starting with `.`.
    ///   - identity: this candidate's identity, unique per process; non-empty.
    ///   - createDirectory: create a missing directory (and its parents) with mode 0700 instead of failing.
    /// - Throws: ``LeaderElectionError/Code/invalidConfiguration`` for an invalid name or identity, a path
    ///   that is not a directory or is a symbolic link, a directory owned by another user than this process's
    ///   and root, or a network file system; ``LeaderElectionError/Code/notFound`` when the
    ///   directory is missing and `createDirectory` is `false`; ``LeaderElectionError/Code/unauthorized``
    ///   when permission is denied; ``LeaderElectionError/Code/unavailable`` for other I/O errors.
    public init(directory: String, name: String, identity: String, createDirectory: Bool = false) throws {
        try Self.validate(name: name, identity: identity, directory: directory)
        let absolute = try FileLockStore.absolutePath(directory)
        try FileLockStore.prepareDirectory(absolute, create: createDirectory)
        self.identity = identity
        self.directory = absolute
        self.name = name
        self.store = try FileLockStore(paths: LockPaths(directory: absolute, name: name), identity: identity)
    }

    /// Opens the lock whose record is at `path` (`<directory>/<name>`) for the candidate `identity`.
    ///
    /// A path without `/` names a lock in the working directory. See
    /// ``init(directory:name:identity:createDirectory:)`` for the rules and errors.
    public init(path: String, identity: String, createDirectory: Bool = false) throws {
        let (directory, name): (String, String)
        if let slash = path.lastIndex(of: "/") {
            let head = String(path[..<slash])
            directory = head.isEmpty ? "/" : head
            name = String(path[path.index(after: slash)...])
        } else {
            (directory, name) = (".", path)
        }
        try self.init(directory: directory, name: name, identity: identity, createDirectory: createDirectory)
    }

    /// The record's absolute path, `<directory>/<name>`.
    public var path: String { store.paths.record }

    /// `file:<absolute directory>/<name>`, for example `file:/var/run/locks/app`.
    public var description: String { "file:\(path)" }

    /// The names of the lock records in `directory`: its regular files, excluding the hidden companion,
    /// liveness and temporary files. Sorted.
    ///
    /// - Throws: ``LeaderElectionError/Code/notFound`` when the directory does not exist, or the error
    ///   matching the failure.
    public static func listLocks(in directory: String) throws -> [String] {
        try FileLockStore.listLocks(in: directory)
    }

    /// Reads the record, its version, and whether its holder is verifiably gone (see the type's
    /// documentation).
    ///
    /// - Throws: ``LeaderElectionError/Code/corruptRecord`` (with the data's version) when the record file
    ///   does not decode; ``LeaderElectionError/Code/invalidConfiguration`` when the record or companion
    ///   path is a symbolic link or not a regular file; I/O errors as their codes.
    public func get() async throws -> VersionedRecord? {
        let store = self.store
        return try await runBlocking(on: store.queue) { commit in try store.get(commit: commit) }
    }

    /// Creates the record file if it does not exist.
    ///
    /// When `record` names this lock's ``identity`` as holder, the liveness lock is taken before the
    /// record is written.
    /// - Throws: ``LeaderElectionError/Code/alreadyExists`` when the record file exists (even if it does not
    ///   decode); ``LeaderElectionError/Code/invalidConfiguration`` when another live process holds this
    ///   identity's liveness lock.
    public func create(_ record: LeaderElectionRecord) async throws -> LockVersion {
        let store = self.store
        return try await runBlocking(on: store.queue) { commit in try store.create(record, commit: commit) }
    }

    /// Replaces the record if its version is `version`.
    ///
    /// - Throws: ``LeaderElectionError/Code/conflict`` (with the current version) when it is not,
    ///   ``LeaderElectionError/Code/notFound`` when there is no record file, and
    ///   ``LeaderElectionError/Code/invalidConfiguration`` when another live process holds this
    ///   identity's liveness lock.
    public func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion {
        let store = self.store
        return try await runBlocking(on: store.queue) { commit in
            try store.update(record, expecting: version, commit: commit)
        }
    }

    /// A new inotify subscription that yields when the record or a candidate's liveness changes (coalesced,
    /// possibly spurious), or `nil` when inotify is unavailable. It stops when the consumer stops iterating.
    public func changes() -> AsyncStream<Void>? {
        InotifyChangeFeed.start(paths: store.paths)
    }

    /// A new inotify subscription that says what changed, or `nil` when inotify is unavailable. It stops when the
    /// consumer stops iterating.
    ///
    /// After each (coalesced) batch of events on the record, the feed's thread reads the record once, exactly as
    /// ``get()`` does (same decoding, same version, same liveness probe) but without the companion's lock, so it
    /// never delays a writer; reading without it is safe because every write replaces the record file by an
    /// atomic rename. It yields:
    /// - ``LockChange/stored(_:)`` with the record and the version read from the same bytes, when the record
    ///   decodes and its holder is not verifiably gone;
    /// - ``LockChange/deleted`` when there is no record file;
    /// - ``LockChange/unknown`` (read to find out) when the record does not decode (its content hash is never
    ///   reported as a record's version), when the read fails, when the holder is verifiably gone, and for every
    ///   batch that includes a liveness event (a liveness file closed or removed) or an event on the directory
    ///   itself. On those the elector reads with ``get()``, which probes the holder under the companion's lock
    ///   and lets it take over from a dead holder at once.
    public func recordChanges() -> AsyncStream<LockChange>? {
        InotifyChangeFeed.startRecordFeed(paths: store.paths, reader: store.reader)
    }

    /// Atomically replaces the record file with `bytes`, under the companion's exclusive lock.
    ///
    /// For tests and repair tools (for example, to store undecodable data). Blocks the calling thread.
    public func writeRaw(_ bytes: [UInt8]) throws {
        try store.writeRaw(bytes)
    }

    /// Deletes the record file, under the companion's exclusive lock. Deleting a missing record does nothing.
    ///
    /// The companion and liveness files stay. Blocks the calling thread.
    public func delete() throws {
        try store.delete()
    }

    /// Closes this value's liveness file as if its process had died. For tests.
    func releaseLivenessForTesting() {
        store.releaseLiveness()
    }

    private static func validate(name: String, identity: String, directory: String) throws {
        func invalid(_ why: String) -> LeaderElectionError {
            .invalidConfiguration("FileLock name \"\(name)\" \(why)")
        }
        guard !name.isEmpty else { throw LeaderElectionError.invalidConfiguration("FileLock name must not be empty") }
        guard !name.contains("/") else { throw invalid("must not contain '/'") }
        guard name != ".", name != ".." else { throw invalid("is not a file name") }
        guard !name.hasPrefix(".") else {
            throw invalid("must not start with '.' (hidden names are reserved for the lock's companion files)")
        }
        guard !name.utf8.contains(0) else { throw invalid("must not contain NUL") }
        guard name.utf8.count <= 200 else { throw invalid("is longer than 200 bytes") }
        guard !identity.isEmpty else { throw LeaderElectionError.invalidConfiguration("FileLock identity must not be empty") }
        guard !directory.isEmpty else { throw LeaderElectionError.invalidConfiguration("FileLock directory must not be empty") }
        guard !directory.utf8.contains(0) else {
            throw LeaderElectionError.invalidConfiguration("FileLock directory must not contain NUL")
        }
    }
}

// MARK: - Bridging blocking work to async

/// Runs `body` on `queue` and returns its result to the awaiting task.
///
/// `body` receives `commit`, which it calls once it holds the companion lock: it returns `false` when the
/// task was cancelled meanwhile (the caller has already received `CancellationError`), and after it
/// returns `true` cancellation no longer interrupts the call, so a completed write is never reported as
/// cancelled.
private func runBlocking<T: Sendable>(
    on queue: DispatchQueue,
    _ body: @escaping @Sendable (_ commit: () -> Bool) throws -> T
) async throws -> T {
    try Task.checkCancellation()
    let operation = PendingOperation<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            guard operation.install(continuation) else { return }
            queue.async {
                guard operation.isLive else { return }
                let result = Result { try body { operation.commit() } }
                operation.finish(result)
            }
        }
    } onCancel: {
        operation.cancel()
    }
}

/// The state shared by an awaiting task, its cancellation handler and the queue running its work.
private final class PendingOperation<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var cancelled = false
        var committed = false
    }
    private let state = Mutex(State())

    /// Stores the continuation; returns `false` (having resumed it) when already cancelled.
    func install(_ continuation: CheckedContinuation<T, any Error>) -> Bool {
        let cancelled = state.withLock { state -> Bool in
            if state.cancelled { return true }
            state.continuation = continuation
            return false
        }
        if cancelled { continuation.resume(throwing: CancellationError()) }
        return !cancelled
    }

    /// `false` once the task was cancelled before the work committed.
    var isLive: Bool { state.withLock { !$0.cancelled } }

    func commit() -> Bool {
        state.withLock { state in
            if state.cancelled { return false }
            state.committed = true
            return true
        }
    }

    func cancel() {
        let continuation = state.withLock { state -> CheckedContinuation<T, any Error>? in
            guard !state.committed else { return nil }
            state.cancelled = true
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume(throwing: CancellationError())
    }

    func finish(_ result: Result<T, any Error>) {
        let continuation = state.withLock { state -> CheckedContinuation<T, any Error>? in
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume(with: result)
    }
}
