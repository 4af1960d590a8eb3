import Foundation
import Glibc
import RegistryMirrorCore
import RegistryMirrorSystem
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
    }

    let port: Int
    private let fd: Int32
    private let stopped = Atomic<Bool>(false)
    private let done = Mutex(false)

    init(_ behaviour: Behaviour) throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        port = try bindLoopback(fd)
        if case .silent = behaviour {
            done.withLock { $0 = true }
            return
        }
        // Reads wake every 50 ms to notice a stop.
        var wait = timeval(tv_sec: 0, tv_usec: 50_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        let thread = Thread { [self] in
            serve(behaviour)
            done.withLock { $0 = true }
        }
        thread.start()
    }

    var server: Discovery.Server { Discovery.Server(address: "127.0.0.1", port: port) }

    private func serve(_ behaviour: Behaviour) {
        var buffer = [UInt8](repeating: 0, count: 1500)
        while !stopped.load(ordering: .relaxed) {
            var from = sockaddr_storage()
            var fromLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = withUnsafeMutablePointer(to: &from) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buffer, buffer.count, 0, $0, &fromLength) }
            }
            guard n >= 12 else { continue }
            var reply = Array(buffer.prefix(n))
            switch behaviour {
            case .silent: continue
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
            }
            _ = withUnsafePointer(to: &from) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, reply, reply.count, 0, $0, fromLength) }
            }
        }
    }

    deinit {
        stopped.store(true, ordering: .relaxed)
        while !done.withLock({ $0 }) { usleep(5_000) }
        close(fd)
    }
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
        let server = try Discovery.Server.parse("[::1]:\(dns.port)").get()
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
        // Truncated, and nothing listens for the TCP retry: refused, not a hang.
        let (cut, cutTook) = await timedLookup(one, at: [truncated.server], timeout: .seconds(5))
        #expect(cut == .unreachable("connection refused by 127.0.0.1:\(truncated.port) (nothing listens on that port)"), "\(cut)")
        #expect(cutTook < .seconds(1), "took \(cutTook)")
        // Bytes that are no answer to the query are ignored, as if nothing came.
        let ignored = await lookup(one, at: [noise.server], timeout: .milliseconds(300))
        #expect(ignored == .unreachable("no answer from 127.0.0.1:\(noise.port) within 300ms"))

        // A server that fails is passed over for the next.
        let dns = try await Self.dnsmasq()
        #expect(await lookup(one, at: [servfail.server, broken.server, dns.server]) == .addresses(["10.0.0.5"]))
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

    @Test("many lookups at once, each on its own thread, all answered")
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

        var sequential = Duration.zero
        for _ in 0..<100 { sequential += await timedLookup(names[1], at: [dns.server]).took }
        print("DNS lookups against dnsmasq: 200 at once took \(took); one at a time \(sequential / 100) each")
    }

    @Test("lookups leave no descriptor behind: answered, refused, timed out or cancelled")
    func noLeaks() async throws {
        func openDescriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1 }
        let dns = try await Self.dnsmasq()
        let silent = try ScriptedDNSServer(.silent)
        let dead = Discovery.Server(address: "127.0.0.1", port: try freeLoopbackPort())
        // The first lookup of the process sets c-ares up; count from after it.
        _ = await lookup(one, at: [dns.server])
        let before = openDescriptors()
        for round in 0..<50 {
            _ = await lookup("headless.ns.svc.cluster.local", at: [dns.server])
            _ = await lookup("missing.ns.svc.cluster.local", at: [dead, dns.server])
            _ = await lookup(one, at: [silent.server], timeout: .milliseconds(1))
            if round % 10 == 0 {
                let cancelled = Task { [one] in await lookup(one, at: [silent.server]) }
                try await Task.sleep(for: .milliseconds(5))
                cancelled.cancel()
                _ = await cancelled.value
            }
        }
        // A lookup's thread closes its pipe just after it hands the result back.
        let settled = await eventually(within: .seconds(2)) { openDescriptors() <= before }
        #expect(settled, "\(before) descriptors before, \(openDescriptors()) after")
    }
}
