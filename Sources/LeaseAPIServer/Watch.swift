import Etcd
import Kubernetes
import NIOCore

extension APIHandler {
    /// Starts a watch: reads the current objects first when no resourceVersion (or `0`) is given — so that a
    /// failing etcd still gets a 5xx response — then streams from the etcd watch.
    func startWatch<T: APIObject>(_ type: T.Type, namespace: String?, _ request: HTTPRequest) async throws -> HandlerResult {
        let selectors = try Selectors(query: request.query, info: T.info)
        var timeout: Duration?
        if let text = request.query["timeoutSeconds"], !text.isEmpty {
            guard let seconds = Int64(text), seconds >= 0 else {
                throw APIError.badRequest("timeoutSeconds: Invalid value: \(goQuote(text)): strconv.ParseInt: parsing \(goQuote(text)): invalid syntax")
            }
            if seconds > 0 { timeout = .seconds(seconds) }
        }
        let prefix = store.collectionPrefix(T.self, namespace: namespace)
        let requested = request.query["resourceVersion"] ?? ""
        var initial: [(key: String, object: T)] = []
        let startRevision: Int64
        if requested.isEmpty || requested == "0" {
            let response = try await store.range(prefix: prefix)
            for kv in response.kvs {
                initial.append((kv.keyString, try store.decode(T.self, kv)))
            }
            startRevision = response.header.revision + 1
        } else {
            guard let version = Int64(requested), version > 0 else {
                throw APIError.badRequest(
                    "resourceVersion: Invalid value: \(goQuote(requested)): strconv.ParseUint: parsing \(goQuote(requested)): invalid syntax")
            }
            startRevision = version + 1
        }
        let bookmarks = try request.query["allowWatchBookmarks"].map { try parseBool($0, "allowWatchBookmarks") } ?? false
        let session = WatchSession<T>(
            store: store, namespace: namespace, prefix: prefix, selectors: selectors, initial: initial,
            startRevision: startRevision, counter: watches, history: history, bookmarks: bookmarks, clock: clock)
        let limit = timeout
        return .watch(WatchStream { emit in try await session.run(timeout: limit, emit: emit) })
    }
}

/// One watch stream: the initial `ADDED` events, then the etcd watch translated into Kubernetes watch events,
/// as kube-apiserver's etcd watcher does (including selector transitions: an object that stops matching is
/// `DELETED`, one that starts matching is `ADDED`).
struct WatchSession<T: APIObject>: Sendable {
    let store: Store
    let namespace: String?
    let prefix: String
    let selectors: Selectors
    let initial: [(key: String, object: T)]
    /// The first etcd revision to deliver.
    let startRevision: Int64
    let counter: WatchCounter
    /// The changes since the server started, for watches from compacted revisions.
    let history: WatchHistory
    /// `allowWatchBookmarks`: a `BOOKMARK` event 2 s before the timeout, as kube's watch cache sends.
    let bookmarks: Bool
    /// Times `timeoutSeconds` and the `BOOKMARK` before it.
    let clock: any Clock<Duration>

