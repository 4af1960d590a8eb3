import Testing

@testable import RegistryMirrorCore

// Round-three defect 6: with `readiness_probe = false` a Service name's new address was a candidate
// that no probe ever tested, so it never replaced the old one. Such a registry is written without
// probing: its file follows what the DNS says at once, in apply and in watch.

@Suite("readiness_probe = false follows a moved Service")
struct UnprobedServiceTests {
    static let name = DiscoveryTests.name

    @Test("watch: the record moves from 10.0.0.1 to 10.0.0.2; at the next round the file names 10.0.0.2, with no probe")
    func watchFollowsTheMove() async throws {
        let resolver = SettableResolver([Self.name: .addresses(["10.0.0.1"])])
        let prober = SettableProber()
        let watch = ManualWatch(config: DiscoveryTests.config(readinessProbe: false), prober: prober, resolver: resolver)
        #expect(await eventuallyTrue { DiscoveryTests.hosts(in: watch.store.content("docker.io")) == ["http://10.0.0.1:5000"] })
        resolver.set(Self.name, .addresses(["10.0.0.2"]))
        // Rounds are 24 ms apart here (watch_interval 20ms, jitter 1): a few of them are plenty.
        for step in 1...20 {
            watch.clock.advance(to: .milliseconds(30 * step))
            if DiscoveryTests.hosts(in: watch.store.content("docker.io")) == ["http://10.0.0.2:5000"] { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(DiscoveryTests.hosts(in: watch.store.content("docker.io")) == ["http://10.0.0.2:5000"])
        #expect(prober.count("http://10.0.0.2:5000") == 0 && prober.count("http://10.0.0.1:5000") == 0, "readiness_probe = false probes nothing")
        #expect(await watch.stop() == .ok)
    }
}
