import RegistryMirrorCore
import Testing

// Regression tests for the defects found by trying to break the agent (docs/design.md §3.3). Each
// case here was accepted before, and cost files or made files containerd misreads.

private let good = Snippet.registry()

@Suite("Hostile input: raw config bytes")
struct ConfigBytesTests {
    func problem(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> ConfigProblem? {
        do {
            let config = try ConfigLoader.load(bytes: bytes, path: "/etc/x/config.toml")
            Issue.record("accepted, with \(config.registries.count) registries", sourceLocation: sourceLocation)
            return nil
        } catch {
            #expect(error.problems.count == 1, sourceLocation: sourceLocation)
            return error.problems.first
        }
    }

    @Test("a zeroed file (as read from /dev/zero or a torn write) is refused, not read as an empty config")
    func zeroes() throws {
        let p = try #require(problem([UInt8](repeating: 0, count: 4096)))
        #expect(p.message.contains("NUL"))
        #expect(p.line == 1)
    }

    @Test("a NUL byte in the middle is refused: the parser would have dropped everything after it")
    func nulInTheMiddle() throws {
        let text = Array("hosts_dir = \"/x\"\n".utf8) + [0] + Array(good.utf8)
        let p = try #require(problem(text))
        #expect(p.message.contains("NUL"))
        #expect(p.line == 2)
    }

    @Test("\\u0000 and \\U00000000 escapes are refused: the parser cut the string there (docker\\u0000.io became docker)",
          arguments: ["docker\\u0000.io", "docker\\U00000000.io", "docker.io\\u0000"])
    func nulEscape(_ upstream: String) throws {
        let toml = "[[registry]]\nupstream = \"\(upstream)\"\n[[registry.host]]\nurl = \"http://10.0.0.1:5000\"\n"
        let p = try #require(problem(Array(toml.utf8)))
        #expect(p.message.contains("NUL"))
        #expect(p.line == 2)
    }

    @Test("an escaped backslash before u0000 is text, not a NUL escape")
    func escapedBackslash() throws {
        let toml = "# a comment with \\\\u0000 in it\n" + good
        let config = try ConfigLoader.load(bytes: Array(toml.utf8), path: "c.toml")
        #expect(config.registries.map(\.upstream) == ["docker.io"])
    }

    @Test("a file over 1 MiB is refused as a whole, never cut at the limit and read as a shorter config")
    func oversize() throws {
        let padding = String(repeating: "# padding padding padding padding padding padding padding padding\n", count: 17_000)
        let bytes = Array((good + padding).utf8)
        try #require(bytes.count > ConfigLoader.maximumFileSize)
        let p = try #require(problem(bytes))
        #expect(p.message.contains("larger than 1024 KiB"))
    }

    @Test("invalid UTF-8 is refused with its line")
    func invalidUTF8() throws {
        let bytes = Array("hosts_dir = \"/x\"\n# caf".utf8) + [0xE9, 0x0A] + Array(good.utf8)
        let p = try #require(problem(bytes))
        #expect(p.message.contains("UTF-8"))
        #expect(p.line == 2)
    }
}

/// One URL that must be refused, and a word of the reason.
struct RefusedURL: Sendable, CustomTestStringConvertible {
    var url: String
    var because: String
    var testDescription: String { "\(url.debugDescription): \(because)" }
}

@Suite("Hostile input: URLs, headers, names and durations containerd would misread")
struct ContainerdReadsTests {
    static let refused: [RefusedURL] = [
        RefusedURL(url: "http://10.0.0.1:5000]", because: "port"),
        RefusedURL(url: "http://10.0.0.1:5000/a]b", because: "\"]\""),
        RefusedURL(url: "http://10.0.0.1:5000/a[b", because: "\"[\""),
        RefusedURL(url: "http://10.0.0.1:5000/a\"b", because: "quote"),
        RefusedURL(url: "http://10.0.0.1:5000/a\\b", because: "backslash"),
        RefusedURL(url: "http://[::1%lo]:5000", because: "zone"),
        RefusedURL(url: "http://[fe80::1%25eth0]:5000", because: "zone"),
        RefusedURL(url: "http://10.0.0.1:5000/\u{07}", because: "control character"),
        RefusedURL(url: "http://10.0.0.1:5000/\u{7F}", because: "control character"),
        RefusedURL(url: "http://10.0.0.1:5000/%zz", because: "% escape"),
        RefusedURL(url: "http://10.0.0.1:5000/%4", because: "% escape"),
        RefusedURL(url: "http://10.0.0.1:5000/100%", because: "% escape"),
        RefusedURL(url: "HTTP://10.0.0.1:5000", because: "lowercase"),
        RefusedURL(url: "Https://10.0.0.1:5000", because: "lowercase"),
        RefusedURL(url: "http://10.0.0.1:5000/caf\u{E9}", because: "ASCII"),
        RefusedURL(url: "http://10.0.0.1:5000/{x}", because: "path"),
        RefusedURL(url: "http://user:pw@10.0.0.1:5000", because: "user information"),
        RefusedURL(url: "http://:5000", because: "no host name"),
        // Found by scripts/parse-check.sh against containerd 1.6: it decodes and cleans the path.
        RefusedURL(url: "http://10.0.0.1:5000/a%2Fb", because: "%2F"),
        RefusedURL(url: "http://10.0.0.1:5000/a%3fb", because: "%3f"),
        RefusedURL(url: "http://10.0.0.1:5000/a%23b", because: "%23"),
        RefusedURL(url: "http://10.0.0.1:5000/a%2541", because: "%25"),
        RefusedURL(url: "http://10.0.0.1:5000/x/%2E%2E/m", because: "%2E"),
        RefusedURL(url: "http://10.0.0.1:5000/m//d", because: "empty segment"),
        RefusedURL(url: "http://10.0.0.1:5000/m/./d", because: "segment"),
        RefusedURL(url: "http://127.0.0.01:5000", because: "IPv4"),
        RefusedURL(url: "http://127.0.0.010:5000", because: "IPv4"),
    ]

