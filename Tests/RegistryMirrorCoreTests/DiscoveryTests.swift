import Logging
import Synchronization
import Testing

@testable import RegistryMirrorCore

/// A resolver whose answers the test sets and changes while the agent runs.
final class SettableResolver: ServiceResolver, Sendable {
    private let answers = Mutex<[String: Resolution]>([:])
    private let calls = Mutex<[String: Int]>([:])

    init(_ answers: [String: Resolution] = [:]) { self.answers.withLock { $0 = answers } }

    func set(_ name: String, _ answer: Resolution) { answers.withLock { $0[name] = answer } }
    func count(_ name: String) -> Int { calls.withLock { $0[name, default: 0] } }

    func resolve(_ name: String, using discovery: Discovery) async -> Resolution {
        calls.withLock { $0[name, default: 0] += 1 }
        return answers.withLock { $0[name] } ?? .notFound("name not found (NXDOMAIN from test)")
    }
}

/// A prober whose answer per URL the test sets and changes while the agent runs; unset URLs refuse.
final class SettableProber: MirrorProber, Sendable {
    private let up = Mutex<Set<String>>([])
    private let calls = Mutex<[String: Int]>([:])

    init(up: Set<String> = []) { self.up.withLock { $0 = up } }

    func set(_ url: String, up isUp: Bool) { _ = up.withLock { isUp ? $0.insert(url).inserted : $0.remove(url) != nil } }
    func count(_ url: String) -> Int { calls.withLock { $0[url, default: 0] } }

    func probe(_ host: MirrorHost, settings: ProbeSettings) async -> ProbeResult {
        // The answer is the one set when the probe starts.
        let isUp = up.withLock { $0.contains(host.url) }
        calls.withLock { $0[host.url, default: 0] += 1 }
        try? await Task.sleep(for: .milliseconds(1))
        return isUp
            ? ProbeResult(state: .up, reason: "HTTP 200") : ProbeResult(state: .down, reason: "connection refused", connected: false)
    }
}

/// Keeps every log line with its metadata.
final class CapturedLog: Sendable {
    struct Line: Sendable {
        var message: String
        var metadata: [String: String]
    }
    private let lines = Mutex<[Line]>([])
    var all: [Line] { lines.withLock { $0 } }

    var logger: Logger {
        Logger(label: "test") { _ in Handler(log: self) }
    }

    struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            var merged = metadata
            if let extra = event.metadata { merged.merge(extra) { $1 } }
            let line = Line(message: "\(event.message)", metadata: merged.mapValues { "\($0)" })
            log.lines.withLock { $0.append(line) }
        }
    }
}

@Suite("Discovery")
struct DiscoveryTests {
    static let name = "registry-docker-io.kube-system.svc.cluster.local"
    static let url = "http://\(name):5000"
    static let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    static func config(_ urls: [String] = [url], readinessProbe: Bool = true) -> AgentConfig {
        var c = AgentConfig()
        // Lookups as often as the (20 ms) rounds: the tests below time them against the probes.
        c.discovery = Discovery(servers: [.init(address: "127.0.0.1", port: 5353)], lookupInterval: .milliseconds(20))
        c.registries = [Registry(upstream: "docker.io", readinessProbe: readinessProbe, hosts: urls.map { MirrorHost(url: $0) })]
        c.probe.initialInterval = .milliseconds(5)
        c.probe.maxInterval = .milliseconds(10)
        c.probe.watchInterval = .milliseconds(20)
        c.target = ContainerdTarget(version: ContainerdVersion(2, 1, 9), source: "test")
        return c
    }

    /// A hosts directory holding our file for docker.io, written by apply with the name at 10.0.0.1.
    static func storeWithOurFile() async -> MemoryStore {
        let store = MemoryStore()
        let applied = await Applier(
            config: config(), prober: SettableProber(up: ["http://10.0.0.1:5000"]), store: store, logger: logger,
            resolver: SettableResolver([name: .addresses(["10.0.0.1"])])
        ).run()
        #expect(applied.exitStatus == .ok)
        #expect(hosts(in: store.content("docker.io")) == ["http://10.0.0.1:5000"])
        return store
    }

