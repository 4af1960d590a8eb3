import Foundation
import Glibc
import RegistryMirrorCore
import RegistryMirrorSystem
import Testing

/// A temp dir with an (empty, valid) config file and a hosts dir path, so runs never read the
/// machine's /etc/configure-containerd-registries/config.toml nor write /etc/containerd/certs.d.
struct AgentSandbox {
    let temp: TempDir
    let config: String
    let hostsDir: String

    init(config text: String = "") throws {
        temp = try TempDir("ccr-cli")
        config = temp.sub("config.toml")
        hostsDir = temp.sub("certs.d")
        try writeText(config, text)
    }

    /// `--config` and `--hosts-dir` of this sandbox, then `extra`.
    func arguments(_ subcommand: String, _ extra: [String]) -> [String] {
        [subcommand, "--config", config, "--hosts-dir", hostsDir] + extra
    }

    func file(_ upstream: String) -> String { "\(hostsDir)/\(upstream)/hosts.toml" }

    /// Nothing outside the temp dir to clean: the lock is the hosts directory itself.
    func cleanUp() {}
}

struct UsageCase: Sendable, CustomTestStringConvertible {
    var arguments: [String]
    var why: String
    var testDescription: String { why }
}

struct InvalidConfigCase: Sendable, CustomTestStringConvertible {
    var toml: String
    /// A piece of the error message: the field path.
    var mentions: String
    var testDescription: String { "config \(toml.debugDescription) names \(mentions)" }
}

