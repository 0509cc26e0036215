#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Hands out free loopback TCP ports.
///
/// A port is found by binding a socket to `127.0.0.1:0` and reading the port the kernel chose; the sockets of
/// one request stay open until all its ports are known, so they are distinct. Ports held by a live server of
/// this process (including a killed member waiting to be restarted on the same ports) are never handed out
/// again until ``release(_:)``. Another process can still take a port between our `close` and etcd's `bind`;
/// the servers retry with fresh ports when etcd reports "address already in use".
enum PortAllocator {
    private static let reserved = Mutex<Set<UInt16>>([])

    static func allocate(_ count: Int) throws(EtcdTestingError) -> [UInt16] {
        var sockets: [Int32] = []
        defer { for fd in sockets { close(fd) } }
        var ports: [UInt16] = []
        var attempts = 0
        while ports.count < count {
            attempts += 1
            if attempts > count * 50 {
                throw EtcdTestingError("could not find \(count) free loopback ports")
            }
            let (fd, port) = try bindLoopbackSocket(listenBacklog: nil)
            sockets.append(fd)
            let fresh = reserved.withLock { reserved in reserved.insert(port).inserted }
            if fresh { ports.append(port) }
        }
        return ports
    }

    /// Makes `ports` available again (after the server using them stopped for good).
    static func release(_ ports: [UInt16]) {
        reserved.withLock { reserved in
            for port in ports { reserved.remove(port) }
        }
    }
}

/// `true` when something accepts TCP connections on `127.0.0.1:port` (a connect on loopback answers at once).
func acceptsConnections(port: UInt16) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    return rc == 0
}

/// A TCP socket bound to `127.0.0.1` on a port the kernel picks (`SO_REUSEADDR`, close-on-exec), listening when
/// `backlog` is given. Returns the descriptor and the port; the caller owns (and closes) the descriptor.
public func bindLoopbackSocket(listenBacklog backlog: Int32?, nonBlocking: Bool = false) throws(EtcdTestingError) -> (fd: Int32, port: UInt16) {
    var type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
    if nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
    let fd = socket(AF_INET, type, 0)
    guard fd >= 0 else { throw EtcdTestingError("socket: \(String(cString: strerror(errno)))") }
    var one: Int32 = 1
    if backlog != nil { setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    guard bound == 0, backlog.map({ listen(fd, $0) == 0 }) ?? true,
          withUnsafeMutablePointer(to: &address, {
              $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
          }) == 0 else {
        let why = String(cString: strerror(errno))
        close(fd)
        throw EtcdTestingError("bind/listen on 127.0.0.1:0: \(why)")
    }
    return (fd, UInt16(bigEndian: address.sin_port))
}
