import Foundation
import Glibc
import RegistryMirrorCore
import RegistryMirrorSystem
import Testing

// What containerd would read, seen from the hosts directory on disk (docs/design.md §6): check
// judges the directory containerd opens, not the one the agent writes.

@Suite("check sees the hosts directory as containerd does", .serialized)
struct ContainerdViewTests {
    init() throws {
        try #require(
            FileManager.default.isExecutableFile(atPath: agentExecutable),
            "the built executable is missing at \(agentExecutable); run swift build first")
    }

    /// A config for upstream `upstream` with one host, containerd's config naming `configPath`.
    static func world(_ label: String, upstream: String, mirror: String, configPath: String? = nil) throws -> (TempDir, String, String) {
        let temp = try TempDir(label)
        let hostsDir = temp.sub("certs.d")
        try makeDirectory(hostsDir)
        try writeText(
            temp.sub("containerd.toml"),
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"\(configPath ?? hostsDir)\"\n")
        try writeText(
            temp.sub("config.toml"),
            """
            containerd_version = "1.7.24"
            containerd_config = "\(temp.sub("containerd.toml"))"
            containerd_unit = ""
            [[registry]]
            upstream = "\(upstream)"
              [[registry.host]]
              url = "\(mirror)"
            """)
        return (temp, hostsDir, temp.sub("config.toml"))
    }

    @Test("a foreign host_port_/ directory beside ours: containerd reads that one, so check is CRITICAL and names it")
    func shadowedByPortDirectory() async throws {
        let mirror = try await TestServer(.status(200))
        let (temp, hostsDir, config) = try Self.world("ccr-shadow", upstream: "registry.example:5000", mirror: mirror.url)
        let applied = try await runAgent(["apply", "--config", config, "--hosts-dir", hostsDir])
        try #require(applied.status == 0, "stderr: \(applied.stderr)")
        let ok = try await runAgent(["check", "--config", config, "--hosts-dir", hostsDir])
        #expect(ok.status == 0, "check before: exit \(ok.status)")

        try makeDirectory("\(hostsDir)/registry.example_5000_")
        try writeText("\(hostsDir)/registry.example_5000_/hosts.toml", "server = \"https://registry.example:5000\"\n")
        let run = try await runAgent(["check", "--config", config, "--hosts-dir", hostsDir])
        #expect(run.status == 2, "check exited \(run.status)")
        #expect(
            run.stdout.contains("containerd reads \(hostsDir)/registry.example_5000_/ before \(hostsDir)/registry.example:5000/"),
            "stdout: \(run.stdout)")
        withExtendedLifetime(temp) {}
    }

    @Test(
        "config_path as containerd opens it: a symlink to the hosts dir, dir/., //dir are it (OK); ' dir' is another directory (CRITICAL)",
        arguments: [("symlink", true), ("dot", true), ("slashes", true), ("space", false)])
    func configPathSpellings(_ spelling: String, _ reads: Bool) async throws {
        let mirror = try await TestServer(.status(200))
        let (temp, hostsDir, config) = try Self.world("ccr-spelling", upstream: "docker.io", mirror: mirror.url)
        let written: String
        switch spelling {
        case "symlink":
            try symlink(hostsDir, at: temp.sub("link"))
            written = temp.sub("link")
        case "dot": written = hostsDir + "/."
        case "slashes": written = hostsDir.replacingOccurrences(of: "/", with: "//")
        default: written = " " + hostsDir
        }
        try writeText(
            temp.sub("containerd.toml"), "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"\(written)\"\n")
        let applied = try await runAgent(["apply", "--config", config, "--hosts-dir", hostsDir])
        try #require(applied.status == 0, "stderr: \(applied.stderr)")
        let run = try await runAgent(["check", "--config", config, "--hosts-dir", hostsDir])
        #expect(run.status == (reads ? 0 : 2), "config_path = \"\(written)\": check exited \(run.status): \(run.stdout)")
        withExtendedLifetime(temp) {}
    }
}
