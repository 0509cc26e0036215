#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import Synchronization

/// Loopback TCP proxies between candidates and a server, run by one `poll(2)` thread, with faults:
/// - latency: every chunk is forwarded `latency` after it was read (order kept);
/// - stall: nothing is forwarded until a point in time (connections stay open; data queues up and is
///   delivered late, as a congested or partitioned link would);
/// - half-open: the connections open now are black-holed for good — nothing is forwarded or closed
///   on them any more, as after a peer vanished without a FIN or RST (kubernetes#125530); new connections work.
///
/// Each proxy has an id; the chaos harness gives every candidate slot its own proxy per server, so faults can
/// hit the leader alone. Tests use it to put a dead connection between a client and a real server.
///
/// Every proxy also counts the bytes it reads from each side (``traffic(proxy:)``, per connection with
/// ``trafficByConnection(proxy:)``): what went over the wire, TLS records included, counted before they are
/// forwarded — so when a client has received a response, the request and the response are both counted.
public final class FaultProxy: @unchecked Sendable {
    /// Bytes a proxy read from the clients (to forward upstream) and from the server (to forward to the clients).
    public struct Traffic: Sendable, Hashable {
        public var clientToUpstream: Int
        public var upstreamToClient: Int
        public init(clientToUpstream: Int = 0, upstreamToClient: Int = 0) {
            self.clientToUpstream = clientToUpstream
            self.upstreamToClient = upstreamToClient
        }
        /// `self − earlier`, field by field.
        public func subtracting(_ earlier: Traffic) -> Traffic {
            Traffic(clientToUpstream: clientToUpstream - earlier.clientToUpstream, upstreamToClient: upstreamToClient - earlier.upstreamToClient)
        }
    }

    struct Settings: Sendable {
        var latency: Int64 = 0
        var stalledUntil: Int64 = 0
    }

    private struct Shared {
        var settings: [Int: Settings] = [:]
        var blackholeRequests: [Int] = []
        var newListeners: [(id: Int, fd: Int32, upstream: UInt16)] = []
        var activeConnections: [Int: Int] = [:]
        var blackholedTotal = 0
        var acceptedTotal = 0
        /// Bytes read, by proxy and by connection (numbered from 1 in accept order, per proxy; closed ones kept).
        var traffic: [Int: [Int: Traffic]] = [:]
        var connectionsAccepted: [Int: Int] = [:]
        var running = true
    }
    private let shared = Mutex(Shared())
    private var wakePipe: [Int32] = [-1, -1]
    private let finished = Mutex(false)

    // Hub thread only.
    private var listeners: [(id: Int, fd: Int32, upstream: UInt16)] = []
    private var connections: [Connection] = []

    private final class Connection {
        let proxy: Int
        /// Numbered from 1 per proxy, in accept order.
        var serial = 0
        var client: Int32
        var upstream: Int32
        var connecting = true
        var blackholed = false
        var toUpstream = ChunkQueue()
        var toClient = ChunkQueue()
        var clientEOF = false
        var upstreamEOF = false
        var upstreamShut = false
        var clientShut = false
        var dead = false
        init(proxy: Int, client: Int32, upstream: Int32) {
            self.proxy = proxy
            self.client = client
            self.upstream = upstream
        }
    }

    private struct Chunk {
        var at: Int64
        var bytes: [UInt8]
        var offset = 0
    }

    private struct ChunkQueue {
        var chunks: [Chunk] = []
        var head = 0
        var bytes = 0
        var lastAt: Int64 = 0
        var isEmpty: Bool { head >= chunks.count }
        var first: Chunk? { isEmpty ? nil : chunks[head] }
        mutating func append(_ data: ArraySlice<UInt8>, at: Int64) {
            let at = max(at, lastAt)
            lastAt = at
            chunks.append(Chunk(at: at, bytes: Array(data)))
            bytes += data.count
        }
        mutating func consume(_ n: Int) {
            chunks[head].offset += n
            bytes -= n
            if chunks[head].offset >= chunks[head].bytes.count {
                head += 1
                if head > 64 && head * 2 > chunks.count {
                    chunks.removeFirst(head)
                    head = 0
                }
            }
        }
        mutating func removeAll() {
            chunks = []
            head = 0
            bytes = 0
        }
    }

