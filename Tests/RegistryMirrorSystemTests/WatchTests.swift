import Foundation
import Logging
import RegistryMirrorCore
import RegistryMirrorSystem
import Synchronization
import Testing

/// A mirror on a fixed loopback port whose behaviour the test switches: ok, hang, or down (refused).
final class ToggleMirror: @unchecked Sendable {
    enum Mode: String { case ok, hang, down }
    let port: Int
    private let child: ChildProcess
    private let dir: TempDir

    init() async throws {
        dir = try TempDir("ccr-toggle")
        let script = (serverScript as NSString).deletingLastPathComponent + "/togglemirror.py"
        let out = Pipe()
        child = try ChildProcess(python, [script, dir.sub("mode")], stdout: out, stderrPath: dir.sub("stderr"))
        port = Int(try await readLine(from: out, timeout: .seconds(10)).trimmingCharacters(in: .whitespaces))!
    }

    var url: String { "http://127.0.0.1:\(port)" }

    func set(_ mode: Mode) throws { try writeText(dir.sub("mode"), mode.rawValue) }

    deinit { child.stop() }
}

/// Records what watch tells systemd.
final class RecordingNotifier: ServiceNotifier, Sendable {
    let messages = Mutex<[String]>([])
    func status(_ text: String) { messages.withLock { $0.append("STATUS=\(text)") } }
    func ready() { messages.withLock { $0.append("READY=1") } }
    func stopping() { messages.withLock { $0.append("STOPPING=1") } }
    func watchdog() { messages.withLock { $0.append("WATCHDOG=1") } }
    var all: [String] { messages.withLock { $0 } }
}

final class RecordingMetrics: MetricsSink, Sendable {
    let last = Mutex<String>("")
    func write(_ text: String) { last.withLock { $0 = text } }
    var text: String { last.withLock { $0 } }
}

/// Watch mode against real loopback mirrors, the real prober and the real hosts directory, with short
/// intervals so each test takes seconds.
@Suite("Watch", .serialized)
struct WatchTests {
    static func fastSettings() -> ProbeSettings {
        var p = ProbeSettings()
        p.connectTimeout = .milliseconds(300)
        p.timeout = .milliseconds(500)
        p.initialInterval = .milliseconds(50)
        p.maxInterval = .milliseconds(100)
        p.watchInterval = .milliseconds(300)
        p.failureThreshold = 3
        p.successThreshold = 2
        return p
    }

    struct Running {
        let task: Task<RegistryMirrorCore.ExitStatus, Never>
        let stop: AsyncStream<Void>.Continuation
        let hangup: AsyncStream<Void>.Continuation
        let notifier: RecordingNotifier
        let metrics: RecordingMetrics

        func finish() async -> RegistryMirrorCore.ExitStatus {
            stop.yield()
            return await task.value
        }
    }

    func start(
        _ config: AgentConfig, store: FileHostsStore, reload: @escaping Watcher.ConfigSource = { .failure(.init(lines: ["no reload"])) }
    ) -> Running {
        let (stop, stopTrigger) = AsyncStream.makeStream(of: Void.self)
        let (hangup, hangupTrigger) = AsyncStream.makeStream(of: Void.self)
        let notifier = RecordingNotifier()
        let metrics = RecordingMetrics()
        let watcher = Watcher(
            config: config, prober: CurlProber.shared, store: store, notifier: notifier, metrics: metrics,
            logger: Logger(label: "watch-test") { _ in SwiftLogNoOpLogHandler() }, watchdogInterval: .milliseconds(100),
            wallClock: wallClockSeconds, reloadConfig: reload)
        let task = Task { await watcher.run(stop: stop, hangup: hangup) }
        return Running(task: task, stop: stopTrigger, hangup: hangupTrigger, notifier: notifier, metrics: metrics)
    }

    func config(_ root: String, _ registries: [Registry]) -> AgentConfig {
        var c = AgentConfig()
        c.hostsDir = root
        c.probe = Self.fastSettings()
        c.registries = registries
        return c
    }

