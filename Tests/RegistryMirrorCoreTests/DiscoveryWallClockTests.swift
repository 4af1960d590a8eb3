import Logging
import Synchronization
import Testing

@testable import RegistryMirrorCore

/// Service names through apply and watch on the real clock (the helpers are `DiscoveryTests`'s).
@Suite("Discovery, on the real clock", .tags(.wallClock))
struct DiscoveryWallClockTests {
    @Test("two names (or a name and its own address) with one address make one host in the file")
    func duplicateAddressOnce() async {
        let other = "http://registry-b.kube-system.svc.cluster.local:5000"
        let resolver = SettableResolver([DiscoveryTests.name: .addresses(["10.0.0.1"]), "registry-b.kube-system.svc.cluster.local": .addresses(["10.0.0.1"])])
        let prober = SettableProber(up: ["http://10.0.0.1:5000"])
        let store = MemoryStore()
        let report = await Applier(
            config: DiscoveryTests.config([DiscoveryTests.url, other, "http://10.0.0.1:5000"]), prober: prober, store: store, logger: DiscoveryTests.logger,
            resolver: resolver
        ).run()
        #expect(report.exitStatus == .ok)
        #expect(DiscoveryTests.hosts(in: store.content("docker.io")) == ["http://10.0.0.1:5000"])
    }

    @Test("apply: the file names the address the name resolves to; probes go to the address")
    func applyResolves() async {
        let resolver = SettableResolver([DiscoveryTests.name: .addresses(["10.0.0.2", "10.0.0.1"])])
        let prober = SettableProber(up: ["http://10.0.0.1:5000", "http://10.0.0.2:5000"])
        let store = MemoryStore()
        let report = await Applier(config: DiscoveryTests.config(), prober: prober, store: store, logger: DiscoveryTests.logger, resolver: resolver).run()
        #expect(report.exitStatus == .ok)
        #expect(DiscoveryTests.hosts(in: store.content("docker.io")) == ["http://10.0.0.1:5000", "http://10.0.0.2:5000"])
        #expect(prober.count(DiscoveryTests.url) == 0)
    }

    @Test("apply: NXDOMAIN, then the record appears: apply waits, then writes")
    func applyWaitsForRecord() async {
        let resolver = SettableResolver()
        let prober = SettableProber(up: ["http://10.0.0.1:5000"])
        let store = MemoryStore()
        let run = Task { await Applier(config: DiscoveryTests.config(), prober: prober, store: store, logger: DiscoveryTests.logger, resolver: resolver).run() }
        #expect(await eventuallyTrue { resolver.count(DiscoveryTests.name) >= 3 })
        #expect(store.content("docker.io") == nil)
        resolver.set(DiscoveryTests.name, .addresses(["10.0.0.1"]))
        let report = await run.value
        #expect(report.exitStatus == .ok)
        #expect(DiscoveryTests.hosts(in: store.content("docker.io")) == ["http://10.0.0.1:5000"])
    }

    @Test("apply: DNS unreachable is not ready, retried on the backoff until the deadline; the reason says which")
    func applyDNSUnreachable() async {
        let resolver = SettableResolver([DiscoveryTests.name: .unreachable("no answer from 127.0.0.1:5353 within 1s")])
        var config = DiscoveryTests.config()
        config.probe.deadline = .milliseconds(200)
        let report = await Applier(config: config, prober: SettableProber(), store: MemoryStore(), logger: DiscoveryTests.logger, resolver: resolver).run()
        #expect(report.exitStatus == .deadlineReached)
        #expect(report.waiting == ["docker.io"])
        #expect(resolver.count(DiscoveryTests.name) >= 3, "looked up again on the backoff (5-10 ms) until the 200 ms deadline")
        let applier = Applier(config: config, prober: SettableProber(), store: MemoryStore(), logger: DiscoveryTests.logger)
        var state = MirrorState(config: config)
        _ = state.resolved(HostKey(upstream: "docker.io", url: DiscoveryTests.url), .unreachable("no answer from 127.0.0.1:5353 within 1s"))
        #expect(applier.statusText(state).contains("\(DiscoveryTests.url): DNS unreachable: no answer from 127.0.0.1:5353 within 1s"))
    }

