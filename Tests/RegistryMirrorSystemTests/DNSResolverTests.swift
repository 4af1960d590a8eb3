import Foundation
import Glibc
import RegistryMirrorCore
@testable import RegistryMirrorSystem
import Synchronization
import Testing

// MARK: - A real dnsmasq

/// dnsmasq (Debian's dnsmasq-base, installed by scripts/test.sh) on 127.0.0.1 and ::1, answering for
/// cluster.local from a hosts file of the test's and from its command line only: no upstream, no
/// /etc/hosts, no /etc/resolv.conf. Started with posix_spawn (`SpawnedChild`): a child of Foundation's
/// Process inherits a signal mask that blocks SIGHUP, and dnsmasq would never re-read its hosts file.
/// Killed when stopped or deinitialised.
final class DNSMasq: @unchecked Sendable {
    static let binary = "/usr/sbin/dnsmasq"

    let port: Int
    let dir: TempDir
    private var child: SpawnedChild

    /// - Parameters:
    ///   - hosts: the hosts file (`ADDRESS NAME` lines), re-read on SIGHUP.
    ///   - options: more dnsmasq options, e.g. `--txt-record=...`.
    init(hosts: String, options: [String] = []) async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            throw TestFailure(
                "\(Self.binary) is missing: the DNS resolver tests need a real dnsmasq "
                    + "(apt-get install dnsmasq-base; scripts/test.sh installs it with TEST_PACKAGES)")
        }
        dir = try TempDir("ccr-dnsmasq")
        try writeText(dir.sub("hosts"), hosts)
        // The port was free a moment ago; another process may take it first. A few tries.
        var lastError = ""
        for _ in 0..<5 {
            let port = try freeLoopbackPort()
            let child = try SpawnedChild(
                Self.binary,
                [
                    "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
                    "--port=\(port)", "--listen-address=127.0.0.1", "--listen-address=::1", "--bind-interfaces",
                    "--addn-hosts=\(dir.sub("hosts"))", "--local=/cluster.local/", "--pid-file=",
                    // Root all along: after a SIGHUP it must still read the hosts file in the test's 0700 dir.
                    "--user=root", "--group=root", "--log-facility=-", "--log-queries",
                ] + options,
                stderrPath: dir.sub("dnsmasq.log"))
            let up = await eventually(within: .seconds(10)) { isListening(port) || !child.isRunning }
            if up && child.isRunning {
                self.port = port
                self.child = child
                return
            }
            child.stop()
            lastError = child.stderrText
        }
        throw TestFailure("dnsmasq did not start: \(lastError.suffix(500))")
    }

    var server: Discovery.Server { Discovery.Server(address: "127.0.0.1", port: port) }
    var log: String { child.stderrText }

    func writeHosts(_ text: String) throws { try writeText(dir.sub("hosts"), text) }
    func reload() { child.signal(SIGHUP) }
    func stop() { child.stop() }
    /// Stopped (SIGSTOP): queries go unanswered, as from a DNS server out of reach; `resume` ends it.
    func pause() { child.signal(SIGSTOP) }
    func resume() { child.signal(SIGCONT) }

    deinit { child.stop() }
}

// MARK: - Scripted DNS servers

/// A UDP socket on 127.0.0.1 that answers every query the same scripted way, from a thread of its own.
final class ScriptedDNSServer: @unchecked Sendable {
    enum Behaviour: Sendable {
        /// Never reads, never answers: every query times out.
        case silent
        /// Answers with this response code and no records.
        case rcode(UInt8)
        /// Answers with bytes that are not a DNS message for the query.
        case noise
        /// Answers NOERROR claiming one record, with none in the message.
        case missingRecord
        /// Answers with the truncation bit set (ask again over TCP), and has no TCP port.
        case truncated
        /// Answers A queries with this IPv4 address and AAAA queries with no record, each `after` the
        /// query came; the name `truncating` (if any) gets a truncated answer at once instead.
        case address(String, after: Duration = .zero, truncating: String? = nil)
        /// Answers A queries with the `a` records and AAAA queries with the `aaaa` ones (as given:
        /// addresses no Service has too), under this response code.
        case records(a: [String], aaaa: [String], rcode: UInt8 = 0)
    }

    /// What the server's TCP port on the same number does (c-ares asks there after a truncated answer).
    enum TCP: Sendable {
        /// Nothing listens: a connection is refused.
        case none
        /// Accepts a connection and closes it at once, without an answer.
        case closes
        /// Accepts a connection and never answers on it.
        case silent
    }

    let port: Int
    private let fd: Int32
    /// The TCP listener on the same port, for `TCP.closes` and `.silent`; -1 without one.
    private var listener: Int32 = -1
    /// Connections accepted and kept open (`TCP.silent`), closed on stop.
    private var accepted: [Int32] = []
    private let stopped = Atomic<Bool>(false)
    private let done = Mutex(false)
    /// The query names seen, in order.
    private let seen = Mutex<[String]>([])