    /// Starts the proxy thread (no listeners yet; add them with ``addProxy(id:upstream:)``).
    public init() throws {
        guard pipe(&wakePipe) == 0 else { throw EtcdTestingError("pipe: \(String(cString: strerror(errno)))") }
        for fd in wakePipe {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        let thread = Thread { [self] in loop() }
        thread.name = "lease-chaos proxy"
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Starts a proxy to `127.0.0.1:upstream`; returns its port.
    public func addProxy(id: Int, upstream: UInt16) throws -> UInt16 {
        let (fd, port) = try bindLoopbackSocket(listenBacklog: 128, nonBlocking: true)
        shared.withLock { state in
            state.newListeners.append((id, fd, upstream))
            state.settings[id] = Settings()
        }
        wake()
        return port
    }

    /// Sets latency (nanoseconds) on proxies.
    public func setLatency(_ nanos: Int64, proxies: [Int]) {
        shared.withLock { state in for id in proxies { state.settings[id, default: Settings()].latency = nanos } }
        wake()
    }

    /// Holds every byte on these proxies until `until` (monotonic nanoseconds).
    public func stall(until: Int64, proxies: [Int]) {
        shared.withLock { state in for id in proxies { state.settings[id, default: Settings()].stalledUntil = until } }
        wake()
    }

    /// Black-holes the connections open now on these proxies.
    public func blackholeExisting(proxies: [Int]) {
        shared.withLock { $0.blackholeRequests += proxies }
        wake()
    }

    /// Clears latency and stalls everywhere (black-holed connections stay black-holed).
    public func clearAll() {
        shared.withLock { state in for id in state.settings.keys { state.settings[id] = Settings() } }
        wake()
    }

    /// Open, forwarding connections per proxy.
    public func activeConnections() -> [Int: Int] { shared.withLock { $0.activeConnections } }

    /// Connections black-holed so far.
    public var blackholedTotal: Int { shared.withLock { $0.blackholedTotal } }
    /// Connections accepted so far.
    public var acceptedTotal: Int { shared.withLock { $0.acceptedTotal } }

    /// Bytes read so far on this proxy's connections, all together (closed ones included).
    public func traffic(proxy: Int) -> Traffic {
        shared.withLock { state in
            (state.traffic[proxy] ?? [:]).values.reduce(into: Traffic()) {
                $0.clientToUpstream += $1.clientToUpstream
                $0.upstreamToClient += $1.upstreamToClient
            }
        }
    }

    /// Bytes read so far on this proxy's connections, by connection (numbered from 1 in accept order).
    public func trafficByConnection(proxy: Int) -> [Int: Traffic] { shared.withLock { $0.traffic[proxy] ?? [:] } }

    /// Stops the thread and closes every socket.
    public func shutdown() {
        shared.withLock { $0.running = false }
        wake()
        let limit = faultProxyNow() + 2_000_000_000
        while !finished.withLock({ $0 }) && faultProxyNow() < limit { usleep(1000) }
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakePipe[1], &byte, 1)
    }

    // MARK: - The loop

    private func loop() {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        var settings: [Int: Settings] = [:]
        while true {
            let (running, added, blackholes, currentSettings) = shared.withLock { state in
                defer {
                    state.newListeners = []
                    state.blackholeRequests = []
                }
                return (state.running, state.newListeners, state.blackholeRequests, state.settings)
            }
            settings = currentSettings
            if !running { break }
            listeners += added
            if !blackholes.isEmpty {
                var count = 0
                for connection in connections where blackholes.contains(connection.proxy) && !connection.blackholed {
                    connection.blackholed = true
                    connection.toClient.removeAll()
                    connection.toUpstream.removeAll()
                    count += 1
                }
                shared.withLock { $0.blackholedTotal += count }
            }

            let now = faultProxyNow()
            var fds: [pollfd] = [pollfd(fd: wakePipe[0], events: Int16(POLLIN), revents: 0)]
            for listener in listeners { fds.append(pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)) }
            var timeout: Int64 = 50_000_000
            func due(_ queue: ChunkQueue, _ proxy: Int) -> Bool {
                guard let first = queue.first else { return false }
                let s = settings[proxy] ?? Settings()
                let at = max(first.at, s.stalledUntil)
                if at <= now { return true }
                timeout = min(timeout, at - now)
                return false
            }
            let limit = 8 << 20
            for c in connections {
                var clientEvents: Int32 = 0
                var upstreamEvents: Int32 = 0
                if !c.clientEOF && (c.blackholed || c.toUpstream.bytes < limit) { clientEvents |= Int32(POLLIN) }
                if !c.blackholed && due(c.toClient, c.proxy) { clientEvents |= Int32(POLLOUT) }
                if c.upstream >= 0 {
                    if c.connecting {
                        upstreamEvents |= Int32(POLLOUT)
                    } else {
                        if !c.upstreamEOF && (c.blackholed || c.toClient.bytes < limit) { upstreamEvents |= Int32(POLLIN) }
                        if !c.blackholed && due(c.toUpstream, c.proxy) { upstreamEvents |= Int32(POLLOUT) }
                    }
                }
                fds.append(pollfd(fd: c.client, events: Int16(clientEvents), revents: 0))
                fds.append(pollfd(fd: c.upstream, events: Int16(upstreamEvents), revents: 0))
            }
            let polled = connections
            let ms = Int32(max(0, min(50, (timeout + 999_999) / 1_000_000)))
            let ready = poll(&fds, nfds_t(fds.count), ms)
            if ready < 0 && errno != EINTR { usleep(1000) }
            if fds[0].revents != 0 {
                var sink = [UInt8](repeating: 0, count: 256)
                while read(wakePipe[0], &sink, sink.count) > 0 {}
            }
            for (index, listener) in listeners.enumerated() where fds[1 + index].revents != 0 {
                acceptAll(listener)
            }
            let base = 1 + listeners.count
            let afterPoll = faultProxyNow()
            for (index, c) in polled.enumerated() {
                let clientRevents = Int32(fds[base + 2 * index].revents)
                let upstreamRevents = Int32(fds[base + 2 * index + 1].revents)
                service(c, clientRevents: clientRevents, upstreamRevents: upstreamRevents, now: afterPoll,
                        settings: settings[c.proxy] ?? Settings(), buffer: &buffer)
            }
            connections.removeAll { $0.dead }
            var active: [Int: Int] = [:]
            for c in connections where !c.blackholed && !c.connecting { active[c.proxy, default: 0] += 1 }
            shared.withLock { $0.activeConnections = active }
        }
        for c in connections { closeConnection(c) }
        for listener in listeners { close(listener.fd) }
        close(wakePipe[0])
        close(wakePipe[1])
        finished.withLock { $0 = true }
    }

