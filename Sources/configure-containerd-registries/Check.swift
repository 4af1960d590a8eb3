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
        do throws(ConfigResolution.Failure) {
            let config = try common.load(mirrors: mirrors)
            report = await Inspection.check(
                config, target: common.target(for: config), resolver: CAresResolver(), prober: CurlProber.shared,
                store: FileHostsStore(root: config.hostsDir), containerd: NodeContainerdView())
        } catch {
            report = .unknown(error.lines.joined(separator: "; "))
        }
        switch output {
        case .text: print(CheckText.render(report), terminator: "")
        case .json: print(CheckText.json(report), terminator: "")
        }
        try Exit.with(report.state)
    }
}
