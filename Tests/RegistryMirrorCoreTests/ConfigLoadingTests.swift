import RegistryMirrorCore
import Testing

@Suite("Loading valid configs")
struct ConfigLoadingTests {
    static let fullExample = """
        hosts_dir = "/srv/certs.d"
        containerd_config = "/etc/containerd/other.toml"

        [probe]
        connect_timeout = "500ms"
        timeout = "3s"
        initial_interval = "100ms"
        max_interval = "2s"
        deadline = "5m"
        watch_interval = "30s"
        failure_threshold = 4
        success_threshold = 5

        [[registry]]
        upstream = "docker.io"
        server = "https://registry-1.docker.io"
        readiness_probe = true

          [[registry.host]]
          url = "http://10.4.246.205:5000"
          capabilities = ["pull", "resolve"]
          dial_timeout = "1s"
          ca = ["/etc/containerd/certs.d/ca-bundle.pem"]
          client = [["/path/client.crt", "/path/client.key"]]
          skip_verify = false
          override_path = false
          [registry.host.header]
          X-Example = ["value"]

        [[registry]]
        upstream = "quay.io"
        readiness_probe = false

          [[registry.host]]
          url = "https://quay-cache.internal:8443"
          capabilities = ["pull"]
          dial_timeout = "0s"

          [[registry.host]]
          url = "http://[fd00::7]:5000"
        """

    @Test("the full example loads field by field") func fullExample() throws {
        let config = try ConfigLoader.load(toml: Self.fullExample, path: "/c.toml")
        #expect(config.hostsDir == "/srv/certs.d")
        #expect(config.containerdConfig == "/etc/containerd/other.toml")

        let p = config.probe
        #expect(p.connectTimeout == .milliseconds(500))
        #expect(p.timeout == .seconds(3))
        #expect(p.initialInterval == .milliseconds(100))
        #expect(p.maxInterval == .seconds(2))
        #expect(p.deadline == .seconds(300))
        #expect(p.watchInterval == .seconds(30))
        #expect(p.failureThreshold == 4)
        #expect(p.successThreshold == 5)

        try #require(config.registries.count == 2)
        let docker = config.registries[0]
        #expect(docker.upstream == "docker.io")
        #expect(docker.server == "https://registry-1.docker.io")
        #expect(docker.readinessProbe)
        try #require(docker.hosts.count == 1)
        let h = docker.hosts[0]
        #expect(h.url == "http://10.4.246.205:5000")
        #expect(h.capabilities == [.pull, .resolve])
        #expect(h.dialTimeout == .seconds(1))
        #expect(h.ca == ["/etc/containerd/certs.d/ca-bundle.pem"])
        #expect(h.client == [["/path/client.crt", "/path/client.key"]])
        #expect(h.skipVerify == false)
        #expect(h.overridePath == false)
        #expect(h.headers.map(\.name) == ["X-Example"])
        #expect(h.headers.map(\.values) == [["value"]])

        let quay = config.registries[1]
        #expect(quay.upstream == "quay.io")
        #expect(quay.server == "https://quay.io")
        #expect(!quay.readinessProbe)
        #expect(quay.hosts.map(\.url) == ["https://quay-cache.internal:8443", "http://[fd00::7]:5000"])
        #expect(quay.hosts[0].capabilities == [.pull])
        #expect(quay.hosts[0].dialTimeout == nil)
        #expect(quay.hosts[1].dialTimeout == .seconds(1))
        #expect(quay.hosts[1].capabilities == [.pull, .resolve])
        #expect(quay.hosts[1].skipVerify == nil)
        #expect(quay.hosts[1].overridePath == nil)
        #expect(quay.hosts[1].ca.isEmpty && quay.hosts[1].client.isEmpty && quay.hosts[1].headers.isEmpty)
    }