/// docs/design.md §7, apply column, each code produced by a real run of the built executable.
@Suite("Exit codes of the built executable")
struct ExitCodeTests {
    init() throws {
        try #require(
            FileManager.default.isExecutableFile(atPath: agentExecutable),
            "the built executable is missing at \(agentExecutable); run swift build first")
    }

    @Test("0: the live mirror is up, its hosts.toml is written")
    func ok() async throws {
        let box = try AgentSandbox()
        defer { box.cleanUp() }
        let server = try await TestServer(.status(401))
        defer { server.stop() }
        let run = try await runAgent(box.arguments("apply", ["--deadline", "10s", "live.example,\(server.url),https://live.example"]))
        #expect(run.status == 0, "stderr: \(run.stderr)")
        let text = try #require(readText(box.file("live.example")))
        let parsed = try parseHostsFile(text)
        #expect(text.hasPrefix(HostsFile.marker + "\n"))
        #expect(parsed.server == "https://live.example")
        #expect(parsed.hosts == [server.url])
        #expect(server.requestPaths.first == "/v2/")
        #expect(run.elapsed < .seconds(5))

        // apply is the default subcommand.
        let again = try await runAgent(["--config", box.config, "--hosts-dir", box.hostsDir, "live.example,\(server.url),https://live.example"])
        #expect(again.status == 0, "stderr: \(again.stderr)")
        #expect(readText(box.file("live.example")) == text)
    }

    @Test(arguments: [
        UsageCase(arguments: ["apply", "--no-such-flag"], why: "an unknown flag"),
        UsageCase(arguments: ["apply", "--deadline", "soon", "docker.io,http://127.0.0.1:5000"], why: "a bad --deadline"),
        UsageCase(arguments: ["apply", "docker.io,ftp://x"], why: "a mirror with a non-http endpoint"),
        UsageCase(arguments: ["apply", "docker.io"], why: "a mirror without an endpoint"),
        UsageCase(arguments: ["apply", "https://docker.io,http://127.0.0.1:5000"], why: "an upstream with a scheme"),
        UsageCase(arguments: ["apply", "../etc,http://127.0.0.1:5000"], why: "an upstream with .."),
        UsageCase(arguments: ["apply", "docker.io,http://127.0.0.1:5000,https://a,extra"], why: "four fields"),
        UsageCase(arguments: ["no-such-subcommand"], why: "an unknown subcommand"),
    ])
    func usage(_ c: UsageCase) async throws {
        let box = try AgentSandbox()
        defer { box.cleanUp() }
        let arguments = [c.arguments[0]] + ["--config", box.config, "--hosts-dir", box.hostsDir] + c.arguments.dropFirst()
        let run = try await runAgent(arguments)
        #expect(run.status == 64, "stderr: \(run.stderr)")
        #expect(!run.stderr.isEmpty, "a usage error says what is wrong")
        #expect(!exists(box.hostsDir), "something was written for a usage error")
    }

    @Test(
        "64: no config file at the default path and no mirrors",
        .enabled(
            if: !FileManager.default.fileExists(atPath: AgentConfig.defaultPath),
            "skipped: \(AgentConfig.defaultPath) exists on this machine"))
    func nothingToConfigure() async throws {
        let box = try AgentSandbox()
        defer { box.cleanUp() }
        let run = try await runAgent(["apply", "--hosts-dir", box.hostsDir])
        #expect(run.status == 64, "stderr: \(run.stderr)")
        #expect(run.stderr.contains(AgentConfig.defaultPath), "the message names the missing file: \(run.stderr)")
        #expect(!exists(box.hostsDir))
    }

    @Test("78: an explicit --config that does not exist")
    func missingExplicitConfig() async throws {
        let box = try AgentSandbox()
        defer { box.cleanUp() }
        let missing = box.temp.sub("nope.toml")
        let run = try await runAgent(["apply", "--config", missing, "--hosts-dir", box.hostsDir, "docker.io,http://127.0.0.1:5000"])
        #expect(run.status == 78, "stderr: \(run.stderr)")
        #expect(run.stderr.contains(missing))
        #expect(!exists(box.hostsDir))
    }

    @Test(arguments: [
        InvalidConfigCase(toml: "hosts_dir = 5\n", mentions: "hosts_dir"),
        InvalidConfigCase(toml: "no_such_key = true\n", mentions: "no_such_key"),
        InvalidConfigCase(toml: "[probe]\ntimeout = \"soon\"\n", mentions: "probe.timeout"),
        InvalidConfigCase(toml: "[[registry]]\nupstream = \"docker.io\"\n[[registry.host]]\nurl = \"ftp://x\"\n", mentions: "registry[0].host[0].url"),
        InvalidConfigCase(
            toml: "[[registry]]\nupstream = \"docker.io\"\n[[registry.host]]\nurl = \"http://127.0.0.1:5000\"\ncapabilities = [\"pull\",\"fly\"]\n",
            mentions: "registry[0].host[0].capabilities"),
        InvalidConfigCase(toml: "this is not toml\n", mentions: "config.toml"),
    ])
    func invalidConfig(_ c: InvalidConfigCase) async throws {
        let box = try AgentSandbox(config: c.toml)
        defer { box.cleanUp() }
        let run = try await runAgent(box.arguments("apply", ["docker.io,http://127.0.0.1:5000"]))
        #expect(run.status == 78, "stderr: \(run.stderr)")
        #expect(run.stderr.contains(c.mentions), "stderr: \(run.stderr)")
        #expect(!exists(box.hostsDir), "nothing is written when the config is invalid")
    }

    @Test("69: --deadline 1s with a mirror that refuses connections; the live one is still written")
    func deadline() async throws {
        let box = try AgentSandbox()
        defer { box.cleanUp() }
        let refusing = try RefusingPort()
        let live = try await TestServer(.status(200))
        defer { live.stop() }
        let run = try await runAgent(box.arguments("apply", [
            "--deadline", "1s", "dead.example,\(refusing.url)", "live.example,\(live.url)",
        ]))
        #expect(run.status == 69, "stderr: \(run.stderr)")
        #expect(run.elapsed >= .milliseconds(900) && run.elapsed < .seconds(5), "deadline 1s, took \(run.elapsed)")
        #expect(run.stderr.contains("dead.example"), "the log names what is still waiting: \(run.stderr)")
        #expect(exists(box.file("live.example")))
        #expect(!exists(box.hostsDir + "/dead.example"))
    }

    @Test("73: the hosts dir cannot be created (below a regular file), with a message naming it")
    func cannotWrite() async throws {
        let box = try AgentSandbox()
        defer { box.cleanUp() }
        let blocker = box.temp.sub("a-file")
        try writeText(blocker, "I am a file, not a directory\n")
        let hostsDir = blocker + "/certs.d"
        let live = try await TestServer(.status(200))
        defer { live.stop() }
        let run = try await runAgent([
            "apply", "--config", box.config, "--hosts-dir", hostsDir, "--deadline", "10s", "live.example,\(live.url)",
        ])
        #expect(run.status == 73, "stderr: \(run.stderr)")
        #expect(run.stderr.contains(blocker), "the message names the path: \(run.stderr)")
        #expect(readText(blocker) == "I am a file, not a directory\n")
    }

    @Test("75: SIGTERM while waiting for a refusing mirror; files written so far stay complete")
    func interrupted() async throws {
        let box = try AgentSandbox()
        defer { box.cleanUp() }
        let refusing = try RefusingPort()
        let live = try await TestServer(.status(200))
        defer { live.stop() }
        let logs = try TempDir("ccr-agent-log")
        let agent = try ChildProcess(
            agentExecutable, box.arguments("apply", ["dead.example,\(refusing.url)", "live.example,\(live.url)"]),
            stderrPath: logs.sub("stderr"))
        defer { agent.stop() }
        // Wait until it is in the probing loop (signal handlers are set by then) and has written the live file.
        let waiting = await eventually(within: .seconds(10)) {
            agent.stderrText.contains("dead.example") && exists(box.file("live.example")) || !agent.isRunning
        }
        try #require(waiting && agent.isRunning, "agent did not reach the wait: \(agent.stderrText)")
        try await Task.sleep(for: .milliseconds(300))
        let stopAt = ContinuousClock.now
        agent.signal(SIGTERM)
        let (status, timedOut) = await agent.waitForExit(timeout: .seconds(5))
        #expect(!timedOut, "SIGTERM did not end apply")
        #expect(status == 75, "stderr: \(agent.stderrText)")
        #expect(ContinuousClock.now - stopAt < .seconds(2))
        let text = try #require(readText(box.file("live.example")))
        #expect(try parseHostsFile(text).hosts == [live.url])
        #expect(!exists(box.hostsDir + "/dead.example"))
    }

    @Test("remove exits 0, deletes what apply wrote, restores a foreign file, and is idempotent")
    func remove() async throws {
        let box = try AgentSandbox()
        defer { box.cleanUp() }
        try makeDirectory(box.hostsDir + "/quay.io")
        try writeText(box.file("quay.io"), foreignContent)
        let before = snapshot(box.hostsDir)
        let live = try await TestServer(.status(200))
        defer { live.stop() }
        let apply = try await runAgent(box.arguments("apply", ["quay.io,\(live.url)", "docker.io,\(live.url)"]))
        #expect(apply.status == 0, "stderr: \(apply.stderr)")
        #expect(readText(box.file("quay.io"))?.hasPrefix(HostsFile.marker) == true)
        #expect(readText(box.file("quay.io") + ".orig") == foreignContent)
        #expect(exists(box.file("docker.io")))

        for round in 1...2 {
            let run = try await runAgent(["remove", "--hosts-dir", box.hostsDir])
            #expect(run.status == 0, "round \(round), stderr: \(run.stderr)")
            #expect(snapshot(box.hostsDir) == before, "round \(round)")
        }
        // Nothing there at all is fine too.
        let empty = try AgentSandbox()
        defer { empty.cleanUp() }
        let run = try await runAgent(["remove", "--hosts-dir", empty.hostsDir])
        #expect(run.status == 0, "stderr: \(run.stderr)")
        #expect(!exists(empty.hostsDir))
    }

    @Test("remove --keep-running removes, then stays until SIGTERM and exits 0 (deploy/uninstall's container)")
    func removeKeepRunning() async throws {
        let box = try AgentSandbox()
        defer { box.cleanUp() }
        let live = try await TestServer(.status(200))
        defer { live.stop() }
        let apply = try await runAgent(box.arguments("apply", ["docker.io,\(live.url)"]))
        #expect(apply.status == 0, "stderr: \(apply.stderr)")
        #expect(exists(box.file("docker.io")))

        let logs = try TempDir("ccr-keep-running")
        let agent = try ChildProcess(
            agentExecutable, ["remove", "--keep-running", "--hosts-dir", box.hostsDir], stderrPath: logs.sub("stderr"))
        let done = await eventually(within: .seconds(5)) { agent.stderrText.contains("staying until SIGTERM") }
        #expect(done, "stderr: \(agent.stderrText)")
        #expect(!exists(box.hostsDir + "/docker.io"), "the file and the directory apply created are gone")
        try await Task.sleep(for: .milliseconds(300))
        #expect(agent.isRunning, "it stays once done")
        agent.signal(SIGTERM)
        let (status, timedOut) = await agent.waitForExit(timeout: .seconds(5))
        #expect(!timedOut && status == 0, "status \(status), stderr: \(agent.stderrText)")
    }
}
