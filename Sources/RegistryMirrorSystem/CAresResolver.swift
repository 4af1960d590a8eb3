import CCAres
import CLinux
import Glibc
import RegistryMirrorCore
import Synchronization

/// Looks Service names up with c-ares 1.18: the A and AAAA records of the exact name, asked of
/// `discovery.servers` and of nothing else.
///
/// - Nothing from the node: every setting `ares_init_options` would otherwise take from
///   /etc/resolv.conf (and nsswitch.conf, host.conf), LOCALDOMAIN or RES_OPTIONS is given explicitly
///   (no servers, no search domains, no sortlist, lookups "b" (DNS only), ndots, tries, timeout), so
///   c-ares 1.18 does not open those files at all; the one server of a channel is then set with
///   `ares_set_servers_ports`. Queries go out with `ares_query`, which sends the name as given:
///   unlike `ares_getaddrinfo` it knows no search list, /etc/hosts, HOSTALIASES or "localhost".
/// - Order and bound: each attempt asks one server for A and AAAA at once and waits at most
///   `discovery.timeout` for both. The servers are asked in order, `attempts` rounds. The first
///   server that answers for the name decides (addresses, NXDOMAIN, or a name without addresses);
///   a timeout, a refusal, any other answer code or a malformed answer moves on to the next. A lookup
///   therefore ends within timeout × servers × attempts (2 s for one server and the defaults), plus
///   the time to hand it to the DNS thread (and, for the first lookup, to start that thread).
/// - Why one server per attempt instead of c-ares's own failover: with its failover, c-ares 1.18
///   doubles the timeout every round and reports a SERVFAIL or REFUSED answer as ECONNREFUSED.
///   One server per attempt, with tries 1 and ARES_FLAG_NOCHECKRESP (the answer's code reaches us),
///   keeps the bound exact and lets the reason say what each server did.
/// - Answer codes: the resolver reads the RCODE from the answer's header itself. c-ares 1.18's
///   `ares_query` turns only NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP and REFUSED into statuses;
///   any other code (YXDOMAIN, NOTAUTH, ..., 15) comes back as ARES_SUCCESS, and with no record in
///   it would read as a name without addresses. Only NOERROR (its addresses, or none) and NXDOMAIN
///   say anything about the name; every other code is that server failing (`answerCode`).
/// - Threads: every lookup of the process is run by one thread ("ccr-dns", started by the first
///   lookup), which drives them all with poll(2) on their channels' sockets and a wake-up pipe and
///   resumes each caller's continuation; the calling task only waits on it, so no thread of the
///   cooperative pool ever blocks. With no lookup running the thread sleeps in poll without a
///   timeout. A c-ares 1.18 channel is not thread-safe: only that thread touches channels, and the
///   only other process-wide state is `ares_library_init`, run once.
/// - Channels: a channel has one server and one timeout, set when it is made, and serves one attempt
///   at a time, which ends with `ares_cancel`: the channel is then without queries and (no
///   ARES_FLAG_STAYOPEN) without sockets, and c-ares keeps nothing about the server in it (a
///   refusal only closes its sockets). Idle channels are kept for the next attempt at the same
///   (server, timeout), at most 16 each (`ChannelPool.idlePerServer`); those of a server or timeout
///   that the newest lookup does not use are destroyed, so a changed config gets new ones. A lookup
///   thus costs no thread and no channel set-up, only its socket and datagrams (watch looks every
///   name up every round: a thread and a channel per lookup cost 3 s of CPU an hour for 10 names,
///   scripts/bench/dns_idle.py). Not one
///   channel shared by the lookups in flight: c-ares 1.18 cannot cancel one query (`ares_cancel`
///   ends every query of the channel), and an error on a server's connection ends every query to
///   that server: one name's truncated answer retried over a TCP port that refuses would fail the
///   other names' pending UDP queries with ECONNREFUSED.
/// - Cancelling the task wakes the thread, which cancels that lookup's queries (its channel is its
///   own: no other lookup is touched), and the lookup returns `.unreachable("lookup cancelled")`
///   within milliseconds.
public struct CAresResolver: ServiceResolver {
    /// How many rounds over the servers a lookup makes before it gives up.
    public var attempts: Int