    @Test("a mirror that starts refusing leaves the file after the threshold, and comes back when it recovers")
    func refusedAndRecovery() async throws {
        let mirror = try await ToggleMirror()
        let other = try await ToggleMirror()
        let dir = try TempDir("ccr-watch")
        let registry = Registry(upstream: "docker.io", hosts: [MirrorHost(url: mirror.url), MirrorHost(url: other.url)])
        let path = dir.sub("hosts/docker.io/hosts.toml")
        let run = start(config(dir.sub("hosts"), [registry]), store: FileHostsStore(root: dir.sub("hosts")))

        #expect(await eventually(within: .seconds(5)) { readText(path) == HostsFile.render(registry, hosts: registry.hosts) })
        #expect(await eventually(within: .seconds(2)) { run.notifier.all.contains("READY=1") })

        try mirror.set(.down)
        let clock = ContinuousClock()
        let downAt = clock.now
        #expect(await eventually(within: .seconds(5)) { readText(path) == HostsFile.render(registry, hosts: [registry.hosts[1]]) })
        // 300 ms interval at most, then 3 failures 50-100 ms apart: well under 2 s.
        #expect(clock.now - downAt < .seconds(2))
        // Metrics and status follow the file write within the same event.
        #expect(await eventually(within: .seconds(1)) {
            run.metrics.text.contains("mirror_up{upstream=\"docker.io\",host=\"\(mirror.url)\"} 0")
                && run.metrics.text.contains("mirror_in_hosts_file{upstream=\"docker.io\",host=\"\(mirror.url)\"} 0")
        })
        #expect(await eventually(within: .seconds(1)) {
            run.notifier.all.contains { $0.hasPrefix("STATUS=") && $0.contains("out: docker.io \(mirror.url)") }
        })

        try mirror.set(.ok)
        #expect(await eventually(within: .seconds(5)) { readText(path) == HostsFile.render(registry, hosts: registry.hosts) })
        #expect(await eventually(within: .seconds(1)) {
            run.metrics.text.contains("mirror_transitions_total{upstream=\"docker.io\",host=\"\(mirror.url)\"} 2")
        })
        #expect(await run.finish() == .ok)
        #expect(run.notifier.all.last == "STOPPING=1")
        #expect(run.notifier.all.contains("WATCHDOG=1"))
        #expect(readText(path) == HostsFile.render(registry, hosts: registry.hosts), "SIGTERM leaves the files as they are")
    }

    @Test("a mirror that hangs is taken out; with no mirror left the file goes, and returns on recovery")
    func hangingAndNoMirrorLeft() async throws {
        let mirror = try await ToggleMirror()
        let dir = try TempDir("ccr-watch")
        let registry = Registry(upstream: "quay.io", hosts: [MirrorHost(url: mirror.url)])
        let path = dir.sub("hosts/quay.io/hosts.toml")
        let run = start(config(dir.sub("hosts"), [registry]), store: FileHostsStore(root: dir.sub("hosts")))
        #expect(await eventually(within: .seconds(5)) { exists(path) })

        try mirror.set(.hang)
        let clock = ContinuousClock()
        let hungAt = clock.now
        #expect(await eventually(within: .seconds(6)) { !exists(path) })
        // 3 probes of 500 ms each plus the waits between them.
        #expect(clock.now - hungAt < .seconds(4))
        #expect(await eventually(within: .seconds(1)) { run.metrics.text.contains("registry_file_in_place{upstream=\"quay.io\"} 0") })
        #expect(exists(dir.sub("hosts/quay.io/.configure-containerd-registries")), "the ownership record stays while configured")

        try mirror.set(.ok)
        #expect(await eventually(within: .seconds(5)) { exists(path) })
        #expect(await run.finish() == .ok)
    }

    @Test("SIGHUP: a valid config is taken up, an invalid one is refused and the old one kept")
    func reload() async throws {
        let mirror = try await ToggleMirror()
        let dir = try TempDir("ccr-watch")
        let root = dir.sub("hosts")
        let first = Registry(upstream: "docker.io", hosts: [MirrorHost(url: mirror.url)])
        let second = Registry(upstream: "ghcr.io", hosts: [MirrorHost(url: mirror.url)])
        let next = Mutex<Result<AgentConfig, Watcher.ReloadError>>(.failure(.init(lines: ["not yet"])))
        let run = start(config(root, [first]), store: FileHostsStore(root: root)) { next.withLock { $0 } }
        #expect(await eventually(within: .seconds(5)) { exists("\(root)/docker.io/hosts.toml") })

        // Invalid: nothing changes, watch goes on.
        run.hangup.yield()
        try await Task.sleep(for: .milliseconds(400))
        #expect(exists("\(root)/docker.io/hosts.toml"))
        #expect(!exists("\(root)/ghcr.io"))

        // Valid: ghcr.io added, docker.io dropped (its file and the directory we created go).
        next.withLock { $0 = .success(config(root, [second])) }
        run.hangup.yield()
        #expect(await eventually(within: .seconds(5)) { exists("\(root)/ghcr.io/hosts.toml") })
        #expect(await eventually(within: .seconds(2)) { !exists("\(root)/docker.io") })
        #expect(await run.finish() == .ok)
    }

    @Test("the built executable: SIGHUP with a valid and an invalid file, SIGTERM mid-probe exits 0 promptly")
    func executableSignals() async throws {
        let live = try await ToggleMirror()
        let hanging = try await ToggleMirror()
        try hanging.set(.hang)
        let dir = try TempDir("ccr-watch")
        let root = dir.sub("hosts")
        let configPath = dir.sub("config.toml")
        func write(_ upstreams: [(String, String)]) throws {
            var text = "hosts_dir = \"\(root)\"\n[probe]\ntimeout = \"5s\"\nwatch_interval = \"300ms\"\n"
            for (upstream, url) in upstreams { text += "[[registry]]\nupstream = \"\(upstream)\"\n[[registry.host]]\nurl = \"\(url)\"\n" }
            try writeText(configPath, text)
        }
        try write([("docker.io", live.url), ("slow.example", hanging.url)])
        let child = try ChildProcess(
            agentExecutable, ["watch", "--config", configPath, "--log-format", "json"], stderrPath: dir.sub("stderr"))
        defer { child.stop() }
        #expect(await eventually(within: .seconds(5)) { exists("\(root)/docker.io/hosts.toml") })

        try write([("docker.io", live.url), ("slow.example", hanging.url), ("quay.io", live.url)])
        child.signal(SIGHUP)
        #expect(await eventually(within: .seconds(5)) { exists("\(root)/quay.io/hosts.toml") })

        try writeText(configPath, "[[registry]]\nupstream = \"https://bad\"\n")
        child.signal(SIGHUP)
        #expect(await eventually(within: .seconds(3)) { child.stderrText.contains("config reload failed") })
        #expect(child.isRunning)
        #expect(exists("\(root)/quay.io/hosts.toml"), "the running config is kept")

        // The hanging mirror has a 5 s probe in flight at any moment: SIGTERM must not wait for it.
        let before = snapshot(root)
        let clock = ContinuousClock()
        let start = clock.now
        child.signal(SIGTERM)
        let (status, timedOut) = await child.waitForExit(timeout: .seconds(5))
        #expect(!timedOut)
        #expect(status == 0)
        #expect(clock.now - start < .seconds(2))
        #expect(snapshot(root) == before, "files are left as they are")
    }
}

