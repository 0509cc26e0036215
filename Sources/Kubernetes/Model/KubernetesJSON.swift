import Foundation

/// The JSON coders used for every Kubernetes object: plain field names, no key sorting surprises, and
/// unescaped slashes (`coordination.k8s.io/v1`) as the API server writes them.
public enum KubernetesJSON {
    /// Encodes an object as the API server and client-go do.
    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return try encoder.encode(value)
    }

    /// Decodes an object.
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        try JSONDecoder().decode(type, from: data)
    }
}