    public init(attempts: Int = 2) {
        self.attempts = max(1, attempts)
    }

    public func resolve(_ name: String, using discovery: Discovery) async -> Resolution {
        let queryName: String
        switch Self.queryName(name) {
        case .success(let checked): queryName = checked
        case .failure(let problem): return .notFound("not a valid DNS name: \(problem.message)")
        }
        guard !discovery.servers.isEmpty else { return .unreachable("no DNS server to ask") }
        guard CAresLibrary.status == ARES_SUCCESS else {
            return .unreachable("c-ares cannot start: \(String(cString: ares_strerror(CAresLibrary.status)))")
        }
        if Task.isCancelled { return .unreachable(Lookup.cancelled) }
        let thread = DNSThread.shared
        if let problem = thread.start() { return .unreachable(problem) }
        let request = LookupRequest(name: queryName, discovery: discovery, attempts: attempts)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Resolution, Never>) in
                thread.submit(request, continuation)
            }
        } onCancel: {
            request.cancel()
            thread.wake()
        }
    }

    /// How many channels this process has made, for the tests: a config that does not change reuses them.
    static var channelsMade: Int { ChannelPool.made.load(ordering: .relaxed) }

    struct NameProblem: Error {
        var message: String
    }

    /// The name as it goes into the query (one trailing dot dropped), or why it cannot be a DNS host
    /// name: c-ares would refuse some of these, and would read a backslash as an escape.
    static func queryName(_ name: String) -> Result<String, NameProblem> {
        var text = Substring(name)
        if text.hasSuffix(".") { text = text.dropLast() }
        guard !text.isEmpty else { return .failure(NameProblem(message: "the name is empty")) }
        guard text.utf8.count <= 253 else {
            return .failure(NameProblem(message: "longer than 253 characters (\(text.utf8.count))"))
        }
        for label in text.split(separator: ".", omittingEmptySubsequences: false) {
            guard !label.isEmpty else {
                return .failure(NameProblem(message: "has an empty label (\"..\" or a leading dot)"))
            }
            guard label.utf8.count <= 63 else {
                return .failure(NameProblem(message: "has a label longer than 63 characters (\(label.utf8.count))"))
            }
            let allowed = label.utf8.allSatisfy { byte in
                (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
                    || byte == 0x2D || byte == 0x5F
            }
            guard allowed else {
                return .failure(NameProblem(message: "has a character other than letters, digits, \"-\" and \"_\""))
            }
        }
        return .success(String(text))
    }
}

/// `ares_library_init`, once per process before the first channel (it must not race itself; Swift
/// runs a global's initialiser exactly once). Never cleaned up: lookups may run until exit.
private enum CAresLibrary {
    static let status: Int32 = ares_library_init(ARES_LIB_INIT_ALL)
}

/// DNS constants (RFC 1035, RFC 3596), spelled here rather than taken from <arpa/nameser.h>.
private enum DNSConstant {
    static let classIN: Int32 = 1
    static let typeA: Int32 = 1
    static let typeAAAA: Int32 = 28
    static let noError: UInt8 = 0
    static let nxDomain: UInt8 = 3

    /// An answer code other than NOERROR and NXDOMAIN as a reason (RFC 1035, 2136, 8490; 12-15 are
    /// unassigned): the server failed to answer for the name.
    static func answerCode(_ rcode: UInt8, from server: Discovery.Server) -> String {
        switch rcode {
        case 1: return "query rejected as malformed (FORMERR from \(server))"
        case 2: return "server failure (SERVFAIL from \(server))"
        case 4: return "query not implemented (NOTIMP from \(server))"
        case 5: return "query refused (REFUSED from \(server))"
        default:
            let names: [UInt8: String] = [6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 11: "DSOTYPENI"]
            return "unexpected answer code \(rcode) (\(names[rcode] ?? "unassigned"), from \(server))"
        }
    }
}

