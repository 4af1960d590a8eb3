import Foundation
import Glibc
import RegistryMirrorCore
import RegistryMirrorSystem
import Testing

// Binary-level regression tests for the defects found by trying to break the agent: each drives the
// built executable against real files, FIFOs and loopback servers. `CCR_AGENT_BIN=<older binary>` runs
// them against another build (they fail against the one before these fixes).

/// A hosts dir that already holds a file of ours (written by a real apply against a live mirror), a
/// foreign file, and an administrator's own backup: what bad input must never cost.
struct SeededHostsDir {
    let box: AgentSandbox
    let live: TestServer

    static func make() async throws -> SeededHostsDir {
        let box = try AgentSandbox()
        let live = try await TestServer(.status(200))
        try makeDirectory(box.hostsDir + "/quay.io")
        try writeText(box.file("quay.io"), foreignContent)
        try makeDirectory(box.hostsDir + "/ghcr.io")
        try writeText(box.file("ghcr.io") + ".orig", "# the administrator's own backup\n")
        let run = try await runAgent(box.arguments("apply", ["--deadline", "10s", "docker.io,\(live.url)", "ghcr.io,\(live.url)"]))
        try #require(run.status == 0, "seeding apply failed: \(run.stderr)")
        try #require(exists(box.file("docker.io")) && exists(box.file("ghcr.io")))
        return SeededHostsDir(box: box, live: live)
    }
}

@Suite("Hostile input through the built executable", .serialized)
struct HostileInputSystemTests {
    init() throws {
        try #require(FileManager.default.isExecutableFile(atPath: agentExecutable), "missing \(agentExecutable)")
    }

    enum BadFile: String, CaseIterable, Sendable {
        case devZero, nulInTheMiddle, oversize, fifo, directory, invalidUTF8, tableHeaderWithoutKey
    }

    /// Makes the bad config `kind` in `dir`; returns its path.
    static func badConfig(_ kind: BadFile, in dir: TempDir) throws -> String {
        let registry = "[[registry]]\nupstream = \"docker.io\"\n[[registry.host]]\nurl = \"http://127.0.0.1:9\"\n"
        let path = dir.sub("bad.toml")
        switch kind {
        case .devZero:
            return "/dev/zero"
        case .nulInTheMiddle:
            try Data(Array("hosts_dir = \"/tmp\"\n".utf8) + [0] + Array(registry.utf8)).write(to: URL(fileURLWithPath: path))
        case .oversize:
            try writeText(path, registry + String(repeating: "# ........................................\n", count: 30_000))
        case .fifo:
            guard mkfifo(path, 0o600) == 0 else { throw TestFailure("mkfifo: \(String(cString: strerror(errno)))") }
        case .directory:
            try makeDirectory(path)
        case .invalidUTF8:
            try Data(Array(registry.utf8) + [0x23, 0xFF, 0xFE, 0x0A]).write(to: URL(fileURLWithPath: path))
        case .tableHeaderWithoutKey:
            try writeText(path, "[{registry]\n" + registry)
        }
        return path
    }

    @Test("a config that cannot be a config exits 78 at once and touches no file", arguments: BadFile.allCases)
    func badConfigFile(_ kind: BadFile) async throws {
        let seeded = try await SeededHostsDir.make()
        defer { seeded.live.stop() }
        let before = snapshot(seeded.box.hostsDir)
        let path = try Self.badConfig(kind, in: seeded.box.temp)
        for subcommand in ["apply", "watch", "plan"] {
            let run = try await runAgent(
                [subcommand, "--config", path, "--hosts-dir", seeded.box.hostsDir], timeout: .seconds(10))
            #expect(!run.timedOut, "\(subcommand) hung on \(kind)")
            #expect(run.status == 78, "\(subcommand) \(kind): stderr: \(run.stderr)")
            #expect(run.stderr.contains(path), "the message names the file: \(run.stderr)")
            #expect(run.elapsed < .seconds(3), "\(subcommand) took \(run.elapsed)")
            #expect(snapshot(seeded.box.hostsDir) == before, "\(subcommand) changed the hosts dir on \(kind)")
        }
        let check = try await runAgent(["check", "--config", path, "--hosts-dir", seeded.box.hostsDir])
        #expect(check.status == 3, "check is UNKNOWN on \(kind): \(check.stderr)")
    }

