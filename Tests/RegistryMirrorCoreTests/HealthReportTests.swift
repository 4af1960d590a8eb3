@testable import RegistryMirrorCore
import Testing

/// Every row of docs/design.md §7's `check` column, from hand-built surveys.
@Suite("check: health states")
struct HealthReportTests {
    typealias K = SurveyKit

    let docker = K.docker
    let hostA = K.hostA, hostB = K.hostB
    var both: UpstreamDirState { K.dir(K.managed(docker, listing: [hostA, hostB])) }
    var onlyA: UpstreamDirState { K.dir(K.managed(docker, listing: [hostA])) }

    /// The single registry's health, after checking the report holds exactly one.
    func only(_ report: HealthReport, sourceLocation: SourceLocation = #_sourceLocation) throws -> HealthReport.RegistryHealth {
        try #require(report.registries.count == 1, sourceLocation: sourceLocation)
        return report.registries[0]
    }

    // MARK: OK

    @Test("OK: files match, every host up, containerd reads hosts_dir")
    func ok() throws {
        let report = K.evaluate([K.entry(results: [K.up(), K.up()], listed: [K.urlA, K.urlB], observed: both)])
        #expect(report.state == .ok)
        #expect(report.state.rawValue == 0)
        #expect(report.summary.hasPrefix("OK: "))
        #expect(report.summary.contains("1 registries, 2/2 hosts up"))
        #expect(report.containerd.state == .ok)
        let registry = try only(report)
        #expect(registry.state == .ok)
        #expect(registry.fileState == .ok)
        #expect(registry.findings.isEmpty)
        #expect(registry.file == "/etc/containerd/certs.d/docker.io/hosts.toml")
        #expect(registry.hosts.map(\.state) == [.up, .up])
        #expect(registry.hosts.map(\.inFile) == [true, true])
        #expect(registry.hosts.map(\.latencyMilliseconds) == [12, 12])
    }

    @Test("OK: a registry with readiness_probe = false has its hosts unprobed and counted as up")
    func unprobed() throws {
        let registry = Registry(upstream: "quay.io", readinessProbe: false, hosts: [hostA])
        let entry = K.entry(registry, results: [nil], listed: [K.urlA], observed: K.dir(K.managed(registry, listing: [hostA])))
        let report = K.evaluate([entry])
        #expect(report.state == .ok)
        let health = try only(report)
        #expect(health.hosts.map(\.state) == [.unprobed])
        #expect(health.hosts[0].latencyMilliseconds == nil)
        #expect(health.hosts[0].reason == "")
    }

    // MARK: WARNING

    @Test("WARNING: a host is down and already left out of its file")
    func downAndLeftOut() throws {
        let report = K.evaluate([K.entry(results: [K.up(), K.down()], listed: [K.urlA], observed: onlyA)])
        #expect(report.state == .warning)
        #expect(report.state.rawValue == 1)
        #expect(report.summary == "WARNING: docker.io: \(K.urlB) is down (connection refused) and left out of hosts.toml")
        let registry = try only(report)
        #expect(registry.fileState == .ok)
        #expect(registry.state == .warning)
        #expect(registry.hosts.map(\.state) == [.up, .down])
        #expect(registry.hosts[1].reason == "connection refused")
    }

    @Test("WARNING: every host down and no file (containerd pulls from the upstream)")
    func allDownNoFile() throws {
        let report = K.evaluate([
            K.entry(results: [K.down(), K.down("timed out after 2s")], listed: [], observed: K.dir(.absent))
        ])
        #expect(report.state == .warning)
        #expect(report.summary.hasPrefix("WARNING: docker.io: \(K.urlA) is down"))
        #expect(report.summary.hasSuffix("(+1 more)"))
        #expect(try only(report).fileState == .absent)
    }

    @Test("WARNING: a file pending a harmless update (same hosts, other dial_timeout)")
    func pendingHarmlessUpdate() throws {
        var older = docker
        older.hosts = docker.hosts.map { var h = $0; h.dialTimeout = .seconds(5); return h }
        let observed = K.dir(K.managed(older, listing: older.hosts))
        let report = K.evaluate([K.entry(results: [K.up(), K.up()], listed: [K.urlA, K.urlB], observed: observed)])
        #expect(report.state == .warning)
        #expect(report.summary.hasPrefix("WARNING: docker.io: "))
        #expect(report.summary.contains("pending update"))
        let registry = try only(report)
        #expect(registry.fileState == .stale)
    }