    /// - Parameters:
    ///   - port: the port to bind (0: any free one), e.g. that of a server stopped a moment ago.
    ///   - tcp: what a TCP connection to the same port meets.
    init(_ behaviour: Behaviour, port: Int = 0, tcp: TCP = .none) throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        do {
            self.port = try bindLoopback(fd, port: port)
            if tcp != .none {
                listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                guard listener >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
                _ = try bindLoopback(listener, port: self.port)
                guard listen(listener, 8) == 0 else { throw TestFailure("listen: \(String(cString: strerror(errno)))") }
            }
        } catch {
            close(fd)
            if listener >= 0 { close(listener) }
            throw error
        }
        if case .silent = behaviour {
            done.withLock { $0 = true }
            return
        }
        let thread = Thread { [self] in
            serve(behaviour, tcp: tcp)
            done.withLock { $0 = true }
        }
        thread.start()
    }

    var server: Discovery.Server { Discovery.Server(address: "127.0.0.1", port: port) }
    var queries: [String] { seen.withLock { $0 } }

    private func serve(_ behaviour: Behaviour, tcp: TCP) {
        var buffer = [UInt8](repeating: 0, count: 1500)
        // Replies held back by `.address(after:)`, in the order they are due.
        var held: [(due: ContinuousClock.Instant, reply: [UInt8], to: sockaddr_storage, length: socklen_t)] = []
        while !stopped.load(ordering: .relaxed) {
            // Wakes at least every 50 ms to notice a stop.
            var wait = Duration.milliseconds(50)
            if let first = held.first { wait = min(wait, max(.zero, ContinuousClock.now.duration(to: first.due))) }
            var entries = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
            if listener >= 0 { entries.append(pollfd(fd: listener, events: Int16(POLLIN), revents: 0)) }
            _ = poll(&entries, nfds_t(entries.count), Int32((wait.seconds * 1000).rounded(.up)))
            if entries.count > 1 && entries[1].revents != 0 {
                let connection = accept(listener, nil, nil)
                if connection >= 0 {
                    if tcp == .closes { close(connection) } else { accepted.append(connection) }
                }
            }
            if entries[0].revents != 0 {
                var from = sockaddr_storage()
                var fromLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let n = withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT), $0, &fromLength)
                    }
                }
                if n >= 12, let (reply, delay) = answer(Array(buffer.prefix(n)), behaviour) {
                    let due = ContinuousClock.now + delay
                    held.append((due, reply, from, fromLength))
                    held.sort { $0.due < $1.due }
                }
            }
            let now = ContinuousClock.now
            while let first = held.first, first.due <= now {
                held.removeFirst()
                var to = first.to
                _ = withUnsafePointer(to: &to) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, first.reply, first.reply.count, 0, $0, first.length) }
                }
            }
        }
    }

    /// The reply to `query` and when to send it, or nil for none.
    private func answer(_ query: [UInt8], _ behaviour: Behaviour) -> ([UInt8], Duration)? {
        var reply = query
        switch behaviour {
        case .silent: return nil
        case .rcode(let code):
            reply[2] |= 0x80  // QR: a response
            reply[3] = (reply[3] & 0xF0) | (code & 0x0F)
        case .noise:
            reply = (0..<48).map { _ in UInt8.random(in: 0...255) }
        case .missingRecord:
            reply[2] |= 0x80
            reply[3] &= 0xF0
            reply[7] = 1  // ANCOUNT 1, and no record follows the question
        case .truncated:
            reply[2] |= 0x82  // QR and TC
            reply[3] &= 0xF0
        case .records(let a, let aaaa, let code):
            guard let (name, type, end) = Self.question(query) else { return nil }
            seen.withLock { $0.append(name) }
            reply = Array(query.prefix(end))
            reply[2] |= 0x80
            reply[3] = (reply[3] & 0xF0) | (code & 0x0F)
            for index in 6..<12 { reply[index] = 0 }
            let (family, addresses, size) = type == 1 ? (AF_INET, a, 4) : type == 28 ? (AF_INET6, aaaa, 16) : (AF_INET, [], 4)
            reply[7] = UInt8(addresses.count)
            for address in addresses {
                var bytes = [UInt8](repeating: 0, count: size)
                _ = inet_pton(family, address, &bytes)
                // The name as a pointer to the question's, the query's type, class IN, TTL 5, the address.
                reply += [0xC0, 0x0C, 0, UInt8(type), 0, 1, 0, 0, 0, 5, 0, UInt8(size)] + bytes
            }
        case .address(let address, let delay, let truncating):
            guard let (name, type, end) = Self.question(query) else { return nil }
            seen.withLock { $0.append(name) }
            reply = Array(query.prefix(end))
            reply[2] |= 0x80
            reply[3] &= 0xF0
            // ANCOUNT, NSCOUNT, ARCOUNT: none yet.
            for index in 6..<12 { reply[index] = 0 }
            if name == truncating {
                reply[2] |= 0x02
                return (reply, .zero)
            }
            if type == 1 {
                var bytes = [UInt8](repeating: 0, count: 4)
                _ = inet_pton(AF_INET, address, &bytes)
                reply[7] = 1
                // The name as a pointer to the question's, type A, class IN, TTL 5, 4 bytes.
                reply += [0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4] + bytes
            }
            return (reply, delay)
        }
        return (reply, .zero)
    }

    /// The question's name (lower case, dotted), its type, and where the question ends.
    private static func question(_ message: [UInt8]) -> (String, Int, Int)? {
        var labels: [String] = []
        var index = 12
        while index < message.count, message[index] != 0 {
            let length = Int(message[index])
            guard length < 64, index + 1 + length < message.count else { return nil }
            labels.append(String(decoding: message[(index + 1)...(index + length)], as: UTF8.self).lowercased())
            index += 1 + length
        }
        guard index + 4 < message.count else { return nil }
        let type = Int(message[index + 1]) << 8 | Int(message[index + 2])
        return (labels.joined(separator: "."), type, index + 5)
    }

    /// Stops answering and closes the port (nothing listens then: a query is refused).
    func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        while !done.withLock({ $0 }) { usleep(5_000) }
        close(fd)
        if listener >= 0 { close(listener) }
        for connection in accepted { close(connection) }
    }

    deinit { stop() }
}