    @Test("apply while DNS fails (an answer code that says nothing of the name) leaves our file of the cache that is up")
    func applyKeepsFileWhileDNSFails() async {
        let store = await DiscoveryTests.storeWithOurFile()
        let before = store.content("docker.io")
        let resolver = SettableResolver([DiscoveryTests.name: .unreachable("unexpected answer code 9 (NOTAUTH, from 127.0.0.1:5353)")])
        var config = DiscoveryTests.config()
        config.probe.deadline = .milliseconds(200)
        let report = await Applier(
            config: config, prober: SettableProber(up: ["http://10.0.0.1:5000"]), store: store, logger: DiscoveryTests.logger, resolver: resolver
        ).run()
        #expect(report.exitStatus == .deadlineReached)
        #expect(store.content("docker.io") == before)
    }

    @Test("without [discovery], a name under cluster.local is written as given")
    func noDiscovery() async {
        var config = DiscoveryTests.config()
        config.discovery = nil
        let prober = SettableProber(up: [DiscoveryTests.url])
        let store = MemoryStore()
        let report = await Applier(config: config, prober: prober, store: store, logger: DiscoveryTests.logger, resolver: SettableResolver()).run()
        #expect(report.exitStatus == .ok)
        #expect(DiscoveryTests.hosts(in: store.content("docker.io")) == [DiscoveryTests.url])
    }

    @Test("readiness_probe = false: the file names the address as soon as the name resolves, with no probe")
    func unprobedRegistry() async {
        let resolver = SettableResolver([DiscoveryTests.name: .addresses(["10.0.0.1"])])
        let prober = SettableProber()
        let store = MemoryStore()
        let report = await Applier(
            config: DiscoveryTests.config(readinessProbe: false), prober: prober, store: store, logger: DiscoveryTests.logger, resolver: resolver
        ).run()
        #expect(report.exitStatus == .ok)
        #expect(DiscoveryTests.hosts(in: store.content("docker.io")) == ["http://10.0.0.1:5000"])
        #expect(prober.count("http://10.0.0.1:5000") == 0)
    }

    /// Runs a watcher (real clock, short intervals) until `done` holds or 30 s pass.
    func watch(
        _ config: AgentConfig, prober: SettableProber, resolver: SettableResolver, store: MemoryStore, logger: Logger = DiscoveryTests.logger,
        metrics: (any MetricsSink)? = nil, steps: [(condition: @Sendable () -> Bool, then: @Sendable () -> Void)]
    ) async -> [Bool] {
        let watcher = Watcher(
            config: config, prober: prober, store: store, notifier: SilentNotifier(), metrics: metrics, logger: logger,
            watchdogInterval: nil, wallClock: { 0 }, reloadConfig: { .failure(.init(lines: [])) }, resolver: resolver)
        let (stop, trigger) = AsyncStream.makeStream(of: Void.self)
        let (hangup, _) = AsyncStream.makeStream(of: Void.self)
        let task = Task { await watcher.run(stop: stop, hangup: hangup) }
        var seen: [Bool] = []
        for step in steps {
            let ok = await eventuallyTrue(step.condition)
            seen.append(ok)
            if !ok { break }
            step.then()
        }
        trigger.yield()
        #expect(await task.value == .ok)
        return seen
    }

