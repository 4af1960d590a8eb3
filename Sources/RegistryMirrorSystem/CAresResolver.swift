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
///   c-ares 1.18 does not open those files at all; the one server of an attempt is then set with
///   `ares_set_servers_ports`. Queries go out with `ares_query`, which sends the name as given:
///   unlike `ares_getaddrinfo` it knows no search list, /etc/hosts, HOSTALIASES or "localhost".
/// - Order and bound: each attempt asks one server for A and AAAA at once and waits at most
///   `discovery.timeout` for both. The servers are asked in order, `attempts` rounds. The first
///   server that answers for the name decides (addresses, NXDOMAIN, or a name without addresses);
///   a timeout, a refusal, SERVFAIL, REFUSED or a malformed answer moves on to the next. A lookup
///   therefore ends within timeout × servers × attempts (2 s for one server and the defaults), plus
///   the time to start a thread.
/// - Why one server per attempt instead of c-ares's own failover: with its failover, c-ares 1.18
///   doubles the timeout every round and reports a SERVFAIL or REFUSED answer as ECONNREFUSED.
///   One server per attempt, with tries 1 and ARES_FLAG_NOCHECKRESP (the answer's code reaches us),
///   keeps the bound exact and lets the reason say what each server did.
/// - Threads: a lookup runs on a thread of its own, which creates, drives (poll(2) on the channel's
///   sockets and a wake-up pipe) and destroys its channel; the calling task only waits on a
///   continuation, so no thread of the cooperative pool ever blocks. A c-ares 1.18 channel is not
///   thread-safe, and none is shared: the only process-wide state is `ares_library_init`, run once.
///   Cancelling the task writes to the lookup's pipe; its thread cancels the queries and the lookup
///   returns `.unreachable("lookup cancelled")` within milliseconds.
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
        let wake: WakePipe
        switch WakePipe.make() {
        case .success(let pipe): wake = pipe
        case .failure(let error): return .unreachable("cannot make the lookup's wake-up pipe: \(error.reason)")
        }
        let lookup = Lookup(name: queryName, discovery: discovery, attempts: attempts, wake: wake)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Resolution, Never>) in
                let rc = startDetachedThread(named: "ccr-dns") { continuation.resume(returning: lookup.run()) }
                if rc != 0 {
                    let why = String(cString: strerror(rc))
                    continuation.resume(returning: .unreachable("cannot start a DNS thread: \(why)"))
                }
            }
        } onCancel: {
            wake.raise()
        }
    }

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
}

/// The pipe a cancelled task writes to, waking its lookup's poll. Both ends close when the last of
/// the cancellation handler and the lookup thread lets go, so neither writes to a closed (or reused)
/// descriptor.
private final class WakePipe: Sendable {
    let readEnd: Int32
    let writeEnd: Int32
    private let raised = Atomic<Bool>(false)

    private init(readEnd: Int32, writeEnd: Int32) {
        self.readEnd = readEnd
        self.writeEnd = writeEnd
    }

    static func make() -> Result<WakePipe, SystemCallError> {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return .failure(SystemCallError(call: "pipe", errno: errno)) }
        for fd in ends { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        // One byte is all that is ever written: the write end never blocks anyway; non-blocking is a belt.
        _ = fcntl(ends[1], F_SETFL, O_NONBLOCK)
        return .success(WakePipe(readEnd: ends[0], writeEnd: ends[1]))
    }

    var isRaised: Bool { raised.load(ordering: .acquiring) }

    func raise() {
        guard !raised.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
    }

    deinit {
        close(readEnd)
        close(writeEnd)
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

    /// Makes this server the channel's only one. Fails only while queries are pending (never here).
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
        let rc: Int32
        if family == AF_INET {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(server.port).bigEndian
            withUnsafeMutableBytes(of: &address.sin_addr) { $0.copyBytes(from: bytes) }
            rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        } else {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = UInt16(server.port).bigEndian
            withUnsafeMutableBytes(of: &address.sin6_addr) { $0.copyBytes(from: bytes) }
            rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
        guard rc == 0 else { return "cannot send to \(server): \(String(cString: strerror(errno)))" }
        return "connection refused by \(server) (nothing listens on that port)"
    }
}

/// One query's outcome, written by c-ares's callback on the lookup's thread.
private final class Answer {
    let family: Int32
    /// nil while the query is in flight; then an ARES_* status.
    var status: Int32?
    var addresses: [String] = []
    /// When the answer came but could not be read: c-ares's reason.
    var unreadable: Int32?