    @Test("a config with no registry is nothing to configure: 64, every file kept (deleting them is remove's job)",
          arguments: ["", "hosts_dir = \"/tmp/x\"\n", "[probe]\ntimeout = \"2s\"\n", "# registries were here\n"])
    func noRegistry(_ toml: String) async throws {
        let seeded = try await SeededHostsDir.make()
        defer { seeded.live.stop() }
        let before = snapshot(seeded.box.hostsDir)
        try writeText(seeded.box.config, toml)
        for subcommand in ["apply", "plan", "watch"] {
            let run = try await runAgent(seeded.box.arguments(subcommand, []), timeout: .seconds(10))
            #expect(run.status == 64, "\(subcommand): \(run.stderr)")
            #expect(run.stderr.contains("nothing to configure"), "\(run.stderr)")
            #expect(snapshot(seeded.box.hostsDir) == before, "\(subcommand) changed the hosts dir")
        }
        let check = try await runAgent(seeded.box.arguments("check", []))
        #expect(check.status == 3, "check: \(check.stderr)")
    }

    @Test("watch: SIGHUP to an emptied, zeroed or invalid config keeps the running config and its files",
          arguments: [
            "", "\u{0}\u{0}\u{0}", "[[registry]]\nupstream = \"docker\\u0000.io\"\n[[registry.host]]\nurl = \"http://127.0.0.1:9\"\n",
            // toml++ used to abort the whole process on these (found by fuzz/).
            "[{registry]\nupstream = \"docker.io\"\n", "[[registry]]\nupstream = \"docker.io\"\ncapabilities = [\"pull\", }]\n",
          ])
    func watchReloadKeepsConfig(_ replacement: String) async throws {
        let box = try AgentSandbox()
        let live = try await TestServer(.status(200))
        defer { live.stop() }
        try writeText(box.config, "[[registry]]\nupstream = \"docker.io\"\n[[registry.host]]\nurl = \"\(live.url)\"\n")
        let logs = try TempDir("ccr-watch-log")
        let agent = try ChildProcess(agentExecutable, box.arguments("watch", []), stderrPath: logs.sub("stderr"))
        defer { agent.stop() }
        let written = await eventually(within: .seconds(10)) { exists(box.file("docker.io")) }
        try #require(written, "\(agent.stderrText)")
        let before = snapshot(box.hostsDir)
        try writeText(box.config, replacement)
        agent.signal(SIGHUP)
        let refused = await eventually(within: .seconds(5)) { agent.stderrText.contains("keeping the running config") }
        #expect(refused, "no refusal logged: \(agent.stderrText)")
        try await Task.sleep(for: .milliseconds(300))
        #expect(agent.isRunning)
        #expect(snapshot(box.hostsDir) == before, "the reload changed files")
        agent.signal(SIGTERM)
        #expect(await agent.waitForExit(timeout: .seconds(5)).status == 0)
        #expect(exists(box.file("docker.io")), "SIGTERM leaves the files as they are")
    }

    @Test("a CA file that is a FIFO marks only its host down; the live registry is written at once and the deadline holds")
    func caFifo() async throws {
        let box = try AgentSandbox()
        let live = try await TestServer(.status(200))
        defer { live.stop() }
        let fifo = box.temp.sub("ca.pem")
        try #require(mkfifo(fifo, 0o600) == 0)
        try writeText(box.config, """
            [[registry]]
            upstream = "tls.example"
            [[registry.host]]
            url = "https://127.0.0.1:9"
            ca = ["\(fifo)"]

            [[registry]]
            upstream = "live.example"
            [[registry.host]]
            url = "\(live.url)"
            """)
        let run = try await runAgent(box.arguments("apply", ["--deadline", "2s"]), timeout: .seconds(15))
        #expect(run.status == 69, "stderr: \(run.stderr)")
        #expect(run.elapsed < .seconds(3.5), "deadline 2s, took \(run.elapsed)")
        #expect(exists(box.file("live.example")))
        #expect(!exists(box.hostsDir + "/tls.example"))
        #expect(run.stderr.contains("FIFO"), "the reason names the file kind: \(run.stderr)")
    }

