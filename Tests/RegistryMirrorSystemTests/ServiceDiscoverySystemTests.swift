import Foundation
import Glibc
import RegistryMirrorCore
import Testing

/// A real docker-registry (Debian's distribution, what the caches run) listening on `address:port`.
final class RegistryCache: @unchecked Sendable {
    static let binary = "/usr/bin/docker-registry"
    let address: String
    let port: Int
    private let dir: TempDir
    private var child: ChildProcess?

    init(address: String, port: Int) async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            throw TestFailure("\(Self.binary) is missing (apt-get install docker-registry; scripts/test.sh does)")
        }
        self.address = address
        self.port = port
        dir = try TempDir("ccr-cache")
        try makeDirectory(dir.sub("data"))
        try writeText(
            dir.sub("config.yml"),
            """
            version: 0.1
            log:
              level: error
            storage:
              filesystem:
                rootdirectory: \(dir.sub("data"))
            http:
              addr: \(address):\(port)

            """)
        try await start()
    }

    func start() async throws {
        let child = try ChildProcess(Self.binary, ["serve", dir.sub("config.yml")], stderrPath: dir.sub("stderr"))
        self.child = child
        let up = await eventually(within: .seconds(10)) { isListening(address: address, port: port) || !child.isRunning }
        guard up && child.isRunning else { throw TestFailure("docker-registry on \(address):\(port) did not start: \(child.stderrText)") }
    }

    /// Dies as a cache whose Pod went away: nothing listens (connection refused).
    func stop() { child?.stop() }

    deinit { child?.stop() }
}

func isListening(address: String, port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var sa = sockaddr_in()
    sa.sin_family = sa_family_t(AF_INET)
    sa.sin_port = UInt16(port).bigEndian
    sa.sin_addr.s_addr = inet_addr(address)
    return withUnsafePointer(to: &sa) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    } == 0
}

/// §4.1 end to end with real parts: the built agent, a real dnsmasq playing cluster DNS, real
/// docker-registry caches on loopback addresses standing for two cluster IPs of one Service.
@Suite("Service discovery (agent, dnsmasq, docker-registry)", .serialized)
struct ServiceDiscoverySystemTests {
    static let name = "registry-docker-io.kube-system.svc.cluster.local"

    /// One port for both caches (a Service's port does not change with its IP).
    static func cachePort() throws -> Int { try freeLoopbackPort() }

    static func url(_ port: Int) -> String { "http://\(name):\(port)" }

    static func hostsFile(_ dir: TempDir) -> String { dir.sub("certs.d/docker.io/hosts.toml") }

    static func names(_ dir: TempDir, _ address: String, _ port: Int) -> Bool {
        readText(hostsFile(dir))?.contains("[host.\"http://\(address):\(port)\"]") == true
    }

    static func agentArguments(_ command: String, dir: TempDir, dns: DNSMasq, port: Int, extra: [String] = []) -> [String] {
        // containerd_version pinned through a config file: no daemon here to ask.
        try? writeText(dir.sub("config.toml"), "containerd_version = \"2.1.9\"\ncontainerd_unit = \"\"\n")
        return [command, "--config", dir.sub("config.toml"), "--hosts-dir", dir.sub("certs.d"), "--cluster-dns", "127.0.0.1:\(dns.port)",
                "--log-format", "text"] + extra + ["docker.io,\(url(port))"]
    }

    @Test("apply looks the Service name up in cluster DNS and writes its address, not the name")
    func applyResolves() async throws {
        let port = try Self.cachePort()
        let cache = try await RegistryCache(address: "127.0.0.41", port: port)
        let dns = try await DNSMasq(hosts: "127.0.0.41 \(Self.name)\n")
        let dir = try TempDir("ccr-svc")
        let run = try await runAgent(Self.agentArguments("apply", dir: dir, dns: dns, port: port))
        #expect(run.status == 0, "\(run.stderr)")
        #expect(Self.names(dir, "127.0.0.41", port), "\(readText(Self.hostsFile(dir)) ?? "no file")")
        #expect(!(readText(Self.hostsFile(dir)) ?? "").contains(Self.name))
        #expect(run.stderr.contains("service \(Self.name): DNS: 127.0.0.41"))
        withExtendedLifetime(cache) {}
    }