    @Test("containerd_unit: containerd.service by default; another service, or \"\" not to read the journal")
    func containerdUnit() throws {
        #expect(try ConfigLoader.load(toml: Snippet.registry(), path: "/c.toml").containerdUnit == "containerd.service")
        for unit in ["", "k3s.service", "containerd@node-1.service"] {
            #expect(try ConfigLoader.load(toml: "containerd_unit = \"\(unit)\"\n" + Snippet.registry(), path: "/c.toml").containerdUnit == unit)
        }
    }

    @Test("defaults of the probe settings") func probeDefaults() {
        let p = ProbeSettings()
        #expect(p.connectTimeout == GoDuration(nanoseconds: 1_000_000_000))
        #expect(p.timeout == GoDuration(nanoseconds: 2_000_000_000))
        #expect(p.initialInterval == GoDuration(nanoseconds: 200_000_000))
        #expect(p.maxInterval == GoDuration(nanoseconds: 1_000_000_000))
        #expect(p.deadline.isZero)
        #expect(p.watchInterval == GoDuration(nanoseconds: 2_000_000_000))
        #expect(p.failureThreshold == 3)
        #expect(p.successThreshold == 2)
    }

    @Test("a minimal file gets every default") func minimalFile() throws {
        let config = try ConfigLoader.load(toml: Snippet.registry(), path: "/c.toml")
        #expect(config.hostsDir == "/etc/containerd/certs.d")
        #expect(config.containerdConfig == "/etc/containerd/config.toml")
        #expect(config.probe == ProbeSettings())
        try #require(config.registries.count == 1)
        let r = config.registries[0]
        #expect(r.server == "https://registry-1.docker.io")
        #expect(r.readinessProbe)
        #expect(r.hosts == [MirrorHost(url: Snippet.goodURL)])
        #expect(r.hosts[0].capabilities == [.pull, .resolve])
        #expect(r.hosts[0].dialTimeout == .seconds(1))
    }

    @Test("an empty file is a valid config with no registries") func emptyFile() throws {
        let config = try ConfigLoader.load(toml: "", path: "/c.toml")
        #expect(config.registries.isEmpty)
        #expect(config.probe == ProbeSettings())
    }

    @Test(
        "default server per upstream",
        arguments: [
            ("docker.io", "https://registry-1.docker.io"),
            ("quay.io", "https://quay.io"),
            ("my-registry.io:5000", "https://my-registry.io:5000"),
            ("[fd00::1]:5000", "https://[fd00::1]:5000"),
            ("_default", ""),
        ])
    func defaultServer(upstream: String, server: String) throws {
        #expect(Registry.defaultServer(for: upstream) == server)
        let config = try ConfigLoader.load(toml: Snippet.registry(upstream: upstream), path: "/c.toml")
        #expect(config.registries.first?.server == server)
        #expect(config.registries.first?.upstream == upstream)
    }

    @Test("dial_timeout = \"0s\" leaves the field out") func zeroDialTimeout() throws {
        let config = try ConfigLoader.load(toml: Snippet.host("dial_timeout = \"0s\""), path: "/c.toml")
        let host = try #require(config.registries.first?.hosts.first)
        #expect(host.dialTimeout == nil)
        let other = try ConfigLoader.load(toml: Snippet.host("dial_timeout = \"250ms\""), path: "/c.toml")
        #expect(other.registries.first?.hosts.first?.dialTimeout == .milliseconds(250))
    }

    @Test("deadline may be 0s, other probe durations may not") func zeroDeadline() throws {
        let config = try ConfigLoader.load(toml: Snippet.probe("deadline = \"0s\""), path: "/c.toml")
        #expect(config.probe.deadline.isZero)
    }

    @Test("ca and header values may be a single string") func singleStrings() throws {
        let config = try ConfigLoader.load(
            toml: Snippet.host("ca = \"/etc/ca.pem\"\n[registry.host.header]\nX-One = \"v\""), path: "/c.toml")
        let host = try #require(config.registries.first?.hosts.first)
        #expect(host.ca == ["/etc/ca.pem"])
        #expect(host.headers.map(\.values) == [["v"]])
    }

    // MARK: positional mirrors

