/// Monitoring-plugins states; the raw value is `check`'s exit code.
public enum HealthState: Int32, Sendable, Comparable, CustomStringConvertible {
    case ok = 0, warning = 1, critical = 2, unknown = 3

    public static func < (a: HealthState, b: HealthState) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        switch self {
        case .ok: "OK"
        case .warning: "WARNING"
        case .critical: "CRITICAL"
        case .unknown: "UNKNOWN"
        }
    }
}

/// What `check` reports: one overall state with a summary line, then each registry and host.
public struct HealthReport: Sendable {
    public struct Finding: Sendable {
        public var state: HealthState
        public var message: String

        public init(state: HealthState, message: String) {
            self.state = state
            self.message = message
        }
    }

    /// A host as check saw it; the raw value is what `--output json` says.
    public enum HostState: String, Sendable, CustomStringConvertible {
        case up, down
        /// readiness_probe = false, or an upstream no longer configured.
        case unprobed
        public var description: String { rawValue }
    }

    /// A registry's hosts.toml as check judged it; the raw value is what `--output json` says.
    public enum FileState: String, Sendable, CustomStringConvertible {
        case ok, absent, missing, stale, foreign, conflict, orphaned
        public var description: String { rawValue }
    }

    public struct HostHealth: Sendable {
        public var url: String
        public var state: HostState
        public var reason: String
        public var latencyMilliseconds: Double?
        public var inFile: Bool
        /// Requests containerd's log says went past the host in the window `check` read (0 without a log).
        public var bypassed: Int = 0
        /// The Service name the host was found under, and the address it has (nil: none found).
        public var name: String?
        public var address: String?
    }

    public struct RegistryHealth: Sendable {
        public var upstream: String
        public var file: String
        public var fileState: FileState
        public var state: HealthState
        public var findings: [Finding]
        public var hosts: [HostHealth]
    }

    public var state: HealthState
    public var summary: String
    public var containerd: Finding
    public var registries: [RegistryHealth]
    /// containerd's version and what follows from it (`ContainerdVersionCheck`).
    public var containerdVersion: [Finding] = []

    /// A report for a config that cannot be read: nothing else can be judged.
    public static func unknown(_ message: String) -> HealthReport {
        HealthReport(
            state: .unknown, summary: "UNKNOWN: \(message)", containerd: Finding(state: .unknown, message: "not checked"),
            registries: [])
    }

    /// Judges a survey by the rules of docs/design.md §6 and §7. `bypasses`: what containerd's log says
    /// about each host over the last `bypassWindow` (§6.1).
    public static func evaluate(
        _ survey: Survey, containerd: ContainerdConfigCheck, hostsDir: String,
        bypasses: [HostKey: ContainerdLog.Tally] = [:], bypassWindow: String = "15 minutes", versionFindings: [Finding] = []
    ) -> HealthReport {
        let containerdFinding = Finding(state: containerd.state, message: containerd.message)
        let registries = survey.entries.map { judge($0, bypasses: bypasses, window: bypassWindow) }
        var all = registries.flatMap { r in r.findings.map { Finding(state: $0.state, message: "\(r.upstream): \($0.message)") } }
        all.append(containerdFinding)
        all += containerd.warnings.map { Finding(state: .warning, message: $0) }
        all += versionFindings
        let state = all.map(\.state).max() ?? .ok
        let summary: String
        if state == .ok {
            let hosts = registries.flatMap(\.hosts)
            summary =
                "OK: \(registries.count) registries, \(hosts.filter { $0.state == .up }.count)/\(hosts.count) hosts up, files match; \(containerdFinding.message)"
        } else {
            let worst = all.filter { $0.state == state }
            let more = worst.count > 1 ? " (+\(worst.count - 1) more)" : ""
            summary = "\(state): \(worst[0].message)\(more)"
        }
        return HealthReport(
            state: state, summary: summary, containerd: containerdFinding, registries: registries, containerdVersion: versionFindings)
    }

