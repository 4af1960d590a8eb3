import Testing

@testable import RegistryMirrorCore

@Suite("containerd versions: what the files follow")
struct ContainerdVersionTests {
    @Test(
        "versions as containerd and its packages print them",
        arguments: [
            ("1.6.20~ds1", ContainerdVersion(1, 6, 20)), ("v2.1.9", ContainerdVersion(2, 1, 9)), ("1.7.24", ContainerdVersion(1, 7, 24)),
            ("2.1.9+unknown", ContainerdVersion(2, 1, 9)), ("2.0.0-rc.3", ContainerdVersion(2, 0, 0)), ("  1.7.0", ContainerdVersion(1, 7, 0)),
        ])
    func parses(_ text: String, _ expected: ContainerdVersion) {
        #expect(ContainerdVersion(parsing: text) == expected)
    }

    @Test("not versions", arguments: ["", "auto", "1.7", "v", "1..2", "a.b.c", "1.2.x", "9999999.0.0"])
    func refuses(_ text: String) {
        #expect(ContainerdVersion(parsing: text) == nil)
    }

    func target(_ major: Int, _ minor: Int, _ patch: Int) -> ContainerdTarget {
        ContainerdTarget(version: ContainerdVersion(major, minor, patch), source: "test")
    }

    @Test("dial_timeout by version: left out before 2.0.7; 2.0.7-2.0.11 left out for http:// off port 80; written from 2.1")
    func dialTimeoutTable() {
        let http5000 = MirrorHost(url: "http://10.0.0.1:5000")
        let http80 = MirrorHost(url: "http://10.0.0.1")
        let https = MirrorHost(url: "https://10.0.0.1:5443")
        let none = MirrorHost(url: "http://10.0.0.1:5000", dialTimeout: nil)
        let cases: [(ContainerdTarget, [Bool])] = [
            (target(1, 6, 20), [false, false, false]), (target(1, 7, 24), [false, false, false]),
            (target(2, 0, 6), [false, false, false]), (target(2, 0, 7), [false, true, true]), (target(2, 0, 11), [false, true, true]),
            (target(2, 1, 0), [true, true, true]), (target(2, 1, 9), [true, true, true]),
            (ContainerdTarget(version: nil, source: "unknown"), [true, true, true]),
        ]
        for (t, expected) in cases {
            #expect([http5000, http80, https].map(t.writesDialTimeout) == expected, "\(t.description)")
            #expect(!t.writesDialTimeout(none))
        }
    }

    @Test("what a dead or silent mirror costs, by version")
    func costs() {
        let host = MirrorHost(url: "http://10.0.0.1:5000")
        #expect(target(1, 7, 24).deadMirrorCost(host).contains("ignores dial_timeout"))
        #expect(target(1, 7, 24).deadMirrorCost(host).contains("30 s"))
        #expect(target(2, 0, 8).deadMirrorCost(host).contains("try HTTPS first"))
        #expect(target(2, 1, 9).deadMirrorCost(host).contains("dial_timeout (1s)"))
        #expect(target(2, 1, 9).silentMirrorCost.contains("stalls pulls"))
        #expect(target(2, 3, 0).silentMirrorCost.contains("costs 30 s per request"))
        #expect(!target(2, 3, 0).silentMirrorCost.contains("stalls"))
    }

    @Test("check: version OK with its costs; unknown and restart needed are WARNINGs; 2.3.2+ says the upstream is retried")
    func checkFindings() {
        let host = MirrorHost(url: "http://10.0.0.1:5000")
        let ok = ContainerdVersionCheck.findings(
            target: target(1, 6, 20), containerdConfig: "/etc/containerd/config.toml", started: 200, configChanged: 100, sample: host)
        #expect(ok.map(\.state) == [.ok])
        #expect(ok[0].message.hasPrefix("containerd 1.6.20 (test); containerd 1.6.20 ignores dial_timeout"))

        let unknown = ContainerdVersionCheck.findings(
            target: ContainerdTarget(version: nil, source: "no socket"), containerdConfig: "/c", started: nil, configChanged: nil, sample: nil)
        #expect(unknown.map(\.state) == [.warning])
        #expect(unknown[0].message.contains("set containerd_version"))

        let restart = ContainerdVersionCheck.findings(
            target: target(1, 7, 24), containerdConfig: "/etc/containerd/config.toml", started: 100, configChanged: 200, sample: nil)
        #expect(restart.map(\.state) == [.ok, .warning])
        #expect(restart[1].message.contains("may not be in effect until containerd restarts"))
        // Written a second before containerd's measured start: within the start time's precision.
        let justBefore = ContainerdVersionCheck.findings(
            target: target(1, 7, 24), containerdConfig: "/c", started: 100, configChanged: 101.5, sample: nil)
        #expect(justBefore.map(\.state) == [.ok])

        let lts = ContainerdVersionCheck.findings(target: target(2, 3, 4), containerdConfig: "/c", started: nil, configChanged: nil, sample: host)
        #expect(lts.map(\.state) == [.ok])
        #expect(lts[0].message.contains("costs 30 s per request") && lts[0].message.contains("tried again on a transient error"))
        let early = ContainerdVersionCheck.findings(target: target(2, 3, 1), containerdConfig: "/c", started: nil, configChanged: nil, sample: host)
        #expect(!early[0].message.contains("tried again"))
    }

    @Test("config: containerd_version auto or a version; containerd_address an absolute path")
    func config() throws {
        let base = Snippet.registry()
        #expect(try ConfigLoader.load(toml: base, path: "/c.toml").containerdVersion == nil)
        #expect(try ConfigLoader.load(toml: "containerd_version = \"auto\"\n" + base, path: "/c.toml").containerdVersion == nil)
        #expect(try ConfigLoader.load(toml: "containerd_version = \"1.7.24\"\n" + base, path: "/c.toml").containerdVersion == ContainerdVersion(1, 7, 24))
        #expect(try ConfigLoader.load(toml: base, path: "/c.toml").containerdAddress == nil, "learnt from containerd's config")
        #expect(try ConfigLoader.load(toml: "containerd_address = \"/x/c.sock\"\n" + base, path: "/c.toml").containerdAddress == "/x/c.sock")
        for bad in ["containerd_version = \"latest\"", "containerd_version = \"1.7\"", "containerd_address = \"run/c.sock\"", "containerd_version = 2"] {
            #expect(throws: (any Error).self, "\(bad)") { try ConfigLoader.load(toml: bad + "\n" + base, path: "/c.toml") }
        }
    }

    @Test("a version change re-renders: the same hosts give another file")
    func rerender() {
        let registry = Registry(upstream: "docker.io", hosts: [MirrorHost(url: "http://10.0.0.1:5000")])
        let old = HostsFile.render(registry, hosts: registry.hosts, for: target(1, 7, 24))
        let new = HostsFile.render(registry, hosts: registry.hosts, for: target(2, 1, 9))
        #expect(old != new)
        #expect(new?.contains("dial_timeout = \"1s\"") == true)
        #expect(old?.contains("dial_timeout") == false)
    }
}