    init(family: Int32) { self.family = family }

    func finish(_ status: Int32, _ abuf: UnsafeMutablePointer<UInt8>?, _ alen: Int32) {
        self.status = status
        guard status == ARES_SUCCESS, let abuf, alen > 0 else { return }
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
        if rc == ARES_ENODATA {
            self.status = ARES_ENODATA
        } else if rc != ARES_SUCCESS {
            unreadable = rc
        }
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

/// c-ares calls this on the lookup's thread (from `ares_process_fd` or `ares_cancel`); `arg` is the
/// query's `Answer`, which the thread keeps alive until both of its queries have ended.
private let answerCallback: ares_callback = { arg, status, _, abuf, alen in
    Unmanaged<Answer>.fromOpaque(arg!).takeUnretainedValue().finish(status, abuf, alen)
}

/// One lookup, run on its own thread: a channel of its own, the servers asked in turn.
private struct Lookup: Sendable {
    static let cancelled = "lookup cancelled"

    let name: String
    let discovery: Discovery
    let attempts: Int
    let wake: WakePipe

    /// What one server said about the name.
    enum Verdict {
        case addresses([String])
        case noSuchName
        case noAddress
        case failed(String)
        case cancelled
    }

    func run() -> Resolution {
        var options = ares_options()
        // NOCHECKRESP: a SERVFAIL or REFUSED answer ends the query with its own code (this lookup moves
        // to the next server itself). NOSEARCH and NOALIASES say what ares_query does anyway.
        options.flags = ARES_FLAG_NOCHECKRESP | ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES
        options.timeout = Int32(clamping: max(1, discovery.timeout.milliseconds))
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
        guard rc == ARES_SUCCESS, let channel = made else {
            return .unreachable("c-ares cannot make a channel: \(String(cString: ares_strerror(rc)))")
        }
        defer { ares_destroy(channel) }

        // Per server, what went wrong, each different reason once.
        var failures = [[String]](repeating: [], count: discovery.servers.count)
        for _ in 0..<attempts {
            for (index, server) in discovery.servers.enumerated() {
                if wake.isRaised { return .unreachable(Self.cancelled) }
                let verdict: Verdict
                if let address = ServerAddress(server) {
                    verdict = ask(address, on: channel)
                } else {
                    verdict = .failed("\(server) is not an IP address and port")
                }
                switch verdict {
                case .addresses(let list): return .addresses(ServiceAddress.stableOrder(list))
                case .noSuchName: return .notFound("name not found (NXDOMAIN from \(server))")
                case .noAddress: return .notFound("name has no A or AAAA record (NODATA from \(server))")
                case .cancelled: return .unreachable(Self.cancelled)
                case .failed(let reason):
                    if !failures[index].contains(reason) { failures[index].append(reason) }
                }
            }
        }
        return .unreachable(failures.joined().joined(separator: "; "))
    }

    /// Asks one server for A and AAAA at once and waits for both answers, `discovery.timeout` at most.
    private func ask(_ address: ServerAddress, on channel: ares_channel) -> Verdict {
        let installed = address.install(in: channel)
        guard installed == ARES_SUCCESS else {
            return .failed("c-ares cannot use \(address.server): \(String(cString: ares_strerror(installed)))")
        }
        let deadline = ContinuousClock.now + discovery.timeout.duration
        let a = Answer(family: AF_INET)
        let aaaa = Answer(family: AF_INET6)
        // The answers outlive every callback: ares_query may call back at once (a socket that cannot
        // be opened), the rest come from ares_process_fd or ares_cancel below, all before this returns.
        withExtendedLifetime((a, aaaa)) {
            for (type, answer) in [(DNSConstant.typeA, a), (DNSConstant.typeAAAA, aaaa)] {
                ares_query(channel, name, DNSConstant.classIN, type, answerCallback, Unmanaged.passUnretained(answer).toOpaque())
            }
            // A refusal ends the attempt: c-ares 1.18 sends A and AAAA on one socket, and the second
            // send can take the ICMP error the first one caused, leaving the other query to time out.
            drive(channel, until: deadline) {
                (a.status != nil && aaaa.status != nil) || a.status == ARES_ECONNREFUSED || aaaa.status == ARES_ECONNREFUSED
            }
            // Whatever is still in flight ends here (its callback runs now): the channel is idle for
            // the next server, and no callback outlives its answer.
            ares_cancel(channel)
        }
        if wake.isRaised { return .cancelled }
        return verdict(a, aaaa, from: address)
    }

    /// Runs the channel until `done`, the deadline or a cancellation; the caller then cancels what is
    /// left (ARES_ECANCELLED, read as a timeout).
    private func drive(_ channel: ares_channel, until deadline: ContinuousClock.Instant, done: () -> Bool) {
        let maxSockets = Int(ARES_GETSOCK_MAXNUM)
        var sockets = [ares_socket_t](repeating: ARES_SOCKET_BAD, count: maxSockets)
        var fds: [pollfd] = []
        while !done() {
            let now = ContinuousClock.now
            if wake.isRaised || now >= deadline { return }
            let bits = ares_getsock(channel, &sockets, Int32(maxSockets))
            fds.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wake.readEnd, events: Int16(POLLIN), revents: 0))
            for index in 0..<maxSockets {
                let readable = bits & (1 << index) != 0
                let writable = bits & (1 << (index + maxSockets)) != 0
                guard readable || writable else { continue }
                let events = Int16(readable ? POLLIN : 0) | Int16(writable ? POLLOUT : 0)
                fds.append(pollfd(fd: sockets[index], events: events, revents: 0))
            }
            var wait = now.duration(to: deadline)
            var next = timeval()
            if let due = ares_timeout(channel, nil, &next) {
                wait = min(wait, .seconds(Int64(due.pointee.tv_sec)) + .microseconds(Int64(due.pointee.tv_usec)))
            }
            let ready = poll(&fds, nfds_t(fds.count), Int32(clamping: wait.millisecondsRoundedUp))
            // Not expected with valid descriptors; the queries end as at the deadline.
            if ready < 0 && errno != EINTR { return }
            var processed = false
            for entry in fds.dropFirst() where entry.revents != 0 {
                // An ICMP error shows as POLLERR: reading is what lets c-ares see it.
                let readable = entry.revents & Int16(POLLIN | POLLERR | POLLHUP) != 0
                let writable = entry.revents & Int16(POLLOUT) != 0
                ares_process_fd(channel, readable ? entry.fd : ARES_SOCKET_BAD, writable ? entry.fd : ARES_SOCKET_BAD)
                processed = true
            }
            // Nothing to read: let c-ares expire its queries' timers.
            if !processed { ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD) }
        }
    }

