#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Foundation
import Synchronization

/// A bearer token kept in a file that is rotated by someone else (kubelet's projected service-account
/// token, a sidecar). The file is checked before every request with `stat(2)` and re-read when its
/// identity (device, inode, size, modification time) changed, so the next request after a rotation
/// carries the new token. If the file is unreadable or empty, the last token read is used.
///
/// The file system calls run on a Dispatch queue, never on the cooperative thread pool.
final class TokenFileSource: Sendable {
    private struct FileIdentity: Equatable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var modifiedSeconds: Int
        var modifiedNanoseconds: Int
    }

    private struct State {
        var token: String?
        var identity: FileIdentity?
    }

    let path: String
    private let state = Mutex(State())
    private static let queue = DispatchQueue(label: "swift-leader-election.kubernetes.token-file", attributes: .concurrent)

    init(path: String) {
        self.path = path
    }

    /// The current token.
    ///
    /// - Throws: ``KubernetesError`` (`invalidConfiguration`) when the file has never been readable.
    func token() async throws -> String {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<String, any Error>) in
            Self.queue.async {
                continuation.resume(with: Result { try self.currentToken() })
            }
        }
    }

    /// Blocking: stats the file and re-reads it when it changed.
    func currentToken() throws -> String {
        let identity = Self.identity(of: path)
        let cached = state.withLock { state -> String? in
            if let identity, state.identity == identity, let token = state.token { return token }
            return nil
        }
        if let cached { return cached }

        var readError: String?
        if identity != nil {
            do {
                let text = try KubernetesConfiguration.readUTF8File(path).trimmingCharacters(in: .whitespacesAndNewlines)
                if !text.isEmpty {
                    state.withLock { state in
                        state.token = text
                        state.identity = identity
                    }
                    return text
                }
                readError = "the file is empty"
            } catch {
                readError = error.localizedDescription
            }
        } else {
            readError = "the file does not exist or cannot be examined"
        }
        if let previous = state.withLock({ $0.token }) { return previous }
        throw KubernetesError.invalidConfiguration("bearer token file \(path): \(readError ?? "unreadable")")
    }

    private static func identity(of path: String) -> FileIdentity? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        #if canImport(Darwin)
        let modified = info.st_mtimespec
        #else
        let modified = info.st_mtim
        #endif
        return FileIdentity(
            device: UInt64(truncatingIfNeeded: info.st_dev),
            inode: UInt64(truncatingIfNeeded: info.st_ino),
            size: Int64(info.st_size),
            modifiedSeconds: Int(modified.tv_sec),
            modifiedNanoseconds: Int(modified.tv_nsec)
        )
    }
}
