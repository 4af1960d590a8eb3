import RegistryMirrorCore
import Testing

@Suite("Does containerd read hosts_dir")
struct ContainerdConfigCheckTests {
    static let hostsDir = "/etc/containerd/certs.d"
    static let path = "/etc/containerd/config.toml"
    static let wantedLine = "config_path = \"/etc/containerd/certs.d\""
    static let v2Section = "[plugins.\"io.containerd.grpc.v1.cri\".registry]"
    static let v3Section = "[plugins.\"io.containerd.cri.v1.images\".registry]"

    static func check(_ toml: String?, hostsDir: String = hostsDir) -> ContainerdConfigCheck {
        ContainerdConfigCheck.evaluate(toml: toml, path: path, hostsDir: hostsDir)
    }

    static func problem(_ result: ContainerdConfigCheck, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        guard case .problem(let message) = result else {
            Issue.record("expected a problem, got \(result)", sourceLocation: sourceLocation)
            return ""
        }
        return message
    }

    // MARK: fixtures that work

    @Test(
        "fixtures whose config_path includes hosts_dir",
        arguments: [
            ("containerd-1.6-config-path.toml", "/etc/containerd/certs.d"),
            ("containerd-1.6-config-path-list.toml", "/etc/x:/etc/containerd/certs.d/"),
            ("containerd-2.0-v3-config-path.toml", "/etc/containerd/certs.d"),
            ("containerd-1.4-v1-config-path.toml", "/etc/containerd/certs.d"),
        ])
    func reads(fixture: String, configPath: String) {
        let toml = CoreFixture.text(fixture)
        #expect(Self.check(toml) == .reads(configPath: configPath))
        // hosts_dir given with a trailing slash names the same directory.
        #expect(Self.check(toml, hostsDir: Self.hostsDir + "/") == .reads(configPath: configPath))
    }

    // MARK: fixtures that do not

    @Test(
        "fixtures without a usable config_path: a problem naming the file, the section and the line to write",
        arguments: [
            ("containerd-1.6-default.toml", v2Section),
            ("containerd-broken-config-path-array.toml", v2Section),
            ("containerd-broken-config-path-in-mirrors.toml", v2Section),
            ("containerd-broken-v3-config-path-in-grpc-cri.toml", v3Section),
        ])
    func problems(fixture: String, section: String) {
        let message = Self.problem(Self.check(CoreFixture.text(fixture)))
        #expect(message.contains(Self.path))
        #expect(message.contains(section))
        #expect(message.contains(Self.wantedLine))
    }

    @Test("the 1.6 default config (config_path = \"\") says hosts_dir is not included")
    func defaultConfig() {
        let message = Self.problem(Self.check(CoreFixture.text("containerd-1.6-default.toml")))
        #expect(message.contains("does not include \(Self.hostsDir)"))
        #expect(message.hasSuffix("write \(Self.wantedLine)"))
    }

    @Test("config_path that is an array is called out as not a string")
    func notAString() {
        let message = Self.problem(Self.check(CoreFixture.text("containerd-broken-config-path-array.toml")))
        #expect(message.contains("not a string"))
    }

    @Test("a version 3 file with config_path only in the version 2 table sets none for containerd 2.x")
    func wrongPluginTable() {
        let message = Self.problem(Self.check(CoreFixture.text("containerd-broken-v3-config-path-in-grpc-cri.toml")))
        #expect(message.contains("sets no config_path"))
        #expect(message.contains("add \(Self.wantedLine) under \(Self.v3Section)"))
    }

    @Test("invalid TOML: a problem naming the file and the line of the error")
    func invalidTOML() {
        let message = Self.problem(Self.check(CoreFixture.text("containerd-broken-invalid.toml")))
        #expect(message.hasPrefix("\(Self.path):145:"), "the unterminated string is on line 145: \(message)")
        #expect(message.contains("not valid TOML"))
    }

    @Test("missing file: a problem saying it does not exist and what to write")
    func missingFile() {
        let message = Self.problem(Self.check(nil))
        #expect(message.contains("\(Self.path) does not exist"))
        #expect(message.contains(Self.hostsDir))
        #expect(message.contains(Self.wantedLine))
    }

    // MARK: inline variants

    @Test(
        "config_path lists",
        arguments: [
            ("/etc/containerd/certs.d:/etc/docker/certs.d", true),
            ("/etc/docker/certs.d:/etc/containerd/certs.d", true),
            ("/etc/docker/certs.d::/etc/containerd/certs.d//", true),
            ("/etc/containerd/certs.d/", true),
            ("/etc/containerd/certs", false),
            ("/etc/containerd/certs.d.old", false),
            ("/etc/containerd", false),
            ("/etc/docker/certs.d", false),
        ])
    func lists(configPath: String, included: Bool) {
        let toml = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"\(configPath)\"\n"
        let result = Self.check(toml)
        if included {
            #expect(result == .reads(configPath: configPath))
        } else {
            let message = Self.problem(result)
            // Keep what is there and add hosts_dir to it.
            #expect(message.contains("write config_path = \"\(configPath):\(Self.hostsDir)\""))
        }
    }

    @Test("version 3 with another directory: the fix keeps it and names the version 3 section")
    func version3OtherDirectory() {
        let toml = "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = '/etc/docker/certs.d'\n"
        let message = Self.problem(Self.check(toml))
        #expect(message.contains(Self.v3Section))
        #expect(message.contains("config_path = \"/etc/docker/certs.d:/etc/containerd/certs.d\""))
    }

    @Test("a version 2 file with config_path in the version 3 table is not read by containerd 1.x")
    func version2WithVersion3Table() {
        let toml = "version = 2\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n"
        let message = Self.problem(Self.check(toml))
        #expect(message.contains("add \(Self.wantedLine) under \(Self.v2Section)"))
    }

    @Test("dotted keys at the top level count like a table")
    func dottedKeys() {
        let toml = "version = 2\nplugins.\"io.containerd.grpc.v1.cri\".registry.config_path = \"/etc/containerd/certs.d\"\n"
        #expect(Self.check(toml) == .reads(configPath: "/etc/containerd/certs.d"))
    }

    @Test("no version key means version 1 (plugins.cri), so a version 2 table is not read")
    func noVersionKey() {
        let v1 = "[plugins.cri.registry]\n  config_path = \"/etc/containerd/certs.d\"\n"
        #expect(Self.check(v1) == .reads(configPath: "/etc/containerd/certs.d"))
        let v2TableWithoutVersion = "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n"
        #expect(Self.problem(Self.check(v2TableWithoutVersion)).contains("[plugins.\"cri\".registry]"))
    }

    @Test("an empty file sets nothing")
    func emptyFile() {
        #expect(Self.problem(Self.check("")).contains("sets no config_path"))
    }

    @Test("an unknown version is a problem")
    func unknownVersion() {
        #expect(Self.problem(Self.check("version = 4\n")).contains("unknown config version 4"))
    }
}
