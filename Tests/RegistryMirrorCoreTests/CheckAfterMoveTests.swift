import Testing

@testable import RegistryMirrorCore

// check after a Service moved, or with DNS down (round-three defects 7 and 8): the file on disk
// names an address, and containerd tries and names that address, whatever the current lookup says.

@Suite("check judges the addresses the file names")
struct CheckAfterMoveTests {
    static let name = DiscoveryTests.name
    static let old = "http://10.0.0.1:5000"
    static let new = "http://10.0.0.2:5000"

    /// check's report over `Survey.take`, with containerd's log as `bypasses` (matched as check does).
    static func check(_ resolver: SettableResolver, prober: SettableProber, store: MemoryStore, bypasses: [ContainerdLog.Bypass] = [])
        async throws -> HealthReport
    {
        let config = DiscoveryTests.config()
        let survey = try await Survey.take(config, resolver: resolver, prober: prober, store: store)
        let tally = ContainerdLog.tally(bypasses, in: survey.hostsAsSeen(config))
        return HealthReport.evaluate(survey, containerd: SurveyKit.readsHostsDir, hostsDir: SurveyKit.hostsDir, bypasses: tally)
    }

    @Test("the Service moved to another dead address while the file names the old dead one: CRITICAL, the old address probed")
    func movedFromDeadToDead() async throws {
        let store = await DiscoveryTests.storeWithOurFile()
        let prober = SettableProber()
        let report = try await Self.check(SettableResolver([Self.name: .addresses(["10.0.0.2"])]), prober: prober, store: store)
        #expect(report.state == .critical, "\(CheckText.render(report))")
        #expect(report.summary.contains("lists \(Self.old), which is down"), "\(report.summary)")
        #expect(prober.count(Self.old) == 1 && prober.count(Self.new) == 1)
        #expect(CheckText.json(report).contains("\"url\":\"\(Self.old)\",\"state\":\"down\""))
    }

    @Test("DNS unreachable and the address the file names dead: CRITICAL, not 'has no address'")
    func dnsDownAndListedDead() async throws {
        let store = await DiscoveryTests.storeWithOurFile()
        let report = try await Self.check(SettableResolver([Self.name: .unreachable("no answer")]), prober: SettableProber(), store: store)
        #expect(report.state == .critical, "\(CheckText.render(report))")
        #expect(report.summary.contains("lists \(Self.old), which is down"), "\(report.summary)")
    }

    @Test("DNS unreachable and the address the file names up: WARNING only (the name has no address), the file kept")
    func dnsDownAndListedUp() async throws {
        let store = await DiscoveryTests.storeWithOurFile()
        let report = try await Self.check(
            SettableResolver([Self.name: .unreachable("no answer")]), prober: SettableProber(up: [Self.old]), store: store)
        #expect(report.state == .warning, "\(CheckText.render(report))")
        #expect(report.registries[0].fileState == .ok)
    }

    @Test("containerd's bypass entries name the address: they count against the Service name's host (3 entries, WARNING)")
    func bypassesMatchTheAddress() async throws {
        let store = await DiscoveryTests.storeWithOurFile()
        let bypass = ContainerdLog.Bypass(authority: "10.0.0.1:5000", reason: "response was http.StatusNotFound")
        let report = try await Self.check(
            SettableResolver([Self.name: .addresses(["10.0.0.1"])]), prober: SettableProber(up: [Self.old]), store: store,
            bypasses: [bypass, bypass, bypass])
        #expect(report.state == .warning, "\(CheckText.render(report))")
        #expect(report.registries[0].hosts.first?.bypassed == 3)
        #expect(report.summary.contains("containerd went past \(Self.old) 3 times"), "\(report.summary)")
        // The config as read names the Service, which containerd never logs: nothing matched there.
        #expect(ContainerdLog.tally([bypass], in: DiscoveryTests.config()).isEmpty)
    }
}
