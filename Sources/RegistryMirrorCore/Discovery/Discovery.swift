/// `[discovery]` (docs/design.md §11): host names under `domain` are cluster Service names. The node's
/// own resolver does not know them, so the agent asks the cluster DNS Service directly and writes the
/// address it gets into hosts.toml.
public struct Discovery: Sendable, Hashable {
    /// A DNS server to ask: an IP address (never a name: nothing could resolve it) and a port.
    public struct Server: Sendable, Hashable, CustomStringConvertible {
        /// The address without brackets: `10.96.0.10`, `fd00::a`.
        public var address: String
        public var port: Int

        public init(address: String, port: Int = 53) {
            self.address = address
            self.port = port
        }

        /// `10.96.0.10:53`, `[fd00::a]:53`.
        public var description: String { (address.contains(":") ? "[\(address)]" : address) + ":\(port)" }

        /// `10.96.0.10`, `10.96.0.10:5353`, `fd00::a`, `[fd00::a]:5353`; otherwise the problem, thrown.
        public static func parse(_ text: String) throws(Problem) -> Server {
            var host = Substring(text)
            var port = 53
            if host.hasPrefix("[") {
                guard let close = host.firstIndex(of: "]") else { throw Problem("has an unclosed \"[\"") }
                let after = host[host.index(after: close)...]
                host = host[host.index(after: host.startIndex)..<close]
                if !after.isEmpty {
                    guard after.hasPrefix(":"), let n = portNumber(after.dropFirst()) else {
                        throw Problem("has an invalid port after the IPv6 address (1-65535)")
                    }
                    port = n
                }
                guard Names.isIPv6(host) else { throw Problem("is not an IPv6 address") }
            } else if Names.isIPv6(host) {
                // A bare IPv6 address: every colon is the address's own.
            } else {
                if let colon = host.firstIndex(of: ":") {
                    guard let n = portNumber(host[host.index(after: colon)...]) else {
                        throw Problem("has an invalid port (1-65535)")
                    }
                    port = n
                    host = host[..<colon]
                }
                guard Names.isIPv4(host) else {
                    throw Problem("is not an IP address (a DNS server is given by address: nothing could look its name up)")
                }
            }
            return Server(address: String(host), port: port)
        }

        private static func portNumber(_ text: Substring) -> Int? {
            guard !text.isEmpty, text.count <= 5, text.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(text),
                (1...65535).contains(n)
            else { return nil }
            return n
        }
    }

    public struct Problem: Error, Sendable, Equatable {
        public var message: String
        public init(_ message: String) { self.message = message }
    }

    public static let defaultDomain = "cluster.local"

    public var servers: [Server]
    /// Lowercase, without a trailing dot.
    public var domain: String
    /// How long one query may take (per server and attempt).
    public var timeout: GoDuration
    /// watch: how often a name with addresses is looked up again (±20%), besides at once when a probe
    /// of one of its addresses fails.
    public var lookupInterval: GoDuration

    public init(
        servers: [Server], domain: String = Discovery.defaultDomain, timeout: GoDuration = .seconds(1), lookupInterval: GoDuration = .seconds(30)
    ) {
        self.servers = servers
        self.domain = domain
        self.timeout = timeout
        self.lookupInterval = lookupInterval
    }

    /// The Service name a host URL names, when its host is a DNS name under `domain` (lowercased,
    /// without a trailing dot); nil for addresses and names outside the domain.
    public func serviceName(of url: String) -> String? {
        guard let split = HostURL(parsing: url) else { return nil }
        let host = HostURL.hostPart(split.authority)
        guard !host.hasPrefix("["), !Names.isIPv4(Substring(host)) else { return nil }
        var name = host.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        return name.hasSuffix("." + domain) ? name : nil
    }
}

extension HostURL {
    /// The host of an authority, without the port (IPv6 literals keep their brackets).
    public static func hostPart(_ authority: String) -> String {
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
            return String(authority[...close])
        }
        if let colon = authority.firstIndex(of: ":") { return String(authority[..<colon]) }
        return authority
    }
}