    @Test("mirrors alone make registries with defaults") func mirrorsAlone() throws {
        let config = try ConfigLoader.load(
            toml: nil, path: "unused",
            mirrors: ["docker.io,http://10.4.246.205:5000,https://registry-1.docker.io", "quay.io,http://10.0.0.7:5000"])
        #expect(config.registries.map(\.upstream) == ["docker.io", "quay.io"])
        #expect(config.registries.map(\.server) == ["https://registry-1.docker.io", "https://quay.io"])
        #expect(config.registries.allSatisfy { $0.readinessProbe })
        #expect(config.registries[0].hosts == [MirrorHost(url: "http://10.4.246.205:5000")])
        #expect(config.probe == ProbeSettings())
        #expect(config.hostsDir == AgentConfig.defaultHostsDir)
    }

    @Test("a mirror for a new upstream is added after the file's registries") func mirrorNewUpstream() throws {
        let config = try ConfigLoader.load(
            toml: Snippet.registry(), path: "/c.toml", mirrors: ["ghcr.io,http://10.0.0.9:5000,https://ghcr.example"])
        #expect(config.registries.map(\.upstream) == ["docker.io", "ghcr.io"])
        #expect(config.registries[1].server == "https://ghcr.example")
        #expect(config.registries[1].hosts.map(\.url) == ["http://10.0.0.9:5000"])
    }

    @Test("a mirror for a known upstream appends a host") func mirrorKnownUpstream() throws {
        let config = try ConfigLoader.load(
            toml: Snippet.registry(), path: "/c.toml",
            mirrors: ["docker.io,http://10.0.0.2:5000", "docker.io,http://10.0.0.3:5000,https://registry-1.docker.io"])
        #expect(config.registries.count == 1)
        #expect(config.registries[0].hosts.map(\.url) == [Snippet.goodURL, "http://10.0.0.2:5000", "http://10.0.0.3:5000"])
        #expect(config.registries[0].server == "https://registry-1.docker.io")
    }

    @Test("a mirror whose server conflicts with the file is a usage error") func mirrorServerConflict() throws {
        let error = try #require(
            loadError(toml: Snippet.registry(), mirrors: ["docker.io,http://10.0.0.2:5000,https://mirror.gcr.io"]))
        #expect(error.isUsageError)
        #expect(error.problems.count == 1)
        #expect(error.problems[0].message.contains("https://mirror.gcr.io"))
        #expect(error.problems[0].message.contains("https://registry-1.docker.io"))
    }

    @Test("two mirrors with different servers for one upstream conflict") func mirrorsServerConflict() throws {
        let error = try #require(
            loadError(
                toml: nil,
                mirrors: ["quay.io,http://10.0.0.2:5000,https://a.example", "quay.io,http://10.0.0.3:5000,https://b.example"]))
        #expect(error.isUsageError)
        #expect(error.problems.map(\.field) == ["argument 2 (\"quay.io,http://10.0.0.3:5000,https://b.example\")"])
    }

    @Test(
        "mirror upstreams with ports and IPv6 are accepted",
        arguments: ["[fd00::1]:5000", "my-registry.io:5000", "127.0.0.1:5000", "_default", "[::1]"])
    func mirrorUpstreamForms(upstream: String) throws {
        let config = try ConfigLoader.load(toml: nil, path: "unused", mirrors: ["\(upstream),http://[fd00::2]:5000"])
        #expect(config.registries.map(\.upstream) == [upstream])
        #expect(config.registries[0].hosts.map(\.url) == ["http://[fd00::2]:5000"])
        #expect(config.registries[0].server == Registry.defaultServer(for: upstream))
    }

    @Test("file problems stop before the mirrors are looked at") func fileProblemsFirst() throws {
        let error = try #require(loadError(toml: Snippet.probe("timeout = \"soon\""), mirrors: ["docker.io"]))
        #expect(error.problems.map(\.field) == ["probe.timeout"])
        #expect(!error.isUsageError)
    }
}