    @Test("host URLs containerd reads differently are refused, with the field path", arguments: refused)
    func refusedURL(_ c: RefusedURL) throws {
        // Quoted as TOML, so the URL reaches the loader exactly as written.
        let toml = "[[registry]]\nupstream = \"docker.io\"\n[[registry.host]]\nurl = \(HostsFile.quote(c.url))\n"
        let error = try #require(loadError(toml: toml))
        let problem = try #require(error.problems.first { $0.field == "registry[0].host[0].url" }, "\(error)")
        #expect(problem.message.lowercased().contains(c.because.lowercased()), "\(problem)")
        // The same rule for the server and for positional mirrors.
        #expect(loadError(toml: Snippet.registry("server = \(HostsFile.quote(c.url))"))?.problems.first?.field == "registry[0].server")
        #expect(loadError(toml: nil, mirrors: ["docker.io,\(c.url)"])?.isUsageError == true)
    }

    @Test("URLs containerd reads as written are accepted",
          arguments: ["http://10.0.0.1:5000/%41b", "http://10.0.0.1:5000/a:b@c/~x", "https://[fd00::1]:5000/v2", "http://h/a/b/"])
    func acceptedURL(_ url: String) throws {
        let config = try ConfigLoader.load(toml: Snippet.host(url: url), path: "c.toml")
        #expect(config.registries[0].hosts[0].url == url)
    }

    @Test("header values with a control character other than tab are refused; tab is fine",
          arguments: ["a\\u0001b", "a\\u007Fb", "a\\rb", "a\\nb", "a\\u001Bb"])
    func headerValue(_ escaped: String) throws {
        let error = try #require(loadError(toml: Snippet.host("[registry.host.header]\nX-A = [\"\(escaped)\"]")))
        #expect(error.problems.contains { $0.field == "registry[0].host[0].header.X-A" && $0.message.contains("control character") })
        let tab = try ConfigLoader.load(toml: Snippet.host("[registry.host.header]\nX-A = [\"a\\tb\"]"), path: "c.toml")
        #expect(tab.registries[0].hosts[0].headers.first?.values == ["a\tb"])
    }