/// What one lookup of a Service name found.
public enum Resolution: Sendable, Equatable, CustomStringConvertible {
    /// The name's A and AAAA addresses, in `ServiceAddress.stableOrder`; never empty.
    case addresses([String])
    /// The DNS server answered: no such name (NXDOMAIN), or a name with no address.
    case notFound(String)
    /// No usable answer: no server answered in time, refused, or failed (SERVFAIL).
    case unreachable(String)

    public var addresses: [String] {
        if case .addresses(let list) = self { return list }
        return []
    }

    /// The answer without addresses no Service has (`ServiceAddress.unusable`), IPv4-mapped addresses
    /// written as IPv4 (`ServiceAddress.canonical`): an answer of only unusable addresses is "not
    /// found", with the reason.
    public var usable: Resolution {
        guard case .addresses(let list) = self else { return self }
        let kept = list.filter { ServiceAddress.unusable($0) == nil }.map(ServiceAddress.canonical)
        if !kept.isEmpty { return kept == list ? self : .addresses(ServiceAddress.stableOrder(kept)) }
        let why = list.prefix(3).map { "\($0) (\(ServiceAddress.unusable($0) ?? ""))" }.joined(separator: ", ")
        return .notFound("only addresses a Service cannot have: \(why)")
    }

    /// What a log line or a probe reason says: `DNS: 10.96.0.5, fd00::5`, `DNS: name not found
    /// (NXDOMAIN from 10.96.0.10:53)`, `DNS unreachable: no answer from 10.96.0.10:53 within 1s`.
    public var description: String {
        switch self {
        case .addresses(let list): "DNS: " + list.joined(separator: ", ")
        case .notFound(let why): "DNS: \(why)"
        case .unreachable(let why): "DNS unreachable: \(why)"
        }
    }
}

/// Looks Service names up through `Discovery.servers` (A and AAAA), never through /etc/resolv.conf.
/// Implementations return within about `timeout` × servers × attempts, and promptly when cancelled.
public protocol ServiceResolver: Sendable {
    func resolve(_ name: String, using discovery: Discovery) async -> Resolution
}

extension Optional where Wrapped == any ServiceResolver {
    /// The lookup apply, watch and plan make: unreachable when there is no resolver or no `[discovery]`.
    func lookUp(_ name: String, using discovery: Discovery?) async -> Resolution {
        guard case .some(let resolver) = self, let discovery else { return .unreachable("no resolver") }
        return await resolver.resolve(name, using: discovery)
    }
}

/// Addresses as the agent orders them, so that a file does not change when a DNS server rotates its
/// answers: IPv4 before IPv6, each numerically.
public enum ServiceAddress {
    public static func stableOrder(_ addresses: [String]) -> [String] {
        var seen = Set<String>()
        let unique = addresses.filter { seen.insert($0).inserted }
        return unique.sorted { a, b in
            switch (bytes(a), bytes(b)) {
            case let (x?, y?): x.count != y.count ? x.count < y.count : x.lexicographicallyPrecedes(y)
            case (nil, _?): false
            case (_?, nil): true
            case (nil, nil): a < b
            }
        }
    }

    /// Why a DNS answer's address cannot be a Service's, or nil. One rule for both families, and an
    /// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is judged as the IPv4 address it carries (a
    /// connection to it is one to that IPv4 address):
    /// - unspecified and "this network" (`0.0.0.0/8`, `::`): a connection to 0.0.0.0 reaches this node;
    /// - broadcast (`255.255.255.255`) and multicast (`224.0.0.0/4`, `ff00::/8`);
    /// - link-local (`169.254.0.0/16`, `fe80::/10`): this node's own link, never a cluster IP
    ///   (169.254.169.254 is a cloud's metadata service; an IPv6 one would also need a zone).
    ///
    /// Loopback (`127.0.0.0/8`, `::1`) is allowed: it names this node on purpose, and containerd
    /// reaches it exactly as the probe does (the project's tests give their caches 127.0.0.x
    /// addresses as cluster IPs).
    public static func unusable(_ address: String) -> String? {
        guard let b = bytes(address) else { return "not an IP address" }
        if let carried = mappedIPv4(b) {
            return ipv4Problem(carried).map { "IPv4-mapped \(text(ofIPv4: carried)), \($0)" }
        }
        return b.count == 4 ? ipv4Problem(b) : ipv6Problem(b)
    }

