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

/// `true` when `host` (a host name or address literal, IPv6 with or without brackets) can only mean this
/// machine: `localhost` and names under `.localhost` (RFC 6761), `127.0.0.0/8`, `::1` and IPv4-mapped
/// `::ffff:127.x.y.z`. Any other name — even one that happens to resolve to a loopback address — is not.
func isLoopbackHost(_ host: String) -> Bool {
    var name = host
    if name.hasPrefix("["), name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
    if let percent = name.firstIndex(of: "%") { name = String(name[..<percent]) }  // fe80::1%eth0
    let lower = name.lowercased()
    if lower == "localhost" || lower == "localhost." || lower.hasSuffix(".localhost") || lower.hasSuffix(".localhost.") {
        return true
    }
    var v4 = in_addr()
    if lower.withCString({ inet_pton(AF_INET, $0, &v4) }) == 1 {
        return UInt32(bigEndian: v4.s_addr) >> 24 == 127
    }
    var v6 = in6_addr()
    if lower.withCString({ inet_pton(AF_INET6, $0, &v6) }) == 1 {
        let bytes = withUnsafeBytes(of: v6) { Array($0) }
        if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return true }  // ::1
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF && bytes[12] == 127 { return true }
        return false
    }
    return false
}

/// The host part of a `host:port` endpoint (`[v6]:port` keeps its brackets; no port: the whole text).
func endpointHost(_ endpoint: String) -> String {
    if endpoint.hasPrefix("["), let close = endpoint.firstIndex(of: "]") {
        return String(endpoint[...close])
    }
    if endpoint.filter({ $0 == ":" }).count == 1, let colon = endpoint.lastIndex(of: ":") {
        return String(endpoint[..<colon])
    }
    return endpoint
}
