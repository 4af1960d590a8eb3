import CCAres
import CLinux
import Glibc
import RegistryMirrorCore
import Synchronization

/// One lookup as the caller hands it over. `cancel` may come from any thread, before or after the DNS
/// thread has taken the request; the thread looks at the flag each time it wakes.
final class LookupRequest: Sendable {
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
final class DNSThread: Sendable {
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

/// One lookup on the DNS thread: the servers asked in turn, `attempts` rounds, one attempt at a time.
final class Lookup {
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
final class ResolverLoop {
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
