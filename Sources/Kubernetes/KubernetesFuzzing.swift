import Foundation
import NIOCore
import NIOHTTP1

/// Entry points for the `lease-fuzz` harness (Sources/lease-fuzz): each runs the client's own handling of an
/// API server response — status check, `Status` mapping, body decoding, watch line splitting — on arbitrary
/// bytes, without a network. Not API: it exists for fuzzing only and may change at any time.
public enum _KubernetesFuzzing {
    /// The response types the client decodes.
    public enum Body: UInt8, CaseIterable, Sendable {
        case lease, leaseList, event, eventList, namespace
    }

    /// The value a response of `httpStatus` with `body` (and a `Retry-After` header) becomes, exactly as
    /// the client's request methods decode it: the decoded object for a 2xx status, else the thrown
    /// ``KubernetesError``.
    /// - Throws: ``KubernetesError``.
    public static func response(_ body: Body, httpStatus: Int, retryAfter: String?, bytes: [UInt8]) throws -> any Sendable {
        var headers = HTTPHeaders()
        if let retryAfter { headers.add(name: "Retry-After", value: retryAfter) }
        let raw = KubernetesClient.RawResponse(status: httpStatus, headers: headers, body: bytes)
        let context = "GET /fuzz"
        switch body {
        case .lease: return try KubernetesClient.decode(raw, as: Lease.self, context: context)
        case .leaseList: return try KubernetesClient.decode(raw, as: LeaseList.self, context: context)
        case .event: return try KubernetesClient.decode(raw, as: CoreEvent.self, context: context)
        case .eventList: return try KubernetesClient.decode(raw, as: EventList.self, context: context)
        case .namespace: return try KubernetesClient.decode(raw, as: Namespace.self, context: context)
        }
    }

    /// The events of a watch response body, exactly as ``KubernetesClient/watchLeases(namespace:name:labelSelector:resourceVersion:timeoutSeconds:)``
    /// reads it: the body arrives in chunks of `chunkSize` bytes, is split into lines by the client's line
    /// splitter, and every line is decoded as an event.
    /// - Throws: ``KubernetesError`` (``KubernetesError/Code/invalidResponse`` for a line that is not an event
    ///   or a line longer than the splitter's limit).
    public static func watchBody(_ bytes: [UInt8], chunkSize: Int) throws -> [WatchEvent<Lease>] {
        var splitter = JSONLineSplitter()
        var events: [WatchEvent<Lease>] = []
        var offset = 0
        let step = max(1, chunkSize)
        while offset < bytes.count {
            let end = min(bytes.count, offset + step)
            for line in try splitter.append(ByteBuffer(bytes: bytes[offset..<end])) {
                events.append(try KubernetesClient.decodeWatchEvent(line, path: "/fuzz"))
            }
            offset = end
        }
        if let rest = splitter.finish() {
            events.append(try KubernetesClient.decodeWatchEvent(rest, path: "/fuzz"))
        }
        return events
    }

    /// A kubeconfig file's text, parsed as ``KubernetesConfiguration/kubeconfig(path:context:environment:)``
    /// parses the file it reads; paths in it are resolved against `directory`.
    /// - Throws: ``KubernetesError`` with code ``KubernetesError/Code/invalidConfiguration``.
    public static func kubeconfig(_ text: String, directory: String, context: String? = nil) throws -> KubernetesConfiguration {
        try KubernetesConfiguration.kubeconfig(text: text, file: (directory as NSString).appendingPathComponent("kubeconfig"), context: context)
    }
}