/// Binds `fd` to 127.0.0.1:`port` (0: a free port); the port bound.
private func bindLoopback(_ fd: Int32, port: Int) throws -> Int {
    guard port != 0 else { return try bindLoopback(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw TestFailure("bind 127.0.0.1:\(port): \(String(cString: strerror(errno)))") }
    return port
}

// MARK: - Helpers

/// Asks `servers` for `name` with a resolver of its own: the result and how long it took.
private func timedLookup(
    _ name: String, at servers: [Discovery.Server], timeout: GoDuration = .seconds(1), attempts: Int = 2
) async -> (result: Resolution, took: Duration) {
    let start = ContinuousClock.now
    let result = await CAresResolver(attempts: attempts).resolve(name, using: Discovery(servers: servers, timeout: timeout))
    return (result, start.duration(to: .now))
}

private func lookup(_ name: String, at servers: [Discovery.Server], timeout: GoDuration = .seconds(1)) async -> Resolution {
    await timedLookup(name, at: servers, timeout: timeout).result
}

private func nxdomain(_ server: Discovery.Server) -> Resolution { .notFound("name not found (NXDOMAIN from \(server))") }

private func refused(_ server: Discovery.Server) -> Resolution {
    .unreachable("connection refused by \(server) (nothing listens on that port)")
}

private func truncatedAndRefused(_ server: Discovery.Server) -> Resolution {
    .unreachable("truncated answer over UDP from \(server), and its TCP retry was refused")
}

/// The threads of this process named `name`: their ids.
private func threads(named name: String) -> [String] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.filter { readText("/proc/self/task/\($0)/comm")?.trimmingCharacters(in: .newlines) == name }
}

/// How often a thread of this process has gone to sleep (voluntary context switches).
private func sleeps(ofThread id: String) -> Int? {
    guard let status = readText("/proc/self/task/\(id)/status") else { return nil }
    let line = status.split(separator: "\n").first { $0.hasPrefix("voluntary_ctxt_switches:") }
    return line.flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) }
}

private func openDescriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1 }

struct InvalidNameCase: Sendable, CustomTestStringConvertible {
    var name: String
    var reason: String
    var testDescription: String { "\(name.prefix(40).debugDescription): \(reason)" }
}

// MARK: - Tests

/// docs/design.md §11: Service names under the cluster domain looked up through the configured DNS
/// servers only, here a real dnsmasq and scripted sockets on loopback.
@Suite("DNS lookups with c-ares against a real dnsmasq", .serialized)
struct DNSResolverTests {
    static let hosts = """
        10.0.0.5 one.ns.svc.cluster.local
        10.0.0.6 dual.ns.svc.cluster.local
        fd00::6 dual.ns.svc.cluster.local
        10.0.0.12 headless.ns.svc.cluster.local
        10.0.0.3 headless.ns.svc.cluster.local
        fd00::20 headless.ns.svc.cluster.local
        10.0.0.100 headless.ns.svc.cluster.local
        10.0.0.7 headless.ns.svc.cluster.local
        fd00::3 headless.ns.svc.cluster.local
        fd00::7 v6only.ns.svc.cluster.local

        """

    static let options = [
        "--txt-record=text.ns.svc.cluster.local,no address here",
        "--cname=alias.ns.svc.cluster.local,one.ns.svc.cluster.local",
    ]

    static func dnsmasq() async throws -> DNSMasq { try await DNSMasq(hosts: hosts, options: options) }

    let one = "one.ns.svc.cluster.local"

    @Test("one A record")
    func oneA() async throws {
        let dns = try await Self.dnsmasq()
        let (result, took) = await timedLookup(one, at: [dns.server])
        #expect(result == .addresses(["10.0.0.5"]), "\(result)\n\(dns.log)")
        #expect(took < .milliseconds(500), "a lookup on loopback took \(took)")
        // A trailing dot names the same name; case does not matter to DNS.
        #expect(await lookup("One.NS.svc.cluster.local.", at: [dns.server]) == .addresses(["10.0.0.5"]))
    }

    @Test("A and AAAA records: IPv4 first, addresses as inet_ntop writes them")
    func dualStack() async throws {
        let dns = try await Self.dnsmasq()
        #expect(await lookup("dual.ns.svc.cluster.local", at: [dns.server]) == .addresses(["10.0.0.6", "fd00::6"]))
        #expect(await lookup("v6only.ns.svc.cluster.local", at: [dns.server]) == .addresses(["fd00::7"]))
    }

    @Test("a headless Service's addresses come in one stable order, whatever order the server answers in")
    func headless() async throws {
        let dns = try await Self.dnsmasq()
        let expected = Resolution.addresses(["10.0.0.3", "10.0.0.7", "10.0.0.12", "10.0.0.100", "fd00::3", "fd00::20"])
        for _ in 0..<6 {
            #expect(await lookup("headless.ns.svc.cluster.local", at: [dns.server]) == expected)
        }
        // The same addresses in the hosts file in another order, re-read: the same answer.
        try dns.writeHosts(Self.hosts.split(separator: "\n").reversed().joined(separator: "\n") + "\n")
        dns.reload()
        try await Task.sleep(for: .milliseconds(200))
        #expect(await lookup("headless.ns.svc.cluster.local", at: [dns.server]) == expected)
    }

