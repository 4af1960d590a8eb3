import Logging
import Synchronization

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

/// Watch mode (design section 6): a first pass like apply, then every host probed on its own
/// schedule with hysteresis; a registry's hosts.toml always lists the hosts that are in, and goes
/// away while none is. SIGHUP reloads the config, SIGTERM ends cleanly leaving the files as they are.
public struct Watcher: Sendable {
    /// Why a reload was refused, one line per problem.
    public struct ReloadError: Error, Sendable {
        public var lines: [String]
        public init(lines: [String]) { self.lines = lines }
    }
    public typealias ConfigSource = @Sendable () -> Result<AgentConfig, ReloadError>

    public let initialConfig: AgentConfig
    public let prober: any MirrorProber
    public let reconciler: HostsReconciler
    public let notifier: any ServiceNotifier
    public let metrics: (any MetricsSink)?
    public let logger: Logger
    /// Re-reads the config on SIGHUP.
    public let reloadConfig: ConfigSource
    /// WATCHDOG=1 is sent this often (half of WATCHDOG_USEC) from the main loop, so a stuck loop is seen.
    public let watchdogInterval: Duration?
    /// Seconds since the epoch, for the metrics' timestamps.
    public let wallClock: @Sendable () -> Double

    public init(
        config: AgentConfig, prober: any MirrorProber, store: any HostsStore, notifier: any ServiceNotifier,
        metrics: (any MetricsSink)?, logger: Logger, watchdogInterval: Duration?,
        wallClock: @escaping @Sendable () -> Double, reloadConfig: @escaping ConfigSource
    ) {
        self.wallClock = wallClock
        self.initialConfig = config
        self.prober = prober
        self.reconciler = HostsReconciler(store: store, logger: logger)
        self.notifier = notifier
        self.metrics = metrics
        self.logger = logger
        self.watchdogInterval = watchdogInterval
        self.reloadConfig = reloadConfig
    }

    struct HostKey: Hashable, Sendable {
        var upstream: String
        var url: String
    }

    enum Event: Sendable {
        case result(generation: Int, key: HostKey, tracker: HostTracker, changed: Bool)
        case reload
        case stop
        case tick
    }