/// One lookup as the caller hands it over. `cancel` may come from any thread, before or after the DNS
/// thread has taken the request; the thread looks at the flag each time it wakes.
private final class LookupRequest: Sendable {
    let name: String
    let discovery: Discovery
    let attempts: Int
    private let cancelled = Atomic<Bool>(false)

    init(name: String, discovery: Discovery, attempts: Int) {
        self.name = name
        self.discovery = discovery
        self.attempts = attempts
    }

    var isCancelled: Bool { cancelled.load(ordering: .acquiring) }
    func cancel() { cancelled.store(true, ordering: .releasing) }
}

/// The DNS thread: started by the first lookup, then runs for the life of the process (the only
/// instance). Lookups reach it through a queue and a pipe that wakes its poll.
private final class DNSThread: Sendable {
    static let shared = DNSThread()

    private struct Inbox {
        /// The wake-up pipe once the thread runs; nil before (or after a failed start, tried again by
        /// the next lookup).
        var pipe: (read: Int32, write: Int32)?
        var queue: [(LookupRequest, CheckedContinuation<Resolution, Never>)] = []
        /// A byte is in the pipe, or about to be, that the thread has not yet answered by taking the
        /// queue: no second one is written (a burst of lookups costs one write, and the pipe never fills).
        var wakePending = false
    }

    private let inbox = Mutex(Inbox())

    private init() {}

    /// Starts the thread unless it runs; nil once it runs, or why it cannot.
    func start() -> String? {
        inbox.withLock { inbox -> String? in
            if inbox.pipe != nil { return nil }
            var ends: [Int32] = [-1, -1]
            guard pipe(&ends) == 0 else {
                return "cannot make the DNS thread's wake-up pipe: \(String(cString: strerror(errno)))"
            }
            for fd in ends {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                _ = fcntl(fd, F_SETFL, O_NONBLOCK)
            }
            let readEnd = ends[0]
            let rc = startDetachedThread(named: "ccr-dns") { [self] in ResolverLoop(wakeFD: readEnd, inbox: self).run() }
            guard rc == 0 else {
                close(ends[0])
                close(ends[1])
                return "cannot start a DNS thread: \(String(cString: strerror(rc)))"
            }
            inbox.pipe = (ends[0], ends[1])
            return nil
        }
    }

    func submit(_ request: LookupRequest, _ continuation: CheckedContinuation<Resolution, Never>) {
        let fd = inbox.withLock { inbox -> Int32? in
            inbox.queue.append((request, continuation))
            return Self.claimWake(&inbox)
        }
        if let fd { Self.writeByte(fd) }
    }

    /// Wakes the thread to look at the lookups' cancellation flags.
    func wake() {
        if let fd = inbox.withLock({ Self.claimWake(&$0) }) { Self.writeByte(fd) }
    }

    /// The thread's side: the lookups handed over since the last call. A lookup queued after this call
    /// writes a byte again.
    func take() -> [(LookupRequest, CheckedContinuation<Resolution, Never>)] {
        inbox.withLock { inbox in
            inbox.wakePending = false
            defer { inbox.queue.removeAll() }
            return inbox.queue
        }
    }

    /// The write end to write a byte to, when no byte is pending yet.
    private static func claimWake(_ inbox: inout Inbox) -> Int32? {
        guard let pipe = inbox.pipe, !inbox.wakePending else { return nil }
        inbox.wakePending = true
        return pipe.write
    }

    /// The write end is never closed (the thread runs until exit), so this may run outside the lock.
    private static func writeByte(_ fd: Int32) {
        var byte: UInt8 = 1
        while write(fd, &byte, 1) < 0 && errno == EINTR {}
    }
}