    @Test("apply: NXDOMAIN first (not ready, and it says so), then the record appears: apply writes it and ends")
    func applyWaitsForRecord() async throws {
        let port = try Self.cachePort()
        let cache = try await RegistryCache(address: "127.0.0.41", port: port)
        let dns = try await DNSMasq(hosts: "")
        let dir = try TempDir("ccr-svc")
        let agent = try ChildProcess(
            agentExecutable, Self.agentArguments("apply", dir: dir, dns: dns, port: port), stderrPath: dir.sub("agent.log"))
        let saidWhy = await eventually(within: .seconds(10)) { agent.stderrText.contains("name not found (NXDOMAIN from 127.0.0.1:\(dns.port))") }
        #expect(saidWhy, "\(agent.stderrText)")
        #expect(agent.isRunning && !exists(Self.hostsFile(dir)))
        try dns.writeHosts("127.0.0.41 \(Self.name)\n")
        dns.reload()
        let (status, timedOut) = await agent.waitForExit(timeout: .seconds(15))
        #expect(status == 0 && !timedOut, "\(agent.stderrText)")
        #expect(Self.names(dir, "127.0.0.41", port))
        withExtendedLifetime(cache) {}
    }

    @Test("apply with the DNS server down: not ready, 'DNS unreachable' in the log, exit 69 at the deadline, no file")
    func applyDNSDown() async throws {
        let port = try Self.cachePort()
        let dns = try await DNSMasq(hosts: "127.0.0.41 \(Self.name)\n")
        dns.stop()
        let dir = try TempDir("ccr-svc")
        let run = try await runAgent(Self.agentArguments("apply", dir: dir, dns: dns, port: port, extra: ["--deadline", "3s"]))
        #expect(run.status == 69, "\(run.stderr)")
        #expect(run.stderr.contains("DNS unreachable"), "\(run.stderr)")
        #expect(!exists(Self.hostsFile(dir)))
    }

    @Test("watch: the record moves to a second cache and the first dies: the file names the new address within seconds")
    func watchFollowsMove() async throws {
        let port = try Self.cachePort()
        let first = try await RegistryCache(address: "127.0.0.41", port: port)
        let second = try await RegistryCache(address: "127.0.0.42", port: port)
        let dns = try await DNSMasq(hosts: "127.0.0.41 \(Self.name)\n")
        let dir = try TempDir("ccr-svc")
        let agent = try ChildProcess(
            agentExecutable, Self.agentArguments("watch", dir: dir, dns: dns, port: port), stderrPath: dir.sub("agent.log"))
        defer { agent.stop() }
        #expect(await eventually(within: .seconds(10)) { Self.names(dir, "127.0.0.41", port) }, "\(agent.stderrText)")
        first.stop()
        try dns.writeHosts("127.0.0.42 \(Self.name)\n")
        dns.reload()
        let moved = ContinuousClock.now
        let followed = await eventually(within: .seconds(15)) { Self.names(dir, "127.0.0.42", port) && !Self.names(dir, "127.0.0.41", port) }
        #expect(followed, "\(agent.stderrText)")
        print("watch followed the Service to its new address \((ContinuousClock.now - moved).seconds) s after the record changed")
        #expect(agent.stderrText.contains("service address changed 127.0.0.41 -> 127.0.0.42"), "\(agent.stderrText)")
        withExtendedLifetime(second) {}
    }

