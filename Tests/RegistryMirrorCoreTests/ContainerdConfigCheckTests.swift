import RegistryMirrorCore
import Testing

/// Does a CRI pull read our hosts.toml, for each release's rules. Every expectation below restates
/// what a real daemon of that release did here (a CRI pull through a docker-registry cache, counted in
/// the cache's log): 1.6.20, 1.7.24 and 2.1.9 from Debian, 2.2.7 and 2.3.4 built from their sources.
@Suite("Does containerd read hosts_dir")
struct ContainerdConfigCheckTests {
    static let hostsDir = "/etc/containerd/certs.d"
    static let path = "/etc/containerd/config.toml"
    static let v2Table = "[plugins.\"io.containerd.grpc.v1.cri\".registry]"
    static let v3Table = "[plugins.\"io.containerd.cri.v1.images\".registry]"
    static let fix = "config_path = \"/etc/containerd/certs.d\""

    static let r16 = ContainerdVersion(1, 6, 20)
    static let r17 = ContainerdVersion(1, 7, 24)
    static let r21 = ContainerdVersion(2, 1, 9)
    static let r22 = ContainerdVersion(2, 2, 7)
    static let r23 = ContainerdVersion(2, 3, 4)

    static func check(
        _ toml: String?, _ release: ContainerdVersion, hostsDir: String = hostsDir, directories: any DirectoryLookup = LexicalDirectories()
    ) -> ContainerdConfigCheck {
        ContainerdConfigCheck.evaluate(toml: toml, path: path, hostsDir: hostsDir, release: release, directories: directories)
    }

    static func v2(_ configPath: String?) -> String {
        "version = 2\n" + (configPath.map { "\(v2Table)\n  config_path = \"\($0)\"\n" } ?? "")
    }

    static func v3(_ configPath: String?, version: Int = 3, local: Bool = false) -> String {
        var text = "version = \(version)\n[plugins.'io.containerd.cri.v1.images']\n  use_local_image_pull = \(local)\n"
        if let configPath { text += "[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = '\(configPath)'\n" }
        return text
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var release: ContainerdVersion
        var toml: String
        var reads: Bool
        var words: String
        var testDescription: String { "\(release) \(name)" }
    }

    static let cases: [Case] = [
        // 1.x: the local pull only; config_path is a list; "" reads nothing.
        Case(name: "default config_path = \"\"", release: r16, toml: v2(""), reads: false, words: "sets config_path = \"\" under \(v2Table)"),
        Case(name: "no registry table", release: r17, toml: v2(nil), reads: false, words: "sets no config_path under \(v2Table)"),
        Case(name: "one directory", release: r17, toml: v2(hostsDir), reads: true, words: "read /etc/containerd/certs.d"),
        Case(name: "ours first of two", release: r16, toml: v2(hostsDir + ":/etc/docker/certs.d"), reads: true, words: ""),
        Case(name: "ours second of two", release: r17, toml: v2("/nonexistent:" + hostsDir), reads: true, words: ""),
        Case(
            name: "another directory: keep it and add ours", release: r17, toml: v2("/etc/docker/certs.d"), reads: false,
            words: "write config_path = \"/etc/docker/certs.d:/etc/containerd/certs.d\""),
        Case(name: "version 3 on 1.7 does not start", release: r17, toml: v3(hostsDir), reads: false, words: "does not start with it"),
        // 2.1, 2.2, 2.3: the transfer service takes config_path as one directory.
        Case(name: "default config_path = ''", release: r21, toml: v3(""), reads: false, words: "sets config_path = \"\""),
        Case(name: "one directory", release: r21, toml: v3(hostsDir), reads: true, words: "through the transfer service"),
        Case(
            name: "two directories", release: r21, toml: v3(hostsDir + ":/etc/docker/certs.d"), reads: false,
            words: "take config_path as one directory, not as a list"),
        Case(name: "local pull, two directories", release: r21, toml: v3("/nonexistent:" + hostsDir, local: true), reads: true, words: "local pull"),
        Case(name: "local pull, '' (no default before 2.2.2)", release: r21, toml: v3("", local: true), reads: false, words: "read no hosts.toml"),
        Case(name: "version 4 does not start", release: r21, toml: v3(hostsDir, version: 4), reads: false, words: "does not start with it"),
        Case(
            name: "default '' is the list /etc/containerd/certs.d:/etc/docker/certs.d, taken as one directory", release: r22, toml: v3(""),
            reads: false, words: "containerd's default, \"/etc/containerd/certs.d:/etc/docker/certs.d\""),
        Case(name: "local pull, '' reads the default list", release: r22, toml: v3("", local: true), reads: true, words: "local pull"),
        Case(name: "ours first of two", release: r22, toml: v3(hostsDir + ":/etc/docker/certs.d"), reads: false, words: "not as a list"),
        Case(name: "version 4 does not start", release: r22, toml: v3(hostsDir, version: 4), reads: false, words: "reads up to version 3"),
        Case(name: "version 4, one directory", release: r23, toml: v3(hostsDir, version: 4), reads: true, words: ""),
        Case(name: "version 3 on 2.3 is migrated", release: r23, toml: v3(hostsDir), reads: true, words: ""),
        Case(name: "version 4, two directories", release: r23, toml: v3("/nonexistent:" + hostsDir, version: 4), reads: false, words: "not as a list"),
        Case(
            name: "version 4, local pull, two directories", release: r23, toml: v3("/nonexistent:" + hostsDir, version: 4, local: true),
            reads: true, words: "use_local_image_pull = true"),
        Case(
            name: "registry.mirrors set: a local pull, which splits the list", release: r23,
            toml: v3("/x:" + hostsDir, version: 4) + "[plugins.'io.containerd.cri.v1.images'.registry.mirrors.'docker.io']\n  endpoint = ['https://m']\n",
            reads: true, words: "registry.mirrors"),
    ]

