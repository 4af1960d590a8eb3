import Logging
import Synchronization
import Testing

@testable import RegistryMirrorCore

/// The timing logic of apply and watch (backoff, hysteresis, rounds, deadline) on a manual clock with
/// scripted jitter: exact times, no waiting on the wall clock.
@Suite("Timing on a manual clock")
struct TimingTests {
    static let up = ProbeResult(state: .up, reason: "HTTP 200")
    static let refused = ProbeResult(state: .down, reason: "connection refused", connected: false)
    static let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    static let unavailable = ProbeResult(state: .down, reason: "HTTP 503", connected: true)
    static let refusedNoConnection = ProbeResult(state: .down, reason: "connection refused", connected: false)

    /// Backoff from 20 ms to 120 ms: below the 150 ms hedge interval, so only the backoff schedules
    /// attempts, and each step of the test waits for a state the code cannot pass without acting.
    static func backoffOnly(_ registries: [Registry], deadline: GoDuration = .zero) -> AgentConfig {
        var config = AgentConfig()
        config.registries = registries
        config.probe.deadline = deadline
        config.probe.initialInterval = .milliseconds(20)
        config.probe.maxInterval = .milliseconds(120)
        return config
    }

    @Test("apply: a mirror that answers but is not up (503) is retried on the backoff (20, 40, 80, then every 120 ms) until the deadline")
    func applyBackoffUntilDeadline() async throws {
        let registry = Registry(upstream: "docker.io", hosts: [MirrorHost(url: "http://dead:1")])
        let config = Self.backoffOnly([registry], deadline: .seconds(60))
        let prober = ScriptedProber(["http://dead:1": [(.zero, Self.unavailable)]])
        let clock = ManualClock()
        // Jitter unit 1: every wait is its full ceiling.
        let applier = Applier(
            config: config, prober: prober, store: MemoryStore(), logger: Self.logger, clock: AgentClock(clock),
            random: .scripted([1]))
        #expect(applier.hedgeInterval == nil)
        let run = Task { await applier.run() }
        var probeTimes: [Duration] = []
        // Two sleepers: the deadline, and the host's backoff. Step to the earliest each time.
        while await clock.waitForSleepers(2), let next = clock.nextDeadline, next < .seconds(60) {
            probeTimes.append(next)
            clock.advance(to: next)
        }
        clock.advance(to: .seconds(60))
        let report = await run.value
        #expect(report.exitStatus == .deadlineReached)
        #expect(report.waiting == ["docker.io"])
        #expect(Array(probeTimes.prefix(4)) == [.milliseconds(20), .milliseconds(60), .milliseconds(140), .milliseconds(260)])
        // 0, 0.02, 0.06, 0.14, then 0.26 + 0.12 k up to 59.90 s (k = 0 ... 497).
        #expect(prober.count("http://dead:1") == 4 + 498)
    }

    @Test("apply: a mirror that answers 503 eight times, then 200, is written at the probe that sees it")
    func applyWritesAtOnce() async throws {
        let registry = Registry(upstream: "ghcr.io", hosts: [MirrorHost(url: "http://late:1")])
        let config = Self.backoffOnly([registry])
        let prober = ScriptedProber(["http://late:1": Array(repeating: (Duration.zero, Self.unavailable), count: 8) + [(.zero, Self.up)]])
        let clock = ManualClock()
        let store = MemoryStore()
        let applier = Applier(
            config: config, prober: prober, store: store, logger: Self.logger, clock: AgentClock(clock), random: .scripted([0]))
        let run = Task { await applier.run() }
        while store.content("ghcr.io") == nil, await clock.waitForSleepers(1), let next = clock.nextDeadline {
            clock.advance(to: next)
            _ = await eventuallyTrue { clock.sleeperCount == 1 || store.content("ghcr.io") != nil }
        }
        #expect(await run.value.exitStatus == .ok)
        // Jitter unit 0: half of each ceiling: 10, 20, 40, then 60 ms five times.
        #expect(clock.now == ManualClock.Instant(offset: .milliseconds(370)))
        #expect(store.content("ghcr.io") == HostsFile.render(registry, hosts: registry.hosts))
    }

