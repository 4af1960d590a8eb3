import Foundation
@testable import RegistryMirrorCore
import Testing

/// Fixture files in the test bundle's `Fixtures` folder.
enum CoreFixture {
    /// The text of `Fixtures/<name>`; records a test failure and returns "" when the file is missing.
    static func text(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        let base = (name as NSString).deletingPathExtension
        let ext = (name as NSString).pathExtension
        guard let url = Bundle.module.url(forResource: base, withExtension: ext, subdirectory: "Fixtures") else {
            Issue.record("fixture \(name) is not in the test bundle", sourceLocation: sourceLocation)
            return ""
        }
        do {
            return try String(contentsOf: url, encoding: .utf8)
        } catch {
            Issue.record("cannot read fixture \(name): \(error)", sourceLocation: sourceLocation)
            return ""
        }
    }
}

/// Hand-built surveys: each entry is put together the way `Survey.make` does it (desired content from
/// `HostsFile.render` of the up hosts, steps from `HostsPlan.actions`), from a few stated facts.
enum SurveyKit {
    static let hostsDir = "/etc/containerd/certs.d"
    static let urlA = "http://10.0.0.1:5000"
    static let urlB = "http://10.0.0.2:5000"
    static let hostA = MirrorHost(url: urlA)
    static let hostB = MirrorHost(url: urlB)
    static let docker = Registry(upstream: "docker.io", hosts: [hostA, hostB])
    static let readsHostsDir = ContainerdConfigCheck.reads(configPath: hostsDir)
    static let ours = OwnershipRecord(createdDirectory: true)

    static func up(_ reason: String = "HTTP 200", ms: Int = 12) -> ProbeResult {
        ProbeResult(state: .up, reason: reason, latency: .milliseconds(ms))
    }

    static func down(_ reason: String = "connection refused", ms: Int = 3) -> ProbeResult {
        ProbeResult(state: .down, reason: reason, latency: .milliseconds(ms))
    }

    static func path(_ upstream: String) -> String { "\(hostsDir)/\(upstream)/hosts.toml" }

    /// Our file on disk for `registry` listing `hosts` (nil when the list is empty, as render gives).
    static func managed(_ registry: Registry, listing hosts: [MirrorHost]) -> UpstreamDirState.File {
        guard let text = HostsFile.render(registry, hosts: hosts) else {
            Issue.record("render gave no file for \(hosts.map(\.url))")
            return .absent
        }
        return .managed(text)
    }

    /// A directory of ours holding `file`.
    static func dir(_ file: UpstreamDirState.File, backup: Bool = false, record: OwnershipRecord? = ours) -> UpstreamDirState {
        UpstreamDirState(directory: .directory, file: file, backupExists: backup, record: record)
    }

    /// An entry for a configured registry. `results` go with `registry.hosts` in order; `listed` are
    /// the URLs the file on disk names (what `Survey.hostsListed` would find).
    static func entry(
        _ registry: Registry = docker, results: [ProbeResult?], listed: Set<String>, observed: UpstreamDirState
    ) -> Survey.Entry {
        precondition(results.count == registry.hosts.count, "one result per host")
        let hosts = zip(registry.hosts, results).map { host, result in
            Survey.HostStatus(host: host, result: result, inFile: listed.contains(host.url))
        }
        let desired = HostsFile.render(registry, hosts: hosts.filter(\.isUp).map(\.host))
        return finish(
            Survey.Entry(
                upstream: registry.upstream, filePath: path(registry.upstream), registry: registry, hosts: hosts,
                observed: observed, desired: desired, actions: [], conflict: nil))
    }

    /// An entry for an upstream no longer configured that still has files of ours.
    static func orphan(_ upstream: String, listing urls: [String], observed: UpstreamDirState) -> Survey.Entry {
        let hosts = urls.map { Survey.HostStatus(host: MirrorHost(url: $0), result: nil, inFile: true) }
        return finish(
            Survey.Entry(
                upstream: upstream, filePath: path(upstream), registry: nil, hosts: hosts, observed: observed, desired: nil,
                actions: [], conflict: nil))
    }

    private static func finish(_ entry: Survey.Entry) -> Survey.Entry {
        var entry = entry
        do {
            entry.actions = try HostsPlan.actions(
                upstream: entry.upstream, desired: entry.desired, configured: entry.registry != nil, observed: entry.observed)
        } catch {
            entry.conflict = error
        }
        return entry
    }

    static func evaluate(_ entries: [Survey.Entry], containerd: ContainerdConfigCheck = readsHostsDir) -> HealthReport {
        HealthReport.evaluate(Survey(entries: entries), containerd: containerd, hostsDir: hostsDir)
    }
}
