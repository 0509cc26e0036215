import Foundation
import Logging

extension KubernetesClient {
    /// Watches Leases with one watch request
    /// (`GET …/leases?watch=true&resourceVersion=…&allowWatchBookmarks=true`).
    ///
    /// The stream yields every event the server sends — including ``WatchEvent/bookmark(resourceVersion:)``
    /// and ``WatchEvent/error(_:)`` (code `410` means the resourceVersion expired: list again) — and finishes
    /// when the server ends the watch (its `timeoutSeconds` elapsed, or it restarted). It throws a
    /// ``KubernetesError`` if the watch is refused (for example `410` for an expired resourceVersion) or the
    /// connection fails. The watch has no overall deadline; its connection attempt has
    /// ``KubernetesConfiguration/requestTimeout``. Ending the iteration (or cancelling the consuming task)
    /// cancels the request.
    ///
    /// For a watch that survives stream ends and expired resourceVersions, use
    /// ``informLeases(namespace:name:labelSelector:)``.
    ///
    /// - Parameters:
    ///   - namespace: The namespace; `nil` watches every namespace.
    ///   - name: Watch only the Lease of this name (`fieldSelector=metadata.name=<name>`).
    ///   - labelSelector: A label selector.
    ///   - resourceVersion: Where to start: the `resourceVersion` of a list or of the last event seen; `nil`
    ///     starts with synthetic `ADDED` events for the current objects.
    ///   - timeoutSeconds: Ask the server to end the watch after this many seconds.
    /// - Returns: The events.
    public func watchLeases(
        namespace: String?,
        name: String? = nil,
        labelSelector: String? = nil,
        resourceVersion: String?,
        timeoutSeconds: Int? = nil
    ) -> AsyncThrowingStream<WatchEvent<Lease>, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: WatchEvent<Lease>.self)
        let task = Task {
            do {
                try await self.watch(
                    namespace: namespace, name: name, labelSelector: labelSelector,
                    resourceVersion: resourceVersion, timeoutSeconds: timeoutSeconds
                ) { event in
                    continuation.yield(event)
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    /// Lists, then watches from the list's resourceVersion, for as long as the stream is consumed — the
    /// reflector pattern of client-go informers.
    ///
    /// - Yields ``LeaseNotification/snapshot(_:resourceVersion:)`` after the list, then
    ///   ``LeaseNotification/event(_:)`` for every added, modified or deleted Lease.
    /// - When the server ends the watch, it watches again from the last resourceVersion seen (events and
    ///   bookmarks), so no change is missed or repeated.
    /// - When the resourceVersion expired (HTTP `410`, or an `ERROR` event with code `410`), it lists again
    ///   and yields a new snapshot.
    /// - Retryable failures (``KubernetesError/isRetryable``) are retried with a backoff of 100 ms doubling
    ///   to 5 s, reset by every event received. Other errors (`401`, `403`, an undecodable event, …) finish
    ///   the stream with that error.
    ///
    /// Ending the iteration (or cancelling the consuming task) stops it.
    ///
    /// - Parameters:
    ///   - namespace: The namespace; `nil` for every namespace.
    ///   - name: Only the Lease of this name.
    ///   - labelSelector: A label selector.
    /// - Returns: The notifications.
    public func informLeases(
        namespace: String?, name: String? = nil, labelSelector: String? = nil
    ) -> AsyncThrowingStream<LeaseNotification, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: LeaseNotification.self)
        let task = Task {
            do {
                try await self.inform(namespace: namespace, name: name, labelSelector: labelSelector) { notification in
                    continuation.yield(notification)
                }
                continuation.finish()
            } catch is CancellationError {
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    // MARK: - Implementation

    /// One watch request; hands each decoded event to `onEvent`.
    func watch(
        namespace: String?,
        name: String?,
        labelSelector: String?,
        resourceVersion: String?,
        timeoutSeconds: Int?,
        onEvent: (WatchEvent<Lease>) async throws -> Void
    ) async throws {
        var query: [(String, String)] = [("watch", "true")]
        if let resourceVersion { query.append(("resourceVersion", resourceVersion)) }
        query.append(("allowWatchBookmarks", "true"))
        if let name { query.append(("fieldSelector", "metadata.name=\(name)")) }
        if let labelSelector { query.append(("labelSelector", labelSelector)) }
        if let timeoutSeconds { query.append(("timeoutSeconds", String(timeoutSeconds))) }
        let path = Self.leasesPath(namespace: namespace)
        try await streamLines(path, query: query) { line in
            try await onEvent(try Self.decodeWatchEvent(line, path: path))
        }
    }

    /// One line of a Lease watch body as an event.
    /// - Throws: ``KubernetesError/Code/invalidResponse`` naming the field at fault, with an excerpt of the line.
    static func decodeWatchEvent(_ line: [UInt8], path: String) throws -> WatchEvent<Lease> {
        do {
            return try KubernetesJSON.decode(WatchEvent<Lease>.self, from: Data(line))
        } catch {
            throw KubernetesError.invalidResponse(
                "GET \(path) (watch): an event is not valid: \(Self.describe(decodingError: error)); line: \(KubernetesError.excerpt(line))",
                httpStatus: 200
            )
        }
    }

    /// The informer loop behind ``informLeases(namespace:name:labelSelector:)``.
    func inform(
        namespace: String?, name: String?, labelSelector: String?, yield: (LeaseNotification) -> Void
    ) async throws {
        var logger = self.logger
        logger[metadataKey: "k8s.path"] = "\(Self.leasesPath(namespace: namespace))"
        if let name { logger[metadataKey: "k8s.name"] = "\(name)" }
        var resourceVersion: String?
        // Failures since the last event; drives the backoff. A first 410 relists immediately.
        var failures = 0

        func backoff(_ attempt: Int) async throws {
            let delay = Self.informerBackoff(attempt: attempt)
            logger.debug("Lease informer backing off", metadata: ["k8s.backoff": "\(delay)"])
            try await Task.sleep(for: delay)
        }

        while true {
            try Task.checkCancellation()
            do {
                if resourceVersion == nil {
                    let list = try await listLeases(
                        namespace: namespace, labelSelector: labelSelector, fieldSelector: name.map { "metadata.name=\($0)" }
                    )
                    let listed = list.metadata.resourceVersion ?? ""
                    resourceVersion = listed
                    logger.debug("Lease informer listed", metadata: ["k8s.resourceVersion": "\(listed)", "k8s.count": "\(list.items.count)"])
                    yield(.snapshot(list.items, resourceVersion: listed))
                }
                var progressed = false
                let watchStarted = ContinuousClock.now
                // Like client-go's reflector: ask the server to end the watch after 5–10 minutes, so a
                // silently dead connection is replaced eventually.
                try await watch(
                    namespace: namespace, name: name, labelSelector: labelSelector,
                    resourceVersion: resourceVersion, timeoutSeconds: Int.random(in: 300...600)
                ) { event in
                    switch event {
                    case .added(let lease), .modified(let lease), .deleted(let lease):
                        if let version = lease.metadata.resourceVersion, !version.isEmpty { resourceVersion = version }
                        progressed = true
                        failures = 0
                        yield(.event(event))
                    case .bookmark(let version):
                        if !version.isEmpty { resourceVersion = version }
                        progressed = true
                        failures = 0
                    case .error(let status):
                        throw KubernetesError(status: status)
                    }
                }
                logger.debug("Lease watch ended; resuming", metadata: ["k8s.resourceVersion": "\(resourceVersion ?? "")"])
                if progressed || ContinuousClock.now - watchStarted >= .seconds(1) {
                    failures = 0
                } else {
                    // Ended at once without a single event: do not spin.
                    failures += 1
                    try await backoff(failures)
                }
            } catch let error as KubernetesError where error.code == .gone {
                logger.debug("Lease watch expired; relisting", metadata: ["k8s.error": "\(error)"])
                resourceVersion = nil
                failures += 1
                if failures > 1 { try await backoff(failures - 1) }
            } catch let error as KubernetesError where error.isRetryable && !isShutDown {
                logger.debug("Lease informer request failed; retrying", metadata: ["k8s.error": "\(error)"])
                failures += 1
                try await backoff(failures)
            }
        }
    }

    /// 100 ms doubling per attempt, at most 5 s.
    static func informerBackoff(attempt: Int) -> Duration {
        let exponent = min(max(attempt - 1, 0), 6)
        return min(.milliseconds(100 * (1 << exponent)), .seconds(5))
    }
}
