import Logging
import Synchronization
import Testing

@testable import RegistryMirrorCore

/// A prober whose answers the test scripts per URL: a list of (delay, result) consumed in order, the
/// last repeated. A URL the test did not script fails the test.
final class ScriptedProber: MirrorProber, Sendable {
    private let script: [String: [(Duration, ProbeResult)]]
    private let calls = Mutex<[String: Int]>([:])

    init(_ script: [String: [(Duration, ProbeResult)]]) { self.script = script }

    func probe(_ host: MirrorHost, settings: ProbeSettings) async -> ProbeResult {
        guard let steps = script[host.url] else {
            Issue.record("unexpected probe of \(host.url)")
            return ProbeResult(state: .down, reason: "unscripted")
        }
        let n = calls.withLock { calls in
            defer { calls[host.url, default: 0] += 1 }
            return calls[host.url, default: 0]
        }
        let (delay, result) = steps[min(n, steps.count - 1)]
        try? await Task.sleep(for: delay)
        return result
    }

    func count(_ url: String) -> Int { calls.withLock { $0[url, default: 0] } }
}

/// The hosts directory in memory, carrying out FileActions the way the real store does.
final class MemoryStore: HostsStore, Sendable {
    struct Dir { var file: UpstreamDirState.File = .absent; var backup = false; var record: OwnershipRecord? }
    let dirs = Mutex<[String: Dir]>([:])
    /// Upstreams whose writes fail, as an unwritable directory would.
    let failing: Set<String>

    init(failing: Set<String> = []) { self.failing = failing }

    var root: String { "/mem" }
    func filePath(_ upstream: String) -> String { "/mem/\(upstream)/hosts.toml" }

    func observe(_ upstream: String) throws(SystemError) -> UpstreamDirState {
        guard let d = dirs.withLock({ $0[upstream] }) else { return .absent }
        return UpstreamDirState(directory: .directory, file: d.file, backupExists: d.backup, record: d.record)
    }

    func perform(_ actions: [FileAction], upstream: String) throws(SystemError) {
        if failing.contains(upstream) {
            throw SystemError(operation: "write", path: filePath(upstream), reason: "Read-only file system")
        }
        dirs.withLock { dirs in
            var d = dirs[upstream] ?? Dir()
            var gone = false
            for action in actions {
                switch action {
                case .createDirectory(let r): d.record = r
                case .writeRecord(let r): d.record = r
                case .backUpForeign: d.backup = true; d.file = .absent
                case .write(let text): d.file = .managed(text)
                case .removeManaged: d.file = .absent
                case .restoreBackup: d.backup = false; d.file = .foreign
                case .removeRecord: d.record = nil
                case .removeDirectory: gone = true
                }
            }
            dirs[upstream] = gone ? nil : d
        }
    }

    func upstreamsWithOurFiles() throws(SystemError) -> [String] {
        dirs.withLock { dirs in
            dirs.filter { _, d in
                UpstreamDirState(directory: .directory, file: d.file, backupExists: d.backup, record: d.record).isOurs
            }.keys.sorted()
        }
    }

    func withLock<T>(creatingRoot: Bool, wait: LockWait, _ body: () throws -> T) throws -> T { try body() }
    func removeLeftovers() {}

    func content(_ upstream: String) -> String? {
        if case .managed(let text) = dirs.withLock({ $0[upstream]?.file }) { return text }
        return nil
    }
}

@Suite("Apply, on the real clock", .tags(.wallClock))
struct ApplierWallClockTests {
    static let up = ProbeResult(state: .up, reason: "HTTP 200")
    static let refused = ProbeResult(state: .down, reason: "connection refused")
    static let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    func config(_ registries: [Registry], deadline: GoDuration = .zero) -> AgentConfig {
        var c = AgentConfig()
        c.registries = registries
        c.probe.deadline = deadline
        c.probe.initialInterval = .milliseconds(20)
        c.probe.maxInterval = .milliseconds(50)
        return c
    }

    @Test("every host that is up makes it into the file, not only the quickest")
    func allUpHostsListed() async {
        let registry = Registry(upstream: "docker.io", hosts: [MirrorHost(url: "http://a:5000"), MirrorHost(url: "http://b:5000")])
        let prober = ScriptedProber([
            "http://a:5000": [(.milliseconds(150), Self.up)],
            "http://b:5000": [(.zero, Self.up)],
        ])
        let store = MemoryStore()
        let report = await Applier(config: config([registry]), prober: prober, store: store, logger: Self.logger).run()
        #expect(report.exitStatus == .ok)
        #expect(store.content("docker.io") == HostsFile.render(registry, hosts: registry.hosts))
    }

    @Test("a host down at its first answer is left out; apply does not wait for it")
    func downHostLeftOut() async {
        let registry = Registry(upstream: "quay.io", hosts: [MirrorHost(url: "http://dead:1"), MirrorHost(url: "http://live:2")])
        let prober = ScriptedProber(["http://dead:1": [(.zero, Self.refused)], "http://live:2": [(.zero, Self.up)]])
        let store = MemoryStore()
        // No deadline: had apply waited for the dead host to come up, this would never return.
        let report = await Applier(config: config([registry]), prober: prober, store: store, logger: Self.logger).run()
        #expect(report.exitStatus == .ok)
        #expect(report.configured == ["quay.io"])
        #expect(store.content("quay.io") == HostsFile.render(registry, hosts: [registry.hosts[1]]))
    }