    private static func ipv4Problem(_ b: [UInt8]) -> String? {
        if b == [0, 0, 0, 0] { return "unspecified" }
        if b[0] == 0 { return "\"this network\"" }
        if b == [255, 255, 255, 255] { return "broadcast" }
        if b[0] >= 224 && b[0] <= 239 { return "multicast" }
        if b[0] == 169 && b[1] == 254 { return "link-local" }
        return nil
    }

    private static func ipv6Problem(_ b: [UInt8]) -> String? {
        if b.allSatisfy({ $0 == 0 }) { return "unspecified" }
        if b[0] == 0xFF { return "multicast" }
        if b[0] == 0xFE && b[1] & 0xC0 == 0x80 { return "link-local" }
        return nil
    }

    /// The IPv4 address an IPv4-mapped IPv6 address (`::ffff:0:0/96`) carries, or nil.
    private static func mappedIPv4(_ b: [UInt8]) -> [UInt8]? {
        guard b.count == 16, b.prefix(10).allSatisfy({ $0 == 0 }), b[10] == 0xFF, b[11] == 0xFF else { return nil }
        return Array(b.suffix(4))
    }

    private static func text(ofIPv4 b: [UInt8]) -> String { b.map(String.init).joined(separator: ".") }

    /// The address as the file names it: an IPv4-mapped IPv6 address as the IPv4 address it carries
    /// (`::ffff:10.0.0.5` -> `10.0.0.5`), which is what containerd (Go) connects to anyway; any other
    /// address as it is.
    public static func canonical(_ address: String) -> String {
        guard let b = bytes(address), let carried = mappedIPv4(b) else { return address }
        return text(ofIPv4: carried)
    }

    /// The address's bytes (4 or 16), nil when it is neither an IPv4 nor an IPv6 address.
    public static func bytes(_ text: String) -> [UInt8]? {
        let s = Substring(text)
        if Names.isIPv4(s) { return s.split(separator: ".").map { UInt8($0)! } }
        guard Names.isIPv6(s) else { return nil }
        var head: [UInt8] = []
        var tail: [UInt8] = []
        let halves = Names.splitOnDoubleColon(text)
        func groups(_ part: String) -> [UInt8] {
            guard !part.isEmpty else { return [] }
            var out: [UInt8] = []
            for group in part.split(separator: ":") {
                if group.contains(".") {
                    out += group.split(separator: ".").map { UInt8($0)! }
                } else {
                    let v = UInt16(group, radix: 16)!
                    out += [UInt8(v >> 8), UInt8(v & 0xFF)]
                }
            }
            return out
        }
        head = groups(halves[0])
        if halves.count == 2 { tail = groups(halves[1]) }
        return head + Array(repeating: 0, count: 16 - head.count - tail.count) + tail
    }

    /// `url` with its host replaced by `address` (IPv6 in brackets); port and path stay.
    /// The address `url` names when it is `template` (a Service name's URL) at an address: same
    /// scheme, port and path, an IP literal for host. Nil otherwise.
    public static func address(in url: String, for template: String) -> String? {
        guard let split = HostURL(parsing: url), let name = HostURL(parsing: template), split.scheme == name.scheme,
            split.path == name.path, split.port == name.port
        else { return nil }
        let host = HostURL.hostPart(split.authority)
        if host.hasPrefix("[") { return String(host.dropFirst().dropLast()) }
        return Names.isIPv4(Substring(host)) ? host : nil
    }

    public static func url(_ url: String, at address: String) -> String {
        guard let split = HostURL(parsing: url) else { return url }
        let host = HostURL.hostPart(split.authority)
        let port = split.authority.dropFirst(host.count)
        let literal = address.contains(":") ? "[\(address)]" : address
        return split.scheme + "://" + literal + port + split.path
    }
}