    @Test("WARNING: a file of ours for an upstream no longer configured")
    func orphaned() throws {
        let gone = Registry(upstream: "old.example.com", hosts: [hostA])
        let entry = K.orphan("old.example.com", listing: [K.urlA], observed: K.dir(K.managed(gone, listing: [hostA])))
        #expect(entry.actions.contains(.removeManaged))
        let report = K.evaluate([entry])
        #expect(report.state == .warning)
        #expect(report.summary.hasPrefix("WARNING: old.example.com: "))
        #expect(report.summary.contains("no longer configured"))
        let registry = try only(report)
        #expect(registry.fileState == .orphaned)
        #expect(registry.hosts.map(\.state) == [.unprobed])
        #expect(registry.hosts.map(\.inFile) == [true])
    }

    @Test("WARNING, not CRITICAL: a foreign file while every host is down (nothing of ours to use)")
    func foreignAllDown() throws {
        let report = K.evaluate([K.entry(results: [K.down(), K.down()], listed: [], observed: K.dir(.foreign, record: nil))])
        #expect(report.state == .warning)
        #expect(try only(report).fileState == .foreign)
    }

    // MARK: CRITICAL

    @Test("CRITICAL: the file lists a host that is down")
    func listsDownHost() throws {
        let report = K.evaluate([K.entry(results: [K.up(), K.down("HTTP 503")], listed: [K.urlA, K.urlB], observed: both)])
        #expect(report.state == .critical)
        #expect(report.state.rawValue == 2)
        #expect(report.summary.hasPrefix("CRITICAL: docker.io: "))
        #expect(report.summary.contains("lists \(K.urlB), which is down (HTTP 503)"))
        #expect(!report.summary.contains("more)"))
        let registry = try only(report)
        #expect(registry.fileState == .stale)
        #expect(registry.state == .critical)
    }

    @Test("CRITICAL: every host down while the file still lists them")
    func allDownStillListed() throws {
        let report = K.evaluate([K.entry(results: [K.down(), K.down()], listed: [K.urlA, K.urlB], observed: both)])
        #expect(report.state == .critical)
        #expect(report.summary.hasPrefix("CRITICAL: docker.io: "))
        #expect(report.summary.hasSuffix("(+1 more)"))
        #expect(try only(report).findings.filter { $0.state == .critical }.count == 2)
    }

    @Test(
        "CRITICAL: our file is missing though a host is up",
        arguments: [
            UpstreamDirState.absent,
            UpstreamDirState(directory: .directory, record: OwnershipRecord(createdDirectory: true)),
            UpstreamDirState(directory: .directory),
        ])
    func missing(observed: UpstreamDirState) throws {
        let report = K.evaluate([K.entry(results: [K.down(), K.up()], listed: [], observed: observed)])
        #expect(report.state == .critical)
        #expect(report.summary == "CRITICAL: docker.io: \(K.path("docker.io")) is missing though \(K.urlB) is up; run apply")
        let registry = try only(report)
        #expect(registry.fileState == .missing)
        // The down host left out is still reported, as a warning.
        #expect(registry.findings.map(\.state) == [.critical, .warning])
    }

    @Test("CRITICAL: the file does not list a host that is up")
    func doesNotListUpHost() throws {
        let report = K.evaluate([K.entry(results: [K.up(), K.up()], listed: [K.urlA], observed: onlyA)])
        #expect(report.state == .critical)
        #expect(report.summary.hasPrefix("CRITICAL: docker.io: "))
        #expect(report.summary.contains("does not list \(K.urlB), which is up"))
        #expect(try only(report).fileState == .stale)
    }

    @Test("CRITICAL: a foreign file where a host is up")
    func foreignWithHostUp() throws {
        let entry = K.entry(results: [K.up(), K.down()], listed: [], observed: K.dir(.foreign, record: nil))
        #expect(entry.actions.contains(.backUpForeign))
        let report = K.evaluate([entry])
        #expect(report.state == .critical)
        #expect(report.summary.hasPrefix("CRITICAL: docker.io: "))
        #expect(report.summary.contains("not written by this agent"))
        #expect(report.summary.contains(K.urlA))
        #expect(try only(report).fileState == .foreign)
    }

