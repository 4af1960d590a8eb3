import CCAres
import CLinux
import Glibc
import RegistryMirrorCore
import Synchronization

/// What makes a channel: its one server and its timeout.
struct ChannelKey: Hashable {
    let family: Int32
    let bytes: [UInt8]
    let port: Int
    let timeoutMilliseconds: Int32
}

/// A c-ares channel of the DNS thread, with the one server and the timeout of its key.
final class Channel {
    let key: ChannelKey
    let handle: ares_channel
    /// The TCP socket c-ares opened during this attempt, or nil. With no ARES_FLAG_USEVC, c-ares 1.18
    /// opens one only to ask again a query whose UDP answer was truncated (TC, or over 512 bytes).
    var stream: ares_socket_t?
    /// That socket connected: poll reported it without an error once.
    var streamConnected = false

    /// Takes `handle` over; c-ares tells the channel of every socket it opens (`socketOpened`).
    init(key: ChannelKey, handle: ares_channel) {
        self.key = key
        self.handle = handle
        ares_set_socket_configure_callback(handle, socketOpened, Unmanaged.passUnretained(self).toOpaque())
    }

    /// A new attempt: nothing seen yet.
    func startAttempt() {
        stream = nil
        streamConnected = false
    }

    /// What poll said of one of the channel's sockets.
    func polled(_ fd: Int32, _ revents: Int16) {
        if fd == stream && revents & Int16(POLLERR | POLLHUP) == 0 { streamConnected = true }
    }

    deinit { ares_destroy(handle) }
}

/// c-ares calls this on the DNS thread for each socket it opens, before connecting it; `data` is its
/// `Channel` (which destroys the handle, and so outlives every call). 0: go on with the socket.
let socketOpened: ares_sock_config_callback = { fd, type, data in
    if type == Int32(SOCK_STREAM.rawValue) { Unmanaged<Channel>.fromOpaque(data!).takeUnretainedValue().stream = fd }
    return 0
}

/// The DNS thread's idle channels, by key.
struct ChannelPool {
    /// Enough for every Service name of a node looked up at once in a round; more lookups at once
    /// make channels that are destroyed when their attempt ends.
    static let idlePerServer = 16
    /// Every channel ever made (the tests read it).
    static let made = Atomic<Int>(0)

    enum Problem: Error {
        /// `ares_init_options` failed: the lookup ends.
        case cannotMake(Int32)
        /// `ares_set_servers_ports` failed: this server's attempt fails.
        case cannotUse(Int32)
    }

    private var idle: [ChannelKey: [Channel]] = [:]
    /// The keys of the newest lookup's servers: idle channels of other keys are not kept.
    private var current: Set<ChannelKey> = []

    /// A new lookup: its servers become the current ones, and idle channels for others go.
    mutating func use(_ keys: Set<ChannelKey>) {
        guard keys != current else { return }
        current = keys
        idle = idle.filter { keys.contains($0.key) }
    }

    /// An idle channel for `address` and `timeout`, or a new one.
    mutating func take(_ address: ServerAddress, timeout: Int32) -> Result<Channel, Problem> {
        let key = address.key(timeout: timeout)
        if let channel = idle[key]?.popLast() { return .success(channel) }
        var options = ares_options()
        // NOCHECKRESP: a SERVFAIL or REFUSED answer ends the query with its own code (the lookup moves to
        // the next server itself). NOSEARCH and NOALIASES say what ares_query does anyway.
        options.flags = ARES_FLAG_NOCHECKRESP | ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES
        options.timeout = timeout
        options.tries = 1
        options.ndots = 1
        options.nservers = 0
        options.ndomains = 0
        options.nsort = 0
        // Every field that would otherwise be read from resolv.conf is set: c-ares skips the file.
        let mask =
            ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_NDOTS | ARES_OPT_SERVERS | ARES_OPT_DOMAINS
            | ARES_OPT_LOOKUPS | ARES_OPT_SORTLIST | ARES_OPT_NOROTATE
        var made: ares_channel?
        let rc = "b".withCString { lookups in
            options.lookups = UnsafeMutablePointer(mutating: lookups)
            return ares_init_options(&made, &options, mask)
        }
        guard rc == ARES_SUCCESS, let handle = made else { return .failure(.cannotMake(rc)) }
        Self.made.add(1, ordering: .relaxed)
        let channel = Channel(key: key, handle: handle)
        let installed = address.install(in: handle)
        guard installed == ARES_SUCCESS else { return .failure(.cannotUse(installed)) }
        return .success(channel)
    }

    /// A channel whose attempt has ended (`ares_cancel`ed: no query, no socket), kept when its key is
    /// current and there is room.
    mutating func put(_ channel: Channel) {
        guard current.contains(channel.key), idle[channel.key, default: []].count < Self.idlePerServer else { return }
        idle[channel.key, default: []].append(channel)
    }
}

/// A server's address in the forms c-ares and connect(2) take.
struct ServerAddress {
    let server: Discovery.Server
    let family: Int32
    /// 4 or 16 bytes, network order.
    let bytes: [UInt8]

    init?(_ server: Discovery.Server) {
        guard (1...65535).contains(server.port) else { return nil }
        self.server = server
        var raw = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET, server.address, &raw) == 1 {
            family = AF_INET
            bytes = Array(raw.prefix(4))
        } else if inet_pton(AF_INET6, server.address, &raw) == 1 {
            family = AF_INET6
            bytes = raw
        } else {
            return nil
        }
    }

    func key(timeout: Int32) -> ChannelKey {
        ChannelKey(family: family, bytes: bytes, port: server.port, timeoutMilliseconds: timeout)
    }

    /// Makes this server the channel's only one. Fails only while queries are pending (never here: a
    /// channel gets its server when it is made).
    func install(in channel: ares_channel) -> Int32 {
        var node = ares_addr_port_node()
        node.family = family
        withUnsafeMutableBytes(of: &node.addr) { raw in raw.copyBytes(from: bytes) }
        node.udp_port = Int32(server.port)
        node.tcp_port = Int32(server.port)
        return ares_set_servers_ports(channel, &node)
    }

    /// Why c-ares's ECONNREFUSED came: c-ares 1.18 also reports a socket it could not create or
    /// connect (no route, no IPv6) as ECONNREFUSED. A UDP connect sends nothing, so trying one here
    /// tells the two apart without a packet.
    func refusalReason() -> String {
        let fd = ccr_datagram_socket(family)
        guard fd >= 0 else { return "cannot open a socket for \(server): \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        func connectTo<Address>(_ address: Address) -> Int32 {
            withUnsafePointer(to: address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<Address>.size)) }
            }
        }
        let rc: Int32
        if family == AF_INET {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(server.port).bigEndian
            withUnsafeMutableBytes(of: &address.sin_addr) { $0.copyBytes(from: bytes) }
            rc = connectTo(address)
        } else {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = UInt16(server.port).bigEndian
            withUnsafeMutableBytes(of: &address.sin6_addr) { $0.copyBytes(from: bytes) }
            rc = connectTo(address)
        }
        guard rc == 0 else { return "cannot send to \(server): \(String(cString: strerror(errno)))" }
        return "connection refused by \(server) (nothing listens on that port)"
    }
}
