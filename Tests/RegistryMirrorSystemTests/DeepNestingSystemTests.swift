import Foundation
import Glibc
import RegistryMirrorCore
import RegistryMirrorSystem
import Testing

// Binary-level regression tests for TOML nested deep enough to overflow a stack (docs/design.md §3.2).
// Before TOMLGuard walked without recursing, each run below with 70,000 nested arrays was killed with
// 139, and containerd's config over 1 MiB or with a NUL in a comment was not read as containerd reads it.

@Suite("Deep TOML through the built executable", .serialized)
struct DeepNestingSystemTests {
    init() throws {
        try #require(FileManager.default.isExecutableFile(atPath: agentExecutable), "missing \(agentExecutable)")
    }

    static let deep = "x = " + String(repeating: "[", count: 70_000) + String(repeating: "]", count: 70_000) + "\n"

    static func registry(_ url: String) -> String {
        "[[registry]]\nupstream = \"docker.io\"\n[[registry.host]]\nurl = \"\(url)\"\n"
    }

    /// check's one line of `--output json`, and its exit status.
    static func check(_ arguments: [String], in dir: TempDir) async throws -> (status: Int32, json: String) {
        let out = Pipe()
        let child = try ChildProcess(agentExecutable, ["check", "--output", "json"] + arguments, stdout: out, stderrPath: dir.sub("check.log"))
        let json = try await readLine(from: out, timeout: .seconds(20))
        return (await child.waitForExit(timeout: .seconds(20)).status, json)
    }

    @Test("a config, containerd's config and a managed hosts.toml nested 70,000 deep: 78, 3 or the state, never 134 or 139")
    func everyCommand() async throws {
        let box = try AgentSandbox()
        let live = try await TestServer(.status(200))
        defer { live.stop() }

        // Our config: refused with its line and the reason by every command that reads it.
        let deepConfig = box.temp.sub("deep.toml")
        try writeText(deepConfig, "hosts_dir = \"\(box.hostsDir)\"\n" + Self.deep + Self.registry(live.url))
        for subcommand in ["apply", "plan", "remove"] {
            let run = try await runAgent([subcommand, "--config", deepConfig], timeout: .seconds(20))
            #expect(run.status == 78, "\(subcommand): \(run.stderr)")
            #expect(run.stderr.contains("deep.toml:2: not valid TOML: nested 1025 levels deep"), "\(subcommand): \(run.stderr)")
        }
        let unknown = try await Self.check(["--config", deepConfig], in: box.temp)
        #expect(unknown.status == 3, "\(unknown.json)")
        #expect(unknown.json.contains("nested 1025 levels deep"), "\(unknown.json)")
        #expect(!exists(box.hostsDir), "a refused config wrote something")

        // containerd's config: nested as deep, a NUL in a comment, over 1 MiB; containerd reads it, and so does check.
        let containerdConfig = box.temp.sub("containerd.toml")
        let bytes = Array("version = 2\n# \u{0} a NUL in a comment\n".utf8) + Array(Self.deep.utf8)
            + Array(String(repeating: "# padding padding padding padding padding padding padding\n", count: 20_000).utf8)
            + Array("[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"\(box.hostsDir)\"\n".utf8)
        try #require(bytes.count > 1 << 20)
        try Data(bytes).write(to: URL(fileURLWithPath: containerdConfig))
        try writeText(
            box.config,
            "containerd_config = \"\(containerdConfig)\"\ncontainerd_version = \"2.1.9\"\ncontainerd_unit = \"\"\n" + Self.registry(live.url))
        let apply = try await runAgent(box.arguments("apply", ["--deadline", "10s"]))
        #expect(apply.status == 0, "\(apply.stderr)")
        let ok = try await Self.check(["--config", box.config, "--hosts-dir", box.hostsDir], in: box.temp)
        #expect(ok.status == 0, "\(ok.json)")
        #expect(ok.json.contains("\"containerd\":{\"state\":\"OK\""), "\(ok.json)")

        // A managed hosts.toml nested as deep: a file containerd would not read, which plan would rewrite.
        try writeText(box.file("docker.io"), HostsFile.marker + "\n" + Self.deep)
        let critical = try await Self.check(["--config", box.config, "--hosts-dir", box.hostsDir], in: box.temp)
        #expect(critical.status == 2, "\(critical.json)")
        #expect(critical.json.contains("not valid TOML"), "\(critical.json)")
        let plan = try await runAgent(box.arguments("plan", ["--exit-code"]))
        #expect(plan.status == 1, "plan: \(plan.stderr)")
    }

    @Test("watch: SIGHUP to a config nested 70,000 deep keeps the running config and its files")
    func watchReload() async throws {
        let box = try AgentSandbox()
        let live = try await TestServer(.status(200))
        defer { live.stop() }
        try writeText(box.config, Self.registry(live.url))
        let logs = try TempDir("ccr-watch-log")
        let agent = try ChildProcess(agentExecutable, box.arguments("watch", []), stderrPath: logs.sub("stderr"))
        defer { agent.stop() }
        let written = await eventually(within: .seconds(10)) { exists(box.file("docker.io")) }
        try #require(written, "\(agent.stderrText)")
        let before = snapshot(box.hostsDir)
        try writeText(box.config, Self.deep + Self.registry(live.url))
        agent.signal(SIGHUP)
        let refused = await eventually(within: .seconds(5)) { agent.stderrText.contains("keeping the running config") }
        #expect(refused, "no refusal logged: \(agent.stderrText)")
        #expect(agent.stderrText.contains("nested 1025 levels deep"), "\(agent.stderrText)")
        try await Task.sleep(for: .milliseconds(300))
        #expect(agent.isRunning)
        #expect(snapshot(box.hostsDir) == before, "the reload changed files")
        agent.signal(SIGTERM)
        #expect(await agent.waitForExit(timeout: .seconds(5)).status == 0)
    }
}

@Suite("Reading containerd's config file")
struct ContainerdConfigFileTests {
    @Test("up to 16 MiB, a NUL kept; larger, or a FIFO, is unreadable at once; a missing file is nil")
    func bounds() throws {
        let dir = try TempDir("ccr-containerd-config")
        let text = "version = 2\n# \u{0}\n" + String(repeating: "# padding\n", count: 200_000)
        try writeText(dir.sub("config.toml"), text)
        #expect(try ConfigFile.readContainerdConfig(dir.sub("config.toml")) == text)
        try Data(count: ContainerdConfigText.maximumFileSize + 1).write(to: URL(fileURLWithPath: dir.sub("huge.toml")))
        #expect {
            try ConfigFile.readContainerdConfig(dir.sub("huge.toml"))
        } throws: { "\($0)".contains("larger than 16 MiB") }
        try #require(mkfifo(dir.sub("fifo.toml"), 0o600) == 0)
        #expect {
            try ConfigFile.readContainerdConfig(dir.sub("fifo.toml"))
        } throws: { "\($0)".contains("FIFO") }
        #expect(try ConfigFile.readContainerdConfig(dir.sub("missing.toml")) == nil)
    }
}