    @Test("CRITICAL: containerd does not read hosts_dir, even when every file is right")
    func containerdNotReading() {
        let message = "/etc/containerd/config.toml sets no config_path"
        let report = K.evaluate(
            [K.entry(results: [K.up(), K.up()], listed: [K.urlA, K.urlB], observed: both)], containerd: .problem(message))
        #expect(report.state == .critical)
        #expect(report.summary == "CRITICAL: \(message)")
        #expect(report.containerd.state == .critical)
        #expect(report.containerd.message == message)
        #expect(report.registries.map(\.state) == [.ok])
    }

    @Test(
        "CRITICAL: a conflict (a foreign file and a backup both there, or a symlinked directory)",
        arguments: [
            UpstreamDirState(directory: .directory, file: .foreign, backupExists: true),
            UpstreamDirState(directory: .notDirectory),
            UpstreamDirState(directory: .directory, file: .notRegular),
        ])
    func conflict(observed: UpstreamDirState) throws {
        let entry = K.entry(results: [K.up(), K.up()], listed: [], observed: observed)
        let conflict = try #require(entry.conflict)
        let report = K.evaluate([entry])
        #expect(report.state == .critical)
        #expect(report.summary == "CRITICAL: docker.io: \(conflict.message)")
        let registry = try only(report)
        #expect(registry.fileState == .conflict)
        #expect(registry.findings.count == 1)
    }

    // MARK: the overall state

    @Test("the overall state is the worst; the summary names the first worst finding and counts the rest")
    func worstWins() {
        let ok = K.entry(results: [K.up(), K.up()], listed: [K.urlA, K.urlB], observed: both)
        var quayRegistry = docker
        quayRegistry.upstream = "quay.io"
        let warning = K.entry(
            quayRegistry, results: [K.up(), K.down()], listed: [K.urlA], observed: K.dir(K.managed(quayRegistry, listing: [hostA])))
        var ghcrRegistry = docker
        ghcrRegistry.upstream = "ghcr.io"
        let critical = K.entry(ghcrRegistry, results: [K.up(), K.up()], listed: [], observed: .absent)
        var k8sRegistry = docker
        k8sRegistry.upstream = "registry.k8s.io"
        let critical2 = K.entry(k8sRegistry, results: [K.down(), K.up()], listed: [K.urlA], observed: K.dir(K.managed(k8sRegistry, listing: [hostA])))

        let one = K.evaluate([ok, warning, critical])
        #expect(one.state == .critical)
        #expect(one.summary.hasPrefix("CRITICAL: ghcr.io: "))
        #expect(!one.summary.contains("more)"))
        #expect(one.registries.map(\.state) == [.ok, .warning, .critical])

        let warnings = K.evaluate([ok, warning])
        #expect(warnings.state == .warning)
        #expect(warnings.summary.hasPrefix("WARNING: quay.io: "))

        // ghcr.io: missing; registry.k8s.io: lists a down host and misses an up one; containerd.
        let several = K.evaluate([ok, warning, critical, critical2], containerd: .problem("no config_path"))
        #expect(several.state == .critical)
        #expect(several.summary.hasPrefix("CRITICAL: ghcr.io: "))
        #expect(several.summary.hasSuffix("(+3 more)"))

        // The order of the survey decides which finding is named.
        let reversed = K.evaluate([critical2, critical])
        #expect(reversed.summary.hasPrefix("CRITICAL: registry.k8s.io: "))
        #expect(reversed.summary.hasSuffix("(+2 more)"))
    }

    @Test("no registries and containerd reading hosts_dir: OK")
    func empty() {
        let report = K.evaluate([])
        #expect(report.state == .ok)
        #expect(report.summary.hasPrefix("OK: 0 registries, 0/0 hosts up"))
    }

    @Test("states order and print as monitoring plugins expect")
    func states() {
        #expect([HealthState.ok, .warning, .critical, .unknown].map(\.rawValue) == [0, 1, 2, 3])
        #expect([HealthState.ok, .warning, .critical, .unknown].map(\.description) == ["OK", "WARNING", "CRITICAL", "UNKNOWN"])
        #expect(HealthState.ok < .warning && .warning < .critical && .critical < .unknown)
    }

    @Test("UNKNOWN: a config that cannot be read")
    func unknown() {
        let report = HealthReport.unknown("/etc/configure-containerd-registries/config.toml: no such file")
        #expect(report.state == .unknown)
        #expect(report.state.rawValue == 3)
        #expect(report.summary == "UNKNOWN: /etc/configure-containerd-registries/config.toml: no such file")
        #expect(report.registries.isEmpty)
    }
}
