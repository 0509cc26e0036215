import FileLock
import Foundation
import LeaderElection

/// The `file` scheme: `file:///dir/name` is the `FileLock` named `name` in directory `/dir`
/// (flock(2), one host); `file:///dir/` or an existing directory lists every lock in `/dir`.
struct FileLockBackend: LockBackend {
    var scheme: String { "file" }
    var example: String { "file:///var/run/locks/NAME" }

    func makeLock(at url: LockURL, identity: String, createDirectory: Bool) throws -> any ResourceLock {
        if url.isCollection || isDirectory(url.path) {
            throw LeaseCtlError("\(url) is a directory; name a lock inside it, such as \(url.appending("NAME"))")
        }
        let name = url.lastPathComponent
        guard !name.isEmpty else { throw LeaseCtlError("\(url) does not name a lock; expected \(example)") }
        return try FileLock(directory: url.parentPath, name: name, identity: identity, createDirectory: createDirectory)
    }

    func locks(at url: LockURL) async throws -> [LockURL] {
        guard url.isCollection || isDirectory(url.path) else { return [url] }
        let directory = url.isCollection && url.path.count > 1 ? String(url.path.dropLast()) : url.path
        return try FileLock.listLocks(in: directory).sorted().map { url.asCollection.appending($0) }
    }

    private func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }
}
