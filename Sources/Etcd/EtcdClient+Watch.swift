extension EtcdClient {
    /// What a watch delivers.
    public enum WatchMessage: Hashable, Sendable {
        /// The watch is established (first time, or again after a reconnect) at this store revision:
        /// every later change will be delivered. Changes between a drop and the reconnect are replayed.
        case established(revision: Int64)
        /// A change to a watched key.
        case event(EtcdWatchEvent)
    }

    /// Watches `key` (or `[key, rangeEnd)`), from `fromRevision` (0: from now).
    ///
    /// The stream reconnects after the gRPC stream drops (etcd restarted, connection lost) and resumes
    /// from the last revision seen + 1, so no change is lost or repeated. It ends with
    /// ``EtcdError/Code/compacted`` when the revision to resume from has been compacted away, and with
    /// other errors only when they cannot be retried. Stop iterating (or cancel the task) to end it.
    public func watch(_ key: [UInt8], rangeEnd: [UInt8] = [], fromRevision: Int64 = 0) -> AsyncThrowingStream<WatchMessage, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: WatchMessage.self, throwing: (any Error).self)
        let task = Task {
            var progress = WatchProgress(next: fromRevision)
            var backoff = Duration.milliseconds(25)
            while !Task.isCancelled {
                do {
                    let token = try await streamToken()
                    let call = transport.stream("/etcdserverpb.Watch/Watch", token: token)
                    call.send(EtcdCodec.watchCreate(key: key, rangeEnd: rangeEnd, startRevision: progress.next, watchID: 0))
                    defer { call.cancel() }
                    for try await bytes in call.messages {
                        let response = try EtcdCodec.decodeWatch(bytes)
                        if response.created { backoff = .milliseconds(25) }
                        for message in try progress.apply(response) { continuation.yield(message) }
                    }
                    // The server closed the stream without an error: reconnect.
                } catch let error as EtcdError where error.code == .unavailable || error.code == .deadlineExceeded || error.code == .other && error.grpcStatus != 0 {
                    // Transient: reconnect below.
                    _ = error
                } catch let error as EtcdError where error.code == .unauthenticated {
                    invalidateToken()
                } catch {
                    if Task.isCancelled { break }
                    continuation.finish(throwing: error)
                    return
                }
                if Task.isCancelled { break }
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(1))
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    /// Keeps lease `id` alive until the stream is no longer iterated (or the task is cancelled),
    /// yielding the TTL granted by each keepalive (sent every TTL/3).
    ///
    /// Ends with ``EtcdError/Code/notFound`` when the lease has expired or was revoked, and with
    /// ``EtcdError/Code/unavailable`` when etcd cannot be reached for longer than the lease's TTL.
    public func keepAlive(_ id: Int64) -> AsyncThrowingStream<Int64, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: Int64.self, throwing: (any Error).self)
        let task = Task {
            let clock = ContinuousClock()
            var lastSuccess = clock.now
            var ttl: Int64 = 1
            var backoff = Duration.milliseconds(50)
            outer: while !Task.isCancelled {
                do {
                    let token = try await streamToken()
                    let call = transport.stream("/etcdserverpb.Lease/LeaseKeepAlive", token: token)
                    defer { call.cancel() }
                    call.send(EtcdCodec.leaseKeepAlive(id: id))
                    for try await bytes in call.messages {
                        let lease = try EtcdCodec.decodeLeaseKeepAlive(bytes)
                        if lease.ttl <= 0 {
                            continuation.finish(throwing: EtcdError(code: .notFound, grpcStatus: 5, message: "lease \(id) expired or was revoked"))
                            return
                        }
                        ttl = lease.ttl
                        lastSuccess = clock.now
                        backoff = .milliseconds(50)
                        continuation.yield(lease.ttl)
                        try await Task.sleep(for: Self.keepAliveDelay(ttl: lease.ttl))
                        if !call.send(EtcdCodec.leaseKeepAlive(id: id)) { break }
                    }
                } catch is CancellationError {
                    break outer
                } catch let error as EtcdError where error.code == .unavailable || error.code == .deadlineExceeded || error.code == .unauthenticated {
                    if error.code == .unauthenticated { invalidateToken() }
                    if lastSuccess.duration(to: clock.now) > .seconds(ttl) {
                        continuation.finish(throwing: EtcdError(code: .unavailable, grpcStatus: error.grpcStatus,
                                                                message: "could not keep lease \(id) alive for its TTL of \(ttl) s: \(error.message)"))
                        return
                    }
                } catch {
                    if Task.isCancelled { break }
                    continuation.finish(throwing: error)
                    return
                }
                if Task.isCancelled { break }
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(1))
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    /// etcd's largest lease TTL (`MaxLeaseTTL`, 9,000,000,000 s); a server claiming more is clamped to it.
    static let maximumLeaseTTL: Int64 = 9_000_000_000

    /// How long to wait before the next keepalive of a lease whose granted TTL is `ttl` seconds: a third of
    /// the TTL, at least 500 ms. (`ttl * 1000` overflowed for a TTL above ~9.2e15 — found by `lease-fuzz etcd`.)
    static func keepAliveDelay(ttl: Int64) -> Duration {
        .milliseconds(max(500, min(ttl, maximumLeaseTTL) * 1000 / 3))
    }
}

/// Where a watch resumes after its stream drops: the last revision seen + 1 (0 until established from "now").
struct WatchProgress {
    /// The revision to send as `start_revision` when (re-)creating the watch; 0 means "from now".
    var next: Int64

    /// Applies one response of the watch stream and returns what to yield.
    /// - Throws: ``EtcdError/Code/compacted`` when the revision to resume from was compacted away, and an
    ///   ``EtcdError/Code/other`` error when etcd cancelled the watch.
    mutating func apply(_ response: EtcdCodec.WatchResponse) throws -> [EtcdClient.WatchMessage] {
        if response.compactRevision > 0 {
            throw EtcdError(code: .compacted, grpcStatus: 11,
                            message: "watch from revision \(next) failed: compacted up to \(response.compactRevision)",
                            compactRevision: response.compactRevision)
        }
        if response.canceled {
            throw EtcdError(code: .other, message: "etcd cancelled the watch: \(response.cancelReason)")
        }
        // The revision after `revision`; etcd's revisions never get near Int64.max, so one that does is an
        // invalid response rather than an overflow trap.
        func after(_ revision: Int64) throws -> Int64 {
            guard revision < Int64.max else {
                throw EtcdError(code: .invalidResponse, message: "etcd sent a WatchResponse with revision \(revision), which cannot be resumed after")
            }
            return revision + 1
        }
        var messages: [EtcdClient.WatchMessage] = []
        if response.created {
            if next == 0 { next = try after(response.header.revision) }
            messages.append(.established(revision: response.header.revision))
        }
        for event in response.events {
            next = max(next, try after(event.kv.modRevision))
            messages.append(.event(event))
        }
        return messages
    }
}