    @Test("watch: a new address that does not answer never replaces a working one")
    func watchKeepsWorkingAddress() async throws {
        let port = try Self.cachePort()
        let first = try await RegistryCache(address: "127.0.0.41", port: port)
        let dns = try await DNSMasq(hosts: "127.0.0.41 \(Self.name)\n")
        let dir = try TempDir("ccr-svc")
        let agent = try ChildProcess(
            agentExecutable, Self.agentArguments("watch", dir: dir, dns: dns, port: port), stderrPath: dir.sub("agent.log"))
        defer { agent.stop() }
        #expect(await eventually(within: .seconds(10)) { Self.names(dir, "127.0.0.41", port) }, "\(agent.stderrText)")
        // Nothing listens on 127.0.0.43.
        try dns.writeHosts("127.0.0.43 \(Self.name)\n")
        dns.reload()
        #expect(await eventually(within: .seconds(10)) { agent.stderrText.contains("DNS: 127.0.0.43") }, "\(agent.stderrText)")
        try await Task.sleep(for: .seconds(3))
        #expect(Self.names(dir, "127.0.0.41", port) && !Self.names(dir, "127.0.0.43", port), "\(readText(Self.hostsFile(dir)) ?? "")")
        #expect(!agent.stderrText.contains("service address changed"))
        withExtendedLifetime(first) {}
    }

    @Test("watch: the DNS server stopped: the file keeps the working cache, which is still probed")
    func watchDNSDown() async throws {
        let port = try Self.cachePort()
        let cache = try await RegistryCache(address: "127.0.0.41", port: port)
        let dns = try await DNSMasq(hosts: "127.0.0.41 \(Self.name)\n")
        let dir = try TempDir("ccr-svc")
        let agent = try ChildProcess(
            agentExecutable, Self.agentArguments("watch", dir: dir, dns: dns, port: port, extra: ["-v"]),
            stderrPath: dir.sub("agent.log"))
        defer { agent.stop() }
        #expect(await eventually(within: .seconds(10)) { Self.names(dir, "127.0.0.41", port) }, "\(agent.stderrText)")
        let before = readText(Self.hostsFile(dir))
        dns.stop()
        #expect(
            await eventually(within: .seconds(10)) { agent.stderrText.contains("DNS unreachable") && agent.stderrText.contains("keeping 127.0.0.41") },
            "\(agent.stderrText)")
        try await Task.sleep(for: .seconds(5))
        #expect(readText(Self.hostsFile(dir)) == before)
        #expect(!agent.stderrText.contains("taking it out"))
        withExtendedLifetime(cache) {}
    }

    @Test("a name outside the domain is written as given (the node's resolver finds it)")
    func outsideTheDomain() async throws {
        let port = try Self.cachePort()
        let cache = try await RegistryCache(address: "127.0.0.1", port: port)
        let dns = try await DNSMasq(hosts: "")
        let dir = try TempDir("ccr-svc")
        var arguments = Self.agentArguments("apply", dir: dir, dns: dns, port: port)
        arguments[arguments.count - 1] = "docker.io,http://localhost:\(port)"
        let run = try await runAgent(arguments)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(readText(Self.hostsFile(dir))?.contains("[host.\"http://localhost:\(port)\"]") == true)
        #expect(!dns.log.contains("localhost"), "the agent asked cluster DNS for a name outside the domain")
        withExtendedLifetime(cache) {}
    }

    @Test("check --output json: the host has name and address; plan shows both")
    func checkShowsNameAndAddress() async throws {
        let port = try Self.cachePort()
        let cache = try await RegistryCache(address: "127.0.0.41", port: port)
        let dns = try await DNSMasq(hosts: "127.0.0.41 \(Self.name)\n")
        let dir = try TempDir("ccr-svc")
        let applied = try await runAgent(Self.agentArguments("apply", dir: dir, dns: dns, port: port))
        #expect(applied.status == 0)
        let logs = try TempDir("ccr-out")
        let out = Pipe()
        let check = try ChildProcess(
            agentExecutable, Self.agentArguments("check", dir: dir, dns: dns, port: port, extra: ["--output", "json"]), stdout: out,
            stderrPath: logs.sub("stderr"))
        let json = try await readLine(from: out, timeout: .seconds(20))
        _ = await check.waitForExit(timeout: .seconds(20))
        #expect(json.contains("\"url\":\"http://127.0.0.41:\(port)\""), "\(json)")
        #expect(json.contains("\"name\":\"\(Self.name)\",\"address\":\"127.0.0.41\""), "\(json)")
        withExtendedLifetime(cache) {}
    }
}
