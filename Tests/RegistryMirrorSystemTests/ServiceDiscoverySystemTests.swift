import Foundation
import Glibc
import RegistryMirrorCore
import Testing

/// One test's world: caches on loopback addresses sharing one port (a Service's port does not change
/// with its IP), a dnsmasq playing cluster DNS, and a directory for the agent's files and config.
final class ServiceWorld: @unchecked Sendable {
    static let name = "registry-docker-io.kube-system.svc.cluster.local"
    let port: Int
    let dns: DNSMasq
    let dir: TempDir
    private(set) var caches: [String: RegistryCache] = [:]

    /// - Parameters: caches: the addresses a docker-registry listens on; record: the address the name
    ///   has at first (nil: NXDOMAIN).
    init(caches addresses: [String], record: String?) async throws {
        port = try freeLoopbackPort()
        for address in addresses { caches[address] = try await RegistryCache(address: address, port: port) }
        dns = try await DNSMasq(hosts: record.map { "\($0) \(Self.name)\n" } ?? "")
        dir = try TempDir("ccr-svc")
        // containerd_version pinned: no daemon here to ask. Lookups every second (default 30 s), so
        // that a record's change is seen within these tests' waits; --cluster-dns gives the server.
        try writeText(
            dir.sub("config.toml"),
            "containerd_version = \"2.1.9\"\ncontainerd_unit = \"\"\n[discovery]\ndns_servers = [\"\(dns.server)\"]\nlookup_interval = \"1s\"\n")
    }

    var url: String { "http://\(Self.name):\(port)" }
    var file: String? { readText(dir.sub("certs.d/docker.io/hosts.toml")) }
    var exists: Bool { RegistryMirrorSystemTests.exists(dir.sub("certs.d/docker.io/hosts.toml")) }
    func names(_ address: String) -> Bool { file?.contains("[host.\"http://\(address):\(port)\"]") == true }

    /// - Parameter server: the DNS server to ask instead of the world's dnsmasq (a scripted one).
    func arguments(_ command: String, _ extra: [String] = [], mirror: String? = nil, server: Discovery.Server? = nil) -> [String] {
        [command, "--config", dir.sub("config.toml"), "--hosts-dir", dir.sub("certs.d"),
         "--cluster-dns", (server ?? dns.server).description, "--log-format", "text"] + extra + [mirror ?? "docker.io,\(url)"]
    }

    /// Starts the agent, stderr in the world's directory; killed (SIGKILL) when the process object goes.
    func start(_ command: String, _ extra: [String] = []) throws -> ChildProcess {
        try ChildProcess(agentExecutable, arguments(command, extra), stderrPath: dir.sub("\(command).log"))
    }

    /// The record now gives `address` (nil: the name is gone), and dnsmasq reads it again.
    func setRecord(_ address: String?) throws {
        try dns.writeHosts(address.map { "\($0) \(Self.name)\n" } ?? "")
        dns.reload()
    }
}

/// §4.1 end to end with real parts: the built agent, a real dnsmasq playing cluster DNS, real
/// docker-registry caches on loopback addresses standing for two cluster IPs of one Service.
@Suite("Service discovery (agent, dnsmasq, docker-registry)", .serialized)
struct ServiceDiscoverySystemTests {
    static let name = ServiceWorld.name

    @Test("apply looks the Service name up in cluster DNS and writes its address, not the name")
    func applyResolves() async throws {
        let world = try await ServiceWorld(caches: ["127.0.0.41"], record: "127.0.0.41")
        let run = try await runAgent(world.arguments("apply"))
        #expect(run.status == 0, "\(run.stderr)")
        #expect(world.names("127.0.0.41"), "\(world.file ?? "no file")")
        #expect(!(world.file ?? "").contains(Self.name))
        #expect(run.stderr.contains("service \(Self.name): DNS: 127.0.0.41"))
    }

    @Test("apply: NXDOMAIN first (not ready, and it says so), then the record appears: apply writes it and ends")
    func applyWaitsForRecord() async throws {
        let world = try await ServiceWorld(caches: ["127.0.0.41"], record: nil)
        let agent = try world.start("apply")
        let saidWhy = await eventually(within: .seconds(10)) {
            agent.stderrText.contains("name not found (NXDOMAIN from 127.0.0.1:\(world.dns.port))")
        }
        #expect(saidWhy, "\(agent.stderrText)")
        #expect(agent.isRunning && !world.exists)
        try world.setRecord("127.0.0.41")
        let (status, timedOut) = await agent.waitForExit(timeout: .seconds(15))
        #expect(status == 0 && !timedOut, "\(agent.stderrText)")
        #expect(world.names("127.0.0.41"))
    }

