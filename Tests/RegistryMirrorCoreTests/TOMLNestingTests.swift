import RegistryMirrorCore
import TOMLKit
import Testing

// Regression tests for TOML nested deep enough to overflow a stack, for a NUL the TOML parser would stop
// at, and for the key toml++ quoted garbled. Each case crashed the process (139), was misread, or gave the
// garbled message before TOMLGuard walked without recursing (docs/design.md §3.2).

/// A text nested too deep, and where it is refused.
struct DeepText: Sendable, CustomTestStringConvertible {
    var name: String
    var text: String
    var line: Int
    var column: Int
    var depth: Int
    var testDescription: String { "\(name) (\(text.utf8.count) bytes)" }
}

private func repeated(_ piece: String, _ count: Int) -> String { String(repeating: piece, count: count) }
private func dotted(_ count: Int) -> String { Array(repeating: "a", count: count).joined(separator: ".") }

/// The problem `body` throws, or nil.
private func parseProblem(_ body: () throws(TOMLGuard.Problem) -> Void) -> TOMLGuard.Problem? {
    do {
        try body()
        return nil
    } catch {
        return error
    }
}

@Suite("Hostile input: nesting deep enough to overflow a stack")
struct DeepNestingTests {
    static let deep: [DeepText] = [
        DeepText(name: "70,000 nested arrays", text: "x = " + repeated("[", 70_000) + repeated("]", 70_000) + "\n", line: 1, column: 1029, depth: 1025),
        DeepText(name: "1,000,000 unclosed arrays", text: "x = " + repeated("[", 1_000_000), line: 1, column: 1029, depth: 1025),
        // The key of the 1024th table is the first thing 1025 deep.
        DeepText(name: "70,000 nested inline tables", text: "x = " + repeated("{a = ", 70_000) + "1" + repeated("}", 70_000) + "\n", line: 1, column: 5121, depth: 1025),
        DeepText(name: "arrays and inline tables mixed", text: "\nx = " + repeated("[{a = ", 40_000) + "1" + repeated("}]", 40_000) + "\n", line: 2, column: 3073, depth: 1025),
        DeepText(name: "a dotted key of 50,000 parts", text: "hosts_dir = \"/x\"\n" + dotted(50_000) + " = 1\n", line: 2, column: 1, depth: 50_000),
        DeepText(name: "a table header of 50,000 parts", text: "# c\n\n  [" + dotted(50_000) + "]\nb = 1\n", line: 3, column: 3, depth: 50_000),
        DeepText(name: "a header and a key, 1025 together", text: "[" + dotted(1000) + "]\n" + dotted(25) + " = 1\n", line: 2, column: 1, depth: 1025),
    ]

    @Test("refused with line, column and depth through the loader, never a crash", arguments: deep)
    func refused(_ c: DeepText) throws {
        let problem = try #require(TOMLGuard.problem(c.text))
        #expect(problem.line == c.line && problem.column == c.column, "\(problem)")
        #expect(problem.message == "nested \(c.depth) levels deep (tables, arrays and inline tables); at most 1024")
        let error = try #require(loadError(toml: c.text))
        #expect(error.problems.count == 1, "\(error)")
        #expect(error.problems.first?.line == c.line)
        #expect(error.problems.first?.message.contains("nested \(c.depth) levels deep") == true, "\(error)")
        #expect(error.problems.first?.fix == "fix the syntax at column \(c.column)")
    }

    @Test("1024 levels pass the walk and toml++ refuses them itself (its limit is 256), with a line; 1025 do not pass")
    func atTheLimit() throws {
        let atLimit = "x = " + repeated("[", 1024) + repeated("]", 1024) + "\n"
        #expect(TOMLGuard.problem(atLimit) == nil)
        let error = try #require(loadError(toml: atLimit))
        #expect(error.problems.first?.message.contains("TOML_MAX_NESTED_VALUES") == true, "\(error)")
        #expect(error.problems.first?.line == 1)
        let overLimit = "x = " + repeated("[", 1025) + repeated("]", 1025) + "\n"
        #expect(TOMLGuard.problem(overLimit)?.column == 1029)
    }