    @Test("apply: a mirror that accepts no connection is tried every 150 ms, so it is seen within 150 ms of opening")
    func applyHedgesConnectionFailures() async throws {
        let registry = Registry(upstream: "docker.io", hosts: [MirrorHost(url: "http://closed:1")])
        var config = AgentConfig()
        config.registries = [registry]
        config.probe.deadline = .seconds(3)
        let prober = ScriptedProber(["http://closed:1": [(.zero, Self.refusedNoConnection)]])
        let clock = ManualClock()
        let applier = Applier(
            config: config, prober: prober, store: MemoryStore(), logger: Self.logger, clock: AgentClock(clock),
            random: .scripted([1]))
        let run = Task { await applier.run() }
        var times: [Duration] = []
        while await clock.waitForSleepers(2), let next = clock.nextDeadline, next < .seconds(3) {
            times.append(next)
            clock.advance(to: next)
            _ = await eventuallyTrue { prober.count("http://closed:1") == times.count + 1 }
        }
        clock.advance(to: .seconds(3))
        #expect(await run.value.exitStatus == .deadlineReached)
        #expect(times.count == 19)
        #expect(zip(times, times.dropFirst()).allSatisfy { close($1 - $0, .milliseconds(150)) })
        // With a thousand hosts the attempts would add up: the interval grows, past max_interval the backoff rules.
        var big = AgentConfig()
        big.registries = (0..<1000).map { Registry(upstream: "r\($0).io", hosts: [MirrorHost(url: "http://h\($0):1")]) }
        #expect(Applier(config: big, prober: prober, store: MemoryStore(), logger: Self.logger).hedgeInterval == nil)
        big.registries = Array(big.registries.prefix(200))
        #expect(Applier(config: big, prober: prober, store: MemoryStore(), logger: Self.logger).hedgeInterval == .milliseconds(300))
    }

