import ArgumentParser
import Glibc
import Logging
import RegistryMirrorCore
import RegistryMirrorSystem

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Keep hosts.toml true: take dead mirrors out within seconds, put them back when they recover.",
        discussion: """
            Starts with a pass like apply (every mirror probed once; files written for the ones up), then \
            looks at every mirror every watch_interval (2 s ±20% jitter) at no cost to its cache: a \
            half-open TCP connection to its address (its kernel answers, its process never sees it), and \
            an idle connection held to it with TCP keepalive. The \
            HTTP probe (GET /v2/) goes out every request_interval (30 s, a random phase per mirror so a \
            fleet does not probe a cache in lockstep), and at once when a check fails or the held \
            connection is lost (a killed cache is out within about a second). A probe unanswered after a \
            quarter of timeout gets another beside it, and a mirror that fails is probed every \
            initial_interval without waiting for probes still out; after failure_threshold consecutive \
            failures it leaves its hosts.toml. A mirror that is out is probed on the backoff \
            (initial_interval to max_interval), and after success_threshold consecutive successes it \
            comes back. A registry with no mirror in has its file removed (containerd then pulls from the \
            upstream) until one recovers. A cache that accepts and never answers is seen by the HTTP \
            probe only: within about request_interval. request_interval = watch_interval: an HTTP probe \
            every round, as before (about 15 times the requests and log lines on the cache).

            containerd's log: "trying next host" entries in the journal of containerd_unit (default \
            containerd.service) make the mirror they name suspect at once (probed now), are logged and \
            counted (mirror_bypassed_total); when containerd starts again, its version is asked again and \
            the files are rewritten for it.

            Service names ([discovery], --cluster-dns): each is looked up every lookup_interval (30 s) and at \
            once when a probe of its address fails; a new address replaces the old one after success_threshold good \
            probes ("service address changed OLD -> NEW"); while DNS is down the last address is kept.

            Signals: SIGHUP reloads the config (an invalid one is reported and the running one kept); \
            SIGTERM/SIGINT end cleanly with exit 0, leaving the files as they are.
            systemd: READY=1 after the first pass, STATUS= on every change, WATCHDOG=1 when WATCHDOG_USEC \
            is set, STOPPING=1.

            Examples:
              configure-containerd-registries watch
              configure-containerd-registries watch --metrics-file /var/lib/node_exporter/textfile/containerd_registries.prom
            """
    )

    @OptionGroup var common: CommonOptions

    @Option(
        name: .customLong("metrics-file"),
        help: ArgumentHelp(
            "Write Prometheus text metrics here (node_exporter textfile collector), replaced atomically.",
            valueName: "path"))
    var metricsFile: String?

    @Argument(help: ArgumentHelp("Mirrors as UPSTREAM,ENDPOINT[,SERVER], added to the config.", valueName: "mirror"))
    var mirrors: [String] = []

    func run() async throws {
        let logger = common.makeLogger()
        let config = try common.loadConfig(mirrors: mirrors, logger: logger)
        let common = self.common
        let mirrors = self.mirrors
        let stopFlag = StopFlag()
        let watcher = Watcher(
            config: config, prober: CurlProber.shared, store: FileHostsStore(root: config.hostsDir),
            notifier: SystemdNotifier(), metrics: metricsFile.map { MetricsFile(path: $0, logger: logger) }, logger: logger,
            watchdogInterval: SystemdNotifier.watchdogInterval(environment: Environment.all),
            wallClock: wallClockSeconds,
            target: common.target(for: config, logger: logger), resolveTarget: { config in ContainerdDaemon.target(for: config) },
            reloadConfig: {
                do throws(ConfigResolution.Failure) {
                    // Not asking containerd here: this runs on watch's event loop, and the question can take
                    // seconds; watch asks it off the loop after taking the config up.
                    var reloaded = try common.load(mirrors: mirrors)
                    // The hosts directory cannot move under a running watcher: keep the one it started with.
                    reloaded.hostsDir = config.hostsDir
                    return .success(reloaded)
                } catch {
                    return .failure(Watcher.ReloadError(lines: error.lines))
                }
            }, resolver: CAresResolver(), stopFlag: stopFlag, connections: TCPConnections.shared)
        let status = await watcher.run(
            stop: Signals.stream(raising: stopFlag), hangup: Signals.stream([SIGHUP]), bypasses: containerdBypasses(config, logger: logger),
            files: fileWatch(config, logger: logger))
        try Exit.with(status)
    }

    /// Changes under the hosts directory, so files of ours changed behind watch's back are restored at
    /// once; without inotify, they are checked every round.
    func fileWatch(_ config: AgentConfig, logger: Logger) -> FileWatch {
        switch HostsDirectoryWatch.start(root: config.hostsDir) {
        case .success(let changes): return .changes(changes)
        case .failure(let error):
            logger.notice("not watching \(config.hostsDir) for changes (\(error.reason)): checking its files every round")
            return .everyRound
        }
    }

    /// containerd's journal entries for requests that went past a mirror, and its starts
    /// (containerd_unit, read from the start only: a reload does not change it); nil without a journal.
    func containerdBypasses(_ config: AgentConfig, logger: Logger) -> AsyncStream<ContainerdLog.Event>? {
        guard !config.containerdUnit.isEmpty else { return nil }
        switch ContainerdJournal.follow(unit: config.containerdUnit) {
        case .failure(let error):
            logger.notice("not reading containerd's log (\(config.containerdUnit)): \(error.reason)")
            return nil
        case .success(let events):
            logger.info("reading containerd's log: journal entries of \(config.containerdUnit)")
            return events
        }
    }
}