    @Test("header names must be RFC 9110 tokens", arguments: ["\"X A\"", "\"X:A\"", "\"X\\u00e9\"", "\"(X)\""])
    func headerName(_ name: String) throws {
        let error = try #require(loadError(toml: Snippet.host("[registry.host.header]\n\(name) = [\"v\"]")))
        #expect(error.problems.contains { $0.message.contains("not a valid HTTP header name") })
    }

    @Test("timeouts under 1ms are refused (libcurl would read them as no timeout at all)",
          arguments: ["connect_timeout", "timeout", "initial_interval", "max_interval", "watch_interval"])
    func subMillisecond(_ key: String) throws {
        // max_interval must stay at least initial_interval (200ms by default): lower that one too.
        func lines(_ value: String) -> String {
            "\(key) = \"\(value)\"" + (key == "max_interval" ? "\ninitial_interval = \"1ms\"" : "")
        }
        for text in ["999us", "1ns", "500µs"] {
            let error = try #require(loadError(toml: Snippet.probe(lines(text))))
            #expect(error.problems.contains { $0.field == "probe.\(key)" && $0.message.contains("below 1ms") }, "\(error)")
        }
        #expect(try ConfigLoader.load(toml: Snippet.probe(lines("1ms")), path: "c.toml").registries.count == 1)
    }

    @Test("deadline and dial_timeout: 0s is allowed (none / left out), under 1ms is not")
    func zeroOrAtLeastAMillisecond() throws {
        #expect(loadError(toml: Snippet.probe("deadline = \"999us\""))?.problems.first?.field == "probe.deadline")
        #expect(loadError(toml: Snippet.host("dial_timeout = \"10us\""))?.problems.first?.field == "registry[0].host[0].dial_timeout")
        #expect(try ConfigLoader.load(toml: Snippet.probe("deadline = \"0s\""), path: "c").probe.deadline == .zero)
        #expect(try ConfigLoader.load(toml: Snippet.host("dial_timeout = \"0s\""), path: "c").registries[0].hosts[0].dialTimeout == nil)
    }

    @Test("upstreams: a port with no host, IPv6 zones (which could hold quotes or control characters), names too long for a directory",
          arguments: [":5000", "[fe80::1%eth0]:5000", "[fe80::1%\"x]", "[fe80::1%\u{01}]",
                      String(repeating: "a", count: 63) + "." + String(repeating: "b", count: 63) + "." + String(repeating: "c", count: 63)
                        + "." + String(repeating: "d", count: 61) + ":5000"])
    func upstreams(_ upstream: String) throws {
        let problem = try #require(Names.upstreamProblem(upstream))
        #expect(!problem.isEmpty)
    }

    @Test("the longest upstream that fits a directory name is accepted; one byte more is a config error")
    func upstreamLength() {
        let name = String(repeating: "a", count: 63) + "." + String(repeating: "b", count: 63) + "." + String(repeating: "c", count: 63)
            + "." + String(repeating: "d", count: 58)
        #expect(Names.upstreamProblem(name + ":5000") == nil)  // 250 + 5 = 255 bytes
        #expect(Names.upstreamProblem(name + "d:5000")?.contains("255") == true)
    }
}

@Suite("check: a managed file containerd would not read as meant is CRITICAL")
struct ManagedFileAuditTests {
    @Test("a file this agent renders from a valid config has no read problems")
    func rendered() throws {
        let registry = Registry(upstream: "docker.io", hosts: [
            MirrorHost(url: "http://10.0.0.1:5000/a%41", headers: [("X-A", ["a\tb"])]), MirrorHost(url: "https://[fd00::1]:5000"),
        ])
        #expect(HostsFile.readProblems(try #require(HostsFile.render(registry, hosts: registry.hosts))) == [])
    }