    @Test("watch: a mirror that starts refusing is out 400 ms after the round that finds it (2.4 s, then 200 + 200 ms), then on the backoff")
    func watchHysteresis() async throws {
        let prober = ScriptedProber(["http://m:1": [(.zero, Self.up)] + Array(repeating: (Duration.zero, Self.refused), count: 10)])
        let watch = ManualWatch(config: .one("quay.io", "http://m:1"), prober: prober)
        let (clock, store) = (watch.clock, watch.store)
        #expect(await eventuallyTrue { store.content("quay.io") != nil }, "written after the first probe")
        // Each step: the one timer's instant, the probes made by then, whether the file is still there.
        // Up at once, the host waits for the round (2 s × 1.2); each failure brings the next probe 200 ms
        // later; the third takes it out; out, it is probed on the backoff (ceiling 800 ms at the third failure).
        let steps: [(at: Duration, probes: Int, inFile: Bool)] = [
            (.milliseconds(2_400), 2, true), (.milliseconds(2_600), 3, true),
            (.milliseconds(2_800), 4, false), (.milliseconds(3_600), 5, false),
        ]
        for step in steps {
            #expect(await eventuallyTrue { clock.sleeperCount == 1 && clock.nextDeadline.map { close($0, step.at) } == true },
                    "next timer at \(step.at), found \(String(describing: clock.nextDeadline)) (\(clock.sleeperCount) sleepers)")
            clock.advance(to: clock.nextDeadline ?? step.at)  // the exact instant: jitter is floating point
            #expect(await eventuallyTrue { prober.count("http://m:1") == step.probes }, "\(step.probes) probes by \(step.at)")
            #expect(await eventuallyTrue { (store.content("quay.io") != nil) == step.inFile }, "in the file at \(step.at): \(step.inFile)")
        }
        #expect(await watch.stop() == .ok)
    }
    @Test("watch: a mirror that stops answering is out 2.7 s after the round that finds it (timeout 2 s; company after 500 ms of silence, then every 200 ms)")
    func watchSilence() async throws {
        let clock = ManualClock()
        let hung = ProbeResult(state: .down, reason: "timed out after 2s (connected, no answer)")
        let prober = ClockProber(clock: clock, script: [(.zero, Self.up)] + Array(repeating: (.seconds(2), hung), count: 10))
        let watch = ManualWatch(config: .one("quay.io", "http://m:1"), prober: prober, clock: clock)
        let store = watch.store
        #expect(await eventuallyTrue { store.content("quay.io") != nil }, "written after the first probe")
        // Each step: the next instant, how many sleep until it (probes hanging and the timer), probes so far.
        // 2.4 round: a probe; 2.9: 500 ms of silence, another; 3.1 a third (three in flight: no timer);
        // 4.4, 4.9: failures, each replaced by a probe; 5.1: the third failure takes the host out.
        let steps: [(at: Duration, sleepers: Int, probes: Int)] = [
            (.milliseconds(2_400), 1, 1), (.milliseconds(2_900), 2, 2), (.milliseconds(3_100), 3, 3),
            (.milliseconds(4_400), 3, 4), (.milliseconds(4_900), 3, 5), (.milliseconds(5_100), 3, 6),
        ]
        for step in steps {
            #expect(await eventuallyTrue {
                prober.count == step.probes && clock.sleeperCount == step.sleepers && clock.nextDeadline.map { close($0, step.at) } == true
            }, "before \(step.at): \(prober.count) probes, \(clock.sleeperCount) sleepers, next \(String(describing: clock.nextDeadline))")
            #expect(store.content("quay.io") != nil, "still in the file before \(step.at)")
            clock.advance(to: clock.nextDeadline ?? step.at)
        }
        #expect(await eventuallyTrue { store.content("quay.io") == nil }, "out at 5.1 s")
        #expect(await watch.stop() == .ok)
    }

    @Test("watch: containerd's log going past a steady host gets it probed at once, counted in the metrics and logged")
    func bypassPokes() async throws {
        let prober = ScriptedProber(["http://10.0.0.7:5000": [(.zero, Self.up)]])
        let metrics = CapturedMetrics()
        // Metrics are written at most once a (wall-clock) second: each reading of this one is 2 s later.
        let wall = Mutex(0.0)
        let watch = ManualWatch(
            config: .one("quay.io", "http://10.0.0.7:5000"), prober: prober, metrics: metrics,
            wallClock: { wall.withLock { $0 += 2; return $0 } })
        let (clock, store, containerd) = (watch.clock, watch.store, watch.containerd)
        // Up, the host waits for the round at 2.4 s; 200 ms pass.
        #expect(await eventuallyTrue { clock.sleeperCount == 1 && clock.nextDeadline.map { close($0, .milliseconds(2_400)) } == true })
        #expect(store.content("quay.io") != nil)
        clock.advance(to: .milliseconds(200))
        // Another host's line changes nothing; this host's line brings a probe with the clock standing
        // still, and the rest of its burst none (a probe went out less than initial_interval ago).
        containerd.yield(.bypass(.init(authority: "10.0.0.8:5000", reason: "not ours")))
        containerd.yield(.bypass(.init(authority: "10.0.0.7:5000", reason: "response was http.StatusNotFound")))
        #expect(await eventuallyTrue { prober.count("http://10.0.0.7:5000") == 2 }, "probed at once")
        for _ in 0..<5 { containerd.yield(.bypass(.init(authority: "10.0.0.7:5000", reason: "response was http.StatusNotFound"))) }
        #expect(await eventuallyTrue { metrics.last.contains("mirror_bypassed_total{upstream=\"quay.io\",host=\"http://10.0.0.7:5000\"} 6") })
        #expect(close(clock.now.offset, .milliseconds(200)))
        // The round's probe comes after the burst in the host's queue: once it is counted, the burst
        // has been handled, and it added no probe.
        while prober.count("http://10.0.0.7:5000") < 3, clock.now.offset < .milliseconds(2_400) {
            guard await eventuallyTrue({ clock.sleeperCount == 1 }), let next = clock.nextDeadline else { break }
            clock.advance(to: next)
            _ = await eventuallyTrue { clock.sleeperCount == 1 || prober.count("http://10.0.0.7:5000") >= 3 }
        }
        #expect(await eventuallyTrue { prober.count("http://10.0.0.7:5000") >= 3 })
        #expect(close(clock.now.offset, .milliseconds(2_400)), "the round")
        #expect(prober.count("http://10.0.0.7:5000") == 3, "a burst is one piece of news")
        #expect(await watch.stop() == .ok)
    }

    @Test("watch: containerd restarting as another release re-renders the files for it")
    func containerdRestart() async throws {
        var config = AgentConfig.one("quay.io", "http://10.0.0.7:5000")
        let registry = config.registries[0]
        config.target = ContainerdTarget(version: ContainerdVersion(1, 7, 24), source: "test")
        let newer = ContainerdTarget(version: ContainerdVersion(2, 1, 9), source: "test")
        let prober = ScriptedProber(["http://10.0.0.7:5000": [(.zero, Self.up)]])
        let watch = ManualWatch(config: config, prober: prober, resolveTarget: { _ in newer })
        let (store, containerd) = (watch.store, watch.containerd)
        #expect(await eventuallyTrue { store.content("quay.io") == HostsFile.render(registry, hosts: registry.hosts, for: config.target) })
        #expect(store.content("quay.io")?.contains("dial_timeout") == false, "1.7 ignores it: left out")
        containerd.yield(.started)
        #expect(await eventuallyTrue { store.content("quay.io") == HostsFile.render(registry, hosts: registry.hosts, for: newer) })
        #expect(store.content("quay.io")?.contains("dial_timeout = \"1s\"") == true)
        #expect(await watch.stop() == .ok)
    }
}

