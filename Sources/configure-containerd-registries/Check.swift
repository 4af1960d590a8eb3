import ArgumentParser
import Glibc
import Logging
import RegistryMirrorCore
import RegistryMirrorSystem

struct Check: AsyncParsableCommand {
    enum Output: String, ExpressibleByArgument, CaseIterable { case text, json }

    static let configuration = CommandConfiguration(
        abstract: "Health check for monitoring: are image pulls on this node safe? Answers by exit code.",
        discussion: """
            Validates the config, verifies that containerd's config (containerd_config) sets the CRI \
            registry config_path to include the hosts directory (config version 1, 2 and 3), probes every \
            host once, and compares each managed hosts.toml with what apply would write. Also reports \
            containerd's version (asked of the daemon at containerd_address) and what a dead mirror costs \
            on it, and reads the last 15 minutes of containerd's journal (containerd_unit) for pulls that \
            went past a mirror.

            Exit codes (monitoring-plugins convention; the output starts with the state):
              0 OK        files match, every host up, containerd reads the hosts dir
              1 WARNING   degraded but safe: a host is down and left out of its file;
                          a file pending a harmless update; pulls went past a host
                          that answers probes; containerd's version unknown, or it
                          started before its config changed; several config_path
                          directories on containerd 2
              2 CRITICAL  a file lists a host that is down (pulls will stall); a
                          managed file is missing or wrong for a host that is up;
                          containerd does not read the hosts directory
              3 UNKNOWN   config unreadable or invalid
              64          usage error

            Examples:
              configure-containerd-registries check
              configure-containerd-registries check --output json | jq .registries[].hosts
            """
    )

    @OptionGroup var common: CommonOptions

    @Option(help: "text (summary line first) or json (one object).")
    var output: Output = .text

    @Argument(help: ArgumentHelp("Mirrors as UPSTREAM,ENDPOINT[,SERVER], added to the config.", valueName: "mirror"))
    var mirrors: [String] = []

    func run() async throws {
        Signals.exitOnTermination()  // nothing to finish: a signal ends it as it would any tool
        _ = common.makeLogger()
        let report: HealthReport
        do {
            let config = try common.load(mirrors: mirrors)
            var survey = try await Survey.take(
                config, resolver: CAresResolver(), prober: CurlProber.shared, store: FileHostsStore(root: config.hostsDir))
            let containerdText = try ConfigFile.readContainerdConfig(config.containerdConfig)
            // containerd names a host as the file does (a Service name's address): match on that.
            let bypasses = Self.recentBypasses(survey.hostsAsSeen(config))
            let directories = FileSystemDirectories()
            let configCheck = ContainerdConfigCheck.evaluate(
                toml: containerdText, path: config.containerdConfig, hostsDir: config.hostsDir, release: config.target.rules,
                directories: directories)
            survey.markShadows(roots: configCheck.rootsBefore, directories: directories)
            let address = config.target.address ?? ContainerdDaemon.addresses(for: config).first ?? AgentConfig.defaultContainerdAddress
            let versionFindings = ContainerdVersionCheck.findings(
                target: config.target, containerdConfig: config.containerdConfig, started: ContainerdDaemon.startTime(address: address),
                configChanged: ContainerdDaemon.modified(config.containerdConfig),
                sample: config.registries.lazy.flatMap(\.hosts).first)
            report = HealthReport.evaluate(
                survey, containerd: configCheck, hostsDir: config.hostsDir, bypasses: bypasses, bypassWindow: "15 minutes",
                versionFindings: versionFindings)
        } catch let failure as ConfigResolution.Failure {
            report = .unknown(failure.lines.joined(separator: "; "))
        } catch {
            report = .unknown("\(error)")
        }
        switch output {
        case .text: print(CheckText.render(report), terminator: "")
        case .json: print(CheckText.json(report), terminator: "")
        }
        try Exit.with(report.state)
    }

    /// containerd's own log over the last 15 minutes, when there is a journal to read: the requests
    /// that went past each mirror. Empty without one (the check does not depend on journald).
    static func recentBypasses(_ config: AgentConfig) -> [HostKey: ContainerdLog.Tally] {
        guard !config.containerdUnit.isEmpty else { return [:] }
        switch ContainerdJournal.recent(unit: config.containerdUnit, window: 15 * 60) {
        case .success(let events):
            return ContainerdLog.tally(
                events.compactMap {
                    if case .bypass(let b) = $0 { b } else { nil }
                }, in: config)
        case .failure: return [:]
        }
    }
}
