import Logging
import Synchronization
import Testing

@testable import RegistryMirrorCore

final class SilentNotifier: ServiceNotifier {
    func status(_ text: String) {}
    func ready() {}
    func stopping() {}
    func watchdog() {}
}

@Suite("Watcher, on the real clock", .tags(.wallClock))
struct WatcherWallClockTests {
    static let up = ProbeResult(state: .up, reason: "HTTP 200")
    static let down = ProbeResult(state: .down, reason: "connection refused")

    /// Runs a watcher until `done` holds (or 30 s pass: a loaded machine may run the probes slowly),
    /// calling `observe` every millisecond or so.
    func run(_ registry: Registry, prober: ScriptedProber, store: MemoryStore, until done: @escaping @Sendable () -> Bool,
             observe: @escaping @Sendable () -> Void = {}) async {
        var config = AgentConfig()
        config.registries = [registry]
        config.probe.initialInterval = .milliseconds(5)
        config.probe.maxInterval = .milliseconds(10)
        config.probe.watchInterval = .milliseconds(10)
        let watcher = Watcher(
            config: config, prober: prober, store: store, notifier: SilentNotifier(), metrics: nil,
            logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() }, watchdogInterval: nil, wallClock: { 0 },
            reloadConfig: { .failure(.init(lines: [])) })
        let (stop, trigger) = AsyncStream.makeStream(of: Void.self)
        let (hangup, _) = AsyncStream.makeStream(of: Void.self)
        let task = Task { await watcher.run(stop: stop, hangup: hangup) }
        let end = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < end && !done() {
            observe()
            try? await Task.sleep(for: .milliseconds(1))
        }
        trigger.yield()
        #expect(await task.value == .ok)
    }

    @Test("a mirror flapping on every probe keeps its place: the file never flaps")
    func flapping() async {
        let registry = Registry(upstream: "docker.io", hosts: [MirrorHost(url: "http://flap:1")])
        let alternating = (0..<400).map { (Duration.zero, $0 % 2 == 0 ? Self.up : Self.down) }
        let prober = ScriptedProber(["http://flap:1": alternating])
        let store = MemoryStore()
        let sawMissing = Mutex(false)
        await run(registry, prober: prober, store: store, until: { prober.count("http://flap:1") > 40 }) {
            if store.content("docker.io") == nil, prober.count("http://flap:1") > 1 { sawMissing.withLock { $0 = true } }
        }
        #expect(prober.count("http://flap:1") > 20)
        #expect(!sawMissing.withLock { $0 })
        #expect(store.content("docker.io") == HostsFile.render(registry, hosts: registry.hosts))
    }

    @Test("a mirror down for two probes out of three never leaves; three in a row and it does")
    func thresholdEdge() async {
        let registry = Registry(upstream: "quay.io", hosts: [MirrorHost(url: "http://edge:1")])
        let pattern: [ProbeResult] = [Self.up] + Array(repeating: [Self.down, Self.down, Self.up], count: 30).flatMap { $0 }
            + [Self.down, Self.down, Self.down]
        let prober = ScriptedProber(["http://edge:1": pattern.map { (Duration.zero, $0) }])
        let store = MemoryStore()
        let removedEarly = Mutex(false)
        let written = Mutex(false)
        await run(registry, prober: prober, store: store, until: { prober.count("http://edge:1") > pattern.count && store.content("quay.io") == nil }) {
            if store.content("quay.io") != nil { written.withLock { $0 = true } }
            if written.withLock({ $0 }), store.content("quay.io") == nil, prober.count("http://edge:1") < pattern.count - 1 {
                removedEarly.withLock { $0 = true }
            }
        }
        #expect(written.withLock { $0 })
        #expect(prober.count("http://edge:1") >= pattern.count)
        #expect(!removedEarly.withLock { $0 })
        #expect(store.content("quay.io") == nil)
    }
}
