import CLinux
import Glibc
import RegistryMirrorCore
import Synchronization

/// `ConnectionChecker` with plain TCP sockets on one thread of their own ("ccr-tcp", asleep in poll
/// while nothing is pending): connection checks and held idle connections with TCP keepalive, whose
/// loss (FIN, RST, keepalive giving up) is reported at once (docs/design.md §6.3). Only hosts whose
/// URL names an IP address: a DNS name is left to the HTTP probe, which resolves it.
///
/// A check is a half-open connection: the socket has TCP_DEFER_ACCEPT set, with which Linux, on the
/// cache's SYN-ACK, marks the connection established but holds back its final ACK (a delayed ACK,
/// up to 200 ms); the check then closes with a reset at once. The cache's kernel answered the SYN,
/// so the path works, and its listener's half-made connection is dropped by the reset before it
/// is ever queued for accept: the cache process never sees the check (docker-registry spent about
/// 120 us of CPU on each full connect and close at 500 a second, and nothing on these). A check is
/// an ordinary connect() all the same, so it takes the path containerd's connections take (kube-proxy's
/// DNAT, a socket-level load balancer).
///
/// The held connection is a full one; on an https mirror it ends with `quietEnd` written before the
/// close: a Go TLS server (distribution's) logs "http: TLS handshake error from ...: EOF" for a
/// connection closed before its handshake, and answers a client that speaks plain HTTP to it with a
/// 400 and no line at all.
public final class TCPConnections: ConnectionChecker, Sendable {
    public static let shared = TCPConnections()

    /// A held connection's keepalive: probes after 5 s idle, every 1 s, dead after 3 unanswered
    /// (and TCP_USER_TIMEOUT 8 s for data in flight): a peer that vanished without a word is seen
    /// within about 8 s; one that closes or resets at once.
    static let keepIdle: Int32 = 5
    static let keepInterval: Int32 = 1
    static let keepCount: Int32 = 3
    static let userTimeoutMilliseconds: Int32 = 8000
    /// How long a held connection may take to connect.
    static let holdConnectTimeout: Duration = .seconds(5)
    /// Written to an https mirror before a connection of ours to it is closed (see above): the request
    /// a plain HTTP client would send to a TLS port by mistake.
    static let quietEnd = Array("GET / HTTP/1.0\r\n\r\n".utf8)

    private enum Entry {
        case check(started: ContinuousClock.Instant, deadline: ContinuousClock.Instant, timeout: Duration, done: @Sendable (ProbeResult) -> Void)
        case hold(id: Int, connected: Bool, deadline: ContinuousClock.Instant, tls: Bool, lost: @Sendable (String) -> Void)
    }

    private struct State {
        var entries: [Int32: Entry] = [:]
        /// Held connections to close (by id), closed by the thread: an fd is closed only there, so
        /// poll never waits on a number reused meanwhile.
        var closing: Set<Int> = []
        var nextID = 0
        var started = false
    }

    private let state = Mutex(State())
    private let wakeRead: Int32
    private let wakeWrite: Int32

    private init() {
        var fds: [Int32] = [-1, -1]
        precondition(pipe(&fds) == 0, "cannot make the TCP thread's pipe: \(String(cString: strerror(errno)))")
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        wakeRead = fds[0]
        wakeWrite = fds[1]
    }

    // MARK: ConnectionChecker

    public func connect(_ host: MirrorHost, timeout: Duration) async -> ProbeResult? {
        guard let address = SocketAddress(host) else { return nil }
        return await withCheckedContinuation { (continuation: CheckedContinuation<ProbeResult?, Never>) in
            let started = ContinuousClock.now
            switch address.open(halfOpen: true) {
            case .failure(let reason):
                continuation.resume(returning: ProbeResult(state: .down, reason: reason, connected: false))
            case .success(let fd):
                add(fd, .check(started: started, deadline: started + timeout, timeout: timeout) { continuation.resume(returning: $0) })
            }
        }
    }

    public func hold(_ host: MirrorHost, lost: @escaping @Sendable (String) -> Void) -> (any HeldConnection)? {
        guard let address = SocketAddress(host) else { return nil }
        switch address.open(halfOpen: false) {
        case .failure(let reason):
            lost(reason)
            return nil
        case .success(let fd):
            Self.keepAlive(fd)
            let id = state.withLock { state in
                state.nextID += 1
                return state.nextID
            }
            add(fd, .hold(id: id, connected: false, deadline: .now + Self.holdConnectTimeout, tls: address.tls, lost: lost))
            return Held(id: id, owner: self)
        }
    }

