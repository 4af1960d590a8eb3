/// What `check` asks of containerd besides its version (docs/design.md §6): its config file, its log,
/// its process, and directories as it opens them. The system layer answers from the node; every
/// answer is bounded in time.
public protocol ContainerdView: Sendable {
    /// containerd's config text; nil when the file does not exist.
    func configText(_ path: String) throws(SystemError) -> String?
    /// The requests its log says went past a host over the last `window` seconds; empty without a log.
    func recentBypasses(unit: String, window: Double) -> [ContainerdLog.Bypass]
    /// When the daemon serving `address` started (seconds since the epoch); nil when not learnt.
    func startTime(address: String) -> Double?
    /// The modification time of `path` (seconds since the epoch); nil when it cannot be read.
    func modified(_ path: String) -> Double?
    /// The socket the daemon serves, when the target does not say where it answered.
    func address(for config: AgentConfig) -> String
    var directories: any DirectoryLookup { get }
}

/// plan and check, orchestrated here so that the executable only parses arguments and wires parts.
public enum Inspection {
    /// How far back `check` reads containerd's log.
    public static let bypassWindow: Double = 15 * 60

    /// plan: the survey `PlanText` renders, for the containerd `target` the files are written for.
    public static func plan(
        _ config: AgentConfig, target: ContainerdTarget, resolver: (any ServiceResolver)?, prober: any MirrorProber, store: any HostsStore
    ) async throws(SystemError) -> Survey {
        var config = config
        config.target = target
        return try await Survey.take(config, resolver: resolver, prober: prober, store: store)
    }

    /// check: every rule of docs/design.md §6 and §7 over one survey, containerd's config, its log
    /// and its version. A directory or config that cannot be read is UNKNOWN.
    public static func check(
        _ config: AgentConfig, target: ContainerdTarget, resolver: (any ServiceResolver)?, prober: any MirrorProber,
        store: any HostsStore, containerd: any ContainerdView
    ) async -> HealthReport {
        var config = config
        config.target = target
        do throws(SystemError) {
            var survey = try await Survey.take(config, resolver: resolver, prober: prober, store: store)
            let text = try containerd.configText(config.containerdConfig)
            // containerd names a host as the file does (a Service name's address): match on that.
            let bypasses =
                config.containerdUnit.isEmpty
                ? [:]
                : ContainerdLog.tally(containerd.recentBypasses(unit: config.containerdUnit, window: bypassWindow), in: survey.hostsAsSeen(config))
            let configCheck = ContainerdConfigCheck.evaluate(
                toml: text, path: config.containerdConfig, hostsDir: config.hostsDir, release: target.rules,
                directories: containerd.directories)
            survey.markShadows(roots: configCheck.rootsBefore, directories: containerd.directories)
            let versionFindings = ContainerdVersionCheck.findings(
                target: target, containerdConfig: config.containerdConfig,
                started: containerd.startTime(address: target.address ?? containerd.address(for: config)),
                configChanged: containerd.modified(config.containerdConfig), sample: config.registries.lazy.flatMap(\.hosts).first)
            return HealthReport.evaluate(
                survey, containerd: configCheck, hostsDir: config.hostsDir, bypasses: bypasses, bypassWindow: "15 minutes",
                versionFindings: versionFindings)
        } catch {
            return .unknown("\(error)")
        }
    }
}
