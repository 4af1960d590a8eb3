import RegistryMirrorCore
import Testing

/// One invalid input and where the loader must point.
struct BadInput: Sendable, CustomTestStringConvertible {
    var name: String
    var toml: String?
    var mirrors: [String] = []
    /// The expected `ConfigProblem.field`.
    var field: String
    /// At least one of these (case-insensitive) must appear in the problem's message or fix.
    var words: [String]

    var testDescription: String { name }
}

private let h0 = "registry[0].host[0]"

let badInputs: [BadInput] = [
    // Unknown keys at every level.
    BadInput(name: "unknown root key, near hosts_dir", toml: "hostsdir = \"/x\"\n" + Snippet.registry(), field: "hostsdir", words: ["hosts_dir"]),
    BadInput(name: "unknown root key, nothing near", toml: "colour = \"blue\"\n" + Snippet.registry(), field: "colour", words: ["unknown"]),
    BadInput(name: "unknown probe key", toml: Snippet.probe("timout = \"2s\""), field: "probe.timout", words: ["timeout"]),
    BadInput(name: "unknown registry key", toml: Snippet.registry("readines_probe = true"), field: "registry[0].readines_probe", words: ["readiness_probe"]),
    BadInput(name: "unknown host key", toml: Snippet.host("dial_timout = \"1s\""), field: "\(h0).dial_timout", words: ["dial_timeout"]),

    // Wrong types.
    BadInput(name: "hosts_dir is an int", toml: "hosts_dir = 5\n" + Snippet.registry(), field: "hosts_dir", words: ["string"]),
    BadInput(name: "hosts_dir is relative", toml: "hosts_dir = \"certs.d\"\n" + Snippet.registry(), field: "hosts_dir", words: ["absolute"]),
    BadInput(name: "containerd_unit is no service", toml: "containerd_unit = \"containerd\"\n" + Snippet.registry(), field: "containerd_unit", words: ["containerd.service"]),
    BadInput(name: "containerd_unit with a space", toml: "containerd_unit = \"my containerd.service\"\n" + Snippet.registry(), field: "containerd_unit", words: ["service name"]),
    BadInput(name: "containerd_unit is a bool", toml: "containerd_unit = false\n" + Snippet.registry(), field: "containerd_unit", words: ["string"]),
    BadInput(name: "probe is an int", toml: "probe = 5\n" + Snippet.registry(), field: "probe", words: ["table"]),
    BadInput(name: "registry is a string", toml: "registry = \"docker.io\"\n", field: "registry", words: ["array"]),
    BadInput(name: "registry element is not a table", toml: "registry = [1]\n", field: "registry[0]", words: ["table"]),
    BadInput(name: "probe.timeout is an int", toml: Snippet.probe("timeout = 2"), field: "probe.timeout", words: ["string"]),
    BadInput(name: "failure_threshold is a string", toml: Snippet.probe("failure_threshold = \"3\""), field: "probe.failure_threshold", words: ["integer"]),
    BadInput(name: "success_threshold is a bool", toml: Snippet.probe("success_threshold = true"), field: "probe.success_threshold", words: ["integer"]),
    BadInput(name: "readiness_probe is a string", toml: Snippet.registry("readiness_probe = \"yes\""), field: "registry[0].readiness_probe", words: ["true"]),
    BadInput(name: "upstream is an int", toml: Snippet.registry(upstream: nil, "upstream = 5"), field: "registry[0].upstream", words: ["string"]),
    BadInput(name: "host is a string", toml: "[[registry]]\nupstream = \"docker.io\"\nhost = \"http://10.0.0.1:5000\"\n", field: "registry[0].host", words: ["registry.host"]),
    BadInput(name: "url is an array", toml: Snippet.host("url = [\"http://10.0.0.1:5000\"]", url: nil), field: "\(h0).url", words: ["string"]),
    BadInput(name: "skip_verify is an int", toml: Snippet.host("skip_verify = 1"), field: "\(h0).skip_verify", words: ["true"]),
    BadInput(name: "override_path is a string", toml: Snippet.host("override_path = \"no\""), field: "\(h0).override_path", words: ["false"]),
    BadInput(name: "ca is an int", toml: Snippet.host("ca = 5"), field: "\(h0).ca", words: ["array"]),
    BadInput(name: "capabilities holds an int", toml: Snippet.host("capabilities = [1]"), field: "\(h0).capabilities[0]", words: ["string"]),
    BadInput(name: "header is a string", toml: Snippet.host("header = \"x\""), field: "\(h0).header", words: ["table"]),
    BadInput(name: "client is an int", toml: Snippet.host("client = 7"), field: "\(h0).client", words: ["pair", "certificate"]),
    BadInput(name: "dial_timeout is an int", toml: Snippet.host("dial_timeout = 1"), field: "\(h0).dial_timeout", words: ["string"]),

    // Upstream syntax.
    BadInput(name: "upstream with scheme", toml: Snippet.registry(upstream: "https://docker.io"), field: "registry[0].upstream", words: ["scheme"]),
    BadInput(name: "upstream with path", toml: Snippet.registry(upstream: "docker.io/library"), field: "registry[0].upstream", words: ["path"]),
    BadInput(name: "upstream with whitespace", toml: Snippet.registry(upstream: "docker .io"), field: "registry[0].upstream", words: ["whitespace"]),
    BadInput(name: "upstream with ..", toml: Snippet.registry(upstream: "../etc"), field: "registry[0].upstream", words: [".."]),
    BadInput(name: "upstream is /", toml: Snippet.registry(upstream: "/"), field: "registry[0].upstream", words: ["\"/\""]),
    BadInput(name: "upstream with unclosed IPv6", toml: Snippet.registry(upstream: "[::1"), field: "registry[0].upstream", words: ["ipv6"]),
    BadInput(name: "upstream with bad IPv6", toml: Snippet.registry(upstream: "[fd00::zz]:5000"), field: "registry[0].upstream", words: ["ipv6"]),
    BadInput(name: "unbracketed IPv6 upstream", toml: Snippet.registry(upstream: "fd00::1"), field: "registry[0].upstream", words: ["bracket"]),
    BadInput(name: "upstream port 99999", toml: Snippet.registry(upstream: "docker.io:99999"), field: "registry[0].upstream", words: ["port"]),
    BadInput(name: "upstream port 0", toml: Snippet.registry(upstream: "docker.io:0"), field: "registry[0].upstream", words: ["port"]),
    BadInput(name: "upstream with underscore", toml: Snippet.registry(upstream: "my_registry.io"), field: "registry[0].upstream", words: ["dns"]),
    BadInput(name: "empty upstream", toml: Snippet.registry(upstream: ""), field: "registry[0].upstream", words: ["empty"]),
    BadInput(name: "missing upstream", toml: Snippet.registry(upstream: nil), field: "registry[0].upstream", words: ["missing"]),
    BadInput(
        name: "duplicate upstream", toml: Snippet.registry() + "\n" + Snippet.registry(), field: "registry[1].upstream",
        words: ["duplicate"]),
    BadInput(name: "server not absolute", toml: Snippet.registry("server = \"registry-1.docker.io\""), field: "registry[0].server", words: ["absolute"]),

    // Host URLs.
    BadInput(name: "host URL without scheme", toml: Snippet.host(url: "10.0.0.1:5000"), field: "\(h0).url", words: ["absolute"]),
    BadInput(name: "host URL with ftp", toml: Snippet.host(url: "ftp://10.0.0.1"), field: "\(h0).url", words: ["ftp"]),
    BadInput(name: "host URL with userinfo", toml: Snippet.host(url: "http://user:secret@10.0.0.1:5000"), field: "\(h0).url", words: ["user"]),
    BadInput(name: "host URL with bad port", toml: Snippet.host(url: "http://10.0.0.1:70000"), field: "\(h0).url", words: ["port"]),
    BadInput(name: "host URL missing", toml: Snippet.host("capabilities = [\"pull\"]", url: nil), field: "\(h0).url", words: ["missing"]),
    BadInput(
        name: "bad URL in second registry",
        toml: Snippet.registry() + "\n[[registry]]\nupstream = \"quay.io\"\n[[registry.host]]\nurl = \"quay-cache:5000\"\n",
        field: "registry[1].host[0].url", words: ["absolute"]),
    BadInput(
        name: "same URL twice", toml: Snippet.host("\n[[registry.host]]\nurl = \"\(Snippet.goodURL)\""),
        field: "registry[0].host[1].url", words: ["twice"]),

    // Capabilities.
    BadInput(name: "unknown capability", toml: Snippet.host("capabilities = [\"pull\", \"fly\"]"), field: "\(h0).capabilities[1]", words: ["capability"]),
    BadInput(name: "empty capabilities", toml: Snippet.host("capabilities = []"), field: "\(h0).capabilities", words: ["empty"]),

    // Durations.
    BadInput(name: "dial_timeout soon", toml: Snippet.host("dial_timeout = \"soon\""), field: "\(h0).dial_timeout", words: ["duration"]),
    BadInput(name: "timeout without unit", toml: Snippet.probe("timeout = \"5\""), field: "probe.timeout", words: ["unit"]),
    BadInput(name: "negative deadline", toml: Snippet.probe("deadline = \"-1s\""), field: "probe.deadline", words: ["negative"]),
    BadInput(name: "unknown unit", toml: Snippet.probe("initial_interval = \"1x\""), field: "probe.initial_interval", words: ["unit"]),
    BadInput(name: "zero timeout", toml: Snippet.probe("timeout = \"0s\""), field: "probe.timeout", words: ["greater"]),
    BadInput(
        name: "initial above max", toml: Snippet.probe("initial_interval = \"2s\"\nmax_interval = \"1s\""),
        field: "probe.initial_interval", words: ["max_interval"]),

    // Thresholds.
    BadInput(name: "failure_threshold 0", toml: Snippet.probe("failure_threshold = 0"), field: "probe.failure_threshold", words: ["1"]),
    BadInput(name: "success_threshold -2", toml: Snippet.probe("success_threshold = -2"), field: "probe.success_threshold", words: ["below"]),

    // Hosts and TLS material.
    BadInput(name: "missing host table", toml: "[[registry]]\nupstream = \"docker.io\"\n", field: "registry[0].host", words: ["registry.host"]),
    BadInput(name: "relative ca", toml: Snippet.host("ca = [\"certs/ca.pem\"]"), field: "\(h0).ca", words: ["absolute"]),
    BadInput(name: "client with 3 elements", toml: Snippet.host("client = [[\"/a.crt\", \"/a.key\", \"/b\"]]"), field: "\(h0).client[0]", words: ["certificate"]),
    BadInput(name: "relative client key", toml: Snippet.host("client = [[\"/a.crt\", \"a.key\"]]"), field: "\(h0).client[0]", words: ["absolute"]),
    BadInput(name: "bad header name", toml: Snippet.host("[registry.host.header]\n\"X Bad\" = [\"v\"]"), field: "\(h0).header.X Bad", words: ["header"]),
    BadInput(name: "header value with newline", toml: Snippet.host("[registry.host.header]\nX-A = [\"a\\nb\"]"), field: "\(h0).header.X-A", words: ["line break"]),

    // Positional mirrors.
    BadInput(name: "mirror without endpoint", toml: nil, mirrors: ["docker.io"], field: "argument 1 (\"docker.io\")", words: ["UPSTREAM,ENDPOINT"]),
    BadInput(name: "mirror with ftp endpoint", toml: nil, mirrors: ["docker.io,ftp://x"], field: "argument 1 (\"docker.io,ftp://x\")", words: ["ftp"]),
    BadInput(
        name: "mirror upstream with scheme", toml: nil, mirrors: ["https://docker.io,http://1.2.3.4:5000"],
        field: "argument 1 (\"https://docker.io,http://1.2.3.4:5000\")", words: ["scheme"]),
    BadInput(
        name: "mirror with four parts", toml: nil, mirrors: ["quay.io,http://1.2.3.4:5000", "a,b,c,d"],
        field: "argument 2 (\"a,b,c,d\")", words: ["UPSTREAM,ENDPOINT"]),
    BadInput(
        name: "mirror server not absolute", toml: nil, mirrors: ["docker.io,http://1.2.3.4:5000,registry-1.docker.io"],
        field: "argument 1 (\"docker.io,http://1.2.3.4:5000,registry-1.docker.io\")", words: ["server"]),
    BadInput(
        name: "mirror endpoint twice", toml: nil, mirrors: ["docker.io,http://1.2.3.4:5000", "docker.io,http://1.2.3.4:5000"],
        field: "argument 2 (\"docker.io,http://1.2.3.4:5000\")", words: ["already"]),
    BadInput(
        name: "mirror conflicting server", toml: Snippet.registry(), mirrors: ["docker.io,http://1.2.3.4:5000,https://mirror.gcr.io"],
        field: "argument 1 (\"docker.io,http://1.2.3.4:5000,https://mirror.gcr.io\")", words: ["server"]),
]

