import ArgumentParser
import Glibc
import Logging
import RegistryMirrorCore
import RegistryMirrorSystem

struct Plan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Dry run: probe once and show what apply would change. Changes nothing.",
        discussion: """
            Probes every host once, concurrently, with the normal timeouts (no waiting, no retries), then \
            shows for each upstream the state of each host and a unified diff between the hosts.toml on \
            disk and what apply would write now; also removals, foreign files apply would back up to \
            hosts.toml.orig, and backups it would restore. Colour only on a terminal.

            Exit codes: 0 (with --exit-code: no changes pending), 1 (with --exit-code: changes pending), \
            64 usage error, 73 cannot read the hosts directory, 78 invalid config file.

            Examples:
              configure-containerd-registries plan
              configure-containerd-registries plan --exit-code || echo "apply would change something"
              configure-containerd-registries plan --hosts-dir /tmp/certs.d docker.io,http://127.0.0.1:5000
            """
    )

    @OptionGroup var common: CommonOptions

    @Flag(name: .customLong("exit-code"), help: "Exit 1 when changes are pending, 0 when none.")
    var exitCode = false

    @Argument(help: ArgumentHelp("Mirrors as UPSTREAM,ENDPOINT[,SERVER], added to the config.", valueName: "mirror"))
    var mirrors: [String] = []

    func run() async throws {
        Signals.exitOnTermination()  // nothing to finish: a signal ends it as it would any tool
        let logger = common.makeLogger()
        let config = try common.loadConfig(mirrors: mirrors, logger: logger)
        let target = common.target(for: config, logger: logger)
        let survey: Survey
        do {
            survey = try await Inspection.plan(
                config, target: target, resolver: CAresResolver(), prober: CurlProber.shared, store: FileHostsStore(root: config.hostsDir))
        } catch {
            logger.error("\(error)")
            throw Exit.status(.cannotWrite)
        }
        let (text, pending) = PlanText.render(
            survey, color: isatty(STDOUT_FILENO) == 1 && Environment.all["NO_COLOR"] == nil, target: target)
        print(text, terminator: "")
        // --exit-code: 1 means "changes pending", as with diff.
        try Exit.with(exitCode && pending > 0 ? .failure : .ok)
    }
}