    static func judge(_ entry: Survey.Entry, bypasses: [HostKey: ContainerdLog.Tally] = [:], window: String = "") -> RegistryHealth {
        var findings: [Finding] = []
        func add(_ state: HealthState, _ message: String) { findings.append(Finding(state: state, message: message)) }
        let hosts = entry.hosts.map { status -> HostHealth in
            let bypassed = bypasses[HostKey(upstream: entry.upstream, url: status.host.url)]?.count ?? 0
            guard let result = status.result else {
                return HostHealth(
                    url: status.host.url, state: .unprobed, reason: "", latencyMilliseconds: nil, inFile: status.inFile,
                    bypassed: bypassed, name: status.host.serviceName, address: status.host.address)
            }
            return HostHealth(
                url: status.host.url, state: result.isUp ? .up : .down, reason: result.reason,
                latencyMilliseconds: result.latency.fractionalSeconds * 1000,
                inFile: status.inFile, bypassed: bypassed, name: status.host.serviceName, address: status.host.address)
        }
        let fileState: FileState
        if let conflict = entry.conflict {
            fileState = .conflict
            add(.critical, conflict.message)
        } else if entry.registry == nil {
            fileState = .orphaned
            add(.warning, "\(entry.filePath) belongs to an upstream no longer configured; apply removes it")
        } else {
            let upHosts = entry.hosts.filter(\.isUp)
            if let shadow = entry.observed.shadowedBy, entry.current != nil || !upHosts.isEmpty {
                // filePath is <hosts_dir>/<upstream>/hosts.toml.
                let dir = String(entry.filePath.dropLast("/\(HostsFile.fileName)".count))
                add(
                    .critical,
                    "containerd reads \(shadow)/ before \(dir)/, so \(entry.filePath) is not used; move \(shadow) away (or write its mirrors there yourself)")
            }
            for status in entry.hosts where status.inFile && !status.isUp {
                add(.critical, "\(entry.filePath) lists \(status.host.url), which is down (\(status.result?.reason ?? "?")): pulls will stall; run apply")
            }
            switch entry.observed.file {
            case .foreign:
                fileState = .foreign
                if let up = upHosts.first {
                    add(.critical, "\(entry.filePath) was not written by this agent, so \(up.host.url) (up) is not used; run apply")
                }
            case .absent, .notRegular:
                if let up = upHosts.first {
                    fileState = .missing
                    add(.critical, "\(entry.filePath) is missing though \(up.host.url) is up; run apply")
                } else {
                    fileState = .absent
                }
            case .managed(let current):
                for problem in HostsFile.readProblems(current) {
                    add(.critical, "\(entry.filePath): \(problem); run apply")
                }
                if current == entry.desired {
                    fileState = .ok
                } else {
                    // Every host down: the lines above already made it CRITICAL.
                    fileState = .stale
                    if let unlisted = upHosts.first(where: { !$0.inFile }) {
                        add(.critical, "\(entry.filePath) does not list \(unlisted.host.url), which is up; run apply")
                    } else if !entry.hosts.contains(where: { $0.inFile && !$0.isUp }) {
                        add(.warning, "\(entry.filePath) differs from what apply would write (pending update)")
                    }
                }
            }
            for status in entry.hosts where !status.inFile && !status.isUp {
                if let name = status.host.serviceName, status.host.address == nil {
                    // A Service name with no address: apply waits for it (and keeps a file while DNS is down).
                    add(.warning, "Service name \(name) has no address (\(status.result?.reason ?? "?")): not used until it resolves")
                } else {
                    add(.warning, "\(status.host.url) is down (\(status.result?.reason ?? "?")) and left out of hosts.toml")
                }
            }
            // Probes say the cache is fine, yet containerd's pulls go past it: it answers /v2/ but not
            // the pulls (its upstream unreachable, an image it cannot serve, a proxy in between).
            for status in entry.hosts where status.isUp {
                guard let tally = bypasses[HostKey(upstream: entry.upstream, url: status.host.url)] else { continue }
                add(
                    .warning,
                    "containerd went past \(status.host.url) \(tally.count) time\(tally.count == 1 ? "" : "s") in the last \(window) though it answers probes (last: \(tally.last.reason)): pulls are not served by the cache; see its log")
            }
        }
        return RegistryHealth(
            upstream: entry.upstream, file: entry.filePath, fileState: fileState, state: findings.map(\.state).max() ?? .ok,
            findings: findings, hosts: hosts)
    }
}
