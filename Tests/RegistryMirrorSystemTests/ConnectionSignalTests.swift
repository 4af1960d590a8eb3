import Foundation
import Glibc
import RegistryMirrorCore
import RegistryMirrorSystem
import Testing

// The connection-level signals watch takes between HTTP probes (docs/design.md §6.3), against real
// sockets: a killed server, a path that drops new connections, a deleted DNAT rule with established
// flows going on, and a stopped process.

/// A TCP listener on 127.0.0.1 that accepts and keeps what it accepts (or, `accepting: false`, keeps
/// its backlog full so that new SYNs are dropped, as on a path that drops packets).
final class Listener: @unchecked Sendable {
    let port: Int
    private var fd: Int32
    private var accepted: [Int32] = []

    init(backlog: Int32 = 16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        port = try bindLoopback(fd)
        guard listen(fd, backlog) == 0 else { throw TestFailure("listen: \(String(cString: strerror(errno)))") }
    }

    var url: String { "http://127.0.0.1:\(port)" }

    /// Accepts what is queued (non-blocking).
    func acceptPending() {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        while true {
            let c = accept(fd, nil, nil)
            guard c >= 0 else { return }
            accepted.append(c)
        }
    }

    var acceptedCount: Int { accepted.count }

    /// Closes the listener and every accepted connection: the peer sees FIN, as when the cache dies.
    /// `reset`: RST instead (SO_LINGER 0).
    func kill(reset: Bool = false) {
        for c in accepted {
            if reset {
                var linger = linger(l_onoff: 1, l_linger: 0)
                setsockopt(c, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
            }
            close(c)
        }
        accepted = []
        if fd >= 0 { close(fd) }
        fd = -1
    }

    deinit { kill() }
}

@Suite("Connection signals on real sockets", .serialized)
struct ConnectionSignalTests {
    let connections = TCPConnections.shared

    @Test("a check: connected when something listens, 'connection refused' at once when nothing does, nil for a host named by DNS name")
    func checks() async throws {
        let listener = try Listener()
        let up = try #require(await connections.connect(MirrorHost(url: listener.url), timeout: .seconds(1)))
        #expect(up.isUp && up.reason == "connected")
        let refusing = try RefusingPort()
        let started = ContinuousClock.now
        let down = try #require(await connections.connect(MirrorHost(url: refusing.url), timeout: .seconds(1)))
        #expect(!down.isUp && down.reason == "connection refused" && !down.connected)
        #expect(ContinuousClock.now - started < .milliseconds(200))
        #expect(await connections.connect(MirrorHost(url: "http://cache.example:5000"), timeout: .seconds(1)) == nil)
    }