    @Test("apply with 1000 registries whose mirrors refuse keeps a 2s deadline (cost grows linearly)")
    func thousandRegistries() async throws {
        let box = try AgentSandbox()
        let refusing = try RefusingPort()
        var toml = ""
        for i in 0..<1000 {
            toml += "[[registry]]\nupstream = \"r\(i).example\"\n[[registry.host]]\nurl = \"\(refusing.url)\"\n"
        }
        try writeText(box.config, toml)
        let run = try await runAgent(box.arguments("apply", ["--deadline", "2s"]), timeout: .seconds(60))
        #expect(run.status == 69, "stderr tail: \(run.stderr.suffix(500))")
        // Loose on 2 busy cores; scripts/bench.sh measures it precisely (--only-scale).
        #expect(run.elapsed < .seconds(4), "deadline 2s, took \(run.elapsed)")
    }

    @Test("an administrator's own hosts.toml.orig (file or symlink) survives apply and remove untouched",
          arguments: [false, true])
    func adminBackupUntouched(symlinked: Bool) async throws {
        let box = try AgentSandbox()
        let live = try await TestServer(.status(200))
        defer { live.stop() }
        let dir = box.hostsDir + "/docker.io"
        try makeDirectory(dir)
        if symlinked {
            try writeText(box.temp.sub("elsewhere.toml"), "# somewhere else\n")
            try symlink(box.temp.sub("elsewhere.toml"), at: dir + "/hosts.toml.orig")
        } else {
            try writeText(dir + "/hosts.toml.orig", "# the administrator's own\n")
        }
        let before = snapshot(box.hostsDir)
        let apply = try await runAgent(box.arguments("apply", ["--deadline", "10s", "docker.io,\(live.url)"]))
        #expect(apply.status == 0, "stderr: \(apply.stderr)")
        #expect(readText(box.file("docker.io"))?.hasPrefix(HostsFile.marker) == true)
        let remove = try await runAgent(["remove", "--hosts-dir", box.hostsDir])
        #expect(remove.status == 0, "stderr: \(remove.stderr)")
        #expect(snapshot(box.hostsDir) == before, "remove did not leave the tree as it found it")
        #expect(!exists(box.file("docker.io")), "the .orig became the live hosts.toml")
    }

    @Test("names: \":5000\" and a name too long for a directory are config errors (78, not 73); positional: 64")
    func names() async throws {
        let long = String(repeating: "a", count: 63) + "." + String(repeating: "b", count: 63) + "."
            + String(repeating: "c", count: 63) + "." + String(repeating: "d", count: 61) + ":5000"
        for upstream in [":5000", long, "[fe80::1%eth0]:5000"] {
            let box = try AgentSandbox(config: "[[registry]]\nupstream = \"\(upstream)\"\n[[registry.host]]\nurl = \"http://127.0.0.1:9\"\n")
            let run = try await runAgent(box.arguments("apply", ["--deadline", "1s"]))
            #expect(run.status == 78, "\(upstream): \(run.stderr)")
            #expect(run.stderr.contains("registry[0].upstream"), "\(run.stderr)")
            let positional = try await runAgent(["apply", "--hosts-dir", box.hostsDir, "--deadline", "1s", "\(upstream),http://127.0.0.1:9"])
            #expect(positional.status == 64, "\(upstream): \(positional.stderr)")
            #expect(!exists(box.hostsDir))
        }
    }

    @Test("URLs containerd misreads are config errors; timeouts under 1ms too",
          arguments: [
            "url = \"http://[::1%lo]:5000\"", "url = \"HTTP://127.0.0.1:9\"", "url = \"http://127.0.0.1:9/%zz\"",
            "url = \"http://127.0.0.1:9]\"", "url = \"http://127.0.0.1:9\"\n[registry.host.header]\nX = [\"a\\u0001\"]",
          ])
    func urls(_ hostLines: String) async throws {
        let box = try AgentSandbox(config: "[[registry]]\nupstream = \"docker.io\"\n[[registry.host]]\n\(hostLines)\n")
        let run = try await runAgent(box.arguments("apply", ["--deadline", "1s"]))
        #expect(run.status == 78, "stderr: \(run.stderr)")
        #expect(!exists(box.hostsDir))
        let timeout = try AgentSandbox(config: "[probe]\ntimeout = \"999us\"\n[[registry]]\nupstream = \"docker.io\"\n[[registry.host]]\nurl = \"http://127.0.0.1:9\"\n")
        let plan = try await runAgent(timeout.arguments("plan", []), timeout: .seconds(10))
        #expect(plan.status == 78, "stderr: \(plan.stderr)")
    }

