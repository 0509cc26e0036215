#if canImport(Glibc)
import Glibc
#endif

/// `true` for a dotted-quad IPv4 address.
func isIPv4Literal(_ host: String) -> Bool {
    var address = in_addr()
    return host.withCString { inet_pton(AF_INET, $0, &address) } == 1
}

/// The IPv4 and IPv6 addresses of `host` (getaddrinfo; blocking, used once when a client is created with
/// several endpoints given by name).
func resolve(_ host: String) -> (v4: [String], v6: [String]) {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var result: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return ([], []) }
    defer { freeaddrinfo(first) }
    var v4: [String] = []
    var v6: [String] = []
    var cursor: UnsafeMutablePointer<addrinfo>? = first
    while let info = cursor {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        if info.pointee.ai_family == AF_INET, let sa = info.pointee.ai_addr {
            var addr = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
            if inet_ntop(AF_INET, &addr, &buffer, socklen_t(buffer.count)) != nil { v4.append(String(cString: buffer)) }
        } else if info.pointee.ai_family == AF_INET6, let sa = info.pointee.ai_addr {
            var addr = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
            if inet_ntop(AF_INET6, &addr, &buffer, socklen_t(buffer.count)) != nil { v6.append(String(cString: buffer)) }
        }
        cursor = info.pointee.ai_next
    }
    var seen = Set<String>()
    return (v4.filter { seen.insert($0).inserted }, v6.filter { seen.insert($0).inserted })
}