    @Test("a check is half-open: the listener's kernel answers it, but it is reset before it is queued, so the server never accepts it (a held connection, the control, is accepted)")
    func checkNeverAccepted() async throws {
        let listener = try Listener(backlog: 4)
        let host = MirrorHost(url: listener.url)
        // More checks than the backlog holds: none may linger half-made in the listener's queue.
        for i in 0..<40 {
            let result = try #require(await connections.connect(host, timeout: .seconds(1)))
            #expect(result.isUp, "check \(i): \(result.reason)")
        }
        // Past the 200 ms a held-back ACK could wait.
        try await Task.sleep(for: .milliseconds(300))
        listener.acceptPending()
        #expect(listener.acceptedCount == 0, "the server accepted \(listener.acceptedCount) of 40 checks")
        let handle = try #require(connections.hold(host) { _ in })
        defer { handle.close() }
        #expect(await eventually(within: .seconds(2)) {
            listener.acceptPending()
            return listener.acceptedCount == 1
        }, "a full connection after the checks: the backlog is free and the listener accepts")
    }

    @Test("a path that drops new connections (the listener's backlog full: SYNs dropped): the check times out after its timeout")
    func droppedPath() async throws {
        let listener = try Listener(backlog: 0)
        // Fill the backlog: connections the listener never accepts.
        var fillers: [Int32] = []
        defer { fillers.forEach { close($0) } }
        for _ in 0..<4 {
            let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            _ = fcntl(c, F_SETFL, O_NONBLOCK)
            var addr = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: UInt16(listener.port).bigEndian, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
            _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(c, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            fillers.append(c)
        }
        try await Task.sleep(for: .milliseconds(100))
        let started = ContinuousClock.now
        let result = try #require(await connections.connect(MirrorHost(url: listener.url), timeout: .milliseconds(500)))
        let took = ContinuousClock.now - started
        #expect(!result.isUp && result.reason.hasPrefix("connect timed out"), "\(result.reason)")
        #expect(took >= .milliseconds(450) && took < .milliseconds(1500), "took \(took)")
        withExtendedLifetime(listener) {}
    }

    @Test("a held connection: lost at once when the server dies (FIN) and when it resets (RST); not when it only stops answering")
    func held() async throws {
        for reset in [false, true] {
            let listener = try Listener()
            let lost = Box<String>()
            let handle = try #require(connections.hold(MirrorHost(url: listener.url)) { lost.set($0) })
            try await Task.sleep(for: .milliseconds(100))
            listener.acceptPending()
            try await Task.sleep(for: .milliseconds(200))
            #expect(lost.value == nil, "lost while the server was fine: \(lost.value ?? "")")
            let killed = ContinuousClock.now
            listener.kill(reset: reset)
            #expect(await eventually(within: .seconds(2)) { lost.value != nil })
            #expect(ContinuousClock.now - killed < .milliseconds(100), "reported \(ContinuousClock.now - killed) after the \(reset ? "RST" : "FIN")")
            #expect(lost.value == (reset ? "connection lost: Connection reset by peer" : "connection closed by the mirror"), "\(lost.value ?? "")")
            handle.close()
        }
    }

    @Test("a stopped process (SIGSTOP): checks still connect and the held connection stays; only the HTTP probe can tell")
    func stoppedProcess() async throws {
        let server = try await TestServer(.status(200))
        let host = MirrorHost(url: server.url)
        let lost = Box<String>()
        let handle = try #require(connections.hold(host) { lost.set($0) })
        defer { handle.close() }
        try await Task.sleep(for: .milliseconds(200))
        kill(server.pid, SIGSTOP)
        defer { kill(server.pid, SIGCONT) }
        try await Task.sleep(for: .milliseconds(300))
        let check = try #require(await connections.connect(host, timeout: .seconds(1)))
        #expect(check.isUp, "the kernel still accepts for a stopped process: \(check.reason)")
        #expect(lost.value == nil)
        let probe = await CurlProber.shared.probe(host, settings: WatchTests.fastSettings())
        #expect(!probe.isUp && probe.reason.contains("timed out"), "\(probe.reason)")
    }

    /// A watch of one cache (`probe`: lines of its [probe] table), killed `after` the file appeared;
    /// how long after the kill the file went. `before`: asked of the server just before the kill.
    private func killedCache(
        _ name: String, probe: String = "", after: Duration, before: (TestServer) -> Void = { _ in }
    ) async throws -> Duration {
        let temp = try TempDir(name)
        let server = try await TestServer(.status(200))
        try writeText(
            temp.sub("config.toml"),
            "containerd_unit = \"\"\ncontainerd_version = \"2.1.9\"\n[probe]\n\(probe)"
                + "[[registry]]\nupstream = \"docker.io\"\n  [[registry.host]]\n  url = \"\(server.url)\"\n")
        let file = temp.sub("certs.d/docker.io/hosts.toml")
        let watch = try ChildProcess(
            agentExecutable, ["watch", "--config", temp.sub("config.toml"), "--hosts-dir", temp.sub("certs.d")], stderrPath: temp.sub("watch.log"))
        #expect(await eventually(within: .seconds(5)) { exists(file) })
        try await Task.sleep(for: after)
        before(server)
        server.stop()
        let killed = ContinuousClock.now
        #expect(await eventually(within: .seconds(5)) { !exists(file) }, "\(watch.stderrText.suffix(600))")
        let took = ContinuousClock.now - killed
        #expect(took < .seconds(1), "out \(took) after the kill")
        watch.signal(SIGTERM)
        _ = await watch.waitForExit(timeout: .seconds(2))
        return took
    }

    @Test("watch, the cache killed: out of hosts.toml within 1 s of the kill (the held connection's FIN), with one HTTP probe per 30 s before")
    func watchKilledCache() async throws {
        let took = try await killedCache("ccr-killed", after: .seconds(6)) { server in
            // The first pass's probe, and at most one of the round's HTTP probes (its phase is random).
            #expect(server.requestPaths.count <= 2, "\(server.requestPaths.count) HTTP requests in 6 s")
        }
        print("watch: killed cache out of hosts.toml \(took) after the kill")
    }

    @Test("watch, the cache killed right after the answer that put it in its file (before any round): out within 1 s all the same, the held connection being made with that answer")
    func killedBeforeFirstRound() async throws {
        // Rounds 20 s apart: without a connection held from the first answer on, nothing would look
        // at the cache again for 16 s or more.
        let took = try await killedCache(
            "ccr-killed-early", probe: "watch_interval = \"20s\"\nrequest_interval = \"60s\"\n", after: .milliseconds(300))
        print("watch: cache killed 0.3 s after the first pass, out of hosts.toml \(took) after the kill")
    }

    @Test("an https cache (a real docker-registry): watch's connection checks and held connection cost it no log line, where a connection closed before its TLS handshake costs one")
    func tlsCacheQuiet() async throws {
        let tls = try TLSMaterial.get()
        let port = try freeLoopbackPort()
        let cache = try await RegistryCache(address: "127.0.0.1", port: port, tls: tls, logLevel: "info")
        let handshakeErrors = { cache.log.components(separatedBy: "TLS handshake error").count - 1 }
        // What the checks must not do: a bare connect and close, which Go's TLS server logs.
        let before = handshakeErrors()
        let bare = try #require(await connections.connect(MirrorHost(url: "https://127.0.0.1:\(port)"), timeout: .seconds(1)))
        #expect(bare.isUp)
        #expect(await eventually(within: .seconds(2)) { handshakeErrors() > before }, "the registry logs a connection closed before its handshake: \(cache.log.suffix(400))")
        let start = handshakeErrors()
        let temp = try TempDir("ccr-tls-quiet")
        try writeText(
            temp.sub("config.toml"),
            """
            containerd_unit = ""
            containerd_version = "2.1.9"
            [probe]
            watch_interval = "100ms"
            request_interval = "1h"
            [[registry]]
            upstream = "docker.io"
              [[registry.host]]
              url = "https://127.0.0.1:\(port)"
              ca = ["\(tls.caCert)"]

            """)
        let watch = try ChildProcess(
            agentExecutable, ["watch", "--config", temp.sub("config.toml"), "--hosts-dir", temp.sub("certs.d")], stderrPath: temp.sub("watch.log"))
        #expect(await eventually(within: .seconds(5)) { exists(temp.sub("certs.d/docker.io/hosts.toml")) }, "\(watch.stderrText.suffix(600))")
        // About 30 rounds of checks (100 ms ±20%), the held connection open throughout, then closed.
        try await Task.sleep(for: .seconds(3))
        watch.signal(SIGTERM)
        #expect(await watch.waitForExit(timeout: .seconds(3)).status == 0)
        try await Task.sleep(for: .milliseconds(300))
        #expect(handshakeErrors() == start, "TLS handshake errors logged during watch: \(cache.log.suffix(600))")
        let requests = cache.log.components(separatedBy: "\"GET /v2/ ").count - 1
        #expect(requests >= 1 && requests <= 2, "\(requests) HTTP requests: the first pass's, and one of the round's at most (1 h apart)")
    }
}