    @Test("a managed hosts.toml nested 70,000 deep is a file containerd would not read, like any that is not TOML")
    func managedFile() {
        let text = HostsFile.marker + "\n[host.\"http://10.0.0.1:5000\"]\n  capabilities = " + repeated("[", 70_000) + "\n"
        #expect(HostsFile.readProblems(text) == ["is not valid TOML, so containerd ignores all of it"])
    }

    @Test("a NUL character is refused where it is: the TOML parser read a hosts.toml only up to it")
    func nul() throws {
        let text = HostsFile.marker + "\n[host.\"http://10.0.0.1:5000\"]\n  capabilities = [\"pull\"]\u{0}\n[host.\"HTTP://x\"]\n"
        let problem = try #require(TOMLGuard.problem(text))
        #expect(problem.line == 3 && problem.column == 26, "\(problem)")
        #expect(problem.message.contains("NUL"))
        #expect(HostsFile.readProblems(text) == ["is not valid TOML, so containerd ignores all of it"])
    }
}

@Suite("containerd's config is read as containerd reads it")
struct ContainerdConfigTextTests {
    static let hostsDir = "/etc/containerd/certs.d"
    static let configPath = "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n"

    static func check(_ toml: String) -> ContainerdConfigCheck {
        ContainerdConfigCheck.evaluate(toml: toml, path: "/etc/containerd/config.toml", hostsDir: hostsDir, release: ContainerdVersion(1, 7, 24))
    }

    @Test("nesting deeper than toml++ takes, away from the keys read, leaves config_path read as written",
          arguments: [
            ("300 nested arrays", "x = " + repeated("[", 300) + "1" + repeated("]", 300) + "\n"),
            ("70,000 nested arrays, over lines, with comments",
             "x = [ # c\n" + repeated("[", 70_000) + "\n# c\n" + repeated("]", 70_000) + ",\n  2 ]\n"),
            ("300 nested inline tables", "x = " + repeated("{a = ", 300) + "1" + repeated("}", 300) + "\n"),
            ("a dotted key of 50,000 parts", dotted(50_000) + " = 1\n"),
            ("a table of 50,000 parts, up to the next header", "[" + dotted(50_000) + "]\nb = [1]\nc = 2\n"),
            ("an inline table with a key of 50,000 parts",
             "[plugins.\"io.containerd.grpc.v1.cri\"]\n  other = { b = {}, " + dotted(50_000) + " = [[1]] }\n"),
          ])
    func deep(_ name: String, _ deep: String) {
        let toml = "version = 2\n" + deep + Self.configPath
        #expect(Self.check(toml) .configPath == Self.hostsDir, "\(name)")
    }

    @Test("a key beside a too deep one in an inline table keeps its meaning")
    func besideDeepKey() throws {
        let toml = "version = 2\nplugins = { \"io.containerd.grpc.v1.cri\" = { registry = { " + dotted(70) + " = 1, config_path = \""
            + Self.hostsDir + "\", " + dotted(70) + " = 2 } } }\n"
        #expect(Self.check(toml) .configPath == Self.hostsDir)
        let table = try ContainerdConfigText.parse(toml)
        let registry = try #require(table["plugins"]?.table?["io.containerd.grpc.v1.cri"]?.table?["registry"]?.table)
        #expect(Array(registry.keys) == ["config_path"])
    }

    @Test("a NUL byte in a comment is a comment, as containerd 1.x reads it: the config_path after it counts")
    func nulInComment() {
        #expect(Self.check("version = 2\n# copied from a \u{0} binary\n" + Self.configPath) .configPath == Self.hostsDir)
        #expect(Self.check("version = 2\n" + Self.configPath + "  # \u{0}\n") .configPath == Self.hostsDir)
    }

    @Test("a NUL character outside a comment is not TOML, with its line: the TOML parser would stop there")
    func nulOutsideComment() {
        let result = Self.check("version = 2\n" + Self.configPath + "\u{0}junk = \n")
        #expect(result == .problem("/etc/containerd/config.toml:4: not valid TOML (contains a NUL character outside a comment): containerd will not start with it"))
    }