    /// Runs until `stop` yields; returns the exit status (0: stopped by a signal, as services are).
    public func run(stop: AsyncStream<Void>, hangup: AsyncStream<Void>) async -> ExitStatus {
        let (events, sink) = AsyncStream.makeStream(of: Event.self)
        var state = WatchState(config: initialConfig)
        var probeTasks: [Task<Void, Never>] = []

        func startProbes() {
            probeTasks.forEach { $0.cancel() }
            state.generation += 1
            let generation = state.generation
            let settings = state.config.probe
            let rounds = RoundSchedule(interval: settings.watchInterval.duration)
            probeTasks = state.config.registries.flatMap { registry in
                registry.hosts.map { host in
                    let key = HostKey(upstream: registry.upstream, url: host.url)
                    let seed = state.trackers[key] ?? HostTracker()
                    return Task {
                        await probeLoop(
                            host, key: key, tracker: seed, settings: settings, rounds: rounds, generation: generation, sink: sink)
                    }
                }
            }
        }

        return await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in stop {
                    sink.yield(.stop)
                    return
                }
            }
            group.addTask {
                for await _ in hangup { sink.yield(.reload) }
            }
            if let watchdogInterval {
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: watchdogInterval)
                        sink.yield(.tick)
                    }
                }
            }
            reconciler.removeUpstreams(notIn: Set(state.config.registries.map(\.upstream)))
            logger.notice("watch: probing \(state.hostCount) mirrors of \(state.config.registries.count) registries")
            startProbes()

            var status = ExitStatus.ok
            loop: for await event in events {
                switch event {
                case .result(let generation, let key, let tracker, let changed):
                    guard generation == state.generation else { continue }
                    handle(key, tracker, changed: changed, state: &state)
                case .tick:
                    notifier.watchdog()
                case .reload:
                    if reload(&state) { startProbes() }
                case .stop:
                    logger.notice("watch: stopping on signal; files are left as they are")
                    notifier.stopping()
                    status = .ok
                    break loop
                }
            }
            probeTasks.forEach { $0.cancel() }
            group.cancelAll()
            sink.finish()
            return status
        }
    }

    private func probeLoop(
        _ host: MirrorHost, key: HostKey, tracker: HostTracker, settings: ProbeSettings, rounds: RoundSchedule,
        generation: Int, sink: AsyncStream<Event>.Continuation
    ) async {
        var tracker = tracker
        var rng = SystemRandomNumberGenerator()
        // A host carried over a reload keeps its schedule roughly: start within one fast interval.
        if tracker.inFile != nil {
            try? await Task.sleep(for: Backoff(settings).delay(attempt: 1, using: &rng))
        }
        while !Task.isCancelled {
            let result = await prober.probe(host, settings: settings)
            if Task.isCancelled { return }
            let changed = tracker.record(result, settings: settings)
            sink.yield(.result(generation: generation, key: key, tracker: tracker, changed: changed))
            if let delay = tracker.suspectDelay(settings: settings, unit: Double.random(in: 0...1, using: &rng)) {
                try? await Task.sleep(for: delay)
            } else {
                // Steady hosts all wake for the same round: one timer and one batch of probes per
                // interval instead of one wake-up per host, which is most of an idle watcher's cost.
                try? await Task.sleep(until: rounds.next(after: .now), tolerance: .milliseconds(20), clock: .continuous)
            }
        }
    }

    private func handle(_ key: HostKey, _ tracker: HostTracker, changed: Bool, state: inout WatchState) {
        let previous = state.trackers[key]
        state.trackers[key] = tracker
        state.lastResultTime = wallClock()
        if previous?.inFile == nil && tracker.inFile != nil { state.decidedHosts += 1 }
        guard let ri = state.registryIndex[key.upstream] else { return }
        var log = logger
        log[metadataKey: LogKey.upstream] = "\(key.upstream)"
        log[metadataKey: LogKey.host] = "\(key.url)"
        if let result = tracker.last {
            log[metadataKey: LogKey.result] = "\(result.state.rawValue)"
            log[metadataKey: LogKey.reason] = "\(result.reason)"
        }

        if changed {
            switch (previous?.inFile, tracker.inFile) {
            case (nil, true?):
                log.notice("mirror up: \(tracker.last?.reason ?? "")")
            case (nil, false?):
                log.warning("mirror down: \(tracker.last?.reason ?? "")")
            case (_, false?):
                log[metadataKey: LogKey.attempts] = "\(tracker.consecutiveFailures)"
                log.warning(
                    "mirror down after \(tracker.consecutiveFailures) failed probes (last: \(tracker.last?.reason ?? "")): taking it out of hosts.toml")
            default:
                log[metadataKey: LogKey.attempts] = "\(tracker.consecutiveSuccesses)"
                log.notice("mirror back after \(tracker.consecutiveSuccesses) good probes: putting it back into hosts.toml")
            }
            reconcile(ri, state: &state)
        } else if tracker.isSuspect && previous?.isSuspect != true {
            log.info("mirror suspect: \(tracker.last?.reason ?? ""); probing faster")
        }

        if !state.firstPassDone && state.decidedHosts == state.hostCount {
            state.firstPassDone = true
            logger.notice("watch: first pass done: \(state.statusText)")
            notifier.ready()
            notifier.status(state.statusText)
            writeMetrics(&state, force: true)
        } else if changed && state.firstPassDone {
            if notifier.isListening { notifier.status(state.statusText) }
            writeMetrics(&state, force: true)
        } else {
            // During the first pass every result is a change: writing the whole text for each would
            // make the first pass quadratic in the number of mirrors. Once a second is enough.
            writeMetrics(&state, force: false)
        }
    }

    /// Writes the registry's file for the hosts that are in; removes it while none is, once every host
    /// has been heard from (a host not probed yet might be up).
    private func reconcile(_ ri: Int, state: inout WatchState) {
        let registry = state.config.registries[ri]
        let trackers = registry.hosts.map { state.trackers[HostKey(upstream: registry.upstream, url: $0.url)] }
        let inHosts = registry.hosts.indices.filter { trackers[$0]?.inFile == true }.map { registry.hosts[$0] }
        if inHosts.isEmpty && trackers.contains(where: { $0?.inFile == nil }) { return }
        do {
            try reconciler.reconcile(
                upstream: registry.upstream, desired: HostsFile.render(registry, hosts: inHosts), configured: true)
            state.fileInPlace[registry.upstream] = !inHosts.isEmpty
        } catch {
            logger.error("\(error)", metadata: [LogKey.upstream: "\(registry.upstream)"])
        }
    }

    /// SIGHUP: a valid new config replaces the old one; an invalid one is reported and the old one kept.
    private func reload(_ state: inout WatchState) -> Bool {
        switch reloadConfig() {
        case .failure(let error):
            for line in error.lines { logger.error("config reload: \(line)") }
            logger.error("config reload failed: keeping the running config")
            return false
        case .success(let config):
            state.config = config
            let keys = Set(config.registries.flatMap { r in r.hosts.map { HostKey(upstream: r.upstream, url: $0.url) } })
            state.trackers = state.trackers.filter { keys.contains($0.key) }
            state.decidedHosts = state.trackers.values.filter { $0.inFile != nil }.count
            reconciler.removeUpstreams(notIn: Set(config.registries.map(\.upstream)))
            for ri in config.registries.indices { reconcile(ri, state: &state) }
            logger.notice("config reloaded: \(config.registries.count) registries, \(state.hostCount) mirrors")
            return true
        }
    }

    private func writeMetrics(_ state: inout WatchState, force: Bool) {
        guard let metrics else { return }
        let now = wallClock()
        guard force || now - state.lastMetricsWrite >= 1 else { return }
        state.lastMetricsWrite = now
        let hosts = state.config.registries.flatMap { r in
            r.hosts.map { h in
                MetricsText.HostSample(
                    upstream: r.upstream, url: h.url,
                    tracker: state.trackers[HostKey(upstream: r.upstream, url: h.url)] ?? HostTracker())
            }
        }
        let files = state.config.registries.map { ($0.upstream, state.fileInPlace[$0.upstream] ?? false) }
        metrics.write(MetricsText.render(hosts: hosts, filesInPlace: files, timestamp: state.lastResultTime))
    }
}