    @Test("more addresses than a 512-byte UDP answer holds: the truncated answer is asked again over TCP")
    func manyAddresses() async throws {
        let many = (1...80).map { "10.1.0.\($0) big.ns.svc.cluster.local" }.joined(separator: "\n") + "\n"
        let dns = try await DNSMasq(hosts: many)
        let result = await lookup("big.ns.svc.cluster.local", at: [dns.server])
        #expect(result == .addresses((1...80).map { "10.1.0.\($0)" }), "\(result.addresses.count) addresses")
    }

    @Test("a CNAME is followed to the addresses of its target")
    func alias() async throws {
        let dns = try await Self.dnsmasq()
        #expect(await lookup("alias.ns.svc.cluster.local", at: [dns.server]) == .addresses(["10.0.0.5"]))
    }

    @Test("NXDOMAIN: not found, naming the server that said so")
    func noSuchName() async throws {
        let dns = try await Self.dnsmasq()
        let (result, took) = await timedLookup("missing.ns.svc.cluster.local", at: [dns.server])
        #expect(result == .notFound("name not found (NXDOMAIN from 127.0.0.1:\(dns.port))"))
        #expect(took < .milliseconds(500))
        // No search domain is ever appended: the short name is asked as it is (dnsmasq, with no
        // upstream, refuses it), never as one.<something>.
        let short = await lookup("one", at: [dns.server])
        #expect(short == .unreachable("query refused (REFUSED from 127.0.0.1:\(dns.port))"), "\(short)")
        #expect(dns.log.contains("query[A] one from 127.0.0.1"), "\(dns.log)")
        #expect(!dns.log.contains("query[A] one."), "\(dns.log)")
    }

    @Test("a name that exists without an A or AAAA record: not found, saying so")
    func noAddress() async throws {
        let dns = try await Self.dnsmasq()
        let result = await lookup("text.ns.svc.cluster.local", at: [dns.server])
        #expect(result == .notFound("name has no A or AAAA record (NODATA from 127.0.0.1:\(dns.port))"), "\(result)")
    }