/// A value set from another thread.
final class Box<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T?
    func set(_ value: T) { lock.lock(); stored = value; lock.unlock() }
    var value: T? { lock.lock(); defer { lock.unlock() }; return stored }
}

/// A network namespace of the test's own, with lo up; commands run in it with `run`.
final class TestNamespace: @unchecked Sendable {
    let name: String

    init(_ label: String) throws {
        name = "ccr-\(label)-\(getpid())"
        _ = try? Self.shell(["ip", "netns", "del", name])
        try Self.shell(["ip", "netns", "add", name])
        try Self.shell(["ip", "-n", name, "link", "set", "lo", "up"])
    }

    /// `ip netns exec NAME ARGS...`, to completion.
    func run(_ arguments: [String]) throws { try Self.shell(["ip", "netns", "exec", name] + arguments) }

    /// The arguments for a ChildProcess of /usr/sbin/ip running `arguments` in the namespace.
    func exec(_ arguments: [String]) -> [String] { ["netns", "exec", name] + arguments }

    @discardableResult
    static func shell(_ arguments: [String]) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TestFailure("\(arguments.joined(separator: " ")) exited \(p.terminationStatus)") }
        return p.terminationStatus
    }

    deinit { _ = try? Self.shell(["ip", "netns", "del", name]) }
}