    @Test("toml++ reports an error after a blanked part at its own line and column")
    func placesKept() throws {
        // A bad escape: only toml++ sees it, after comments and a deep array that it is given as blanks.
        let blanked = "# caf\u{E9} \u{0}\nx = [ # \u{E9}\u{E9}\n" + repeated("[", 300) + repeated("]", 300) + " ] # c\ny = \"\u{E9}\\q\"\n"
        let plain = "#\nx = [\n[] ]\ny = \"\u{E9}\\q\"\n"
        let expected = try #require(parseProblem { () throws(TOMLGuard.Problem) in _ = try TOMLGuard.parse(plain) })
        let problem = try #require(parseProblem { () throws(TOMLGuard.Problem) in _ = try ContainerdConfigText.parse(blanked) })
        #expect(problem.line == 4 && problem == expected, "\(problem) vs \(expected)")
    }

    @Test("a malformed part too deep for toml++ is reported by the walk, with its place")
    func malformedDeep() {
        let result = Self.check("version = 2\nx = " + repeated("[", 300) + "1 2" + repeated("]", 300) + "\n" + Self.configPath)
        #expect(result == .problem("/etc/containerd/config.toml:2: not valid TOML (expected , or ] after a value in an array): containerd will not start with it"))
        let problem = parseProblem { () throws(TOMLGuard.Problem) in
            _ = try ContainerdConfigText.parse("version = 2\nx = " + repeated("[", 300) + "1 2" + repeated("]", 300) + "\n")
        }
        #expect(problem?.description == "line 2, column 307: expected , or ] after a value in an array")
    }

    @Test("every containerd config fixture, with a NUL in a comment and 300 nested arrays added, reads as the fixture",
          arguments: [
            "containerd-1.4-v1-config-path.toml", "containerd-1.6-config-path-list.toml", "containerd-1.6-config-path.toml",
            "containerd-1.6-default.toml", "containerd-2.0-v3-config-path.toml",
          ])
    func fixtures(_ name: String) throws {
        let text = CoreFixture.text(name)
        let asWritten = try TOMLGuard.parse(text)
        let read = try ContainerdConfigText.parse("# \u{0}\nccr_deep = " + repeated("[", 300) + repeated("]", 300) + "\n" + text)
        #expect(read["version"]?.int == asWritten["version"]?.int)
        for plugin in ["cri", "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images"] {
            let configPath = { (root: TOMLTable) in root["plugins"]?.table?[plugin]?.table?["registry"]?.table?["config_path"]?.string }
            #expect(configPath(read) == configPath(asWritten), "\(plugin)")
        }
        #expect(Set(read.keys) == Set(asWritten.keys).union(["ccr_deep"]))
    }
}

@Suite("toml++'s errors quote a key as written")
struct KeyQuotingTests {
    static let cri = "plugins.\"io.containerd.grpc.v1.cri\""

    @Test("the key a redefinition names reads as written (it was 'plugins.\"ioio.containerd…'), in the config and in containerd's",
          arguments: [
            ("[\(cri).registry]\nconfig_path = \"/x\"\n[\(cri).registry]\n", 3, "table '\(cri).registry'"),
            ("\(cri).registry.config_path = \"/x\"\n\(cri).registry.config_path = \"/y\"\n", 2, "string '\(cri).registry.config_path'"),
            ("[\(cri)]\nregistry = 1\n[\(cri).registry.mirrors]\n", 3, "integer '\(cri).registry.mirrors' as table"),
            ("[p.'io.c'.r]\n[p.'io.c'.r]\n", 2, "table 'p.'io.c'.r'"),
            ("[p.\"a\\\"b\".r]\n[ p.\"a\\\"b\".r ]\n", 2, "table 'p.\"a\\\"b\".r'"),
            ("x = { \"a\" = 1, \"b\" = { \"c\" = 1, \"c\" = 2 } }\n", 1, "integer '\"c\"'"),
          ])
    func redefinition(_ toml: String, _ line: Int, _ quoted: String) throws {
        let error = try #require(loadError(toml: toml))
        #expect(error.problems.first?.line == line)
        #expect(error.problems.first?.message.contains(quoted) == true, "\(error)")
        let check = ContainerdConfigCheck.evaluate(toml: toml, path: "/c.toml", hostsDir: "/d")
        #expect(check.state == .critical, "\(check)")
        let message = check.message
        #expect(message.hasPrefix("/c.toml:\(line): not valid TOML") && message.contains(quoted), "\(message)")
    }
}