    @Test("watch: the record moves to a second cache and the first dies: the file follows, after success_threshold good probes")
    func watchFollowsMove() async {
        let resolver = SettableResolver([DiscoveryTests.name: .addresses(["10.0.0.1"])])
        let prober = SettableProber(up: ["http://10.0.0.1:5000", "http://10.0.0.2:5000"])
        let store = MemoryStore()
        let moved = Mutex<(probes: Int, at: ContinuousClock.Instant)>((0, .now))
        let log = CapturedLog()
        let metrics = CapturedMetrics()
        let seen = await watch(
            DiscoveryTests.config(), prober: prober, resolver: resolver, store: store, logger: log.logger, metrics: metrics,
            steps: [
                ({ DiscoveryTests.hosts(in: store.content("docker.io")) == ["http://10.0.0.1:5000"] }, {
                    prober.set("http://10.0.0.1:5000", up: false)
                    resolver.set(DiscoveryTests.name, .addresses(["10.0.0.2"]))
                }),
                ({ DiscoveryTests.hosts(in: store.content("docker.io")) == ["http://10.0.0.2:5000"] }, {
                    moved.withLock { $0 = (prober.count("http://10.0.0.1:5000"), .now) }
                }),
                ({ ContinuousClock.now >= moved.withLock { $0.at } + .milliseconds(200) }, {}),
            ])
        #expect(seen == [true, true, true])
        #expect(prober.count("http://10.0.0.2:5000") >= 2)
        // The old address is no longer probed (but for one that was out already).
        #expect(prober.count("http://10.0.0.1:5000") <= moved.withLock { $0.probes } + 1)
        // The log says so, with the name as a field of its own (REGISTRY_SERVICE in the journal).
        let line = log.all.first { $0.message.hasPrefix("service address changed 10.0.0.1 -> 10.0.0.2") }
        #expect(line?.metadata[LogKey.service] == DiscoveryTests.name, "\(log.all.map(\.message))")
        // The new address is not "back" or "suspect": it never was in a file.
        #expect(log.all.contains { $0.message.hasPrefix("service \(DiscoveryTests.name): new address answers") })
        #expect(!log.all.contains { $0.metadata[LogKey.host] == "http://10.0.0.2:5000" && $0.message.hasPrefix("mirror ") },
                "\(log.all.filter { $0.metadata[LogKey.host] == "http://10.0.0.2:5000" }.map(\.message))")
        // The metrics carry the name.
        #expect(metrics.last.contains("host=\"http://10.0.0.2:5000\",service=\"\(DiscoveryTests.name)\""), "\(metrics.last)")
    }

    @Test("watch: a new address that does not answer never replaces the old one, which keeps working")
    func watchNewAddressMustPass() async {
        let resolver = SettableResolver([DiscoveryTests.name: .addresses(["10.0.0.1"])])
        let prober = SettableProber(up: ["http://10.0.0.1:5000"])
        let store = MemoryStore()
        let seen = await watch(
            DiscoveryTests.config(), prober: prober, resolver: resolver, store: store,
            steps: [
                ({ DiscoveryTests.hosts(in: store.content("docker.io")) == ["http://10.0.0.1:5000"] }, {
                    resolver.set(DiscoveryTests.name, .addresses(["10.0.0.2"]))
                }),
                ({ prober.count("http://10.0.0.2:5000") >= 10 }, {}),
            ])
        #expect(seen == [true, true])
        #expect(DiscoveryTests.hosts(in: store.content("docker.io")) == ["http://10.0.0.1:5000"])
    }

    @Test("watch: DNS unreachable or the name gone: the file keeps the working mirror, which is still probed")
    func watchKeepsAddressWhileDNSDown() async {
        let resolver = SettableResolver([DiscoveryTests.name: .addresses(["10.0.0.1"])])
        let prober = SettableProber(up: ["http://10.0.0.1:5000"])
        let store = MemoryStore()
        let probesAt = Mutex(0)
        let seen = await watch(
            DiscoveryTests.config(), prober: prober, resolver: resolver, store: store,
            steps: [
                ({ DiscoveryTests.hosts(in: store.content("docker.io")) == ["http://10.0.0.1:5000"] }, {
                    resolver.set(DiscoveryTests.name, .unreachable("no answer"))
                    probesAt.withLock { $0 = prober.count("http://10.0.0.1:5000") }
                }),
                ({ resolver.count(DiscoveryTests.name) >= 10 && prober.count("http://10.0.0.1:5000") >= probesAt.withLock { $0 } + 5 }, {
                    resolver.set(DiscoveryTests.name, .notFound("NXDOMAIN"))
                }),
                ({ resolver.count(DiscoveryTests.name) >= 20 }, {}),
            ])
        #expect(seen == [true, true, true])
        #expect(DiscoveryTests.hosts(in: store.content("docker.io")) == ["http://10.0.0.1:5000"])
    }

