import Dispatch
import LeaderElection
import Synchronization

/// A directory of ``FileLock`` records as a ``LeaseDirectory``: the collection a ``LeaseMonitor`` watches
/// when members keep ``HeartbeatLease``s as files (one file per member, named after it) on one host.
///
/// ```swift
/// let members = try FileLockDirectory(directory: "/run/members")
/// let monitor = try LeaseMonitor(directory: members)
/// ```
///
/// ``list()`` lists the directory's lock records (as ``FileLock/listLocks(in:)``: regular files, not the
/// hidden companion, liveness and temporary files) and reads each through a ``FileLock`` opened with
/// ``readerIdentity``, which never writes. Reading a lock creates its (empty) members directory, as every
/// `FileLock` does. A record whose holder's process is verifiably gone is listed with
/// ``ListedLease/holderIsKnownGone``. Entries that cannot be opened as locks (a symbolic link, a bad name)
/// are skipped; other I/O errors are thrown.
///
/// There is no change feed for the whole directory (``changes()`` is `nil`): a monitor polls it. Directory
/// listing and lock opening are synchronous system calls, run on a serial `DispatchQueue`, never on Swift's
/// cooperative pool.
public struct FileLockDirectory: LeaseDirectory {
    /// The absolute path of the directory.
    public let directory: String
    /// The identity the reading locks are opened with; never written as holder.
    public let readerIdentity: String

    private let queue: DispatchQueue
    private let opened = OpenedLocks()

    /// Lists `directory`.
    /// - Parameters:
    ///   - directory: the lock directory; relative paths are resolved against the working directory.
    ///   - readerIdentity: the identity of the reading locks (must not be a member's identity).
    /// - Throws: ``LeaderElectionError/Code/invalidConfiguration`` for an empty path or identity.
    public init(directory: String, readerIdentity: String = "lease-directory-reader") throws {
        guard !directory.isEmpty else { throw LeaderElectionError.invalidConfiguration("FileLockDirectory: directory must not be empty") }
        guard !readerIdentity.isEmpty else { throw LeaderElectionError.invalidConfiguration("FileLockDirectory: readerIdentity must not be empty") }
        self.directory = directory
        self.readerIdentity = readerIdentity
        self.queue = DispatchQueue(label: "FileLockDirectory \(directory)")
    }

    /// `file:<directory>/`.
    public var description: String { "file:\(directory.hasSuffix("/") ? directory : directory + "/")" }

    /// Every lock record in the directory, sorted by name.
    /// - Throws: ``LeaderElectionError/Code/notFound`` when the directory does not exist; I/O errors as their codes.
    public func list() async throws -> [ListedLease] {
        let directory = self.directory
        let names = try await onQueue { try FileLock.listLocks(in: directory) }
        var leases: [ListedLease] = []
        for name in names {
            try Task.checkCancellation()
            let lock: FileLock
            if let cached = opened.get(name) {
                lock = cached
            } else {
                let identity = readerIdentity
                do {
                    lock = try await onQueue { try FileLock(directory: directory, name: name, identity: identity) }
                } catch let error as LeaderElectionError where error.code == .invalidConfiguration {
                    continue   // not a usable lock (a symbolic link, a reserved name): not a member
                }
                opened.set(name, lock)
            }
            do {
                guard let stored = try await lock.get() else { continue }   // deleted since listing
                leases.append(ListedLease(
                    name: name, record: stored.record, version: stored.version, holderIsKnownGone: stored.holderIsKnownGone))
            } catch let error as LeaderElectionError where error.code == .corruptRecord && error.version != nil {
                leases.append(ListedLease(name: name, record: nil, version: error.version!))
            } catch let error as LeaderElectionError where error.code == .notFound {
                continue
            }
        }
        opened.keep(Set(names))
        return leases
    }

    private func onQueue<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }
}

/// The reading locks of a ``FileLockDirectory``, by name, shared by its copies.
private final class OpenedLocks: Sendable {
    private let locks = Mutex<[String: FileLock]>([:])
    func get(_ name: String) -> FileLock? { locks.withLock { $0[name] } }
    func set(_ name: String, _ lock: FileLock) { locks.withLock { $0[name] = lock } }
    func keep(_ names: Set<String>) { locks.withLock { $0 = $0.filter { names.contains($0.key) } } }
}