    static func hosts(in text: String?) -> [String] {
        guard let text else { return [] }
        return text.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("[host.\""), let end = line.dropFirst(7).firstIndex(of: "\"") else { return nil }
            return String(line[line.index(line.startIndex, offsetBy: 7)..<end])
        }
    }

    // MARK: config

    @Test("[discovery] is read: servers with and without ports, IPv6, domain lowercased without its dot")
    func readsDiscovery() throws {
        let config = try ConfigLoader.load(
            toml: """
                [discovery]
                dns_servers = ["10.96.0.10", "10.96.0.11:5353", "[fd00::a]:53", "fd00::b"]
                domain = "Cluster.Local."
                timeout = "500ms"
                [[registry]]
                upstream = "docker.io"
                [[registry.host]]
                url = "\(Self.url)"
                """, path: "c.toml")
        let d = try #require(config.discovery)
        #expect(d.servers.map(\.description) == ["10.96.0.10:53", "10.96.0.11:5353", "[fd00::a]:53", "[fd00::b]:53"])
        #expect(d.domain == "cluster.local")
        #expect(d.timeout == .milliseconds(500))
        #expect(config.serviceName(of: config.registries[0].hosts[0]) == Self.name)
    }

    @Test("bad [discovery] values are refused with the field and a fix", arguments: [
        ("dns_servers = [\"kube-dns.kube-system\"]", "discovery.dns_servers[0]", "is not an IP address"),
        ("dns_servers = [\"10.96.0.10:0\"]", "discovery.dns_servers[0]", "invalid port"),
        ("dns_servers = [\"[fd00::a\"]", "discovery.dns_servers[0]", "unclosed"),
        ("dns_servers = []", "discovery.dns_servers", "names no DNS server"),
        ("domain = \"cluster..local\"\ndns_servers = [\"10.96.0.10\"]", "discovery.domain", "is not a DNS domain"),
        ("timeout = \"0s\"\ndns_servers = [\"10.96.0.10\"]", "discovery.timeout", "below 1ms"),
        ("dns_server = [\"10.96.0.10\"]", "discovery.dns_server", "did you mean \"dns_servers\""),
    ])
    func refusesBadDiscovery(line: String, field: String, message: String) {
        let toml = "[discovery]\n\(line)\n[[registry]]\nupstream = \"docker.io\"\n[[registry.host]]\nurl = \"\(Self.url)\"\n"
        #expect {
            _ = try ConfigLoader.load(toml: toml, path: "c.toml")
        } throws: { error in
            let text = "\(error)"
            return text.contains(field) && text.contains(message)
        }
    }

    @Test("--cluster-dns turns discovery on (domain cluster.local) or replaces the file's servers; a bad one is a usage error")
    func clusterDNSOption() throws {
        let plain = try ConfigLoader.load(toml: nil, path: "c.toml", mirrors: ["docker.io,\(Self.url)"], clusterDNS: ["127.0.0.1:5353"])
        #expect(plain.discovery == Discovery(servers: [.init(address: "127.0.0.1", port: 5353)]))
        let replaced = try ConfigLoader.load(
            toml: "[discovery]\ndns_servers = [\"10.96.0.10\"]\ndomain = \"k8s.example\"\n", path: "c.toml",
            mirrors: ["docker.io,\(Self.url)"], clusterDNS: ["[::1]:53"])
        #expect(replaced.discovery?.servers.map(\.description) == ["[::1]:53"])
        #expect(replaced.discovery?.domain == "k8s.example")
        #expect {
            _ = try ConfigLoader.load(toml: nil, path: "c.toml", mirrors: ["docker.io,\(Self.url)"], clusterDNS: ["dns.local"])
        } throws: { error in
            (error as? ConfigError)?.isUsageError == true && "\(error)".contains("--cluster-dns dns.local")
        }
    }

    @Test("only names under the domain are Service names; addresses and other names are written as given")
    func serviceNames() {
        let d = Discovery(servers: [.init(address: "10.96.0.10")])
        #expect(d.serviceName(of: "http://Registry.Kube-System.svc.Cluster.local:5000/v2") == "registry.kube-system.svc.cluster.local")
        #expect(d.serviceName(of: "http://cluster.local:5000") == nil)
        #expect(d.serviceName(of: "http://mirror.example.com:5000") == nil)
        #expect(d.serviceName(of: "http://notcluster.local:5000") == nil)
        #expect(d.serviceName(of: "http://10.96.0.5:5000") == nil)
        #expect(d.serviceName(of: "http://[fd00::5]:5000") == nil)
    }

    @Test("addresses: IPv4 before IPv6, numerically, duplicates once; URLs keep port and path")
    func addressOrder() {
        #expect(
            ServiceAddress.stableOrder(["10.0.0.10", "fd00::2", "10.0.0.9", "fd00::1:0", "10.0.0.9", "::ffff:1.2.3.4"])
                == ["10.0.0.9", "10.0.0.10", "::ffff:1.2.3.4", "fd00::2", "fd00::1:0"])
        #expect(ServiceAddress.url("http://svc.ns.svc.cluster.local:5000/v2/x", at: "10.0.0.5") == "http://10.0.0.5:5000/v2/x")
        #expect(ServiceAddress.url("https://svc.ns.svc.cluster.local", at: "fd00::5") == "https://[fd00::5]")
        let host = MirrorHost(url: Self.url).resolved(to: "fd00::5", name: Self.name)
        #expect(host.url == "http://[fd00::5]:5000" && host.address == "fd00::5" && host.serviceName == Self.name)
    }

    // MARK: the addresses of one name

    @Test("a Service that moves: the old address stays until the new one passed; a failed lookup changes nothing")
    func serviceMoves() {
        var s = ServiceAddresses(name: Self.name)
        #expect(s.isPending)
        #expect(s.record(.unreachable("no answer")).isEmpty)
        #expect(s.isPending)
        var change = s.record(.addresses(["10.0.0.1"]))
        #expect(s.current == ["10.0.0.1"] && change.added == ["10.0.0.1"] && change.previous == [])
        // The record moves: the new address is a candidate; the old one is still the name's.
        change = s.record(.addresses(["10.0.0.2"]))
        #expect(s.current == ["10.0.0.1"] && s.candidates == ["10.0.0.2"] && change.added == ["10.0.0.2"] && change.previous == nil)
        // DNS down meanwhile: nothing changes.
        #expect(s.record(.unreachable("no answer")).isEmpty)
        #expect(s.record(.notFound("NXDOMAIN")).isEmpty)
        #expect(s.current == ["10.0.0.1"] && !s.isPending)
        change = s.passed("10.0.0.2")
        #expect(s.current == ["10.0.0.2"] && s.candidates.isEmpty && change.dropped == ["10.0.0.1"] && change.previous == ["10.0.0.1"])
        #expect(s.passed("10.0.0.9").isEmpty)
    }

    @Test("a headless Service: addresses still named stay, new ones wait, one no longer named goes at once")
    func headless() {
        var s = ServiceAddresses(name: Self.name)
        _ = s.record(.addresses(["10.0.0.1", "10.0.0.3"]))
        var change = s.record(.addresses(["10.0.0.3", "10.0.0.2"]))
        #expect(s.current == ["10.0.0.3"] && s.candidates == ["10.0.0.2"])
        #expect(change.dropped == ["10.0.0.1"] && change.added == ["10.0.0.2"] && change.previous == ["10.0.0.1", "10.0.0.3"])
        change = s.passed("10.0.0.2")
        #expect(s.current == ["10.0.0.2", "10.0.0.3"] && change.dropped.isEmpty)
        // A name that stops resolving keeps its last addresses.
        _ = s.record(.notFound("NXDOMAIN"))
        #expect(s.current == ["10.0.0.2", "10.0.0.3"])
    }

    @Test("a headless Service of 200 pods gives the first 16 addresses in stable order, not 200 hosts")
    func manyAddresses() {
        var s = ServiceAddresses(name: Self.name)
        _ = s.record(.addresses((1...200).reversed().map { "10.0.\($0 / 250).\($0 % 250)" }))
        #expect(s.current.count == ServiceAddresses.maximumAddresses)
        #expect(s.current.first == "10.0.0.1" && s.current.last == "10.0.0.16")
    }

    @Test("addresses no Service has are dropped from an answer; an answer of only those is 'not found' with the reason")
    func unusableAddresses() {
        #expect(Resolution.addresses(["0.0.0.0", "10.0.0.1", "224.0.0.1", "fe80::1", "ff02::1", "255.255.255.255"]).usable
            == .addresses(["10.0.0.1"]))
        #expect(Resolution.addresses(["0.0.0.0", "::"]).usable
            == .notFound("only addresses a Service cannot have: 0.0.0.0 (unspecified), :: (unspecified)"))
        var state = MirrorState(config: Self.config())
        let update = state.resolved(HostKey(upstream: "docker.io", url: Self.url), .addresses(["0.0.0.0"]))
        #expect(update?.current == [] && update?.resolution?.addresses == [])
        #expect(state.config.registries[0].hosts.isEmpty)
    }

    /// The one rule, both families; nil: a Service may have it.
    static let addressRule: [(String, String?)] = [
        ("10.96.5.1", nil), ("fd00::5", nil), ("2001:db8::1", nil),
        // Loopback names this node on purpose (and the system tests' caches live there).
        ("127.0.0.1", nil), ("127.0.0.41", nil), ("::1", nil),
        ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("0.1.2.3", "\"this network\""),
        ("255.255.255.255", "broadcast"), ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
        ("169.254.169.254", "link-local"), ("169.254.0.1", "link-local"), ("fe80::1", "link-local"), ("febf::1", "link-local"),
        ("169.253.1.1", nil), ("169.255.0.1", nil), ("fec0::1", nil), ("223.255.255.255", nil), ("240.0.0.1", nil),
        // IPv4-mapped: judged as the IPv4 address carried.
        ("::ffff:0.0.0.0", "IPv4-mapped 0.0.0.0, unspecified"),
        ("::ffff:0.1.2.3", "IPv4-mapped 0.1.2.3, \"this network\""),
        ("::ffff:224.0.0.1", "IPv4-mapped 224.0.0.1, multicast"),
        ("::ffff:255.255.255.255", "IPv4-mapped 255.255.255.255, broadcast"),
        ("::ffff:169.254.169.254", "IPv4-mapped 169.254.169.254, link-local"),
        ("::ffff:a9fe:a9fe", "IPv4-mapped 169.254.169.254, link-local"),
        ("::FFFF:127.0.0.1", nil), ("::ffff:10.0.0.1", nil),
        // Not mapped: ::ffff:0:0:0/96 and ::/96 carry nothing a connection would use.
        ("::ffff:0:0.0.0.0", nil), ("::10.0.0.1", nil),
        ("not an address", "not an IP address"),
    ]

    @Test("one address rule for both families: unspecified, broadcast, multicast and link-local refused; loopback kept; IPv4-mapped judged as its IPv4 address")
    func addressRule() {
        for (address, expected) in Self.addressRule {
            #expect(ServiceAddress.unusable(address) == expected, "\(address)")
        }
    }

    @Test("an IPv4-mapped address that is kept is written as the IPv4 address it carries, once beside the same A record")
    func mappedAddressesAsIPv4() {
        #expect(ServiceAddress.canonical("::ffff:10.0.0.1") == "10.0.0.1")
        #expect(ServiceAddress.canonical("::ffff:a00:1") == "10.0.0.1")
        #expect(ServiceAddress.canonical("fd00::1") == "fd00::1" && ServiceAddress.canonical("10.0.0.1") == "10.0.0.1")
        #expect(Resolution.addresses(["fd00::1", "::ffff:10.0.0.2"]).usable == .addresses(["10.0.0.2", "fd00::1"]))
        #expect(Resolution.addresses(["10.0.0.1", "::ffff:10.0.0.1"]).usable == .addresses(["10.0.0.1"]))
        // The answers of the attack round: only the mapped loopback address is kept, as IPv4.
        let attack = Resolution.addresses([
            "0.1.2.3", "169.254.169.254", "::ffff:0.0.0.0", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:224.0.0.1",
            "::ffff:255.255.255.255", "fe80::1",
        ])
        #expect(attack.usable == .addresses(["127.0.0.1"]))
        #expect(Resolution.addresses(["::ffff:0.0.0.0"]).usable
            == .notFound("only addresses a Service cannot have: ::ffff:0.0.0.0 (IPv4-mapped 0.0.0.0, unspecified)"))
        let written = MirrorHost(url: Self.url).resolved(to: ServiceAddress.canonical("::ffff:10.0.0.1"), name: Self.name)
        #expect(written.url == "http://10.0.0.1:5000")
    }


    // MARK: apply







    // MARK: watch







    /// Moves the manual clock from sleeper to sleeper until `done` holds or the clock passes `limit`,
    /// each time once the run is at rest: `sleepers` asleep (the round's ticker and the lookup's
    /// timer), none of them due. Returns the clock's time then.
    static func advance(_ clock: ManualClock, until limit: Duration, sleepers: Int = 2, _ done: () -> Bool) async -> Duration {
        while !done() {
            _ = await eventuallyTrue { clock.sleeperCount >= sleepers && clock.nextDeadline.map { $0 > clock.now.offset } == true }
            guard let next = clock.nextDeadline, next <= limit else { break }
            clock.advance(to: next)
            if done() { break }
        }
        return clock.now.offset
    }

    @Test("watch, manual clock: a name with addresses is looked up every lookup_interval (30 s, jitter 1: 36 s), and at once when a probe of its address fails")
    func lookupTiming() async {
        let resolver = SettableResolver([Self.name: .addresses(["10.0.0.1"])])
        let prober = SettableProber(up: ["http://10.0.0.1:5000"])
        var config = Self.config()
        config.probe = ProbeSettings()
        config.discovery?.lookupInterval = .seconds(30)
        let watch = ManualWatch(config: config, prober: prober, resolver: resolver)
        let (clock, store) = (watch.clock, watch.store)
        #expect(await eventuallyTrue { Self.hosts(in: store.content("docker.io")) == ["http://10.0.0.1:5000"] })
        #expect(resolver.count(Self.name) == 1)
        // 15 rounds of probes (2.4 s each) pass without a lookup; the second comes at 36 s.
        let second = await Self.advance(clock, until: .seconds(40)) { resolver.count(Self.name) == 2 }
        #expect(resolver.count(Self.name) == 2 && abs((second - .seconds(36)) / .milliseconds(1)) < 1, "second lookup at \(second)")
        #expect(prober.count("http://10.0.0.1:5000") >= 15, "the rounds went on: \(prober.count("http://10.0.0.1:5000")) probes")
        // The cache dies: the next round's probe fails, and the name is asked again at once.
        prober.set("http://10.0.0.1:5000", up: false)
        let probes = prober.count("http://10.0.0.1:5000")
        let failed = await Self.advance(clock, until: .seconds(45)) { prober.count("http://10.0.0.1:5000") > probes }
        #expect(await eventuallyTrue { resolver.count(Self.name) == 3 }, "a lookup at the failed probe (\(failed)): \(resolver.count(Self.name))")
        #expect(clock.now.offset == failed, "with the clock standing still")
        #expect(await watch.stop() == .ok)
    }

    @Test("a name two registries share (one cache for two upstreams) is looked up once per lookup_interval, not once per registry")
    func sharedNameLookedUpOnce() async {
        var config = Self.config()
        config.registries.append(Registry(upstream: "quay.io", hosts: [MirrorHost(url: Self.url)]))
        config.probe.maxInterval = .seconds(30)  // apply's next lookup of a resolved name: not within this test
        let address = "http://10.0.0.1:5000"
        let applyResolver = SettableResolver([Self.name: .addresses(["10.0.0.1"])])
        let store = MemoryStore()
        let applied = await Applier(
            config: config, prober: SettableProber(up: [address]), store: store, logger: Self.logger, resolver: applyResolver
        ).run()
        #expect(applied.exitStatus == .ok)
        #expect(applyResolver.count(Self.name) == 1)
        #expect(Self.hosts(in: store.content("docker.io")) == [address] && Self.hosts(in: store.content("quay.io")) == [address])

        config.probe = ProbeSettings()
        config.discovery?.lookupInterval = .seconds(30)
        let resolver = SettableResolver([Self.name: .addresses(["10.0.0.1"])])
        let watch = ManualWatch(config: config, prober: SettableProber(up: [address]), resolver: resolver)
        let (clock, files) = (watch.clock, watch.store)
        #expect(await eventuallyTrue { Self.hosts(in: files.content("docker.io")) == [address] && Self.hosts(in: files.content("quay.io")) == [address] })
        #expect(resolver.count(Self.name) == 1)
        _ = await Self.advance(clock, until: .seconds(75)) { false }
        // Lookups at 0, 36 and 72 s: once per interval for both registries.
        #expect(resolver.count(Self.name) == 3, "\(resolver.count(Self.name)) lookups in 75 s")
        #expect(await watch.stop() == .ok)
    }


    // MARK: plan and check

    @Test("plan with DNS unreachable leaves a file of ours as it is, as apply does; with the name not found it would remove it")
    func surveyKeepsFileWhileDNSDown() async throws {
        let store = await Self.storeWithOurFile()
        let down = await Survey.resolveAll(Self.config(), resolver: SettableResolver([Self.name: .unreachable("no answer")]))
        var survey = try Survey.make(down, results: await Survey.probeAll(down, prober: SettableProber()), store: store)
        #expect(survey.entries[0].actions.isEmpty && !survey.entries[0].hasChanges)
        let report = HealthReport.evaluate(survey, containerd: SurveyKit.readsHostsDir, hostsDir: SurveyKit.hostsDir)
        #expect(CheckText.render(report).contains("Service name \(Self.name) has no address (DNS unreachable: no answer): not used until it resolves"))
        let gone = await Survey.resolveAll(Self.config(), resolver: SettableResolver())
        survey = try Survey.make(gone, results: await Survey.probeAll(gone, prober: SettableProber()), store: store)
        #expect(survey.entries[0].desired == nil && survey.entries[0].hasChanges)
    }

    @Test("plan's file is apply's file: with readiness_probe = false a name with no address is left out, the other hosts written")
    func surveyDecidesAsApply() async throws {
        let literal = "http://10.0.0.9:5000"
        var config = Self.config([literal, Self.url], readinessProbe: false)
        config.probe.deadline = .seconds(5)
        let store = MemoryStore()
        let applied = await Applier(
            config: config, prober: SettableProber(), store: store, logger: Self.logger, resolver: SettableResolver()
        ).run()
        #expect(applied.exitStatus == .ok)
        let written = store.content("docker.io")
        #expect(Self.hosts(in: written) == [literal])
        let resolved = await Survey.resolveAll(config, resolver: SettableResolver())
        let survey = try Survey.make(resolved, results: await Survey.probeAll(resolved, prober: SettableProber()), store: MemoryStore())
        #expect(survey.entries[0].desired == written)
        #expect(survey.entries[0].hosts.map(\.host.url) == [literal, Self.url])
    }

    @Test("plan and check: name and address side by side; a name that does not resolve is down with the lookup as reason")
    func surveyShowsNameAndAddress() async throws {
        let other = "http://registry-quay-io.kube-system.svc.cluster.local:5000"
        let resolver = SettableResolver([Self.name: .addresses(["10.0.0.1"])])
        let resolved = await Survey.resolveAll(Self.config([Self.url, other]), resolver: resolver)
        #expect(resolved.config.registries[0].hosts.map(\.url) == ["http://10.0.0.1:5000", other])
        let results = await Survey.probeAll(resolved, prober: SettableProber(up: ["http://10.0.0.1:5000"]))
        #expect(results[0][1]?.reason == "DNS: name not found (NXDOMAIN from test)")
        let survey = try Survey.make(resolved, results: results, store: MemoryStore())
        #expect(Self.hosts(in: survey.entries[0].desired) == ["http://10.0.0.1:5000"])
        let report = HealthReport.evaluate(
            survey, containerd: SurveyKit.readsHostsDir, hostsDir: SurveyKit.hostsDir)
        let json = CheckText.json(report)
        #expect(json.contains("\"url\":\"http://10.0.0.1:5000\"") && json.contains("\"name\":\"\(Self.name)\",\"address\":\"10.0.0.1\""))
        #expect(json.contains("\"name\":\"registry-quay-io.kube-system.svc.cluster.local\",\"address\":null"))
        #expect(CheckText.render(report).contains("host http://10.0.0.1:5000 (\(Self.name)): up"))
        let plan = PlanText.render(survey, color: false, target: Self.config().target).text
        #expect(plan.contains("http://10.0.0.1:5000 (\(Self.name))"))
        #expect(plan.contains("\(other)  DNS: name not found"))
    }
}