    @Test("a record added to the hosts file is found once dnsmasq re-reads it (SIGHUP)")
    func addedAfterReload() async throws {
        let dns = try await Self.dnsmasq()
        let name = "new.ns.svc.cluster.local"
        #expect(await lookup(name, at: [dns.server]) == nxdomain(dns.server))
        try dns.writeHosts(Self.hosts + "10.0.0.42 \(name)\n")
        dns.reload()
        var result = Resolution.notFound("not asked yet")
        let end = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < end {
            result = await lookup(name, at: [dns.server])
            if result == .addresses(["10.0.0.42"]) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(result == .addresses(["10.0.0.42"]), "\(result)\n\(dns.log)")
    }

    @Test("a server given by IPv6 address ([::1]:port)")
    func ipv6Server() async throws {
        let dns = try await Self.dnsmasq()
        let server = try Discovery.Server.parse("[::1]:\(dns.port)")
        #expect(server.address == "::1")
        #expect(await lookup("dual.ns.svc.cluster.local", at: [server]) == .addresses(["10.0.0.6", "fd00::6"]))
        let missing = await lookup("missing.ns.svc.cluster.local", at: [server])
        #expect(missing == .notFound("name not found (NXDOMAIN from [::1]:\(dns.port))"))
    }

    @Test("a stopped server refuses (ICMP port unreachable): unreachable at once, not after the timeout")
    func stoppedServer() async throws {
        let dns = try await Self.dnsmasq()
        dns.stop()
        let (result, took) = await timedLookup(one, at: [dns.server], timeout: .seconds(5))
        #expect(result == .unreachable("connection refused by 127.0.0.1:\(dns.port) (nothing listens on that port)"))
        #expect(took < .seconds(1), "a refused lookup took \(took)")
    }

    @Test("a server that never answers: unreachable after the timeout, once per attempt")
    func silentServer() async throws {
        let silent = try ScriptedDNSServer(.silent)
        let (result, took) = await timedLookup(one, at: [silent.server], timeout: .milliseconds(300))
        #expect(result == .unreachable("no answer from 127.0.0.1:\(silent.port) within 300ms"))
        // Two attempts of 300 ms; the upper bound leaves room for a loaded machine.
        #expect(took >= .milliseconds(590) && took < .seconds(2), "gave up after \(took)")
        // One attempt: one timeout.
        let (_, once) = await timedLookup(one, at: [silent.server], timeout: .milliseconds(300), attempts: 1)
        #expect(once >= .milliseconds(290) && once < .milliseconds(1500), "one attempt took \(once)")
    }

    @Test("two servers, the first dead: the second answers")
    func failover() async throws {
        let dns = try await Self.dnsmasq()
        let silent = try ScriptedDNSServer(.silent)
        let deadPort = try freeLoopbackPort()
        let dead = Discovery.Server(address: "127.0.0.1", port: deadPort)

        // A first server that refuses costs nothing.
        let (refused, quick) = await timedLookup(one, at: [dead, dns.server])
        #expect(refused == .addresses(["10.0.0.5"]))
        #expect(quick < .milliseconds(500), "took \(quick)")

        // A first server that never answers costs one timeout, then the second answers.
        let (late, took) = await timedLookup(one, at: [silent.server, dns.server], timeout: .milliseconds(300))
        #expect(late == .addresses(["10.0.0.5"]))
        #expect(took >= .milliseconds(290) && took < .milliseconds(1500), "took \(took)")

        // The first to answer for the name decides, even when it says there is no such name.
        #expect(await lookup("missing.ns.svc.cluster.local", at: [dead, dns.server]) == nxdomain(dns.server))

        // All dead: every server's reason, in order.
        let none = await lookup(one, at: [dead, silent.server], timeout: .milliseconds(200))
        let reasons = [
            "connection refused by 127.0.0.1:\(deadPort) (nothing listens on that port)",
            "no answer from 127.0.0.1:\(silent.port) within 200ms",
        ]
        #expect(none == .unreachable(reasons.joined(separator: "; ")))
    }

    @Test("cancelling the task ends the lookup at once")
    func cancellation() async throws {
        let silent = try ScriptedDNSServer(.silent)
        let lookup = Task { await timedLookup(one, at: [silent.server], timeout: .seconds(10)) }
        try await Task.sleep(for: .milliseconds(100))
        let cancelled = ContinuousClock.now
        lookup.cancel()
        let result = await lookup.value.result
        let after = cancelled.duration(to: .now)
        #expect(result == .unreachable("lookup cancelled"))
        #expect(after < .milliseconds(500), "returned \(after) after the cancel")

        // Cancelled before it starts: no thread, no query.
        let early = Task { [one] in
            withUnsafeCurrentTask { $0?.cancel() }
            return await timedLookup(one, at: [silent.server], timeout: .seconds(10))
        }
        let (earlyResult, earlyTook) = await early.value
        #expect(earlyResult == .unreachable("lookup cancelled"))
        #expect(earlyTook < .milliseconds(100))
    }

    @Test("SERVFAIL, REFUSED, truncated and malformed answers: unreachable, naming the answer")
    func badAnswers() async throws {
        let servfail = try ScriptedDNSServer(.rcode(2))
        let refused = try ScriptedDNSServer(.rcode(5))
        let notimp = try ScriptedDNSServer(.rcode(4))
        let broken = try ScriptedDNSServer(.missingRecord)
        let truncated = try ScriptedDNSServer(.truncated)
        let noise = try ScriptedDNSServer(.noise)

        // The answer's code ends the query at once: c-ares's own handling would wait for the timeout.
        let (failed, took) = await timedLookup(one, at: [servfail.server], timeout: .seconds(5))
        #expect(failed == .unreachable("server failure (SERVFAIL from 127.0.0.1:\(servfail.port))"))
        #expect(took < .seconds(1), "a SERVFAIL took \(took)")
        #expect(await lookup(one, at: [refused.server]) == .unreachable("query refused (REFUSED from 127.0.0.1:\(refused.port))"))
        #expect(await lookup(one, at: [notimp.server]) == .unreachable("query not implemented (NOTIMP from 127.0.0.1:\(notimp.port))"))
        let malformed = await lookup(one, at: [broken.server])
        #expect(malformed.description.hasPrefix("DNS unreachable: malformed answer from 127.0.0.1:\(broken.port)"), "\(malformed)")
        // Truncated, and nothing listens for the TCP retry: refused, not a hang, and not "nothing
        // listens on that port" (the UDP port answered).
        let (cut, cutTook) = await timedLookup(one, at: [truncated.server], timeout: .seconds(5))
        #expect(cut == truncatedAndRefused(truncated.server), "\(cut)")
        #expect(cutTook < .seconds(1), "took \(cutTook)")
        // Bytes that are no answer to the query are ignored, as if nothing came.
        let ignored = await lookup(one, at: [noise.server], timeout: .milliseconds(300))
        #expect(ignored == .unreachable("no answer from 127.0.0.1:\(noise.port) within 300ms"))

        // A server that fails is passed over for the next.
        let dns = try await Self.dnsmasq()
        #expect(await lookup(one, at: [servfail.server, broken.server, dns.server]) == .addresses(["10.0.0.5"]))
    }

    /// What a lookup gives when the server answers every query with this code and no record.
    static func expected(code: UInt8, from server: Discovery.Server) -> Resolution {
        let names: [UInt8: String] = [6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 11: "DSOTYPENI"]
        switch code {
        case 0: return .notFound("name has no A or AAAA record (NODATA from \(server))")
        case 1: return .unreachable("query rejected as malformed (FORMERR from \(server))")
        case 2: return .unreachable("server failure (SERVFAIL from \(server))")
        case 3: return nxdomain(server)
        case 4: return .unreachable("query not implemented (NOTIMP from \(server))")
        case 5: return .unreachable("query refused (REFUSED from \(server))")
        default: return .unreachable("unexpected answer code \(code) (\(names[code] ?? "unassigned"), from \(server))")
        }
    }

    @Test("every answer code, with no record: only NOERROR and NXDOMAIN say the name has no address; every other code is the server failing", arguments: 0...15)
    func answerCodes(_ code: Int) async throws {
        let server = try ScriptedDNSServer(.rcode(UInt8(code)))
        let (result, took) = await timedLookup(one, at: [server.server], timeout: .seconds(5))
        #expect(result == Self.expected(code: UInt8(code), from: server.server), "code \(code): \(result)")
        // An answer ends the query at once, whatever its code.
        #expect(took < .seconds(1), "code \(code) took \(took)")
        // A server failing so is passed over: the next one's answer decides.
        if code != 0 && code != 3 {
            let next = try ScriptedDNSServer(.address("10.0.0.5"))
            #expect(await lookup(one, at: [server.server, next.server]) == .addresses(["10.0.0.5"]), "code \(code)")
        }
    }

    @Test("records under an answer code other than NOERROR are not the name's addresses")
    func recordsUnderOtherCodes() async throws {
        let notauth = try ScriptedDNSServer(.records(a: ["10.0.0.5"], aaaa: ["fd00::5"], rcode: 9))
        #expect(await lookup(one, at: [notauth.server]) == Self.expected(code: 9, from: notauth.server))
        let nxdomain = try ScriptedDNSServer(.records(a: ["10.0.0.5"], aaaa: [], rcode: 3))
        #expect(await lookup(one, at: [nxdomain.server]) == Self.expected(code: 3, from: nxdomain.server))
        let noerror = try ScriptedDNSServer(.records(a: ["10.0.0.5"], aaaa: ["fd00::5"]))
        #expect(await lookup(one, at: [noerror.server]) == .addresses(["10.0.0.5", "fd00::5"]))
    }

    @Test("addresses no Service has, IPv4-mapped ones too, come back from the resolver as given and are dropped by Resolution.usable")
    func addressesNoServiceHas() async throws {
        let a = ["169.254.169.254", "0.1.2.3"]
        let aaaa = ["::ffff:0.0.0.0", "::ffff:127.0.0.1", "::ffff:224.0.0.1", "::ffff:255.255.255.255", "::ffff:169.254.169.254", "fe80::1"]
        let server = try ScriptedDNSServer(.records(a: a, aaaa: aaaa))
        let result = await lookup(one, at: [server.server])
        #expect(result == .addresses(ServiceAddress.stableOrder(a + aaaa)), "\(result)")
        // What apply and watch use: the mapped loopback address, as the IPv4 address it carries.
        #expect(result.usable == .addresses(["127.0.0.1"]), "\(result.usable)")
        let only = try ScriptedDNSServer(.records(a: [], aaaa: ["::ffff:0.0.0.0"]))
        #expect(await lookup(one, at: [only.server]).usable
            == .notFound("only addresses a Service cannot have: ::ffff:0.0.0.0 (IPv4-mapped 0.0.0.0, unspecified)"))
    }