    @Test("apply with the DNS server down: not ready, 'DNS unreachable' in the log, exit 69 at the deadline, no file")
    func applyDNSDown() async throws {
        let world = try await ServiceWorld(caches: [], record: "127.0.0.41")
        world.dns.stop()
        let run = try await runAgent(world.arguments("apply", ["--deadline", "3s"]))
        #expect(run.status == 69, "\(run.stderr)")
        #expect(run.stderr.contains("DNS unreachable"), "\(run.stderr)")
        #expect(!world.exists)
    }

    @Test("watch: the record moves to a second cache and the first dies: the file names the new address within seconds")
    func watchFollowsMove() async throws {
        let world = try await ServiceWorld(caches: ["127.0.0.41", "127.0.0.42"], record: "127.0.0.41")
        let agent = try world.start("watch")
        #expect(await eventually(within: .seconds(10)) { world.names("127.0.0.41") }, "\(agent.stderrText)")
        world.caches["127.0.0.41"]?.stop()
        try world.setRecord("127.0.0.42")
        let moved = ContinuousClock.now
        let followed = await eventually(within: .seconds(15)) { world.names("127.0.0.42") && !world.names("127.0.0.41") }
        #expect(followed, "\(agent.stderrText)")
        print("watch followed the Service to its new address \((ContinuousClock.now - moved).seconds) s after the record changed")
        #expect(agent.stderrText.contains("service address changed 127.0.0.41 -> 127.0.0.42"), "\(agent.stderrText)")
    }

    @Test("watch: a new address that does not answer never replaces a working one")
    func watchKeepsWorkingAddress() async throws {
        let world = try await ServiceWorld(caches: ["127.0.0.41"], record: "127.0.0.41")
        let agent = try world.start("watch")
        #expect(await eventually(within: .seconds(10)) { world.names("127.0.0.41") }, "\(agent.stderrText)")
        try world.setRecord("127.0.0.43")  // nothing listens there
        #expect(await eventually(within: .seconds(10)) { agent.stderrText.contains("DNS: 127.0.0.43") }, "\(agent.stderrText)")
        try await Task.sleep(for: .seconds(3))
        #expect(world.names("127.0.0.41") && !world.names("127.0.0.43"), "\(world.file ?? "")")
        #expect(!agent.stderrText.contains("service address changed"))
    }

    @Test("watch: the DNS server stopped: the file keeps the working cache, which is still probed")
    func watchDNSDown() async throws {
        let world = try await ServiceWorld(caches: ["127.0.0.41"], record: "127.0.0.41")
        let agent = try world.start("watch", ["-v"])
        #expect(await eventually(within: .seconds(10)) { world.names("127.0.0.41") }, "\(agent.stderrText)")
        let before = world.file
        world.dns.stop()
        let kept = await eventually(within: .seconds(10)) {
            agent.stderrText.contains("DNS unreachable") && agent.stderrText.contains("keeping 127.0.0.41")
        }
        #expect(kept, "\(agent.stderrText)")
        try await Task.sleep(for: .seconds(5))
        #expect(world.file == before)
        #expect(!agent.stderrText.contains("taking it out"))
    }

    @Test("watch started with DNS out of reach keeps our file from an earlier apply; once DNS says the name is gone, it removes it")
    func watchRemovesFileOfGoneName() async throws {
        let world = try await ServiceWorld(caches: ["127.0.0.41"], record: "127.0.0.41")
        let applied = try await runAgent(world.arguments("apply"))
        #expect(applied.status == 0 && world.names("127.0.0.41"), "\(applied.stderr)")
        world.dns.pause()
        defer { world.dns.resume() }
        let agent = try world.start("watch")
        #expect(await eventually(within: .seconds(10)) { agent.stderrText.contains("DNS unreachable") }, "\(agent.stderrText)")
        #expect(world.names("127.0.0.41"), "kept while DNS is out of reach: \(world.file ?? "no file")")
        try world.dns.writeHosts("")
        world.dns.resume()
        world.dns.reload()
        #expect(await eventually(within: .seconds(15)) { !world.exists }, "\(agent.stderrText)")
    }

