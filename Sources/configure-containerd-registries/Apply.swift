import ArgumentParser
import Glibc
import Logging
import RegistryMirrorCore
import RegistryMirrorSystem

struct Apply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wait for the mirrors and write each upstream's hosts.toml (the default).",
        discussion: """
            Probes every host of every registry concurrently (connect_timeout, timeout) with exponential \
            backoff from initial_interval to max_interval. As soon as one host of a registry answers, its \
            hosts.toml is written with the hosts that are up, in config order; hosts that come up later, \
            before apply ends, are added. Registries with readiness_probe = false are written at once. \
            Files of upstreams that left the config are removed first (a backed-up foreign file comes back).

            Apply ends when every registry is configured, when --deadline passes (exit 69; the others are \
            written), or on SIGTERM/SIGINT (exit 75). Without a deadline it waits as long as it takes.

            Examples:
              # From the config file, waiting at most 5 minutes:
              configure-containerd-registries apply --deadline 5m

              # No config file: one cache for docker.io, fallback to Docker Hub:
              configure-containerd-registries docker.io,http://10.4.246.205:5000,https://registry-1.docker.io

              # The cache by its Service name, looked up through cluster DNS (the file names its address):
              configure-containerd-registries --cluster-dns 10.96.0.10 docker.io,http://registry-docker-io.kube-system.svc.cluster.local:5000

              # Try it without touching containerd's directory:
              configure-containerd-registries apply --hosts-dir /tmp/certs.d ghcr.io,http://127.0.0.1:5000
            """
    )

    @OptionGroup var common: CommonOptions

    @Option(
        help: ArgumentHelp(
            "Overall time budget, e.g. 5m (overrides probe.deadline; 0s waits until every registry is configured).",
            valueName: "duration"))
    var deadline: String?

    @Argument(
        help: ArgumentHelp(
            "Mirrors as UPSTREAM,ENDPOINT[,SERVER], e.g. docker.io,http://10.4.246.205:5000,https://registry-1.docker.io",
            valueName: "mirror"))
    var mirrors: [String] = []

    func validate() throws {
        if let deadline { _ = try parseDurationOption(deadline, name: "--deadline") }
    }

    func run() async throws {
        // SIGHUP too: apply has no config to reload, and a hang-up must not kill it mid-write.
        // A signal that came during start-up is delivered here at once.
        let stopFlag = StopFlag()
        let stop = Signals.stream([SIGTERM, SIGINT, SIGHUP], raising: stopFlag)
        let logger = common.makeLogger()
        let deadline = try self.deadline.map { try parseDurationOption($0, name: "--deadline") }
        // The deadline counts from the process start: reading the config and asking containerd its
        // version come out of it, and the question gets at most what is left.
        let clock = AgentClock.continuous
        let started = clock.now - Main.started.duration(to: .now)
        var config = try common.loadConfig(mirrors: mirrors, logger: logger, deadline: deadline, since: Main.started)
        if let deadline { config.probe.deadline = deadline }
        let applier = Applier(
            config: config, prober: CurlProber.shared, store: FileHostsStore(root: config.hostsDir), logger: logger,
            status: SystemdNotifier(), clock: clock, resolver: CAresResolver(), stopFlag: stopFlag, started: started)
        let report = await applier.run(stop: stop)
        try Exit.with(report.exitStatus)
    }
}

struct Remove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete every hosts.toml this program wrote and put backed-up files back.",
        discussion: """
            Deletes every managed hosts.toml under the hosts directory, restores each hosts.toml.orig, and \
            removes directories this program created when they are empty. Files it did not write are left \
            alone, byte for byte. The config file is not needed. Idempotent.

            --keep-running: once everything is removed, stay until SIGTERM or SIGINT (then exit 0), so that a \
            DaemonSet's pod shows its node cleaned (deploy/uninstall); a failure still exits with its code.

            Examples:
              configure-containerd-registries remove
              configure-containerd-registries remove --hosts-dir /tmp/certs.d
              configure-containerd-registries remove --keep-running
            """
    )

    @OptionGroup var common: CommonOptions

    @Flag(
        name: .customLong("keep-running"),
        help: "After a successful remove, stay until SIGTERM/SIGINT, then exit 0 (for a DaemonSet that cleans every node).")
    var keepRunning = false

    func run() async throws {
        // --keep-running subscribes before anything else, so a SIGTERM during the remove is not lost: it
        // ends a wait for the lock (exit 73) or the stay after it (exit 0).
        let stopFlag = StopFlag()
        let stop = keepRunning ? Signals.stream(raising: stopFlag) : nil
        if stop == nil {
            Signals.exitOnTermination()  // nothing to finish: a signal ends it as it would any tool
        }
        let logger = common.makeLogger()
        // The config only tells where hosts_dir is. A config that was asked for (--config) or exists at
        // the default path must be valid: cleaning the wrong directory would be worse than stopping.
        var hostsDir = common.hostsDir ?? AgentConfig.defaultHostsDir
        if common.hostsDir == nil, common.config != nil || ConfigFile.exists(AgentConfig.defaultPath) {
            hostsDir = try common.loadConfig(mirrors: [], logger: logger, requireRegistries: false).hostsDir
        }
        let reconciler = HostsReconciler(
            store: FileHostsStore(root: hostsDir), logger: logger,
            lockWait: LockWait { stopFlag.isRaised ? "interrupted" : nil })
        guard reconciler.removeEverything().isEmpty else { throw Exit.status(.cannotWrite) }
        if let stop {
            logger.notice("nothing of ours left under \(hostsDir); staying until SIGTERM (--keep-running)")
            for await _ in stop { break }
        }
    }
}