    /// A and AAAA together: any address wins; NXDOMAIN for either means no such name; both empty means
    /// a name without addresses; anything else is this server's failure, with its reason.
    private func verdict(_ a: Answer, _ aaaa: Answer, from address: ServerAddress) -> Verdict {
        let addresses = a.addresses + aaaa.addresses
        if !addresses.isEmpty { return .addresses(addresses) }
        let answers = [a, aaaa]
        if answers.contains(where: { $0.status == ARES_ENOTFOUND }) { return .noSuchName }
        // A NOERROR answer with nothing usable in it (no records, or only a CNAME) is no address.
        let empty = { (answer: Answer) in
            answer.unreadable == nil && (answer.status == ARES_ENODATA || answer.status == ARES_SUCCESS)
        }
        if answers.allSatisfy(empty) { return .noAddress }
        // What the server did (refused, SERVFAIL, ...) says more than the silence of the other query.
        let failed = answers.filter { !empty($0) }
        let telling = failed.first { $0.unreadable != nil || ![ARES_ETIMEOUT, ARES_ECANCELLED, nil].contains($0.status) }
        return .failed(reason(telling ?? failed[0], from: address))
    }

    private func reason(_ answer: Answer, from address: ServerAddress) -> String {
        let server = address.server
        if let unreadable = answer.unreadable {
            return "malformed answer from \(server) (\(String(cString: ares_strerror(unreadable))))"
        }
        switch answer.status ?? ARES_ETIMEOUT {
        case ARES_ETIMEOUT, ARES_ECANCELLED: return "no answer from \(server) within \(discovery.timeout)"
        case ARES_ECONNREFUSED: return address.refusalReason()
        case ARES_ESERVFAIL: return "server failure (SERVFAIL from \(server))"
        case ARES_EREFUSED: return "query refused (REFUSED from \(server))"
        case ARES_ENOTIMP: return "query not implemented (NOTIMP from \(server))"
        case ARES_EFORMERR: return "query rejected as malformed (FORMERR from \(server))"
        case ARES_EBADRESP: return "malformed answer from \(server)"
        case let status: return "\(String(cString: ares_strerror(status))) (asking \(server))"
        }
    }
}
