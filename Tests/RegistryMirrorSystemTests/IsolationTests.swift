import Foundation
import RegistryMirrorCore
import RegistryMirrorSystem
import Testing

/// docs/design.md §4: "A dead or hanging host never delays the probing or writing of any other host",
/// and apply stops promptly when told to.
@Suite("Isolation: a live mirror's file is written without waiting for hanging ones")
struct IsolationTests {
    /// One live upstream (its first mirror hangs, its second answers) and 20 upstreams whose only
    /// mirror accepts connections and never answers; a long probe timeout so nothing hanging ends
    /// by itself during the test.
    struct Setup {
        let tree: HostsTree
        let hang: TestServer
        let live: TestServer
        let config: AgentConfig
        let hanging: [String]

        init() async throws {
            let tree = try HostsTree()
            let hang = try await TestServer(.hang)
            let live = try await TestServer(.status(200))
            await warmUpProber()
            var config = AgentConfig()
            config.hostsDir = tree.root
            config.probe.connectTimeout = .seconds(5)
            config.probe.timeout = .seconds(30)
            let hanging = (1...20).map { "hang\($0).example" }
            config.registries =
                [registry("live.example", [hang.url, live.url])]
                + hanging.map { registry($0, [hang.url + "/\($0)"]) }
            self.tree = tree
            self.hang = hang
            self.live = live
            self.hanging = hanging
            self.config = config
        }

        func stop() {
            hang.stop()
            live.stop()
        }

        var liveContent: String {
            HostsFile.render(config.registries[0], hosts: [config.registries[0].hosts[1]])!
        }
    }

    @Test("the live upstream's hosts.toml is on disk within 2 s while 20 others hang; a stop ends the run promptly with 75")
    func liveFileFirstThenStop() async throws {
        let setup = try await Setup()
        defer { setup.stop() }
        let (stop, stopper) = AsyncStream.makeStream(of: Void.self)
        let applier = Applier(config: setup.config, prober: CurlProber.shared, store: setup.tree.store, logger: quietLogger)
        let started = ContinuousClock.now
        let run = Task { await applier.run(stop: stop) }

        let appeared = await eventually(within: .seconds(2)) { readText(setup.tree.file("live.example")) == setup.liveContent }
        let elapsed = ContinuousClock.now - started
        #expect(appeared, "live.example/hosts.toml not written within 2 s (\(elapsed))")
        // Nothing of the hanging upstreams is resolved: no file, and apply is still waiting for them.
        for upstream in setup.hanging {
            #expect(!exists(setup.tree.dir(upstream)), "\(upstream) has a directory although its mirror never answered")
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(setup.hang.requestPaths.isEmpty)

        let stopAt = ContinuousClock.now
        stopper.yield()
        let report = await run.value
        let stopTook = ContinuousClock.now - stopAt
        #expect(stopTook < .seconds(2), "apply took \(stopTook) to stop with probes hanging (timeout 30s)")
        #expect(report.interrupted)
        #expect(report.exitStatus == .interrupted)
        #expect(report.configured == ["live.example"])
        #expect(Set(report.waiting) == Set(setup.hanging))
        #expect(report.failed.isEmpty)
        // The written file is complete and still there; nothing else was written.
        #expect(readText(setup.tree.file("live.example")) == setup.liveContent)
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: setup.tree.root)) == ["live.example"])
    }

    @Test("cancelling the task running apply ends it promptly, leaving only complete files")
    func cancellation() async throws {
        let setup = try await Setup()
        defer { setup.stop() }
        let applier = Applier(config: setup.config, prober: CurlProber.shared, store: setup.tree.store, logger: quietLogger)
        let run = Task { await applier.run() }
        let appeared = await eventually(within: .seconds(2)) { exists(setup.tree.file("live.example")) }
        #expect(appeared)
        let cancelAt = ContinuousClock.now
        run.cancel()
        let report = await run.value
        #expect(ContinuousClock.now - cancelAt < .seconds(2), "apply did not stop promptly after cancellation")
        #expect(report.configured == ["live.example"])
        #expect(report.exitStatus != .ok)
        #expect(readText(setup.tree.file("live.example")) == setup.liveContent)
    }

    @Test("a deadline ends apply with the live upstream written and the hanging ones reported (69)")
    func deadline() async throws {
        let setup = try await Setup()
        defer { setup.stop() }
        var config = setup.config
        config.probe.deadline = .milliseconds(1500)
        config.registries = Array(config.registries.prefix(6))
        let applier = Applier(config: config, prober: CurlProber.shared, store: setup.tree.store, logger: quietLogger)
        let started = ContinuousClock.now
        let report = await applier.run()
        let elapsed = ContinuousClock.now - started
        #expect(report.deadlineReached)
        #expect(report.exitStatus == .deadlineReached)
        #expect(elapsed >= .milliseconds(1400) && elapsed < .seconds(3), "deadline 1.5s, apply took \(elapsed)")
        #expect(report.configured == ["live.example"])
        #expect(report.waiting == Array(setup.hanging.prefix(5)))
        #expect(readText(setup.tree.file("live.example")) == setup.liveContent)
    }
}
