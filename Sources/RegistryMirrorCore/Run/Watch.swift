import Logging

/// sd_notify as watch mode needs it; every method is a no-op outside systemd.
public protocol ServiceNotifier: StatusReporter {
    func ready()
    func stopping()
    func watchdog()
}

/// Where watch mode's Prometheus text goes (`--metrics-file`).
public protocol MetricsSink: Sendable {
    func write(_ text: String)
}

/// watch (docs/design.md §6, §9.2): the same model and the same `Driver` as apply, with hysteresis
/// and no end. Steady hosts are probed once a round (shared, jittered rounds); when a probe goes out
/// otherwise is `ProbeTiming`'s call; a registry's hosts.toml always lists the hosts that are in, and
/// goes away while none is; a file of ours changed behind its back is restored. SIGHUP reloads the
/// config, SIGTERM ends cleanly leaving the files as they are.
public struct Watcher: Sendable {
    /// Why a reload was refused, one line per problem.
    public struct ReloadError: Error, Sendable {
        public var lines: [String]
        public init(lines: [String]) { self.lines = lines }
    }
    /// Reads the config again on SIGHUP. Its `target` is not used: the running one is kept until
    /// `resolveTarget`, asked off the event loop, answers.
    public typealias ConfigSource = @Sendable () -> Result<AgentConfig, ReloadError>

    let driver: Driver

    /// - Parameters:
    ///   - watchdogInterval: WATCHDOG=1 is sent this often (half of WATCHDOG_USEC) from the main loop,
    ///     so a stuck loop is seen.
    ///   - wallClock: seconds since the epoch, for the metrics' timestamps.
    ///   - target: the containerd the files are for at start (default: the config's).
    ///   - resolveTarget: learns which containerd the files are for (its version), after a reload and
    ///     when containerd restarts; it may block, and is never called on the event loop.
    ///   - reloadConfig: re-reads the config on SIGHUP.
    ///   - resolver: looks Service names up (`[discovery]`); nil: every lookup fails as "no resolver".
    ///   - stopFlag: raised on a stop request (the signal thread raises it too): ends a wait for the lock.
    ///   - connections: connection checks and held connections between HTTP probes (docs/design.md
    ///     §6.3); nil: an HTTP probe every round.
    public init(
        config: AgentConfig, prober: any MirrorProber, store: any HostsStore, notifier: any ServiceNotifier,
        metrics: (any MetricsSink)?, logger: Logger, watchdogInterval: Duration?,
        wallClock: @escaping @Sendable () -> Double, target: ContainerdTarget? = nil, resolveTarget: (@Sendable (AgentConfig) -> ContainerdTarget)? = nil,
        reloadConfig: @escaping ConfigSource, clock: AgentClock = .continuous, random: RandomSource = .system,
        resolver: (any ServiceResolver)? = nil, stopFlag: StopFlag = StopFlag(), connections: (any ConnectionChecker)? = nil
    ) {
        let files = RegistryFiles(
            reconciler: HostsReconciler(store: store, logger: logger, lockWait: .until(nil, on: clock, or: stopFlag)), logger: logger,
            retryFailures: true)
        var config = config
        if let target { config.target = target }
        var driver = Driver(
            mode: .watch, config: config, prober: prober, files: files, logger: logger, clock: clock, random: random,
            resolver: resolver, status: notifier, stopFlag: stopFlag, started: clock.now)
        driver.watch = Driver.WatchParts(
            notifier: notifier, metrics: metrics, watchdogInterval: watchdogInterval, wallClock: wallClock, reloadConfig: reloadConfig,
            resolveTarget: resolveTarget, connections: connections)
        self.driver = driver
    }

    /// Runs until `stop` yields; returns the exit status (0: stopped by a signal, as services are).
    /// `bypasses`: containerd's log entries for requests that went past a host, and its starts
    /// (§6.1); each bypass makes the hosts it names suspect at once (probed now) and is counted.
    /// `files`: how it learns that its files were changed behind its back.
    public func run(
        stop: AsyncStream<Void>, hangup: AsyncStream<Void>, bypasses: AsyncStream<ContainerdLog.Event>? = nil, files: FileWatch = .none
    ) async -> ExitStatus {
        _ = await driver.run(Driver.Inputs(stop: stop, hangup: hangup, containerd: bypasses, files: files))
        return .ok
    }

    /// `3/3 registries have a mirror in hosts.toml; 4/5 mirrors in; out: quay.io http://...`
    func statusText(_ state: MirrorState) -> String { StatusText.render(state, .watching) }
}