@Suite("A Service's rule deleted: new connections die, established ones go on", .serialized)
struct ServiceRuleGoneTests {
    @Test("watch in a namespace where 127.0.0.100:5000 is DNATed to the cache: the rule deleted and new SYNs dropped, the cache is out within 5 s though the held connection lives on")
    func dnatDeleted() async throws {
        try #require(getuid() == 0, "network namespaces need root")
        let ns = try TestNamespace("dnat")
        let temp = try TempDir("ccr-dnat")
        chmod(temp.path, 0o755)
        // The cache, inside the namespace, on 127.0.0.1 (its port from its first line).
        let out = Pipe()
        let server = try ChildProcess("/usr/sbin/ip", ns.exec([python, serverScript, "status", "200"]), stdout: out, stderrPath: temp.sub("server.log"))
        defer { server.stop() }
        let port = Int(try await readLine(from: out, timeout: .seconds(10)).trimmingCharacters(in: .whitespaces))!
        let rule = ["-d", "127.0.0.100", "-p", "tcp", "--dport", "5000", "-j", "DNAT", "--to-destination", "127.0.0.1:\(port)"]
        try ns.run(["iptables", "-t", "nat", "-A", "OUTPUT"] + rule)
        try writeText(
            temp.sub("config.toml"),
            "containerd_unit = \"\"\ncontainerd_version = \"2.1.9\"\n[[registry]]\nupstream = \"docker.io\"\n  [[registry.host]]\n  url = \"http://127.0.0.100:5000\"\n")
        let file = temp.sub("certs.d/docker.io/hosts.toml")
        let watch = try ChildProcess(
            "/usr/sbin/ip", ns.exec([agentExecutable, "watch", "--config", temp.sub("config.toml"), "--hosts-dir", temp.sub("certs.d")]),
            stderrPath: temp.sub("watch.log"))
        defer { watch.stop() }
        #expect(await eventually(within: .seconds(5)) { exists(file) }, "\(watch.stderrText.suffix(500))")
        try await Task.sleep(for: .seconds(1))
        try ns.run(["iptables", "-t", "nat", "-D", "OUTPUT"] + rule)
        try ns.run(["iptables", "-A", "OUTPUT", "-d", "127.0.0.100", "-p", "tcp", "--syn", "-j", "DROP"])
        let gone = ContinuousClock.now
        #expect(await eventually(within: .seconds(10)) { !exists(file) }, "\(watch.stderrText.suffix(800))")
        let took = ContinuousClock.now - gone
        #expect(took < .seconds(5), "out \(took) after the rule went")
        print("watch: Service rule gone, cache out of hosts.toml \(took) after")
        #expect(watch.stderrText.contains("connect timed out"), "the checks saw it: \(watch.stderrText.suffix(500))")
    }
}