    @Test("a truncated answer whose TCP retry is closed without an answer, or never answered: the reason says so")
    func truncatedThenTCP() async throws {
        let closes = try ScriptedDNSServer(.truncated, tcp: .closes)
        let (closed, took) = await timedLookup(one, at: [closes.server], timeout: .seconds(5))
        #expect(closed == .unreachable("truncated answer over UDP from \(closes.server), and its TCP retry's connection closed without an answer"), "\(closed)")
        #expect(took < .seconds(1), "took \(took)")
        let silent = try ScriptedDNSServer(.truncated, tcp: .silent)
        let waited = await lookup(one, at: [silent.server], timeout: .milliseconds(300))
        #expect(waited == .unreachable("truncated answer over UDP from \(silent.server), and no answer over TCP within 300ms"), "\(waited)")
    }

    @Test("dnsmasq refuses a name outside its domains (it has no upstream)")
    func outsideTheDomain() async throws {
        let dns = try await Self.dnsmasq()
        let result = await lookup("registry.example.com", at: [dns.server])
        #expect(result == .unreachable("query refused (REFUSED from 127.0.0.1:\(dns.port))"), "\(result)")
    }

    static let badCharacter = "has a character other than letters, digits, \"-\" and \"_\""
    static let invalidNames: [InvalidNameCase] = [
        InvalidNameCase(name: "", reason: "the name is empty"),
        InvalidNameCase(name: ".", reason: "the name is empty"),
        InvalidNameCase(name: "a..cluster.local", reason: "has an empty label (\"..\" or a leading dot)"),
        InvalidNameCase(name: ".a.cluster.local", reason: "has an empty label (\"..\" or a leading dot)"),
        InvalidNameCase(name: "a.cluster.local..", reason: "has an empty label (\"..\" or a leading dot)"),
        InvalidNameCase(
            name: String(repeating: "a", count: 64) + ".cluster.local", reason: "has a label longer than 63 characters (64)"),
        InvalidNameCase(
            name: Array(repeating: String(repeating: "a", count: 60), count: 5).joined(separator: "."),
            reason: "longer than 253 characters (304)"),
        InvalidNameCase(name: "my service.cluster.local", reason: badCharacter),
        InvalidNameCase(name: "a\\.cluster.local", reason: badCharacter),
        InvalidNameCase(name: "naïve.cluster.local", reason: badCharacter),
        InvalidNameCase(name: "a\u{0}b.cluster.local", reason: badCharacter),
        InvalidNameCase(name: "a\nb.cluster.local", reason: badCharacter),
        InvalidNameCase(name: "*.cluster.local", reason: badCharacter),
    ]

    @Test("a name that cannot be a DNS name is not found, without asking anyone", arguments: invalidNames)
    func invalidName(_ invalid: InvalidNameCase) async throws {
        // A server that never answers: asking it would take the whole timeout.
        let silent = try ScriptedDNSServer(.silent)
        let (result, took) = await timedLookup(invalid.name, at: [silent.server], timeout: .seconds(5))
        #expect(result == .notFound("not a valid DNS name: \(invalid.reason)"))
        #expect(took < .milliseconds(100))
    }