struct WatchState {
    var config: AgentConfig {
        didSet { index() }
    }
    /// Upstream to its position in `config.registries`, and the number of hosts: looked up per result.
    private(set) var registryIndex: [String: Int] = [:]
    private(set) var hostCount = 0
    /// Hosts whose first result is in (`inFile` no longer nil): the first pass is done when all are.
    var decidedHosts = 0
    var trackers: [Watcher.HostKey: HostTracker] = [:]
    var fileInPlace: [String: Bool] = [:]
    var generation = 0
    var firstPassDone = false
    var lastMetricsWrite = 0.0
    var lastResultTime = 0.0

    init(config: AgentConfig) {
        self.config = config
        index()
    }

    private mutating func index() {
        registryIndex = Dictionary(config.registries.enumerated().map { ($1.upstream, $0) }, uniquingKeysWith: { a, _ in a })
        hostCount = config.registries.reduce(0) { $0 + $1.hosts.count }
    }

    /// `3/3 registries have a mirror in hosts.toml; 4/5 mirrors in; down: quay.io http://...`
    var statusText: String {
        var down: [String] = []
        var inCount = 0
        for r in config.registries {
            for h in r.hosts {
                if trackers[Watcher.HostKey(upstream: r.upstream, url: h.url)]?.inFile == true {
                    inCount += 1
                } else {
                    down.append("\(r.upstream) \(h.url)")
                }
            }
        }
        let files = config.registries.filter { fileInPlace[$0.upstream] == true }.count
        var text = "\(files)/\(config.registries.count) registries have a mirror in hosts.toml; \(inCount)/\(hostCount) mirrors in"
        if !down.isEmpty { text += "; out: " + down.joined(separator: ", ") }
        return text
    }
}

/// The shared start times of probe rounds: every `interval` with ±20% jitter drawn once per round, so
/// the steady hosts of one node probe together while nodes drift apart.
final class RoundSchedule: Sendable {
    private let interval: Duration
    private let upcoming: Mutex<ContinuousClock.Instant?> = Mutex(nil)

    init(interval: Duration) { self.interval = interval }

    /// The next round start after `now`; the first is one jittered interval away.
    func next(after now: ContinuousClock.Instant, unit: @Sendable () -> Double = { Double.random(in: 0...1) }) -> ContinuousClock.Instant {
        upcoming.withLock { upcoming in
            var next = upcoming ?? now + jittered(unit())
            while next <= now { next += jittered(unit()) }
            upcoming = next
            return next
        }
    }

    private func jittered(_ unit: Double) -> Duration { interval * (0.8 + 0.4 * min(max(unit, 0), 1)) }
}