    @Test("a relative --hosts-dir is a usage error for every subcommand, remove included",
          arguments: ["apply", "plan", "check", "watch", "remove"])
    func relativeHostsDir(_ subcommand: String) async throws {
        let box = try AgentSandbox()
        let run = try await runAgent([subcommand, "--config", box.config, "--hosts-dir", "relative/certs.d", "docker.io,http://127.0.0.1:9"]
            .filter { subcommand != "remove" || !$0.hasPrefix("docker.io") })
        #expect(run.status == 64, "stderr: \(run.stderr)")
        #expect(run.stderr.contains("absolute"), "\(run.stderr)")
    }

    @Test("plan and check create nothing: not the hosts dir, not a lock directory under /run")
    func readOnlyCommands() async throws {
        let box = try AgentSandbox()
        let live = try await TestServer(.status(200))
        defer { live.stop() }
        let runDir = "/run/configure-containerd-registries"
        let runDirExisted = exists(runDir)
        let runDirBefore = runDirExisted ? snapshot(runDir) : [:]
        for subcommand in ["plan", "check"] {
            let run = try await runAgent(box.arguments(subcommand, ["docker.io,\(live.url)"]))
            #expect(run.status != 64 && run.status != 78, "\(subcommand): \(run.stderr)")
            #expect(!exists(box.hostsDir), "\(subcommand) created the hosts dir")
        }
        #expect(exists(runDir) == runDirExisted, "plan/check created \(runDir)")
        if runDirExisted { #expect(snapshot(runDir) == runDirBefore, "plan/check added a lock file") }
    }

    @Test("check is CRITICAL for a managed file containerd would not read as meant")
    func checkFlagsMisreadFile() async throws {
        let box = try AgentSandbox()
        let live = try await TestServer(.status(200))
        defer { live.stop() }
        try makeDirectory(box.hostsDir + "/docker.io")
        try writeText(box.file("docker.io"), HostsFile.marker + "\n[host.\"http://[::1%lo]:5000\"]\n  capabilities = [\"pull\"]\n")
        let run = try await runAgent(box.arguments("check", ["docker.io,\(live.url)"]))
        #expect(run.status == 2, "stderr: \(run.stderr)")
    }
}

/// Under the lock, a step is carried out only if the file is still the one that was planned for: an
/// administrator may have changed it between the look and the step (docs/design.md §5).
@Suite("The store re-checks a file before unlinking or renaming it")
struct StoreRecheckTests {
    @Test("removing our hosts.toml when it has meanwhile become someone else's file: refused, file intact")
    func unlinkOnlyOurs() throws {
        let tree = try HostsTree()
        try makeDirectory(tree.dir("docker.io"))
        try writeText(tree.file("docker.io"), foreignContent)
        #expect(throws: SystemError.self) { try tree.store.perform([.removeManaged], upstream: "docker.io") }
        #expect(readText(tree.file("docker.io")) == foreignContent)
    }

    @Test("restoring a backup that has meanwhile become a symlink: refused, nothing renamed")
    func restoreOnlyRegular() throws {
        let tree = try HostsTree()
        try makeDirectory(tree.dir("docker.io"))
        try writeText(tree.outside + "/target", "# elsewhere\n")
        try symlink(tree.outside + "/target", at: tree.backup("docker.io"))
        #expect(throws: SystemError.self) { try tree.store.perform([.restoreBackup], upstream: "docker.io") }
        #expect(!exists(tree.file("docker.io")))
        #expect(lstatInfo(tree.backup("docker.io"))?.isSymlink == true)
    }

    @Test("backing up a foreign file that has meanwhile become ours: refused, nothing renamed")
    func backUpOnlyForeign() throws {
        let tree = try HostsTree()
        try makeDirectory(tree.dir("docker.io"))
        try writeText(tree.file("docker.io"), HostsFile.marker + "\n")
        #expect(throws: SystemError.self) { try tree.store.perform([.backUpForeign], upstream: "docker.io") }
        #expect(readText(tree.file("docker.io")) == HostsFile.marker + "\n")
        #expect(!exists(tree.backup("docker.io")))
    }
}