    @Test("the longest names DNS allows are asked")
    func longestNames() async throws {
        let dns = try await DNSMasq(hosts: Self.hosts)
        // Labels of 63 characters.
        let label = String(repeating: "b", count: 63)
        let name = [label, label, label, "ns.svc.cluster.local"].joined(separator: ".")
        try dns.writeHosts("10.0.0.9 \(name)\n")
        dns.reload()
        try await Task.sleep(for: .milliseconds(200))
        #expect(await lookup(name, at: [dns.server]) == .addresses(["10.0.0.9"]))
        // 253 characters, and a trailing dot: asked, and dnsmasq says there is no such name.
        let longest = Array(repeating: String(repeating: "c", count: 59), count: 4).joined(separator: ".") + ".cluster.local."
        #expect(longest.utf8.count == 254)
        #expect(await lookup(longest, at: [dns.server]) == nxdomain(dns.server))
    }

    @Test("no server, or a server that is not an address: unreachable, saying why")
    func noServers() async throws {
        #expect(await lookup(one, at: []) == .unreachable("no DNS server to ask"))
        let bogus = Discovery.Server(address: "dns.example", port: 53)
        #expect(await lookup(one, at: [bogus]) == .unreachable("dns.example:53 is not an IP address and port"))
    }

    @Test("many lookups at once, all answered, all by the one DNS thread")
    func concurrentLookups() async throws {
        let dns = try await Self.dnsmasq()
        let names = [one, "dual.ns.svc.cluster.local"]
        let start = ContinuousClock.now
        let results = await withTaskGroup(of: Resolution.self) { group in
            for i in 0..<200 {
                group.addTask { await lookup(names[i % 2], at: [dns.server]) }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let took = start.duration(to: .now)
        #expect(results.filter { $0 == .addresses(["10.0.0.5"]) }.count == 100)
        #expect(results.filter { $0 == .addresses(["10.0.0.6", "fd00::6"]) }.count == 100)
        #expect(threads(named: "ccr-dns").count == 1, "threads named ccr-dns: \(threads(named: "ccr-dns"))")

        var sequential = Duration.zero
        for _ in 0..<100 { sequential += await timedLookup(names[1], at: [dns.server]).took }
        print("DNS lookups against dnsmasq: 200 at once took \(took); one at a time \(sequential / 100) each")
    }

    @Test("many lookups of one server at once, some answered, some timing out, some cancelled: each gets its own result")
    func concurrentMixed() async throws {
        // Answers after 1 s: every lookup is in flight when the cancellations come.
        let slow = try ScriptedDNSServer(.address("10.0.0.8", after: .seconds(1)))
        let silent = try ScriptedDNSServer(.silent)
        let servers = [slow.server]
        let tasks = (0..<30).map { i in
            Task { [one] in
                let (result, took) =
                    i % 3 == 2
                    ? await timedLookup(one, at: [silent.server], timeout: .milliseconds(600), attempts: 1)
                    : await timedLookup(one, at: servers, timeout: .seconds(2))
                return (result, took, ended: ContinuousClock.now)
            }
        }
        try await Task.sleep(for: .milliseconds(100))
        let cancelledAt = ContinuousClock.now
        // One lookup of each server is cancelled.
        tasks[3].cancel()
        tasks[5].cancel()
        for (i, task) in tasks.enumerated() {
            let (result, took, ended) = await task.value
            switch i {
            case 3, 5:
                #expect(result == .unreachable("lookup cancelled"), "lookup \(i): \(result)")
                let after = cancelledAt.duration(to: ended)
                #expect(after < .milliseconds(500), "lookup \(i) ended \(after) after its cancel")
            case _ where i % 3 == 2:
                #expect(result == .unreachable("no answer from \(silent.server) within 600ms"), "lookup \(i): \(result)")
                #expect(took >= .milliseconds(590), "lookup \(i) gave up after \(took)")
            default:
                #expect(result == .addresses(["10.0.0.8"]), "lookup \(i): \(result)")
                #expect(took >= .milliseconds(990) && took < .seconds(2), "lookup \(i) took \(took)")
            }
        }
        // Every answered lookup asked for A and AAAA, the cancelled one too.
        #expect(slow.queries.count == 2 * 20, "\(slow.queries.count) queries")
    }

    @Test("a refusal, a timeout or a cancellation leaves the server's channel as good as new: reused, and it answers")
    func channelReuse() async throws {
        // One server (one port) and one timeout throughout: one channel.
        let timeout = GoDuration.milliseconds(300)
        let first = try ScriptedDNSServer(.address("10.0.0.9"))
        let port = first.port
        let server = first.server
        #expect(await lookup(one, at: [server], timeout: timeout) == .addresses(["10.0.0.9"]))
        let made = CAresResolver.channelsMade

        // Nothing listens: refused (an ICMP error on the channel's socket; c-ares closes its sockets).
        first.stop()
        let (refusal, quick) = await timedLookup(one, at: [server], timeout: timeout)
        #expect(refusal == refused(server))
        #expect(quick < .milliseconds(500), "took \(quick)")

        // A server again on the port: the same channel asks it.
        let second = try ScriptedDNSServer(.address("10.0.0.10"), port: port)
        #expect(await lookup(one, at: [server], timeout: timeout) == .addresses(["10.0.0.10"]))
        second.stop()

        // Silent on the port: both attempts time out, their queries cancelled.
        let silent = try ScriptedDNSServer(.silent, port: port)
        #expect(await lookup(one, at: [server], timeout: timeout) == .unreachable("no answer from \(server) within 300ms"))
        silent.stop()

        // A lookup cancelled while its queries are out, then one answered.
        let third = try ScriptedDNSServer(.address("10.0.0.11", after: .milliseconds(150)), port: port)
        let cancelled = Task { [one] in await lookup(one, at: [server], timeout: timeout) }
        try await Task.sleep(for: .milliseconds(50))
        cancelled.cancel()
        #expect(await cancelled.value == .unreachable("lookup cancelled"))
        #expect(await lookup(one, at: [server], timeout: timeout) == .addresses(["10.0.0.11"]))
        #expect(third.queries.count == 4)

        #expect(CAresResolver.channelsMade == made, "\(CAresResolver.channelsMade - made) channels made after the first lookup")
    }

    @Test("the channels follow the config: the same servers and timeout reuse them, a change makes new ones")
    func channelsFollowTheConfig() async throws {
        let dns = try await Self.dnsmasq()
        let other = try await Self.dnsmasq()
        #expect(await lookup(one, at: [dns.server]) == .addresses(["10.0.0.5"]))
        var made = CAresResolver.channelsMade
        for _ in 0..<20 { #expect(await lookup(one, at: [dns.server]) == .addresses(["10.0.0.5"])) }
        #expect(CAresResolver.channelsMade == made, "lookups with one config made channels")
        // Another timeout: a channel of its own; back: the first one was dropped with the change.
        #expect(await lookup(one, at: [dns.server], timeout: .seconds(2)) == .addresses(["10.0.0.5"]))
        #expect(await lookup(one, at: [dns.server]) == .addresses(["10.0.0.5"]))
        #expect(CAresResolver.channelsMade == made + 2)
        made = CAresResolver.channelsMade
        // Another server named before it: one more channel, made once.
        for _ in 0..<5 { #expect(await lookup(one, at: [other.server, dns.server]) == .addresses(["10.0.0.5"])) }
        #expect(CAresResolver.channelsMade == made + 1)
    }

    @Test("a truncated answer retried over TCP and refused fails only its own lookup, not one waiting on the same server")
    func truncatedBesideAnother() async throws {
        // Nothing listens on the TCP port: "big"'s retry is refused while "one"'s answers are still out.
        let big = "big.ns.svc.cluster.local"
        let dns = try ScriptedDNSServer(.address("10.0.0.5", after: .milliseconds(200), truncating: big))
        let waiting = Task { [one] in await timedLookup(one, at: [dns.server]) }
        try await Task.sleep(for: .milliseconds(50))
        let (cut, cutTook) = await timedLookup(big, at: [dns.server])
        #expect(cut == truncatedAndRefused(dns.server), "\(cut)")
        #expect(cutTook < .seconds(1), "took \(cutTook)")
        let (answered, took) = await waiting.value
        #expect(answered == .addresses(["10.0.0.5"]), "\(answered)")
        #expect(took >= .milliseconds(190) && took < .seconds(1), "took \(took)")
    }

    @Test("the DNS thread sleeps while no lookup runs: no timer wakes it")
    func idleThread() async throws {
        let dns = try await Self.dnsmasq()
        #expect(await lookup(one, at: [dns.server]) == .addresses(["10.0.0.5"]))
        let ids = threads(named: "ccr-dns")
        try #require(ids.count == 1, "threads named ccr-dns: \(ids)")
        try await Task.sleep(for: .milliseconds(100))
        let before = sleeps(ofThread: ids[0])
        try await Task.sleep(for: .seconds(1.5))
        #expect(before != nil && sleeps(ofThread: ids[0]) == before, "woke \((sleeps(ofThread: ids[0]) ?? 0) - (before ?? 0)) times while idle")
        #expect(await lookup(one, at: [dns.server]) == .addresses(["10.0.0.5"]))
    }

    @Test("500 lookups leave no descriptor behind and start no thread: answered, not found, refused, timed out or cancelled")
    func noLeaks() async throws {
        let dns = try await Self.dnsmasq()
        let silent = try ScriptedDNSServer(.silent)
        let dead = Discovery.Server(address: "127.0.0.1", port: try freeLoopbackPort())
        // The first lookup of the process starts the DNS thread (and its pipe); count from after it.
        _ = await lookup(one, at: [dns.server])
        let before = openDescriptors()
        var results: [Resolution] = []
        for round in 0..<125 {
            results.append(await lookup("headless.ns.svc.cluster.local", at: [dns.server]))
            results.append(await lookup("missing.ns.svc.cluster.local", at: [dead, dns.server]))
            results.append(await lookup(one, at: [silent.server], timeout: .milliseconds(1)))
            if round % 10 == 0 {
                let cancelled = Task { [one] in await lookup(one, at: [silent.server]) }
                try await Task.sleep(for: .milliseconds(5))
                cancelled.cancel()
                results.append(await cancelled.value)
            } else {
                results.append(await lookup(one, at: [dead]))
            }
        }
        #expect(results.count == 500)
        #expect(results.filter { $0 == nxdomain(dns.server) }.count == 125)
        #expect(results.filter { $0 == refused(dead) }.count == 112)
        #expect(results.filter { $0 == .unreachable("lookup cancelled") }.count == 13)
        // Idle channels hold no socket; the thread hands a result back only after its attempt has ended.
        let settled = await eventually(within: .seconds(2)) { openDescriptors() <= before }
        #expect(settled, "\(before) descriptors before, \(openDescriptors()) after")
        #expect(threads(named: "ccr-dns").count == 1)
    }
}