/// What makes a channel: its one server and its timeout.
private struct ChannelKey: Hashable {
    let family: Int32
    let bytes: [UInt8]
    let port: Int
    let timeoutMilliseconds: Int32
}

/// A c-ares channel of the DNS thread, with the one server and the timeout of its key.
private final class Channel {
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
private let socketOpened: ares_sock_config_callback = { fd, type, data in
    if type == Int32(SOCK_STREAM.rawValue) { Unmanaged<Channel>.fromOpaque(data!).takeUnretainedValue().stream = fd }
    return 0
}

/// The DNS thread's idle channels, by key.
private struct ChannelPool {
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
private struct ServerAddress {
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

/// One query's outcome, written by c-ares's callback on the DNS thread.
private final class Answer {
    let family: Int32
    /// nil while the query is in flight; then an ARES_* status.
    var status: Int32?
    /// The RCODE of the answer's header when an answer came (c-ares hands the message over for every
    /// code), read here rather than taken from `status`; nil when the query ended without one.
    var rcode: UInt8?
    var addresses: [String] = []
    /// When a NOERROR answer came but could not be read: c-ares's reason.
    var unreadable: Int32?

    init(family: Int32) { self.family = family }

    /// NOERROR with no address in it (no record, or only a CNAME): the name has no address of this family.
    var isEmpty: Bool { rcode == DNSConstant.noError && unreadable == nil && addresses.isEmpty }

    func finish(_ status: Int32, _ abuf: UnsafeMutablePointer<UInt8>?, _ alen: Int32) {
        self.status = status
        // c-ares drops answers shorter than the 12-byte header before they get here.
        guard let abuf, alen >= 12 else { return }
        rcode = abuf[3] & 0x0F
        // Only a NOERROR answer's records are read: c-ares 1.18 reports codes it has no status for as
        // ARES_SUCCESS, and their records say nothing.
        guard rcode == DNSConstant.noError else { return }
        // Every A record takes at least 16 bytes of the answer and every AAAA 28: this many slots
        // hold them all, however many addresses a headless Service has.
        let rc: Int32
        if family == AF_INET {
            var slots = [ares_addrttl](repeating: ares_addrttl(), count: Int(alen) / 16 + 1)
            var count = Int32(slots.count)
            rc = ares_parse_a_reply(abuf, alen, nil, &slots, &count)
            if rc == ARES_SUCCESS { addresses = slots.prefix(Int(count)).map { Self.text(AF_INET, of: $0.ipaddr) } }
        } else {
            var slots = [ares_addr6ttl](repeating: ares_addr6ttl(), count: Int(alen) / 28 + 1)
            var count = Int32(slots.count)
            rc = ares_parse_aaaa_reply(abuf, alen, nil, &slots, &count)
            if rc == ARES_SUCCESS { addresses = slots.prefix(Int(count)).map { Self.text(AF_INET6, of: $0.ip6addr) } }
        }
        if rc != ARES_SUCCESS && rc != ARES_ENODATA { unreadable = rc }
    }

    /// `10.0.0.5`, `fd00::5`.
    private static func text<Address>(_ family: Int32, of address: Address) -> String {
        var address = address
        return withUnsafePointer(to: &address) { pointer in
            withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(INET6_ADDRSTRLEN)) { buffer in
                guard let text = inet_ntop(family, pointer, buffer.baseAddress, socklen_t(buffer.count)) else { return "" }
                return String(cString: text)
            }
        }
    }
}

/// c-ares calls this on the DNS thread (from `ares_query`, `ares_process_fd` or `ares_cancel`); `arg` is
/// the query's `Answer`, which its `Attempt` keeps alive until both of its queries have ended.
private let answerCallback: ares_callback = { arg, status, _, abuf, alen in
    Unmanaged<Answer>.fromOpaque(arg!).takeUnretainedValue().finish(status, abuf, alen)
}


/// What one server said about the name.
private enum Verdict {
    case addresses([String])
    case noSuchName
    case noAddress
    case failed(String)
}

/// One server asked for A and AAAA at once, on a channel of this attempt's own, until both answers
/// are in or `discovery.timeout` has passed.
private final class Attempt {
    let address: ServerAddress
    /// The server's place in `discovery.servers`.
    let index: Int
    let channel: Channel
    let timeout: GoDuration
    let deadline: ContinuousClock.Instant
    let a = Answer(family: AF_INET)
    let aaaa = Answer(family: AF_INET6)