extension AgentConfig {
    /// One registry with one host.
    static func one(_ upstream: String, _ url: String) -> AgentConfig {
        var config = AgentConfig()
        config.registries = [Registry(upstream: upstream, hosts: [MirrorHost(url: url)])]
        return config
    }
}

/// A watcher running on a manual clock with jitter 1 (every round 2.4 s), a line into it as
/// containerd's log, and its stop.
struct ManualWatch {
    let clock: ManualClock
    let store = MemoryStore()
    let containerd: AsyncStream<ContainerdLog.Event>.Continuation
    private let trigger: AsyncStream<Void>.Continuation
    private let run: Task<RegistryMirrorCore.ExitStatus, Never>

    init(
        config: AgentConfig, prober: any MirrorProber, clock: ManualClock = ManualClock(), metrics: (any MetricsSink)? = nil,
        wallClock: @escaping @Sendable () -> Double = { 0 }, resolveTarget: (@Sendable (AgentConfig) -> ContainerdTarget)? = nil,
        resolver: (any ServiceResolver)? = nil, connections: (any ConnectionChecker)? = nil, random: RandomSource = .scripted([1])
    ) {
        self.clock = clock
        let watcher = Watcher(
            config: config, prober: prober, store: store, notifier: SilentNotifier(), metrics: metrics,
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }, watchdogInterval: nil, wallClock: wallClock,
            resolveTarget: resolveTarget, reloadConfig: { .failure(.init(lines: [])) }, clock: AgentClock(clock), random: random,
            resolver: resolver, connections: connections)
        let (stop, trigger) = AsyncStream.makeStream(of: Void.self)
        let (hangup, _) = AsyncStream.makeStream(of: Void.self)
        let (log, containerd) = AsyncStream.makeStream(of: ContainerdLog.Event.self)
        self.trigger = trigger
        self.containerd = containerd
        run = Task { await watcher.run(stop: stop, hangup: hangup, bypasses: log) }
    }

    /// Stops the watcher (as SIGTERM does) and returns its exit status.
    func stop() async -> RegistryMirrorCore.ExitStatus {
        trigger.yield()
        return await run.value
    }
}