    private struct Held: HeldConnection {
        let id: Int
        let owner: TCPConnections
        func close() { owner.close(id) }
    }

    // MARK: The thread

    private func add(_ fd: Int32, _ entry: Entry) {
        let start = state.withLock { state in
            state.entries[fd] = entry
            defer { state.started = true }
            return !state.started
        }
        if start {
            let rc = startDetachedThread(named: "ccr-tcp") { [self] in run() }
            precondition(rc == 0, "cannot start the TCP thread: \(String(cString: strerror(rc)))")
        }
        wake()
    }

    private func close(_ id: Int) {
        state.withLock { _ = $0.closing.insert(id) }
        wake()
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    private func run() {
        var drain = [UInt8](repeating: 0, count: 64)
        while true {
            let now = ContinuousClock.now
            var finished: [(@Sendable () -> Void)] = []
            let (fds, wait) = state.withLock { state -> ([pollfd], Int32) in
                // Closes asked for, and deadlines passed.
                for (fd, entry) in state.entries {
                    switch entry {
                    case .hold(let id, let connected, _, let tls, _) where state.closing.contains(id):
                        state.entries[fd] = nil
                        state.closing.remove(id)
                        Self.end(fd, quietly: tls && connected)
                    case .hold(_, false, let deadline, _, let lost) where deadline <= now:
                        state.entries[fd] = nil
                        Glibc.close(fd)
                        finished.append { lost("connect timed out") }
                    case .check(_, let deadline, let timeout, let done) where deadline <= now:
                        state.entries[fd] = nil
                        Glibc.close(fd)
                        let result = ProbeResult(state: .down, reason: "connect timed out after \(timeout.millisecondsText)", latency: timeout, connected: false)
                        finished.append { done(result) }
                    default: break
                    }
                }
                state.closing.removeAll()
                var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
                var next: ContinuousClock.Instant?
                for (fd, entry) in state.entries {
                    switch entry {
                    case .check(_, let deadline, _, _):
                        fds.append(pollfd(fd: fd, events: Int16(POLLOUT), revents: 0))
                        next = min(next ?? deadline, deadline)
                    case .hold(_, false, let deadline, _, _):
                        fds.append(pollfd(fd: fd, events: Int16(POLLOUT), revents: 0))
                        next = min(next ?? deadline, deadline)
                    case .hold(_, true, _, _, _):
                        fds.append(pollfd(fd: fd, events: Int16(POLLIN) | ccr_pollrdhup(), revents: 0))
                    }
                }
                let wait = next.map { Int32(max(1, now.duration(to: $0).millisecondsRoundedUp)) } ?? -1
                return (fds, wait)
            }
            for call in finished { call() }
            var polled = fds
            let n = poll(&polled, nfds_t(polled.count), wait)
            guard n > 0 else { continue }
            if polled[0].revents != 0 { while read(wakeRead, &drain, drain.count) > 0 {} }
            var calls: [(@Sendable () -> Void)] = []
            state.withLock { state in
                for p in polled.dropFirst() where p.revents != 0 {
                    guard let entry = state.entries[p.fd] else { continue }
                    switch entry {
                    case .check(let started, _, _, let done):
                        state.entries[p.fd] = nil
                        let error = Self.socketError(p.fd)
                        Self.reset(p.fd)
                        let latency = started.duration(to: .now)
                        let result =
                            error == 0
                            ? ProbeResult(state: .up, reason: "connected", latency: latency)
                            : ProbeResult(state: .down, reason: Self.describe(error), latency: latency, connected: false)
                        calls.append { done(result) }
                    case .hold(let id, false, let deadline, let tls, let lost):
                        let error = Self.socketError(p.fd)
                        if error == 0 {
                            state.entries[p.fd] = .hold(id: id, connected: true, deadline: deadline, tls: tls, lost: lost)
                        } else {
                            state.entries[p.fd] = nil
                            Glibc.close(p.fd)
                            calls.append { lost(Self.describe(error)) }
                        }
                    case .hold(_, true, _, _, let lost):
                        if let reason = Self.brokenReason(p.fd) {
                            state.entries[p.fd] = nil
                            Glibc.close(p.fd)
                            calls.append { lost(reason) }
                        }
                    }
                }
            }
            for call in calls { call() }
        }
    }

    /// Why a held connection that poll woke for is gone, or nil when it is not (data the peer sent,
    /// which is read and dropped).
    private static func brokenReason(_ fd: Int32) -> String? {
        var buffer = [UInt8](repeating: 0, count: 512)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { continue }
            if n == 0 { return "connection closed by the mirror" }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return nil }
            return "connection lost: \(String(cString: strerror(errno)))"
        }
    }

    /// Closes a connection of ours; `quietly` (an https mirror, connected): with `quietEnd` written
    /// first, so the mirror's TLS server ends it without a log line. The few bytes fit any send
    /// buffer; a send that fails (the peer gone) changes nothing.
    private static func end(_ fd: Int32, quietly: Bool) {
        if quietly {
            _ = quietEnd.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        }
        Glibc.close(fd)
    }

    /// Closes with a reset (SO_LINGER 0): a check's half-made connection goes before the cache's
    /// listener queues it.
    private static func reset(_ fd: Int32) {
        var off = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &off, socklen_t(MemoryLayout<linger>.size))
        Glibc.close(fd)
    }

    private static func socketError(_ fd: Int32) -> Int32 {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 else { return errno }
        return error
    }

    static func describe(_ error: Int32) -> String {
        switch error {
        case ECONNREFUSED: "connection refused"
        case ETIMEDOUT: "connect timed out"
        default: String(cString: strerror(error))
        }
    }

    private static func keepAlive(_ fd: Int32) {
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, socklen_t(MemoryLayout<Int32>.size))
        for (option, value) in [(TCP_KEEPIDLE, keepIdle), (TCP_KEEPINTVL, keepInterval), (TCP_KEEPCNT, keepCount), (TCP_USER_TIMEOUT, userTimeoutMilliseconds)] {
            var v = value
            setsockopt(fd, Int32(IPPROTO_TCP), option, &v, socklen_t(MemoryLayout<Int32>.size))
        }
    }
}