    init(address: ServerAddress, index: Int, channel: Channel, timeout: GoDuration) {
        self.address = address
        self.index = index
        self.channel = channel
        self.timeout = timeout
        deadline = ContinuousClock.now + timeout.duration
        channel.startAttempt()
    }

    /// Sends both queries. c-ares may call back at once (a socket that cannot be opened); the other
    /// callbacks come from `ares_process_fd`, or from `ares_cancel` in `end`, all while this attempt
    /// holds its answers.
    func send(_ name: String) {
        for (type, answer) in [(DNSConstant.typeA, a), (DNSConstant.typeAAAA, aaaa)] {
            ares_query(
                channel.handle, name, DNSConstant.classIN, type, answerCallback, Unmanaged.passUnretained(answer).toOpaque())
        }
    }

    /// Both answers are in, or one is a refusal, which ends the attempt: c-ares 1.18 sends A and AAAA
    /// on one socket, and the second send can take the ICMP error the first one caused, leaving the
    /// other query to time out.
    var isOver: Bool {
        (a.status != nil && aaaa.status != nil) || a.status == ARES_ECONNREFUSED || aaaa.status == ARES_ECONNREFUSED
    }

    /// Whatever is still in flight ends here (its callback runs now: ARES_ECANCELLED, read as a
    /// timeout): the channel is idle for the next attempt, and no callback outlives its answer.
    func end() {
        ares_cancel(channel.handle)
    }

    /// A and AAAA together: any address (of a NOERROR answer) wins; NXDOMAIN for either means no
    /// such name; both NOERROR and empty means a name without addresses; anything else (another
    /// answer code, no answer, a refusal, a malformed answer) is this server's failure, with its reason.
    func verdict() -> Verdict {
        let addresses = a.addresses + aaaa.addresses
        if !addresses.isEmpty { return .addresses(addresses) }
        let answers = [a, aaaa]
        if answers.contains(where: { $0.rcode == DNSConstant.nxDomain }) { return .noSuchName }
        if answers.allSatisfy(\.isEmpty) { return .noAddress }
        // What the server did (an answer code, a refusal) says more than the silence of the other query.
        let failed = answers.filter { !$0.isEmpty }
        let telling = failed.first { $0.rcode != nil || ![ARES_ETIMEOUT, ARES_ECANCELLED, nil].contains($0.status) }
        return .failed(reason(telling ?? failed[0]))
    }

    private func reason(_ answer: Answer) -> String {
        let server = address.server
        if let unreadable = answer.unreadable {
            return "malformed answer from \(server) (\(String(cString: ares_strerror(unreadable))))"
        }
        if let rcode = answer.rcode { return DNSConstant.answerCode(rcode, from: server) }
        // c-ares asked again over TCP: the UDP answer was truncated, and what went wrong is the retry's.
        let truncated = "truncated answer over UDP from \(server)"
        switch answer.status ?? ARES_ETIMEOUT {
        case ARES_ETIMEOUT, ARES_ECANCELLED:
            if channel.stream != nil { return "\(truncated), and no answer over TCP within \(timeout)" }
            return "no answer from \(server) within \(timeout)"
        case ARES_ECONNREFUSED:
            guard channel.stream != nil else { return address.refusalReason() }
            if channel.streamConnected { return "\(truncated), and its TCP retry's connection closed without an answer" }
            return "\(truncated), and its TCP retry was refused"
        case ARES_EBADRESP: return "malformed answer from \(server)"
        case let status: return "\(String(cString: ares_strerror(status))) (asking \(server))"
        }
    }
}

/// One lookup on the DNS thread: the servers asked in turn, `attempts` rounds, one attempt at a time.
private final class Lookup {
    static let cancelled = "lookup cancelled"