    @Test("apply while DNS answers the name with an unusual code (NOTAUTH, YXDOMAIN, 15): the file of the cache that is up stays, exit 69", arguments: [9, 6, 15])
    func applyKeepsFileOnOddAnswerCode(_ code: Int) async throws {
        let world = try await ServiceWorld(caches: ["127.0.0.41"], record: "127.0.0.41")
        let applied = try await runAgent(world.arguments("apply"))
        #expect(applied.status == 0 && world.names("127.0.0.41"), "\(applied.stderr)")
        let before = world.file
        let odd = try ScriptedDNSServer(.rcode(UInt8(code)))
        let run = try await runAgent(world.arguments("apply", ["--deadline", "3s"], server: odd.server))
        #expect(run.status == 69, "\(run.stderr)")
        #expect(run.stderr.contains("DNS unreachable: unexpected answer code \(code) ("), "\(run.stderr)")
        #expect(world.file == before, "\(world.file ?? "no file")")
    }

    @Test("apply: an AAAA record ::ffff:0.0.0.0 (this node, whatever listens) is neither probed nor written")
    func applyRefusesMappedUnspecified() async throws {
        // A cache on 127.0.0.1: a connection to 0.0.0.0 (or ::ffff:0.0.0.0) on its port reaches it.
        let world = try await ServiceWorld(caches: ["127.0.0.1"], record: nil)
        let dns = try ScriptedDNSServer(.records(a: [], aaaa: ["::ffff:0.0.0.0"]))
        let run = try await runAgent(world.arguments("apply", ["--deadline", "3s"], server: dns.server))
        #expect(run.status == 69, "\(run.stderr)")
        #expect(run.stderr.contains("only addresses a Service cannot have: ::ffff:0.0.0.0 (IPv4-mapped 0.0.0.0, unspecified)"), "\(run.stderr)")
        #expect(!world.exists, "\(world.file ?? "")")
    }

    @Test("apply: an IPv4-mapped AAAA record of a cache is written as the IPv4 address it carries; a link-local A record beside it is dropped")
    func applyWritesMappedAsIPv4() async throws {
        let world = try await ServiceWorld(caches: ["127.0.0.41"], record: nil)
        let dns = try ScriptedDNSServer(.records(a: ["169.254.169.254"], aaaa: ["::ffff:127.0.0.41"]))
        let run = try await runAgent(world.arguments("apply", [], server: dns.server))
        #expect(run.status == 0, "\(run.stderr)")
        #expect(world.names("127.0.0.41"), "\(world.file ?? "no file")")
        #expect(!(world.file ?? "").contains("ffff") && !(world.file ?? "").contains("169.254"), "\(world.file ?? "")")
    }

    @Test("a name outside the domain is written as given (the node's resolver finds it)")
    func outsideTheDomain() async throws {
        let world = try await ServiceWorld(caches: ["127.0.0.1"], record: nil)
        let run = try await runAgent(world.arguments("apply", mirror: "docker.io,http://localhost:\(world.port)"))
        #expect(run.status == 0, "\(run.stderr)")
        #expect(world.file?.contains("[host.\"http://localhost:\(world.port)\"]") == true)
        #expect(!world.dns.log.contains("localhost"), "the agent asked cluster DNS for a name outside the domain")
    }

    @Test("check --output json: the host has name and address")
    func checkShowsNameAndAddress() async throws {
        let world = try await ServiceWorld(caches: ["127.0.0.41"], record: "127.0.0.41")
        #expect(try await runAgent(world.arguments("apply")).status == 0)
        let out = Pipe()
        let check = try ChildProcess(
            agentExecutable, world.arguments("check", ["--output", "json"]), stdout: out, stderrPath: world.dir.sub("check.log"))
        let json = try await readLine(from: out, timeout: .seconds(20))
        _ = await check.waitForExit(timeout: .seconds(20))
        #expect(json.contains("\"url\":\"http://127.0.0.41:\(world.port)\""), "\(json)")
        #expect(json.contains("\"name\":\"\(Self.name)\",\"address\":\"127.0.0.41\""), "\(json)")
    }
}