    func run(timeout: Duration?, emit: @escaping @Sendable (ByteBuffer) async throws -> Void) async throws {
        counter.increment()
        defer { counter.decrement() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await stream(emit) }
            if let timeout {
                group.addTask { try await expire(on: clock, after: timeout, emit: emit) }
            }
            _ = try await group.next()
            group.cancelAll()
        }
    }

    /// Returns when `timeout` has passed on `clock` (ending the watch), having sent the `BOOKMARK` 2 s before
    /// when bookmarks are allowed. One sleeper at a time, both times measured from the same start.
    private func expire<C: Clock<Duration>>(
        on clock: C, after timeout: Duration, emit: @escaping @Sendable (ByteBuffer) async throws -> Void
    ) async throws {
        let deadline = clock.now.advanced(by: timeout)
        if bookmarks && timeout > .seconds(2) {
            try await clock.sleep(until: deadline.advanced(by: .seconds(-2)), tolerance: nil)
            try await emit(try await bookmark())
        }
        try await clock.sleep(until: deadline, tolerance: nil)
    }

    /// `{"type":"BOOKMARK","object":{…"metadata":{"resourceVersion":N,"creationTimestamp":null}…}}`, at the
    /// store's current revision (never older than an event already sent).
    private func bookmark() async throws -> ByteBuffer {
        let revision = try await store.call("reading the revision") { try await store.etcd.status().header.revision }
        var object: [String: JSONValue] = [
            "kind": .string(T.info.kind), "apiVersion": .string(T.info.apiVersion),
            "metadata": .object(["resourceVersion": .string(String(revision)), "creationTimestamp": .null]),
        ]
        for (key, value) in T.bookmarkFields { object[key] = value }
        var buffer = ByteBuffer(bytes: try ServerJSON.encode(JSONValue.object(["type": .string("BOOKMARK"), "object": .object(object)])))
        buffer.writeInteger(UInt8(ascii: "\n"))
        return buffer
    }

    private func line(_ event: WatchEvent<T>) throws -> ByteBuffer {
        var buffer = ByteBuffer(bytes: try ServerJSON.encode(event))
        buffer.writeInteger(UInt8(ascii: "\n"))
        return buffer
    }

    /// The last state of `key` before `revision`, when etcd still has it.
    private func previous(_ key: String, before revision: Int64) async -> T? {
        guard let kv = await store.read(key, at: revision - 1) else { return nil }
        return try? store.decode(T.self, kv)
    }

    /// An object naming only the deleted key's namespace and name.
    private func placeholder(for key: String) -> T {
        let suffix = String(key.dropFirst(prefix.count))
        if T.info.namespaced && namespace == nil, let slash = suffix.firstIndex(of: "/") {
            return T.placeholder(namespace: String(suffix[..<slash]), name: String(suffix[suffix.index(after: slash)...]))
        }
        return T.placeholder(namespace: T.info.namespaced ? namespace : nil, name: suffix)
    }

    private func stream(_ emit: @Sendable (ByteBuffer) async throws -> Void) async throws {
        var cache: [String: T] = [:]
        for (key, object) in initial {
            cache[key] = object
            if selectors.matches(object) { try await emit(line(.added(object.withTypeMeta))) }
        }
        let prefixBytes = Array(prefix.utf8)
        var from = startRevision
        while true {
            do {
                for try await message in store.etcd.watch(prefixBytes, rangeEnd: etcdPrefixEnd(prefixBytes), fromRevision: from) {
                    guard case .event(let event) = message else { continue }
                    guard try await handle(event, &cache, emit) else { return }
                }
                return
            } catch let error as EtcdError where error.code == .compacted {
                // kube's watch cache: replay what the history still holds, 410 only for older revisions.
                guard let (events, next) = history.replay(from: from, prefix: prefixBytes), next > from else {
                    let oldest = (error.compactRevision ?? from) - 1
                    let expired = APIError.expired("too old resource version: \(startRevision - 1) (\(oldest))")
                    try await emit(line(.error(expired.status)))
                    return
                }
                for event in events {
                    guard try await handle(event, &cache, emit) else { return }
                }
                from = next
            } catch let error as EtcdError {
                if Task.isCancelled { throw CancellationError() }
                try await emit(line(.error(APIError.etcd(error, "watching \(prefix)").status)))
                return
            }
        }
    }

    /// Translates one etcd change into watch events; `false` when the stream must end (an undecodable object
    /// was reported as an `ERROR`).
    private func handle(_ event: EtcdWatchEvent, _ cache: inout [String: T], _ emit: @Sendable (ByteBuffer) async throws -> Void) async throws -> Bool {
        let key = event.kv.keyString
        let revision = event.kv.modRevision
        switch event.kind {
        case .put:
            let current: T
            do {
                current = try store.decode(T.self, event.kv)
            } catch let error as APIError {
                try await emit(line(.error(error.status)))
                return false
            }
            let created = event.kv.createRevision == revision
            var last = cache[key]
            if last == nil && !created { last = await previous(key, before: revision) }
            cache[key] = current
            let matches = selectors.matches(current)
            let matched = created ? false : (last.map(selectors.matches) ?? matches)
            if matches && matched {
                try await emit(line(.modified(current.withTypeMeta)))
            } else if matches {
                try await emit(line(.added(current.withTypeMeta)))
            } else if matched, var gone = last {
                gone.metadata.resourceVersion = String(revision)
                try await emit(line(.deleted(gone.withTypeMeta)))
            }
        case .delete:
            var last = cache.removeValue(forKey: key)
            if last == nil { last = await previous(key, before: revision) }
            var gone = last ?? placeholder(for: key)
            gone.metadata.resourceVersion = String(revision)
            if selectors.matches(gone) { try await emit(line(.deleted(gone.withTypeMeta))) }
        }
        return true
    }
}