    let request: LookupRequest
    let continuation: CheckedContinuation<Resolution, Never>
    /// Per server, what went wrong, each different reason once.
    private(set) var failures: [[String]]
    /// How many attempts have started.
    var started = 0
    var attempt: Attempt?

    init(_ request: LookupRequest, _ continuation: CheckedContinuation<Resolution, Never>) {
        self.request = request
        self.continuation = continuation
        failures = [[String]](repeating: [], count: request.discovery.servers.count)
    }

    var timeoutMilliseconds: Int32 { Int32(clamping: max(1, request.discovery.timeout.milliseconds)) }

    func note(_ reason: String, server index: Int) {
        if !failures[index].contains(reason) { failures[index].append(reason) }
    }
}

/// The DNS thread's loop: takes new lookups, moves each on (next server, verdict, result), and sleeps in
/// poll(2) on the wake-up pipe and the sockets of the attempts in flight, until the first of their
/// deadlines and c-ares's timers; with nothing in flight, without a timeout.
private final class ResolverLoop {
    private let wakeFD: Int32
    private let inbox: DNSThread
    private var pool = ChannelPool()
    private var lookups: [Lookup] = []

    init(wakeFD: Int32, inbox: DNSThread) {
        self.wakeFD = wakeFD
        self.inbox = inbox
    }

    func run() -> Never {
        let maxSockets = Int(ARES_GETSOCK_MAXNUM)
        var sockets = [ares_socket_t](repeating: ARES_SOCKET_BAD, count: maxSockets)
        var fds: [pollfd] = []
        // For fds[1...]: the index in `lookups` of the lookup whose channel the socket is.
        var owners: [Int] = []
        var processed: [Bool] = []
        var expire = false
        while true {
            for (request, continuation) in inbox.take() {
                let lookup = Lookup(request, continuation)
                let timeout = lookup.timeoutMilliseconds
                pool.use(Set(request.discovery.servers.compactMap { ServerAddress($0)?.key(timeout: timeout) }))
                lookups.append(lookup)
            }
            let now = ContinuousClock.now
            lookups = lookups.filter { advance($0, now: now, expire: expire) }
            expire = false

            fds.removeAll(keepingCapacity: true)
            owners.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
            var wait: Duration?
            for (index, lookup) in lookups.enumerated() {
                guard let attempt = lookup.attempt else { continue }
                let channel = attempt.channel.handle
                let bits = ares_getsock(channel, &sockets, Int32(maxSockets))
                for slot in 0..<maxSockets {
                    let readable = bits & (1 << slot) != 0
                    let writable = bits & (1 << (slot + maxSockets)) != 0
                    guard readable || writable else { continue }
                    let events = Int16(readable ? POLLIN : 0) | Int16(writable ? POLLOUT : 0)
                    fds.append(pollfd(fd: sockets[slot], events: events, revents: 0))
                    owners.append(index)
                }
                var left = now.duration(to: attempt.deadline)
                var next = timeval()
                if let due = ares_timeout(channel, nil, &next) {
                    left = min(left, .seconds(Int64(due.pointee.tv_sec)) + .microseconds(Int64(due.pointee.tv_usec)))
                }
                wait = min(wait ?? left, left)
            }
            let timeout = wait.map { Int32(clamping: max(.zero, $0).millisecondsRoundedUp) } ?? -1
            if poll(&fds, nfds_t(fds.count), timeout) < 0 {
                // Not expected with valid descriptors; the attempts in flight end as at their deadline.
                if errno != EINTR { expire = true }
                continue
            }
            if fds[0].revents != 0 { drainWakePipe() }
            processed.removeAll(keepingCapacity: true)
            processed.append(contentsOf: repeatElement(false, count: lookups.count))
            for (entry, owner) in zip(fds.dropFirst(), owners) where entry.revents != 0 {
                guard let channel = lookups[owner].attempt?.channel else { continue }
                channel.polled(entry.fd, entry.revents)
                // An ICMP error shows as POLLERR: reading is what lets c-ares see it.
                let readable = entry.revents & Int16(POLLIN | POLLERR | POLLHUP) != 0
                let writable = entry.revents & Int16(POLLOUT) != 0
                ares_process_fd(channel.handle, readable ? entry.fd : ARES_SOCKET_BAD, writable ? entry.fd : ARES_SOCKET_BAD)
                processed[owner] = true
            }
            // Nothing to read for these: let c-ares expire their queries' timers.
            for (index, lookup) in lookups.enumerated() where !processed[index] {
                if let channel = lookup.attempt?.channel.handle { ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD) }
            }
        }
    }