    @Test("watch: a literal host that is also a Service's old address is still probed after the Service moves, and leaves when it dies")
    func literalSharedWithOldAddressStaysProbed() async {
        let resolver = SettableResolver([DiscoveryTests.name: .addresses(["10.0.0.1"])])
        let prober = SettableProber(up: ["http://10.0.0.1:5000", "http://10.0.0.2:5000"])
        let store = MemoryStore()
        let seen = await watch(
            DiscoveryTests.config([DiscoveryTests.url, "http://10.0.0.1:5000"]), prober: prober, resolver: resolver, store: store,
            steps: [
                ({ DiscoveryTests.hosts(in: store.content("docker.io")) == ["http://10.0.0.1:5000"] }, {
                    resolver.set(DiscoveryTests.name, .addresses(["10.0.0.2"]))
                }),
                ({ DiscoveryTests.hosts(in: store.content("docker.io")) == ["http://10.0.0.2:5000", "http://10.0.0.1:5000"] }, {
                    prober.set("http://10.0.0.1:5000", up: false)
                }),
                ({ DiscoveryTests.hosts(in: store.content("docker.io")) == ["http://10.0.0.2:5000"] }, {}),
            ])
        #expect(seen == [true, true, true], "\(String(describing: store.content("docker.io")))")
    }

    @Test("watch: a name with no address while DNS is unreachable keeps our old file; once DNS says it does not exist, the file goes")
    func pendingNameNotFoundRemovesFile() async {
        let store = await DiscoveryTests.storeWithOurFile()
        let resolver = SettableResolver([DiscoveryTests.name: .unreachable("no answer")])
        let seen = await watch(
            DiscoveryTests.config(), prober: SettableProber(up: ["http://10.0.0.1:5000"]), resolver: resolver, store: store,
            steps: [
                ({ resolver.count(DiscoveryTests.name) >= 5 }, {
                    #expect(DiscoveryTests.hosts(in: store.content("docker.io")) == ["http://10.0.0.1:5000"])
                    resolver.set(DiscoveryTests.name, .notFound("NXDOMAIN"))
                }),
                ({ store.content("docker.io") == nil }, {}),
            ])
        #expect(seen == [true, true])
    }

    @Test("watch: a reload keeps a name's addresses and history, and looks up a name it adds")
    func reloadKeepsAddresses() async {
        let other = "registry-quay-io.kube-system.svc.cluster.local"
        let resolver = SettableResolver([DiscoveryTests.name: .addresses(["10.0.0.1"]), other: .addresses(["10.0.0.9"])])
        let prober = SettableProber(up: ["http://10.0.0.1:5000", "http://10.0.0.9:5000"])
        let store = MemoryStore()
        var reloaded = DiscoveryTests.config()
        reloaded.registries.append(Registry(upstream: "quay.io", hosts: [MirrorHost(url: "http://\(other):5000")]))
        let log = CapturedLog()
        let watcher = Watcher(
            config: DiscoveryTests.config(), prober: prober, store: store, notifier: SilentNotifier(), metrics: nil, logger: log.logger,
            watchdogInterval: nil, wallClock: { 0 }, reloadConfig: { [reloaded] in .success(reloaded) }, resolver: resolver)
        let (stop, trigger) = AsyncStream.makeStream(of: Void.self)
        let (hangup, hup) = AsyncStream.makeStream(of: Void.self)
        let task = Task { await watcher.run(stop: stop, hangup: hangup) }
        #expect(await eventuallyTrue { DiscoveryTests.hosts(in: store.content("docker.io")) == ["http://10.0.0.1:5000"] })
        let before = store.content("docker.io")
        hup.yield()
        #expect(await eventuallyTrue { DiscoveryTests.hosts(in: store.content("quay.io")) == ["http://10.0.0.9:5000"] })
        #expect(store.content("docker.io") == before)
        // The kept name is not announced again as if new; the added one is.
        #expect(log.all.filter { $0.message == "service \(DiscoveryTests.name): DNS: 10.0.0.1" }.count == 1)
        #expect(log.all.contains { $0.message == "service \(other): DNS: 10.0.0.9" })
        trigger.yield()
        #expect(await task.value == .ok)
    }
}