/// Answers each probe after a scripted delay on the manual clock.
final class ClockProber: MirrorProber, Sendable {
    let clock: ManualClock
    let script: [(Duration, ProbeResult)]
    private let calls = Mutex(0)

    init(clock: ManualClock, script: [(Duration, ProbeResult)]) {
        self.clock = clock
        self.script = script
    }

    var count: Int { calls.withLock { $0 } }

    func probe(_ host: MirrorHost, settings: ProbeSettings) async -> ProbeResult {
        let n = calls.withLock { calls in
            defer { calls += 1 }
            return calls
        }
        let (delay, result) = script[min(n, script.count - 1)]
        if delay > .zero { try? await clock.sleep(until: clock.now.advanced(by: delay), tolerance: nil) }
        return result
    }
}

private func close(_ a: Duration, _ b: Duration) -> Bool { a - b < .microseconds(1) && b - a < .microseconds(1) }

/// Polls briefly in real time (the code under test runs on other threads).
func eventuallyTrue(_ condition: () -> Bool) async -> Bool {
    for _ in 0..<5_000 {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(1))
    }
    return condition()
}

@Suite("apply and watch: one model")
struct OneModelTests {
    static let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    @Test("for the same probe results, apply and watch's first pass write the same files and log the same lines")
    func sameFiles() async throws {
        let up = ProbeResult(state: .up, reason: "HTTP 200")
        let down = ProbeResult(state: .down, reason: "connection refused")
        let registries = [
            Registry(upstream: "all-up.io", hosts: [MirrorHost(url: "http://a:1"), MirrorHost(url: "http://b:1")]),
            Registry(upstream: "mixed.io", hosts: [MirrorHost(url: "http://c:1"), MirrorHost(url: "http://d:1"), MirrorHost(url: "http://e:1")]),
            Registry(upstream: "all-down.io", hosts: [MirrorHost(url: "http://f:1")]),
            Registry(upstream: "unprobed.io", readinessProbe: false, hosts: [MirrorHost(url: "http://g:1")]),
        ]
        let script: [String: [(Duration, ProbeResult)]] = [
            "http://a:1": [(.zero, up)], "http://b:1": [(.zero, up)], "http://c:1": [(.zero, down)],
            "http://d:1": [(.zero, up)], "http://e:1": [(.zero, down)], "http://f:1": [(.zero, down)],
        ]
        var config = AgentConfig()
        config.registries = registries
        config.probe.deadline = .seconds(5)

        // Files of a stale earlier run, which both must replace or remove alike.
        func seeded() -> MemoryStore {
            let store = MemoryStore()
            let old = Registry(upstream: "all-down.io", hosts: [MirrorHost(url: "http://old:1")])
            try? store.perform([.writeRecord(.init(createdDirectory: true)), .write(HostsFile.render(old, hosts: old.hosts)!)], upstream: "all-down.io")
            return store
        }

        let applyStore = seeded()
        let applyClock = ManualClock()
        let applyLog = CapturedLog()
        // Made here, not in the task: its clock (and its deadline) starts at 0.
        let applier = Applier(
            config: config, prober: ScriptedProber(script), store: applyStore, logger: applyLog.logger,
            clock: AgentClock(applyClock), random: .scripted([1]))
        let apply = Task { await applier.run() }
        // Small steps, each with a moment of real time for the results in flight to be handled: a
        // jump straight to the next sleeper could pass the deadline before a result is taken in.
        for ms in stride(from: 10, through: 5_000, by: 10) {
            applyClock.advance(to: .milliseconds(ms))
            try await Task.sleep(for: .microseconds(200))
        }
        #expect(await apply.value.exitStatus == .deadlineReached)

        let watchStore = seeded()
        let watchClock = ManualClock()
        let watchLog = CapturedLog()
        let (stop, trigger) = AsyncStream.makeStream(of: Void.self)
        let (hangup, _) = AsyncStream.makeStream(of: Void.self)
        let watch = Task {
            await Watcher(
                config: config, prober: ScriptedProber(script), store: watchStore, notifier: SilentNotifier(), metrics: nil,
                logger: watchLog.logger, watchdogInterval: nil, wallClock: { 0 }, reloadConfig: { .failure(.init(lines: [])) },
                clock: AgentClock(watchClock), random: .scripted([1])
            ).run(stop: stop, hangup: hangup)
        }
        // The first pass is over when every probed host waits for its next probe: the three up ones
        // for the round (one ticker for all), the three down ones on their backoff timers.
        #expect(await watchClock.waitForSleepers(4))
        trigger.yield()
        #expect(await watch.value == .ok)

        for registry in registries {
            #expect(applyStore.content(registry.upstream) == watchStore.content(registry.upstream), "\(registry.upstream)")
        }
        // One result logger: each host's lines and each file's are the same, whichever run made them
        // (apply's summary at its end aside).
        func lines(_ log: CapturedLog) -> [String] {
            log.all.filter { $0.message.hasPrefix("mirror ") && !$0.message.hasPrefix("mirror still down") || $0.message.hasSuffix("hosts.toml") }
                .map { "\($0.metadata[LogKey.upstream] ?? "") \($0.metadata[LogKey.host] ?? "-") \($0.message)" }.sorted()
        }
        #expect(lines(applyLog) == lines(watchLog))
        #expect(lines(applyLog).contains("mixed.io http://c:1 mirror not ready: connection refused; retrying"), "\(lines(applyLog))")
        #expect(lines(applyLog).contains("mixed.io http://d:1 mirror up: HTTP 200 in 0.0ms"), "\(lines(applyLog))")
        #expect(applyStore.content("mixed.io") == HostsFile.render(registries[1], hosts: [registries[1].hosts[1]]))
        #expect(applyStore.content("all-down.io") == nil)
        #expect(applyStore.content("unprobed.io") == HostsFile.render(registries[3], hosts: registries[3].hosts))
    }
}

