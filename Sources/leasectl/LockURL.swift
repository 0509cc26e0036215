import Foundation

/// The address of a lock, or of a collection of locks, as a URL: `scheme://authority/path`.
///
/// - `file:///var/run/locks/scheduler` names one lock (directory `/var/run/locks`, name `scheduler`).
/// - `file:///var/run/locks/` (trailing slash) names every lock in the directory.
/// - `file:/var/run/locks/scheduler` (the form `FileLock` prints) and plain paths (`/var/run/locks/x`,
///   `./locks/x`) are accepted as `file` URLs; relative paths are resolved against the working directory.
/// - Other schemes (`etcd://host:2379[,host:2379…]/prefix/namespace/name`, `kubernetes://namespace/name`)
///   are parsed the same way (the authority kept as written) and handed to the backend registered for the
///   scheme in ``LockRegistry``; see ``EtcdLockBackend`` for how etcd URLs map to keys.
struct LockURL: Hashable, Sendable, CustomStringConvertible {
    /// The lowercased scheme, such as `file`.
    var scheme: String
    /// Host and port for network backends; empty for `file`.
    var authority: String
    /// The percent-decoded path, starting with `/`. A trailing `/` marks a collection.
    var path: String

    /// Creates a URL from its parts.
    init(scheme: String, authority: String = "", path: String) {
        self.scheme = scheme.lowercased()
        self.authority = authority
        self.path = path
    }

    /// Parses a lock URL or a plain path.
    ///
    /// - Parameter currentDirectory: what relative plain paths are resolved against.
    /// - Throws: ``LeaseCtlError`` for empty or malformed text.
    init(parsing text: String, currentDirectory: String = FileManager.default.currentDirectoryPath) throws {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else { throw LeaseCtlError("empty lock URL; expected something like file:///var/run/locks/NAME") }
        if let colon = trimmed.firstIndex(of: ":"), Self.isScheme(trimmed[..<colon]) {
            let scheme = String(trimmed[..<colon]).lowercased()
            var rest = trimmed[trimmed.index(after: colon)...]
            var authority = ""
            if rest.hasPrefix("//") {
                rest = rest.dropFirst(2)
                let slash = rest.firstIndex(of: "/") ?? rest.endIndex
                authority = String(rest[..<slash])
                rest = rest[slash...]
            }
            var path = String(rest)
            path = path.removingPercentEncoding ?? path
            if path.isEmpty { path = "/" }
            guard path.hasPrefix("/") else {
                throw LeaseCtlError("malformed lock URL \"\(text)\": the path must be absolute (\(scheme):///dir/name)")
            }
            if scheme == "file" {
                guard authority.isEmpty || authority == "localhost" else {
                    throw LeaseCtlError("file URLs name a path on this host: write file:///dir/name, not \"\(text)\"")
                }
                authority = ""
            }
            self.init(scheme: scheme, authority: authority, path: Self.normalize(path))
        } else {
            // A plain path: a file lock (or a directory of them).
            let absolute = trimmed.hasPrefix("/") ? trimmed : currentDirectory + "/" + trimmed
            self.init(scheme: "file", path: Self.normalize(absolute))
        }
    }

    /// `true` when the URL ends in `/`: it names a collection of locks rather than one lock.
    var isCollection: Bool { path.hasSuffix("/") }

    /// The last path component (the lock's name); empty for the root.
    var lastPathComponent: String {
        path.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? ""
    }

    /// The path without its last component, without a trailing slash (`/` for top-level names).
    var parentPath: String {
        var parts = path.split(separator: "/", omittingEmptySubsequences: true)
        guard !parts.isEmpty else { return "/" }
        parts.removeLast()
        return "/" + parts.joined(separator: "/")
    }

    /// This URL as a collection (with a trailing slash).
    var asCollection: LockURL {
        isCollection ? self : LockURL(scheme: scheme, authority: authority, path: path + "/")
    }

    /// The URL of the lock `name` inside this collection.
    func appending(_ name: String) -> LockURL {
        let base = path.hasSuffix("/") ? path : path + "/"
        return LockURL(scheme: scheme, authority: authority, path: base + name)
    }

    /// `scheme://authority/path`, for example `file:///var/run/locks/scheduler`.
    var description: String { "\(scheme)://\(authority)\(path)" }

    private static func isScheme(_ text: Substring) -> Bool {
        func isLetter(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("A"..."Z").contains(c) }
        // One letter would be a Windows drive; require at least two characters.
        guard text.unicodeScalars.count >= 2, let first = text.unicodeScalars.first, isLetter(first) else { return false }
        return text.unicodeScalars.allSatisfy { c in
            isLetter(c) || ("0"..."9").contains(c) || c == "+" || c == "-" || c == "."
        }
    }

    /// Collapses `//`, `.` and `..`, keeping a trailing slash.
    private static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..": if !parts.isEmpty { parts.removeLast() }
            default: parts.append(part)
            }
        }
        let body = "/" + parts.joined(separator: "/")
        let trailing = (path.hasSuffix("/") || path.hasSuffix("/.") || path.hasSuffix("/..")) && !parts.isEmpty
        return trailing ? body + "/" : body
    }
}