@Suite("Watch metrics file")
struct WatchMetricsFileTests {
    static let promtool = "/usr/bin/promtool"

    @Test(
        "the executable's --metrics-file passes promtool check metrics and tracks a mirror going down",
        .enabled(if: FileManager.default.isExecutableFile(atPath: promtool), "promtool missing (scripts/test.sh installs prometheus)"))
    func promtoolAccepts() async throws {
        let mirror = try await ToggleMirror()
        let dir = try TempDir("ccr-watch-metrics")
        let root = dir.sub("hosts")
        let metrics = dir.sub("metrics.prom")
        try writeText(dir.sub("config.toml"), "[probe]\nwatch_interval = \"200ms\"\ninitial_interval = \"50ms\"\nmax_interval = \"100ms\"\n")
        let child = try ChildProcess(
            agentExecutable,
            ["watch", "--config", dir.sub("config.toml"), "--hosts-dir", root, "--metrics-file", metrics,
             "docker.io,\(mirror.url)", "quay.io,\(mirror.url)"],
            stderrPath: dir.sub("stderr"))
        defer { child.stop() }
        #expect(await eventually(within: .seconds(5)) { (readText(metrics) ?? "").contains("registry_file_in_place{upstream=\"quay.io\"} 1") })
        try mirror.set(.down)
        #expect(await eventually(within: .seconds(5)) { (readText(metrics) ?? "").contains("registry_file_in_place{upstream=\"quay.io\"} 0") })

        // promtool reads the exposition on stdin; it prints its findings (lint problems too) on stderr.
        let check = try ChildProcess("/bin/sh", ["-c", "\(Self.promtool) check metrics < '\(metrics)' 2>&1 >&2"], stderrPath: dir.sub("promtool"))
        let (status, _) = await check.waitForExit(timeout: .seconds(20))
        #expect(status == 0, "promtool: \(check.stderrText)")
        #expect(check.stderrText.isEmpty, "promtool found problems: \(check.stderrText)")
        child.signal(SIGTERM)
        #expect(await child.waitForExit(timeout: .seconds(5)).status == 0)
    }
}