/// A host URL's IP address and port as a socket address; nil for a host named by DNS name.
struct SocketAddress {
    /// The URL's scheme is https.
    let tls: Bool
    let family: Int32
    let storage: sockaddr_storage
    let length: socklen_t

    init?(_ host: MirrorHost) {
        guard let url = HostURL(parsing: host.url) else { return nil }
        tls = url.scheme == "https"
        var name = HostURL.hostPart(url.authority)
        let port = UInt16(url.port)
        var storage = sockaddr_storage()
        if name.hasPrefix("[") {
            name = String(name.dropFirst().dropLast())
            var addr = sockaddr_in6()
            addr.sin6_family = sa_family_t(AF_INET6)
            addr.sin6_port = port.bigEndian
            guard inet_pton(AF_INET6, name, &addr.sin6_addr) == 1 else { return nil }
            withUnsafeBytes(of: addr) { raw in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: raw) } }
            family = AF_INET6
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        } else {
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            guard Names.isIPv4(Substring(name)), inet_pton(AF_INET, name, &addr.sin_addr) == 1 else { return nil }
            withUnsafeBytes(of: addr) { raw in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: raw) } }
            family = AF_INET
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        }
        self.storage = storage
    }

    enum Opened {
        case success(Int32)
        case failure(String)
    }

    /// A non-blocking socket with its connect started; the reason when it failed at once. `halfOpen`:
    /// with TCP_DEFER_ACCEPT, so the cache's SYN-ACK gets no ACK before the socket is closed (see
    /// `TCPConnections`).
    func open(halfOpen: Bool) -> Opened {
        let fd = ccr_stream_socket(family)
        guard fd >= 0 else { return .failure("socket: \(String(cString: strerror(errno)))") }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        if halfOpen {
            var seconds: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_DEFER_ACCEPT, &seconds, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = storage
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
        }
        if rc == 0 || errno == EINPROGRESS { return .success(fd) }
        let reason = TCPConnections.describe(errno)
        close(fd)
        return .failure(reason)
    }
}