@Suite("watch with nothing to probe")
struct WatchNothingToProbeTests {
    final class ReadyNotifier: ServiceNotifier, Sendable {
        let ready_ = Mutex(false)
        func status(_ text: String) {}
        func ready() { ready_.withLock { $0 = true } }
        func stopping() {}
        func watchdog() {}
        var isReady: Bool { ready_.withLock { $0 } }
    }

    @Test("only readiness_probe = false registries: the files are written and READY=1 is sent at once")
    func readyWithoutProbes() async {
        var settings = AgentConfig()
        settings.registries = [Registry(upstream: "docker.io", readinessProbe: false, hosts: [MirrorHost(url: "http://a:1")])]
        let config = settings
        let store = MemoryStore()
        let notifier = ReadyNotifier()
        let (stop, trigger) = AsyncStream.makeStream(of: Void.self)
        let (hangup, _) = AsyncStream.makeStream(of: Void.self)
        let watch = Task {
            await Watcher(
                config: config, prober: ScriptedProber([:]), store: store, notifier: notifier, metrics: nil,
                logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }, watchdogInterval: nil, wallClock: { 0 },
                reloadConfig: { .failure(.init(lines: [])) }, clock: AgentClock(ManualClock()), random: .scripted([1])
            ).run(stop: stop, hangup: hangup)
        }
        #expect(await eventuallyTrue { notifier.isReady })
        #expect(store.content("docker.io") == HostsFile.render(config.registries[0], hosts: config.registries[0].hosts))
        trigger.yield()
        #expect(await watch.value == .ok)
    }
}

/// Keeps the last metrics text written.
final class CapturedMetrics: MetricsSink, Sendable {
    private let text = Mutex("")
    func write(_ text: String) { self.text.withLock { $0 = text } }
    var last: String { text.withLock { $0 } }
}
