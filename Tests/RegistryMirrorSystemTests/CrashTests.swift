import Foundation
import Glibc
import RegistryMirrorCore
import RegistryMirrorSystem
import TOMLKit
import Testing

/// docs/design.md §5: "A crash at any moment leaves the old file or the new one, never a mix."
@Suite("Crash test: kill -9 the agent while it rewrites files")
struct CrashTests {
    static let upstreams = ["docker.io", "ghcr.io", "quay.io", "registry.k8s.io", "my-registry.io:5000", "_default"]

    /// The config of iteration `round`: every upstream written at once (readiness_probe = false) with
    /// many hosts, so the files are several kilobytes and the content differs from round to round.
    static func config(round: Int, hostsDir: String) -> (toml: String, expected: [String: String]) {
        // The files follow the containerd they are for: pinned, so `expected` is rendered for the same one.
        var toml = "hosts_dir = \"\(hostsDir)\"\ncontainerd_version = \"\(ContainerdVersion.newestKnown)\"\n"
        var expected: [String: String] = [:]
        for (u, upstream) in upstreams.enumerated() {
            let count = 20 + (round + u) % 7
            let urls = (0..<count).map { "http://127.0.0.1:\(10_000 + round * 50 + $0)/round-\(round)/\(upstream)" }
            toml += "\n[[registry]]\nupstream = \"\(upstream)\"\nreadiness_probe = false\n"
            if upstream == "_default" { toml += "server = \"https://fallback.example\"\n" }
            for url in urls {
                toml += "  [[registry.host]]\n  url = \"\(url)\"\n  [registry.host.header]\n  X-Round = [\"\(round)\"]\n"
            }
            let registry = Registry(
                upstream: upstream, server: upstream == "_default" ? "https://fallback.example" : nil, readinessProbe: false,
                hosts: urls.map { MirrorHost(url: $0, headers: [("X-Round", ["\(round)"])]) })
            expected[upstream] = HostsFile.render(registry, hosts: registry.hosts)
        }
        return (toml, expected)
    }

    @Test("50 rounds of apply killed with SIGKILL at a random moment: every hosts.toml is the old or the new content")
    func killNineLoop() async throws {
        let temp = try TempDir("ccr-crash")
        let hostsDir = temp.sub("certs.d")
        let configPath = temp.sub("config.toml")
        var onDisk: [String: String?] = Dictionary(uniqueKeysWithValues: Self.upstreams.map { ($0, nil) })
        var killedWhileRunning = 0
        var roundsWithChanges = 0
        var generator = SystemRandomNumberGenerator()
        var partialRounds = 0

        // Round 0 runs to completion: the starting content, and how long a whole run takes here, so
        // that the kills can be spread over the time the agent is actually writing.
        let (toml0, expected0) = Self.config(round: 0, hostsDir: hostsDir)
        try writeText(configPath, toml0)
        let calibration = try await runAgent(["apply", "--config", configPath])
        try #require(calibration.status == 0, "stderr: \(calibration.stderr)")
        for upstream in Self.upstreams {
            #expect(readText("\(hostsDir)/\(upstream)/hosts.toml") == expected0[upstream])
            onDisk[upstream] = expected0[upstream]
        }
        // The kill moment walks towards the window in which the agent writes: later after a round in
        // which nothing was written yet, earlier after one that wrote every file; randomised around it.
        var center = 30.0  // milliseconds
        var delays: [Int] = []

        for round in 1...50 {
            let (toml, expected) = Self.config(round: round, hostsDir: hostsDir)
            try writeText(configPath, toml)
            let delayMs = max(1.0, center * Double.random(in: 0.6...1.4, using: &generator))
            delays.append(Int(delayMs))
            let delay = Duration.microseconds(Int64(delayMs * 1000))
            let agent = try ChildProcess(agentExecutable, ["apply", "--config", configPath])
            try await Task.sleep(for: delay)
            if agent.isRunning { killedWhileRunning += 1 }
            agent.signal(SIGKILL)
            let (status, timedOut) = await agent.waitForExit(timeout: .seconds(10))
            #expect(!timedOut)
            #expect(status == 0 || status == 128 + SIGKILL, "round \(round): exit \(status)")

            var changed = false
            var unchanged = false
            for upstream in Self.upstreams {
                let path = "\(hostsDir)/\(upstream)/hosts.toml"
                let now = readText(path)
                let old = onDisk[upstream]!
                #expect(
                    now == old || now == expected[upstream],
                    "round \(round), \(upstream): neither the old nor the new content (\(now?.utf8.count ?? -1) bytes)")
                if let now {
                    #expect(throws: Never.self, "round \(round), \(upstream): not valid TOML") { try TOMLTable(string: now) }
                    #expect(lstatInfo(path)?.mode == 0o644)
                }
                if now != old { changed = true } else { unchanged = true }
                onDisk[upstream] = now
            }
            if !changed { center = min(center * 1.3, 5000) }
            if changed && !unchanged { center = max(center * 0.8, 2) }
            if changed { roundsWithChanges += 1 }
            if changed && unchanged { partialRounds += 1 }
            // Whatever a killed run left behind, the directory holds nothing but our files and temp files.
            for upstream in Self.upstreams where exists("\(hostsDir)/\(upstream)") {
                for name in try FileManager.default.contentsOfDirectory(atPath: "\(hostsDir)/\(upstream)") {
                    #expect(
                        name == "hosts.toml" || name == OwnershipRecord.fileName || (name.hasPrefix(".") && name.hasSuffix(".tmp")),
                        "round \(round): unexpected \(upstream)/\(name)")
                }
            }
        }
        // The kills must have struck while the agent ran, or the test proved nothing.
        #expect(killedWhileRunning >= 10, "only \(killedWhileRunning) of 50 kills hit a running agent")
        #expect(roundsWithChanges >= 5, "only \(roundsWithChanges) of 50 rounds got as far as writing")

        // A final run to completion converges: every file is the last round's content.
        let (toml, expected) = Self.config(round: 51, hostsDir: hostsDir)
        try writeText(configPath, toml)
        let run = try await runAgent(["apply", "--config", configPath])
        #expect(run.status == 0, "stderr: \(run.stderr)")
        for upstream in Self.upstreams {
            #expect(readText("\(hostsDir)/\(upstream)/hosts.toml") == expected[upstream])
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: "\(hostsDir)/\(upstream)")
                .filter { $0.hasPrefix(".hosts.toml.") }
            #expect(leftovers.isEmpty, "stale temporary files of hosts.toml left after a completed write: \(leftovers)")
        }
        print("crash test: \(killedWhileRunning)/50 kills hit a running agent; \(roundsWithChanges) rounds changed files, \(partialRounds) were killed between two files; a full run took \(calibration.elapsed); kill delays (ms): \(delays)")
    }
}
