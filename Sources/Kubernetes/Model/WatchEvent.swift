/// One line of a watch stream: `{"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR", "object": {…}}`.
public enum WatchEvent<Object: Codable & Sendable & Hashable>: Hashable, Sendable, Codable {
    /// The object was created (or existed when the watch started without a resourceVersion).
    case added(Object)
    /// The object was changed.
    case modified(Object)
    /// The object was deleted; carries its last state with a new resourceVersion.
    case deleted(Object)
    /// A progress marker: the watch has seen everything up to this resourceVersion.
    case bookmark(resourceVersion: String)
    /// The server ended the watch with an error; code 410 (`Expired`/`Gone`) means relist.
    case error(Status)

    private enum CodingKeys: String, CodingKey { case type, object }
    private struct BookmarkObject: Codable { var metadata: ListMeta }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let type = try c.decode(String.self, forKey: .type)
        switch type {
        case "ADDED": self = .added(try c.decode(Object.self, forKey: .object))
        case "MODIFIED": self = .modified(try c.decode(Object.self, forKey: .object))
        case "DELETED": self = .deleted(try c.decode(Object.self, forKey: .object))
        case "BOOKMARK":
            let object = try c.decode(BookmarkObject.self, forKey: .object)
            self = .bookmark(resourceVersion: object.metadata.resourceVersion ?? "")
        case "ERROR": self = .error(try c.decode(Status.self, forKey: .object))
        default:
            throw DecodingError.dataCorruptedError(forKey: .type, in: c, debugDescription: "unknown watch event type \(type)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .added(let object): try c.encode("ADDED", forKey: .type); try c.encode(object, forKey: .object)
        case .modified(let object): try c.encode("MODIFIED", forKey: .type); try c.encode(object, forKey: .object)
        case .deleted(let object): try c.encode("DELETED", forKey: .type); try c.encode(object, forKey: .object)
        case .bookmark(let rv):
            try c.encode("BOOKMARK", forKey: .type)
            try c.encode(BookmarkObject(metadata: ListMeta(resourceVersion: rv)), forKey: .object)
        case .error(let status): try c.encode("ERROR", forKey: .type); try c.encode(status, forKey: .object)
        }
    }
}