    @Test("per release: what CRI pulls read", arguments: cases)
    func perRelease(_ c: Case) {
        let result = Self.check(c.toml, c.release)
        #expect(result.state == (c.reads ? .ok : .critical), "\(result.message)")
        if !c.words.isEmpty { #expect(result.message.contains(c.words), "\(result.message)") }
        if !c.reads { #expect(result.message.contains(Self.path)) }
    }

    @Test("2.3.4's own default config (version 4): CRITICAL with the line to write under the images table")
    func default23() {
        let result = Self.check(CoreFixture.text("containerd-2.3-v4-default-excerpt.toml"), Self.r23)
        #expect(result.state == .critical)
        #expect(result.message.contains("write \(Self.fix) under \(Self.v3Table)"), "\(result.message)")
        #expect(result.warnings.isEmpty, "version 4 is known: no 'unknown config version'")
        let set = CoreFixture.text("containerd-2.3-v4-default-excerpt.toml").replacingOccurrences(
            of: "    [plugins.'io.containerd.cri.v1.images'.registry]\n      config_path = ''",
            with: "    [plugins.'io.containerd.cri.v1.images'.registry]\n      config_path = '/etc/containerd/certs.d'")
        #expect(Self.check(set, Self.r23).state == .ok)
        // The transfer plugin's own config_path changes nothing (measured on 2.1.9, 2.2.7, 2.3.4).
        let transferOnly = CoreFixture.text("containerd-2.3-v4-default-excerpt.toml").replacingOccurrences(
            of: "  [plugins.'io.containerd.transfer.v1.local']\n    config_path = ''",
            with: "  [plugins.'io.containerd.transfer.v1.local']\n    config_path = '/etc/containerd/certs.d'")
        #expect(Self.check(transferOnly, Self.r23).state == .critical)
    }

    @Test("2.2.7's own default config (version 3): CRITICAL, the default list named")
    func default22() {
        let result = Self.check(CoreFixture.text("containerd-2.2-v3-default-excerpt.toml"), Self.r22)
        #expect(result.state == .critical)
        #expect(result.message.contains("/etc/containerd/certs.d:/etc/docker/certs.d") && result.message.contains(Self.fix))
    }

    @Test("a config version above the newest known (4) is a WARNING, read as version 4; never CRITICAL by itself")
    func newerVersion() {
        let result = Self.check(Self.v3(Self.hostsDir, version: 5), Self.r23)
        #expect(result.state == .ok, "\(result.message)")
        #expect(result.warnings == ["\(Self.path): config version 5 is newer than any this agent knows: read as version 4"])
    }

    @Test("1.6 reads a version 3 file as version 2 (it started with one here): its images table is not read")
    func version3On16() {
        let result = Self.check(Self.v3(Self.hostsDir), Self.r16)
        #expect(result.state == .critical)
        #expect(result.warnings.first?.contains("read by containerd 1.6.20 as version 2") == true)
        #expect(result.message.contains(Self.v2Table))
    }

    @Test("a version 3 file's leftover version 2 registry table: 2.3 applies it over the images table, 2.2 ignores it")
    func legacyTable() {
        let toml = CoreFixture.text("containerd-broken-v3-config-path-in-grpc-cri.toml")
        #expect(Self.check(toml, Self.r22).state == .critical)
        #expect(Self.check(toml, Self.r23).state == .ok)
    }

    @Test(
        "the fixtures of earlier releases",
        arguments: [
            ("containerd-1.6-config-path.toml", r16, true), ("containerd-1.6-config-path-list.toml", r17, true),
            ("containerd-1.4-v1-config-path.toml", r16, true), ("containerd-2.0-v3-config-path.toml", r21, true),
            ("containerd-1.6-default.toml", r17, false), ("containerd-broken-config-path-in-mirrors.toml", r17, false),
        ])
    func fixtures(_ name: String, _ release: ContainerdVersion, _ reads: Bool) {
        let result = Self.check(CoreFixture.text(name), release)
        #expect(result.state == (reads ? .ok : .critical), "\(result.message)")
    }

    @Test("config_path compared as the directory containerd opens: dir/., //dir, dir/ are it; ' /dir' (kept verbatim) is not",
          arguments: [
            ("/etc/containerd/certs.d/.", true), ("//etc//containerd/certs.d", true), ("/etc/containerd/certs.d/", true),
            ("/etc/containerd/x/../certs.d", true), (" /etc/containerd/certs.d", false), ("/etc/containerd/certs.d.old", false),
          ])
    func spelling(_ configPath: String, _ reads: Bool) {
        #expect(Self.check(Self.v3(configPath, version: 4), Self.r23).state == (reads ? .ok : .critical))
    }

    @Test("a 2.x fix never suggests a list: the single directory, under the table the file's version reads")
    func fixIsSingle() {
        let result = Self.check(Self.v3("/etc/docker/certs.d"), Self.r22)
        #expect(result.message.hasSuffix("write \(Self.fix) under \(Self.v3Table)"), "\(result.message)")
    }

    @Test("config_path not a string; invalid TOML with its line; no file")
    func broken() {
        #expect(Self.check(CoreFixture.text("containerd-broken-config-path-array.toml"), Self.r17).message.contains("not a string"))
        let invalid = Self.check(CoreFixture.text("containerd-broken-invalid.toml"), Self.r17).message
        #expect(invalid.hasPrefix("\(Self.path):145:") && invalid.contains("not valid TOML"), "\(invalid)")
        let missing = Self.check(nil, Self.r23).message
        #expect(missing.contains("\(Self.path) does not exist") && missing.contains("version = 4 and \(Self.fix) under \(Self.v3Table)"))
    }

    @Test("the local pull: the directories before ours are named, for check to look for a registry's directory in them")
    func rootsBefore() {
        let result = Self.check(Self.v2("/etc/docker/certs.d:" + Self.hostsDir), Self.r17)
        #expect(result.rootsBefore == ["/etc/docker/certs.d"])
    }

    @Test("the socket containerd serves: version 4 on its grpc plugin (never [grpc]), older on [grpc] first")
    func sockets() throws {
        func sockets(_ toml: String) throws -> [String] { ContainerdSettings(try ContainerdConfigText.parse(toml)).sockets }
        #expect(try sockets("version = 4\n[grpc]\n  address = '/a.sock'\n[plugins.'io.containerd.server.v1.grpc']\n  address = '/b.sock'\n") == ["/b.sock"])
        #expect(try sockets("version = 4\n[grpc]\n  address = '/a.sock'\n") == ["/run/containerd/containerd.sock"])
        #expect(try sockets("version = 3\n[grpc]\n  address = '/a.sock'\n") == ["/a.sock", "/run/containerd/containerd.sock"])
        #expect(try sockets(CoreFixture.text("containerd-2.3-v4-default-excerpt.toml")) == ["/run/containerd/containerd.sock"])
    }
}
