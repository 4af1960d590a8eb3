import RegistryMirrorCore
import TOMLKit
import Testing

struct RenderCase: Sendable, CustomTestStringConvertible {
    var name: String
    var registry: Registry
    var expected: String
    /// The containerd the file is for (docs/design.md §5.1).
    var target: ContainerdTarget = .newest
    var testDescription: String { name }
}

private func containerd(_ major: Int, _ minor: Int, _ patch: Int) -> ContainerdTarget {
    ContainerdTarget(version: ContainerdVersion(major, minor, patch), source: "test")
}

private let marker = "# managed by configure-containerd-registries; manual changes are overwritten"

private let fullHost = MirrorHost(
    url: "https://mirror.example:8443/base", capabilities: [.pull], dialTimeout: .seconds(90),
    ca: ["/etc/ca/one.pem", "/etc/ca/two.pem"], client: [["/etc/tls/c.crt", "/etc/tls/c.key"], ["/etc/tls/both.pem"]],
    skipVerify: true, overridePath: false, headers: [(name: "X-Tenant", values: ["a", "b"]), (name: "Authorization", values: ["Basic eA=="])])

let renderCases: [RenderCase] = [
    RenderCase(
        name: "docker.io with one host",
        registry: Registry(upstream: "docker.io", hosts: [MirrorHost(url: "http://10.4.246.205:5000")]),
        expected: """
            \(marker)
            server = "https://registry-1.docker.io"

            [host."http://10.4.246.205:5000"]
              capabilities = ["pull", "resolve"]
              dial_timeout = "1s"

            """),
    RenderCase(
        name: "_default has no server line",
        registry: Registry(upstream: "_default", hosts: [MirrorHost(url: "http://10.0.0.1:5000")]),
        expected: """
            \(marker)

            [host."http://10.0.0.1:5000"]
              capabilities = ["pull", "resolve"]
              dial_timeout = "1s"

            """),
    RenderCase(
        name: "host:port upstream",
        registry: Registry(upstream: "my-registry.io:5000", hosts: [MirrorHost(url: "https://cache.local:5443")]),
        expected: """
            \(marker)
            server = "https://my-registry.io:5000"

            [host."https://cache.local:5443"]
              capabilities = ["pull", "resolve"]
              dial_timeout = "1s"

            """),
    // containerd 1.6/1.7 cannot read `]` in a table header: a file with an IPv6 host lists every host's
    // fields as dotted keys under one [host], one per line, so the hosts keep their order
    // (scripts/parse-check.sh shows containerd reads it so; inline tables came out in random order).
    RenderCase(
        name: "IPv6 host URL, containerd 1.6",
        registry: Registry(upstream: "quay.io", hosts: [MirrorHost(url: "http://[fd00::1]:5000", capabilities: [.pull])]),
        expected: """
            \(marker)
            server = "https://quay.io"

            [host]
              "http://[fd00::1]:5000".capabilities = ["pull"]

            """,
        target: containerd(1, 6, 20)),
    // containerd 2 reads `]` in a header, and orders hosts by their headers only.
    RenderCase(
        name: "IPv6 host URL, containerd 2.1",
        registry: Registry(upstream: "quay.io", hosts: [MirrorHost(url: "http://[fd00::1]:5000", capabilities: [.pull])]),
        expected: """
            \(marker)
            server = "https://quay.io"

            [host."http://[fd00::1]:5000"]
              capabilities = ["pull"]
              dial_timeout = "1s"

            """,
        target: containerd(2, 1, 9)),
    // 1.7 ignores dial_timeout: it is left out. 2.0.8 tries HTTPS first on an http:// host with
    // dial_timeout on a port other than 80: left out there, written on port 80 and for https.
    RenderCase(
        name: "dial_timeout on containerd 1.7",
        registry: Registry(upstream: "ghcr.io", hosts: [MirrorHost(url: "http://10.0.0.1:5000")]),
        expected: """
            \(marker)
            server = "https://ghcr.io"

            [host."http://10.0.0.1:5000"]
              capabilities = ["pull", "resolve"]

            """,
        target: containerd(1, 7, 24)),
    RenderCase(
        name: "dial_timeout on containerd 2.0.8",
        registry: Registry(
            upstream: "ghcr.io",
            hosts: [MirrorHost(url: "http://10.0.0.1:5000"), MirrorHost(url: "http://10.0.0.2"), MirrorHost(url: "https://10.0.0.3:8443")]),
        expected: """
            \(marker)
            server = "https://ghcr.io"

            [host."http://10.0.0.1:5000"]
              capabilities = ["pull", "resolve"]

            [host."http://10.0.0.2"]
              capabilities = ["pull", "resolve"]
              dial_timeout = "1s"

            [host."https://10.0.0.3:8443"]
              capabilities = ["pull", "resolve"]
              dial_timeout = "1s"

            """,
        target: containerd(2, 0, 8)),
    RenderCase(
        name: "IPv6 beside IPv4, with every field",
        registry: Registry(
            upstream: "quay.io",
            hosts: [
                MirrorHost(url: "http://10.0.0.1:5000"),
                MirrorHost(
                    url: "https://[fd00::2]:5000/cache", ca: ["/etc/ca.pem"], client: [["/c.crt", "/c.key"]], skipVerify: false,
                    overridePath: true, headers: [(name: "X-A", values: ["a\tb"]), (name: "X-B", values: ["1", "2"])]),
            ]),
        expected: #"""
            # managed by configure-containerd-registries; manual changes are overwritten
            server = "https://quay.io"

            [host]
              "http://10.0.0.1:5000".capabilities = ["pull", "resolve"]
              "https://[fd00::2]:5000/cache".capabilities = ["pull", "resolve"]
              "https://[fd00::2]:5000/cache".ca = ["/etc/ca.pem"]
              "https://[fd00::2]:5000/cache".client = [["/c.crt", "/c.key"]]
              "https://[fd00::2]:5000/cache".skip_verify = false
              "https://[fd00::2]:5000/cache".override_path = true
              "https://[fd00::2]:5000/cache".header = { "X-A" = ["a\tb"], "X-B" = ["1", "2"] }

            """#,
        target: containerd(1, 6, 20)),
    RenderCase(
        name: "several hosts in config order",
        registry: Registry(
            upstream: "ghcr.io", server: "https://ghcr.example",
            hosts: [
                MirrorHost(url: "http://10.0.0.9:5000"), MirrorHost(url: "http://10.0.0.2:5000", capabilities: [.pull, .resolve, .push]),
                MirrorHost(url: "http://10.0.0.5:5000", dialTimeout: .milliseconds(200)),
            ]),
        expected: """
            \(marker)
            server = "https://ghcr.example"

            [host."http://10.0.0.9:5000"]
              capabilities = ["pull", "resolve"]
              dial_timeout = "1s"

            [host."http://10.0.0.2:5000"]
              capabilities = ["pull", "resolve", "push"]
              dial_timeout = "1s"

            [host."http://10.0.0.5:5000"]
              capabilities = ["pull", "resolve"]
              dial_timeout = "200ms"

            """),
    RenderCase(
        name: "every host field",
        registry: Registry(upstream: "docker.io", hosts: [fullHost]),
        expected: """
            \(marker)
            server = "https://registry-1.docker.io"

            [host."https://mirror.example:8443/base"]
              capabilities = ["pull"]
              dial_timeout = "1m30s"
              ca = ["/etc/ca/one.pem", "/etc/ca/two.pem"]
              client = [["/etc/tls/c.crt", "/etc/tls/c.key"], ["/etc/tls/both.pem"]]
              skip_verify = true
              override_path = false
              [host."https://mirror.example:8443/base".header]
                "X-Tenant" = ["a", "b"]
                "Authorization" = ["Basic eA=="]

            """),
    RenderCase(
        name: "no dial_timeout",
        registry: Registry(
            upstream: "docker.io",
            hosts: [MirrorHost(url: "http://10.0.0.1:5000", dialTimeout: nil, overridePath: true), MirrorHost(url: "http://10.0.0.2:5000")]),
        expected: """
            \(marker)
            server = "https://registry-1.docker.io"

            [host."http://10.0.0.1:5000"]
              capabilities = ["pull", "resolve"]
              override_path = true

            [host."http://10.0.0.2:5000"]
              capabilities = ["pull", "resolve"]
              dial_timeout = "1s"

            """),
    RenderCase(
        name: "strings that need escapes",
        registry: Registry(
            upstream: "docker.io", server: "https://registry-1.docker.io",
            hosts: [
                MirrorHost(
                    url: "http://10.0.0.1:5000", ca: ["/etc/odd\\dir/ca \"x\".pem"],
                    headers: [(name: "X-Odd", values: ["say \"hi\"", "back\\slash", "line\nbreak", "tab\there", "ctl\u{01}end", "del\u{7F}"])])
            ]),
        expected: #"""
            # managed by configure-containerd-registries; manual changes are overwritten
            server = "https://registry-1.docker.io"

            [host."http://10.0.0.1:5000"]
              capabilities = ["pull", "resolve"]
              dial_timeout = "1s"
              ca = ["/etc/odd\\dir/ca \"x\".pem"]
              [host."http://10.0.0.1:5000".header]
                "X-Odd" = ["say \"hi\"", "back\\slash", "line\nbreak", "tab\there", "ctl\u0001end", "del\u007F"]

            """#),
]

@Suite("hosts.toml rendering")
struct HostsFileTests {
    @Test("golden output", arguments: renderCases)
    func golden(_ c: RenderCase) throws {
        let text = try #require(HostsFile.render(c.registry, hosts: c.registry.hosts, for: c.target))
        #expect(text == c.expected)
    }

    @Test("output parses back to the same values", arguments: renderCases)
    func parsesBack(_ c: RenderCase) throws {
        let text = try #require(HostsFile.render(c.registry, hosts: c.registry.hosts, for: c.target))
        try checkParsesBack(text, registry: c.registry, hosts: c.registry.hosts, target: c.target)
    }

    @Test("the first line is the marker and marks the file as ours", arguments: renderCases)
    func marked(_ c: RenderCase) throws {
        let text = try #require(HostsFile.render(c.registry, hosts: c.registry.hosts, for: c.target))
        #expect(text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) == HostsFile.marker)
        #expect(HostsFile.isManaged(text))
        #expect(text.hasSuffix("\n"))
    }

    @Test("only the up hosts given are written") func subsetOfHosts() throws {
        let registry = Registry(
            upstream: "docker.io", hosts: [MirrorHost(url: "http://10.0.0.1:5000"), MirrorHost(url: "http://10.0.0.2:5000")])
        let text = try #require(HostsFile.render(registry, hosts: [registry.hosts[1]]))
        #expect(!text.contains("10.0.0.1"))
        try checkParsesBack(text, registry: registry, hosts: [registry.hosts[1]])
    }

    @Test("no hosts, no file") func noHosts() {
        #expect(HostsFile.render(Registry(upstream: "docker.io", hosts: [MirrorHost(url: "http://10.0.0.1:5000")]), hosts: []) == nil)
        #expect(HostsFile.render(Registry(upstream: "_default", hosts: []), hosts: []) == nil)
    }

    @Test("hand-written files are not ours") func foreignFiles() {
        #expect(HostsFile.isManaged(HostsFile.marker))
        #expect(HostsFile.isManaged(HostsFile.marker + "\nserver = \"https://x\"\n"))
        #expect(!HostsFile.isManaged("server = \"https://registry-1.docker.io\"\n\n[host.\"http://10.0.0.1:5000\"]\n"))
        #expect(!HostsFile.isManaged(""))
        #expect(!HostsFile.isManaged("# my own notes\n" + HostsFile.marker + "\n"))
        #expect(!HostsFile.isManaged(" " + HostsFile.marker + "\n"))
        #expect(!HostsFile.isManaged(HostsFile.marker + " plus more\n"))
    }

    @Test(
        "quote escapes",
        arguments: [
            ("plain", #""plain""#), ("a\"b", #""a\"b""#), ("a\\b", #""a\\b""#), ("a\nb", #""a\nb""#), ("a\tb", #""a\tb""#),
            ("a\rb", #""a\rb""#), ("\u{01}", #""\u0001""#), ("\u{1F}", #""\u001F""#), ("\u{7F}", #""\u007F""#),
            ("\u{08}\u{0C}", #""\b\f""#), ("µ é", "\"µ é\""),
        ])
    func quote(raw: String, quoted: String) throws {
        #expect(HostsFile.quote(raw) == quoted)
        let table = try TOMLTable(string: "v = \(HostsFile.quote(raw))")
        #expect(table["v"]?.string == raw)
    }
}

/// Parses `text` with TOMLKit and compares every field with what was rendered.
func checkParsesBack(
    _ text: String, registry: Registry, hosts: [MirrorHost], target: ContainerdTarget = .newest,
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let root = try TOMLTable(string: text)
    if registry.server.isEmpty {
        #expect(root["server"] == nil, sourceLocation: sourceLocation)
        #expect(Set(root.keys) == ["host"], sourceLocation: sourceLocation)
    } else {
        #expect(root["server"]?.string == registry.server, sourceLocation: sourceLocation)
        #expect(Set(root.keys) == ["server", "host"], sourceLocation: sourceLocation)
    }
    let hostTables = try #require(root["host"]?.table, sourceLocation: sourceLocation)
    #expect(Set(hostTables.keys) == Set(hosts.map(\.url)), sourceLocation: sourceLocation)

    // Order in the file follows the host list: by table header, or in the dotted form by each host's
    // first key (where containerd 1.6/1.7 place its table), every key of a host on consecutive lines.
    let positions = hosts.compactMap {
        text.range(of: "[host.\(HostsFile.quote($0.url))]")?.lowerBound ?? text.range(of: "\n  \(HostsFile.quote($0.url)).")?.lowerBound
    }
    if !text.contains("[host.") {
        let owners = text.split(separator: "\n").compactMap { line in hosts.first { line.hasPrefix("  \(HostsFile.quote($0.url)).") }?.url }
        var runs: [String] = []
        for owner in owners where runs.last != owner { runs.append(owner) }
        #expect(runs == hosts.map(\.url), "each host's keys together, hosts in order", sourceLocation: sourceLocation)
    }
    #expect(positions.count == hosts.count, sourceLocation: sourceLocation)
    #expect(positions == positions.sorted(), sourceLocation: sourceLocation)

    for host in hosts {
        let t = try #require(hostTables[host.url]?.table, "no table for \(host.url)", sourceLocation: sourceLocation)
        #expect(strings(t["capabilities"]) == host.capabilities.map(\.rawValue), sourceLocation: sourceLocation)
        // dial_timeout only where this containerd uses it (ContainerdTarget.writesDialTimeout).
        #expect(t["dial_timeout"]?.string == (target.writesDialTimeout(host) ? host.dialTimeout?.description : nil), sourceLocation: sourceLocation)
        if let dial = t["dial_timeout"]?.string {
            #expect(try GoDuration(parsing: dial) == host.dialTimeout, sourceLocation: sourceLocation)
        }
        #expect((strings(t["ca"]) ?? []) == host.ca, sourceLocation: sourceLocation)
        let client = t["client"]?.array.map { $0.map { strings($0) ?? [] } } ?? []
        #expect(client == host.client, sourceLocation: sourceLocation)
        #expect(t["skip_verify"]?.bool == host.skipVerify, sourceLocation: sourceLocation)
        #expect(t["override_path"]?.bool == host.overridePath, sourceLocation: sourceLocation)
        let headerTable = t["header"]?.table
        #expect(Set(headerTable?.keys ?? []) == Set(host.headers.map(\.name)), sourceLocation: sourceLocation)
        for (name, values) in host.headers {
            #expect(strings(headerTable?[name]) == values, "header \(name)", sourceLocation: sourceLocation)
        }
        let known: Set = ["capabilities", "dial_timeout", "ca", "client", "skip_verify", "override_path", "header"]
        #expect(Set(t.keys).isSubset(of: known), sourceLocation: sourceLocation)
    }
}

private func strings(_ value: TOMLValueConvertible?) -> [String]? {
    guard let array = value?.array else { return nil }
    let out = array.compactMap(\.string)
    return out.count == array.count ? out : nil
}