    private func acceptAll(_ listener: (id: Int, fd: Int32, upstream: UInt16)) {
        while true {
            let client = accept(listener.fd, nil, nil)
            if client < 0 { return }
            _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            var one: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard upstream >= 0 else { close(client); continue }
            setsockopt(upstream, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = listener.upstream.bigEndian
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if rc != 0 && errno != EINPROGRESS {
                close(upstream)
                close(client)
                continue
            }
            let c = Connection(proxy: listener.id, client: client, upstream: upstream)
            c.connecting = rc != 0
            connections.append(c)
            c.serial = shared.withLock { state in
                state.acceptedTotal += 1
                state.connectionsAccepted[listener.id, default: 0] += 1
                let serial = state.connectionsAccepted[listener.id]!
                state.traffic[listener.id, default: [:]][serial] = Traffic()
                return serial
            }
        }
    }

    private func service(_ c: Connection, clientRevents: Int32, upstreamRevents: Int32, now: Int64, settings: Settings, buffer: inout [UInt8]) {
        if c.dead { return }
        // Connecting upstream.
        if c.upstream >= 0 && c.connecting && upstreamRevents != 0 {
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(c.upstream, SOL_SOCKET, SO_ERROR, &error, &length)
            if error != 0 {
                if c.blackholed { dropUpstream(c) } else { closeConnection(c); return }
            } else {
                c.connecting = false
            }
        }
        // Reads.
        if clientRevents & Int32(POLLIN | POLLHUP | POLLERR) != 0 && !c.clientEOF {
            let n = buffer.withUnsafeMutableBytes { read(c.client, $0.baseAddress, $0.count) }
            if n > 0 {
                count(c, clientToUpstream: n)
                if !c.blackholed { c.toUpstream.append(buffer[0..<n], at: now + settings.latency) }
            } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                // The candidate closed (or reset) its end: the connection is over, black-holed or not.
                c.clientEOF = true
                if c.blackholed || n < 0 { closeConnection(c); return }
            }
        }
        if c.upstream >= 0 && !c.connecting && upstreamRevents & Int32(POLLIN | POLLHUP | POLLERR) != 0 && !c.upstreamEOF {
            let n = buffer.withUnsafeMutableBytes { read(c.upstream, $0.baseAddress, $0.count) }
            if n > 0 {
                count(c, upstreamToClient: n)
                if !c.blackholed { c.toClient.append(buffer[0..<n], at: now + settings.latency) }
            } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                c.upstreamEOF = true
                // A half-open connection never tells the candidate: keep its end open.
                if c.blackholed { dropUpstream(c) } else if n < 0 { closeConnection(c); return }
            }
        }
        if c.blackholed { return }
        // Writes (only chunks that are due and not stalled).
        if !flush(&c.toClient, to: c.client, now: now, settings: settings) { closeConnection(c); return }
        if c.upstream >= 0 && !c.connecting {
            if !flush(&c.toUpstream, to: c.upstream, now: now, settings: settings) { closeConnection(c); return }
        }
        // Half-closes, once everything read before the FIN has been delivered.
        if c.clientEOF && c.toUpstream.isEmpty && !c.upstreamShut && c.upstream >= 0 && !c.connecting {
            _ = Glibc.shutdown(c.upstream, Int32(SHUT_WR))
            c.upstreamShut = true
        }
        if c.upstreamEOF && c.toClient.isEmpty && !c.clientShut {
            _ = Glibc.shutdown(c.client, Int32(SHUT_WR))
            c.clientShut = true
        }
        if c.clientEOF && c.upstreamEOF && c.toClient.isEmpty && c.toUpstream.isEmpty { closeConnection(c) }
    }

    /// Counts bytes read on a connection (before they are forwarded).
    private func count(_ c: Connection, clientToUpstream: Int = 0, upstreamToClient: Int = 0) {
        shared.withLock { state in
            state.traffic[c.proxy, default: [:]][c.serial, default: Traffic()].clientToUpstream += clientToUpstream
            state.traffic[c.proxy, default: [:]][c.serial, default: Traffic()].upstreamToClient += upstreamToClient
        }
    }

    /// Writes due chunks; `false` on a write error.
    private func flush(_ queue: inout ChunkQueue, to fd: Int32, now: Int64, settings: Settings) -> Bool {
        guard now >= settings.stalledUntil else { return true }
        while let first = queue.first, first.at <= now {
            let n = first.bytes.withUnsafeBytes { raw in
                write(fd, raw.baseAddress! + first.offset, first.bytes.count - first.offset)
            }
            if n > 0 {
                queue.consume(n)
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                return true
            } else {
                return false
            }
        }
        return true
    }

    private func dropUpstream(_ c: Connection) {
        if c.upstream >= 0 { close(c.upstream) }
        c.upstream = -1
        c.connecting = false
        c.upstreamEOF = true
    }

    private func closeConnection(_ c: Connection) {
        guard !c.dead else { return }
        c.dead = true
        if c.client >= 0 { close(c.client) }
        if c.upstream >= 0 { close(c.upstream) }
        c.client = -1
        c.upstream = -1
    }
}

/// CLOCK_MONOTONIC in nanoseconds (the same clock `stall(until:proxies:)` takes).
public func faultProxyNow() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