    @Test("a mirror that comes up late is written once it answers")
    func lateMirror() async {
        let registry = Registry(upstream: "ghcr.io", hosts: [MirrorHost(url: "http://late:1")])
        let prober = ScriptedProber([
            "http://late:1": [(.zero, Self.refused), (.zero, Self.refused), (.zero, Self.refused), (.zero, Self.up)]
        ])
        let store = MemoryStore()
        let report = await Applier(config: config([registry]), prober: prober, store: store, logger: Self.logger).run()
        #expect(report.exitStatus == .ok)
        #expect(prober.count("http://late:1") == 4)
        #expect(store.content("ghcr.io") != nil)
    }

    @Test("the deadline ends apply with 69; registries with a host up are still written")
    func deadline() async {
        let live = Registry(upstream: "docker.io", hosts: [MirrorHost(url: "http://live:1")])
        let dead = Registry(upstream: "quay.io", hosts: [MirrorHost(url: "http://dead:1")])
        let prober = ScriptedProber(["http://live:1": [(.zero, Self.up)], "http://dead:1": [(.zero, Self.refused)]])
        let store = MemoryStore()
        let report = await Applier(
            config: config([live, dead], deadline: .seconds(1)), prober: prober, store: store, logger: Self.logger
        ).run()
        #expect(report.exitStatus == .deadlineReached)
        #expect(report.deadlineReached)
        #expect(report.waiting == ["quay.io"])
        #expect(store.content("docker.io") != nil)
        #expect(store.content("quay.io") == nil)
        #expect(prober.count("http://dead:1") > 1)  // it kept retrying until the deadline
    }

    @Test("a stop request ends apply with 75")
    func interrupted() async {
        let registry = Registry(upstream: "docker.io", hosts: [MirrorHost(url: "http://dead:1")])
        let prober = ScriptedProber(["http://dead:1": [(.zero, Self.refused)]])
        let (stop, trigger) = AsyncStream.makeStream(of: Void.self)
        Task {
            try? await Task.sleep(for: .milliseconds(200))
            trigger.yield()
        }
        let report = await Applier(config: config([registry]), prober: prober, store: MemoryStore(), logger: Self.logger)
            .run(stop: stop)
        #expect(report.exitStatus == .interrupted)
    }

    @Test("a directory that cannot be written gives 73 and does not stop the others")
    func unwritable() async {
        let good = Registry(upstream: "docker.io", hosts: [MirrorHost(url: "http://a:1")])
        let bad = Registry(upstream: "quay.io", hosts: [MirrorHost(url: "http://b:1")])
        let prober = ScriptedProber(["http://a:1": [(.zero, Self.up)], "http://b:1": [(.zero, Self.up)]])
        let store = MemoryStore(failing: ["quay.io"])
        let report = await Applier(config: config([good, bad]), prober: prober, store: store, logger: Self.logger).run()
        #expect(report.exitStatus == .cannotWrite)
        #expect(report.failed.keys.sorted() == ["quay.io"])
        #expect(store.content("docker.io") != nil)
    }

    @Test("our old file naming dead mirrors goes once every host has failed; unconfigured upstreams are cleaned")
    func staleFiles() async {
        let registry = Registry(upstream: "docker.io", hosts: [MirrorHost(url: "http://dead:1")])
        let store = MemoryStore()
        let old = Registry(upstream: "docker.io", hosts: [MirrorHost(url: "http://old:1")])
        try? store.perform([.writeRecord(.init(createdDirectory: true)), .write(HostsFile.render(old, hosts: old.hosts)!)], upstream: "docker.io")
        try? store.perform([.writeRecord(.init(createdDirectory: true)), .write(HostsFile.render(old, hosts: old.hosts)!)], upstream: "gone.io")
        let prober = ScriptedProber(["http://dead:1": [(.zero, Self.refused)]])
        let report = await Applier(
            config: config([registry], deadline: .milliseconds(200)), prober: prober, store: store, logger: Self.logger
        ).run()
        #expect(report.exitStatus == .deadlineReached)
        #expect(store.content("docker.io") == nil)
        #expect(store.dirs.withLock { $0["gone.io"] } == nil)
    }

    @Test("readiness_probe = false writes every host at once without probing")
    func unprobed() async {
        let registry = Registry(
            upstream: "docker.io", readinessProbe: false, hosts: [MirrorHost(url: "http://a:1"), MirrorHost(url: "http://b:1")])
        let store = MemoryStore()
        let report = await Applier(config: config([registry]), prober: ScriptedProber([:]), store: store, logger: Self.logger).run()
        #expect(report.exitStatus == .ok)
        #expect(store.content("docker.io") == HostsFile.render(registry, hosts: registry.hosts))
    }
}