    /// Moves `lookup` on as far as it goes now: ends its attempt when it is over (answered, refused, at
    /// its deadline, or every attempt in flight when `expire`), then decides or starts the next one.
    /// False once the lookup has its result (the caller is resumed), true while an attempt is in flight.
    private func advance(_ lookup: Lookup, now: ContinuousClock.Instant, expire: Bool) -> Bool {
        let servers = lookup.request.discovery.servers
        var expire = expire
        while true {
            if let attempt = lookup.attempt {
                guard lookup.request.isCancelled || expire || attempt.isOver || now >= attempt.deadline else { return true }
                expire = false
                attempt.end()
                pool.put(attempt.channel)
                lookup.attempt = nil
                if lookup.request.isCancelled { return finish(lookup, .unreachable(Lookup.cancelled)) }
                let server = attempt.address.server
                switch attempt.verdict() {
                case .addresses(let list): return finish(lookup, .addresses(ServiceAddress.stableOrder(list)))
                case .noSuchName: return finish(lookup, .notFound("name not found (NXDOMAIN from \(server))"))
                case .noAddress: return finish(lookup, .notFound("name has no A or AAAA record (NODATA from \(server))"))
                case .failed(let reason): lookup.note(reason, server: attempt.index)
                }
            }
            if lookup.request.isCancelled { return finish(lookup, .unreachable(Lookup.cancelled)) }
            guard lookup.started < servers.count * lookup.request.attempts else {
                return finish(lookup, .unreachable(lookup.failures.joined().joined(separator: "; ")))
            }
            let index = lookup.started % servers.count
            lookup.started += 1
            let server = servers[index]
            guard let address = ServerAddress(server) else {
                lookup.note("\(server) is not an IP address and port", server: index)
                continue
            }
            switch pool.take(address, timeout: lookup.timeoutMilliseconds) {
            case .failure(.cannotMake(let rc)):
                return finish(lookup, .unreachable("c-ares cannot make a channel: \(String(cString: ares_strerror(rc)))"))
            case .failure(.cannotUse(let rc)):
                lookup.note("c-ares cannot use \(server): \(String(cString: ares_strerror(rc)))", server: index)
            case .success(let channel):
                let attempt = Attempt(address: address, index: index, channel: channel, timeout: lookup.request.discovery.timeout)
                lookup.attempt = attempt
                attempt.send(lookup.request.name)
            }
        }
    }

    private func finish(_ lookup: Lookup, _ result: Resolution) -> Bool {
        lookup.continuation.resume(returning: result)
        return false
    }

    /// Empties the wake-up pipe (non-blocking): the bytes only say "look".
    private func drainWakePipe() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(wakeFD, &buffer, buffer.count) > 0 {}
    }
}