@Suite("Config validation")
struct ConfigValidationTests {
    @Test("the table is big enough") func tableSize() {
        #expect(badInputs.count >= 35)
    }

    @Test("rejects with the right field", arguments: badInputs)
    func rejects(_ input: BadInput) throws {
        let path = "/etc/test/config.toml"
        let error = try #require(loadError(toml: input.toml, path: path, mirrors: input.mirrors))
        let matching = error.problems.filter { $0.field == input.field }
        try #require(!matching.isEmpty, "no problem at \(input.field); got \(error.problems.map(\.field))")
        let problem = matching[0]
        #expect(!problem.message.isEmpty)
        #expect(!problem.fix.isEmpty)
        let text = (problem.message + " " + problem.fix).lowercased()
        #expect(
            input.words.contains { text.contains($0.lowercased()) },
            "\"\(problem.message); \(problem.fix)\" mentions none of \(input.words)")
        let isCommandLine = input.field.hasPrefix("argument ")
        #expect(problem.source == (isCommandLine ? ConfigLoader.commandLine : path))
        #expect(error.isUsageError == isCommandLine)
        #expect(problem.description.contains(input.field))
    }

    @Test("a key typo suggests the right key") func didYouMean() throws {
        let error = try #require(loadError(toml: Snippet.host("dial_timout = \"1s\"")))
        let problem = try #require(error.problems.first { $0.field == "registry[0].host[0].dial_timout" })
        #expect(problem.message.contains("dial_timout"))
        #expect(problem.fix == "did you mean \"dial_timeout\"?")
    }

    @Test("a key with no near match lists the known keys") func knownKeys() throws {
        let error = try #require(loadError(toml: Snippet.probe("colour = \"blue\"")))
        let problem = try #require(error.problems.first { $0.field == "probe.colour" })
        #expect(!problem.fix.contains("did you mean"))
        #expect(problem.fix.contains("failure_threshold"))
    }

    @Test("invalid TOML syntax reports the line") func syntaxError() throws {
        let toml = "hosts_dir = \"/etc/containerd/certs.d\"\n[probe]\ntimeout = \"2s\n"
        let error = try #require(loadError(toml: toml, path: "/cfg.toml"))
        #expect(error.problems.count == 1)
        let problem = try #require(error.problems.first)
        #expect(problem.line == 3)
        #expect(problem.source == "/cfg.toml")
        #expect(problem.message.contains("TOML"))
        #expect(problem.description.hasPrefix("/cfg.toml:3"))
        #expect(!error.isUsageError)
    }

    @Test("a broken table header is a syntax error too") func syntaxErrorHeader() throws {
        let error = try #require(loadError(toml: "\n\n[[registry]\nupstream = \"docker.io\"\n"))
        let problem = try #require(error.problems.first)
        #expect(problem.line == 3)
        #expect(problem.field.isEmpty)
    }

    @Test("every problem of a config is reported, not just the first") func allProblems() throws {
        let toml = """
            hostsdir = "/etc/containerd/certs.d"

            [probe]
            timeout = "soon"
            failure_threshold = 0

            [[registry]]
            upstream = "https://docker.io"
              [[registry.host]]
              url = "10.0.0.1:5000"

            [[registry]]
            upstream = "quay.io"
              [[registry.host]]
              url = "http://10.0.0.2:5000"
              capabilities = ["pull", "fly"]
            """
        let error = try #require(loadError(toml: toml))
        let fields = Set(error.problems.map(\.field))
        let expected: Set = [
            "hostsdir", "probe.timeout", "probe.failure_threshold", "registry[0].upstream", "registry[0].host[0].url",
            "registry[1].host[0].capabilities[1]",
        ]
        #expect(expected.isSubset(of: fields), "missing \(expected.subtracting(fields))")
        #expect(error.description.split(separator: "\n").count == error.problems.count)
    }

    @Test("every bad positional mirror is reported") func allMirrorProblems() throws {
        let error = try #require(loadError(toml: nil, mirrors: ["docker.io", "quay.io,http://10.0.0.1:5000", "ghcr.io,ftp://x"]))
        #expect(error.problems.map(\.field) == ["argument 1 (\"docker.io\")", "argument 3 (\"ghcr.io,ftp://x\")"])
        #expect(error.isUsageError)
    }

    @Test("isUsageError is false for a bad file, true for bad arguments") func usageError() throws {
        let fileError = try #require(loadError(toml: Snippet.probe("timeout = \"soon\"")))
        #expect(!fileError.isUsageError)
        let argumentError = try #require(loadError(toml: nil, mirrors: ["docker.io"]))
        #expect(argumentError.isUsageError)
        #expect(argumentError.problems.allSatisfy { $0.source == ConfigLoader.commandLine })
    }

    @Test("a bad client entry is not blamed for the previous pair's paths", arguments: ["[1, 2]", "5", "[\"/b\", \"/c\", \"/d\"]"])
    func clientPairFieldPaths(secondEntry: String) throws {
        // client[0] has a relative key; client[1] is malformed. The relative path belongs to client[0] and must be
        // reported there, once, and not again under client[1].
        let error = try #require(loadError(toml: Snippet.host("client = [[\"/a.crt\", \"a.key\"], \(secondEntry)]")))
        let h = "registry[0].host[0].client"
        #expect(error.problems.filter { $0.field == "\(h)[0]" }.count == 1)
        let blamed = error.problems.filter { $0.field.hasPrefix("\(h)[1]") && $0.message.contains("a.key") }
        #expect(blamed.isEmpty, "client[1] blamed for client[0]'s path: \(blamed.map(\.description))")
        #expect(error.problems.contains { $0.field.hasPrefix("\(h)[1]") })
    }
}