    @Test("host keys, servers and headers written by hand or by an older version are found",
          arguments: [
            ("[host.\"http://[::1%lo]:5000\"]\n", "zone"),
            ("[host.\"HTTP://10.0.0.1:5000\"]\n", "lowercase"),
            ("[host.\"http://10.0.0.1:5000/%zz\"]\n", "% escape"),
            ("[host.\"http://10.0.0.1:5000/\\u0007\"]\n", "control character"),
            ("server = \"http://a]b\"\n[host.\"http://10.0.0.1:5000\"]\n", "server"),
            ("[host.\"http://10.0.0.1:5000\"]\n  [host.\"http://10.0.0.1:5000\".header]\n    X = [\"a\\u0001\"]\n", "header"),
            ("[host.\"http://10.0.0.1:5000\"\n", "not valid TOML"),
          ])
    func found(body: String, word: String) {
        let problems = HostsFile.readProblems(HostsFile.marker + "\n" + body)
        #expect(problems.count == 1 && problems[0].contains(word), "\(problems)")
    }
}

@Suite("TOML that would abort the parser is refused first (found by fuzz/)")
struct TOMLGuardTests {
    @Test("shapes on which toml++ asserts and aborts are refused with a line and column",
          arguments: [
            ("[{registry]\nupstream = \"eocker.io\n", 1), ("[=a]\n", 1), ("[#\n", 1), ("[[[a]]]\n", 1), ("x = 1\n[\n", 2),
            ("\u{FEFF}[^\n", 1), ("[[registry.host]]\ncapabilities = [\"pull\", }]\n", 2), ("x = [}]\n", 1),
            ("x = { a = [1, }] }\n", 1), ("x = {=1}\n", 1), ("a.{b} = 1\n", 1),
          ])
    func refused(_ text: String, line: Int) throws {
        let problem = try #require(TOMLGuard.problem(text))
        #expect(problem.line == line, "\(problem)")
        // And through the loader: an invalid config with the line, no crash.
        let error = try #require(loadError(toml: text))
        #expect(error.problems.first?.line == line)
    }

    @Test("valid TOML passes: every containerd config fixture, the example config, rendered files, odd but valid forms",
          arguments: [
            "containerd-1.4-v1-config-path.toml", "containerd-1.6-config-path-list.toml", "containerd-1.6-config-path.toml",
            "containerd-1.6-default.toml", "containerd-2.0-v3-config-path.toml", "containerd-broken-config-path-array.toml",
            "containerd-broken-config-path-in-mirrors.toml", "containerd-broken-v3-config-path-in-grpc-cri.toml",
          ])
    func fixtures(_ name: String) {
        #expect(TOMLGuard.problem(CoreFixture.text(name)) == nil)
    }

    @Test("odd but valid TOML passes the guard", arguments: [
        "a = \"\"\"x\n]\n[{\"\"\"\n", "a = '''\n[=\n'''\n", "a = \"\"\"q\"\"\"\"\n", "a = [\n  1, # c\n  [2, 3],\n  { b = 1 },\n]\n",
        "[ a . \"b\" . 'c' ]\nx = 1\n", "[[a]]\n[[a]]\n", "t = 1979-05-27 07:32:00Z\nu = 2\n", "x = {}\ny = []\n",
        "\u{FEFF}a = 1\n", "a = -inf\nb = nan\nc = +1_000\nd = 0x1F\ne = true\n", "a = \"\\\"[\"\n[b]\n",
    ])
    func oddButValid(_ text: String) throws {
        #expect(TOMLGuard.problem(text) == nil)
        _ = try TOMLGuard.parse(text)
    }

    @Test("rendered hosts.toml files pass the guard") func rendered() throws {
        let registry = Registry(upstream: "quay.io", hosts: [
            MirrorHost(url: "http://10.0.0.1:5000", headers: [("X-A", ["a\tb", "]["])]), MirrorHost(url: "https://[fd00::2]:5000/c"),
        ])
        for hosts in [[registry.hosts[0]], registry.hosts] {
            #expect(TOMLGuard.problem(try #require(HostsFile.render(registry, hosts: hosts))) == nil)
        }
    }
}
