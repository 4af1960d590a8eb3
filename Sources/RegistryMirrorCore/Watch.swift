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

/// watch (docs/design.md §6, §9.2): the same model as apply (`MirrorState`, `fileDecision`), with
/// hysteresis and no end. Steady hosts are probed once a round (shared, jittered rounds); when a
/// probe goes out otherwise is `ProbeTiming`'s call; a registry's hosts.toml always lists the hosts that are in, and goes away while
/// none is. SIGHUP reloads the config, SIGTERM ends cleanly leaving the files as they are.
public struct Watcher: Sendable {
    /// Why a reload was refused, one line per problem.
    public struct ReloadError: Error, Sendable {
        public var lines: [String]
        public init(lines: [String]) { self.lines = lines }
    }
    public typealias ConfigSource = @Sendable () -> Result<AgentConfig, ReloadError>

    public let initialConfig: AgentConfig
    public let prober: any MirrorProber
    public let files: RegistryFiles
    public let notifier: any ServiceNotifier
    public let metrics: (any MetricsSink)?
    public let logger: Logger
    /// Re-reads the config on SIGHUP.
    public let reloadConfig: ConfigSource
    /// WATCHDOG=1 is sent this often (half of WATCHDOG_USEC) from the main loop, so a stuck loop is seen.
    public let watchdogInterval: Duration?
    /// Seconds since the epoch, for the metrics' timestamps.
    public let wallClock: @Sendable () -> Double
    public let clock: AgentClock
    public let random: RandomSource
    /// Learns again which containerd the files are for (its version), when containerd restarts.
    public let resolveTarget: (@Sendable (AgentConfig) -> ContainerdTarget)?
    /// Looks Service names up (`[discovery]`); nil: every lookup fails as "no resolver".
    public let resolver: (any ServiceResolver)?
    /// Raised on a stop request (the signal thread raises it too): ends a wait for the lock.
    public let stopFlag: StopFlag

    public init(
        config: AgentConfig, prober: any MirrorProber, store: any HostsStore, notifier: any ServiceNotifier,
        metrics: (any MetricsSink)?, logger: Logger, watchdogInterval: Duration?,
        wallClock: @escaping @Sendable () -> Double, resolveTarget: (@Sendable (AgentConfig) -> ContainerdTarget)? = nil,
        reloadConfig: @escaping ConfigSource, clock: AgentClock = .continuous, random: RandomSource = .system,
        resolver: (any ServiceResolver)? = nil, stopFlag: StopFlag = StopFlag()
    ) {
        self.resolver = resolver
        self.stopFlag = stopFlag
        self.resolveTarget = resolveTarget
        self.wallClock = wallClock
        self.initialConfig = config
        self.prober = prober
        self.files = RegistryFiles(
            reconciler: HostsReconciler(store: store, logger: logger, lockWait: .until(nil, on: clock, or: stopFlag)), logger: logger,
            retryFailures: true)
        self.notifier = notifier
        self.metrics = metrics
        self.logger = logger
        self.watchdogInterval = watchdogInterval
        self.reloadConfig = reloadConfig
        self.clock = clock
        self.random = random
    }

    enum Event: Sendable {
        case result(generation: Int, key: HostKey, tracker: HostTracker, changed: Bool)
        case resolved(generation: Int, key: HostKey, Resolution)
        case containerd(ContainerdLog.Event)
        /// What containerd is now, learnt after it started (asking it blocks: never on this loop).
        case target(ContainerdTarget)
        case reload
        case stop
        case tick
    }

    /// Runs until `stop` yields; returns the exit status (0: stopped by a signal, as services are).
    /// `bypasses`: containerd's log entries for requests that went past a host (§6.1); each makes the
    /// hosts it names suspect at once (probed now) and is counted.
    public func run(
        stop: AsyncStream<Void>, hangup: AsyncStream<Void>, bypasses: AsyncStream<ContainerdLog.Event>? = nil
    ) async -> ExitStatus {
        let (events, sink) = AsyncStream.makeStream(of: Event.self)
        var state = MirrorState(config: initialConfig)
        var watch = WatchProgress()

        return await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in stop {
                    stopFlag.raise()
                    sink.yield(.stop)
                    return
                }
            }
            group.addTask {
                for await _ in hangup { sink.yield(.reload) }
            }
            if let bypasses {
                group.addTask {
                    for await event in bypasses { sink.yield(.containerd(event)) }
                }
            }
            if let watchdogInterval {
                group.addTask {
                    while !Task.isCancelled {
                        await clock.sleep(for: watchdogInterval)
                        sink.yield(.tick)
                    }
                }
            }
            _ = files.removeUnconfigured(state.config)
            for registry in state.config.registries where !registry.readinessProbe { files.carryOut(registry.upstream, in: &state) }
            let names = state.services.isEmpty ? "" : " (and looking up \(state.services.count) Service name\(state.services.count == 1 ? "" : "s"))"
            logger.notice("watch: probing \(state.probedHosts) mirrors of \(state.config.registries.count) registries\(names)")
            // Nothing to probe (every registry has readiness_probe = false): the first pass is already over.
            checkFirstPass(state, &watch)
            // One task group per config generation: a reload cancels it and waits for its probes to end.
            var probes = startProbes(state, generation: watch.generation, sink: sink)

            loop: for await event in events {
                switch event {
                case .result(let generation, let key, let tracker, let changed):
                    guard generation == watch.generation else { continue }
                    handle(key, tracker, changed: changed, state: &state, watch: &watch, probes: &probes)
                case .resolved(let generation, let key, let resolution):
                    guard generation == watch.generation else { continue }
                    let before = state.services[key]?.last
                    guard let update = state.resolved(key, resolution) else { continue }
                    ServiceLog.lookup(update, before: before, logger: logger)
                    serviceChanged(update, state: &state, watch: &watch, probes: &probes)
                    if !watch.firstPassDone { checkFirstPass(state, &watch) }
                case .containerd(.bypass(let bypass)):
                    for key in ContainerdLog.hosts(named: bypass, in: state.config) {
                        noteBypass(key, bypass, watch: &watch)
                        probes.poke(key)
                    }
                    writeMetrics(state, &watch, force: false)
                case .containerd(.started):
                    // containerd (re)started, perhaps another release: files follow its version.
                    guard let resolveTarget else { continue }
                    let config = state.config
                    // Detached: a stop does not wait for the answer (a yield after it goes nowhere).
                    Task.detached { sink.yield(.target(resolveTarget(config))) }
                case .target(let target):
                    guard target != state.config.target else { continue }
                    logger.notice("containerd restarted: files are now written for \(target.description)")
                    var config = state.configured
                    config.target = target
                    state.replace(config: config)
                    for registry in config.registries { files.carryOut(registry.upstream, in: &state) }
                case .tick:
                    notifier.watchdog()
                case .reload:
                    guard let config = reloaded() else { continue }
                    probes.cancel()
                    await probes.value
                    state.replace(config: config)
                    _ = files.removeUnconfigured(config)
                    for registry in config.registries { files.carryOut(registry.upstream, in: &state) }
                    logger.notice("config reloaded: \(config.registries.count) registries, \(state.probedHosts) mirrors")
                    watch.generation += 1
                    probes = startProbes(state, generation: watch.generation, sink: sink)
                case .stop:
                    logger.notice("watch: stopping on signal; files are left as they are")
                    notifier.stopping()
                    break loop
                }
            }
            probes.cancel()
            await probes.value
            group.cancelAll()
            sink.finish()
            return .ok
        }
    }

    /// The probe loops of one config generation: one task holding a task group of every probed host's
    /// loop, cancelled and awaited as a whole, and a way to wake each loop.
    struct ProbeTasks {
        let task: Task<Void, Never>
        fileprivate var wakes: [HostKey: AsyncStream<HostEvent>.Continuation]
        /// Service name host to its lookup loop's queue.
        fileprivate let lookups: [HostKey: AsyncStream<LookupEvent>.Continuation]
        /// New probe loops for the generation's task group (a Service's new addresses).
        fileprivate let additions: AsyncStream<ProbeLoop>.Continuation
        fileprivate let start: @Sendable (MirrorHost, HostKey, HostTracker) -> ProbeLoop

        func cancel() { task.cancel() }
        var value: Void { get async { await task.value } }
        /// The host is suspect: probe it now (unless as many probes as may be are out already).
        func poke(_ key: HostKey) { wakes[key]?.yield(.poke) }
        /// Look the Service name up now (a probe of its address failed).
        func lookUp(_ service: HostKey) { lookups[service]?.yield(.ask) }

        /// Probes `host` from now on, in this generation.
        mutating func add(_ host: MirrorHost, key: HostKey, seed: HostTracker) {
            guard wakes[key] == nil else { return }
            let loop = start(host, key, seed)
            wakes[key] = loop.wake
            additions.yield(loop)
        }

        /// Stops probing `key` (an address a Service name no longer has).
        mutating func retire(_ key: HostKey) {
            wakes.removeValue(forKey: key)?.yield(.retire)
        }
    }

    /// One host's probe loop before it runs: what it probes, its queue, and how to wake it.
    fileprivate struct ProbeLoop: Sendable {
        let host: MirrorHost
        let key: HostKey
        let seed: HostTracker
        let events: AsyncStream<HostEvent>
        let wake: AsyncStream<HostEvent>.Continuation
    }

    private func startProbes(_ state: MirrorState, generation: Int, sink: AsyncStream<Event>.Continuation) -> ProbeTasks {
        let settings = state.config.probe
        let rounds = RoundSchedule(interval: settings.watchInterval.duration, random: random)
        let hosts =
            state.config.registries.filter(\.readinessProbe).flatMap { registry in
                registry.hosts.map { (key: HostKey(upstream: registry.upstream, url: $0.url), host: $0, seed: HostTracker?.none) }
            } + state.candidateHosts.map { ($0.key, $0.host, state.trackers[$0.key] ?? HostTracker.candidate) }
        let seeds = state.trackers
        let ticker = RoundTicker(clock: clock)
        let makeLoop: @Sendable (MirrorHost, HostKey, HostTracker?) -> ProbeLoop = { host, key, seed in
            let (events, wake) = AsyncStream.makeStream(of: HostEvent.self)
            return ProbeLoop(host: host, key: key, seed: seed ?? seeds[key] ?? HostTracker(), events: events, wake: wake)
        }
        let loops = hosts.map { makeLoop($0.host, $0.key, $0.seed) }
        let (additions, add) = AsyncStream.makeStream(of: ProbeLoop.self)
        // One lookup loop per name, however many registries use it.
        var lookups: [HostKey: AsyncStream<LookupEvent>.Continuation] = [:]
        var lookupLoops: [(keys: [HostKey], name: String, known: Bool, events: AsyncStream<LookupEvent>, wake: AsyncStream<LookupEvent>.Continuation)] = []
        for service in state.servicesByName {
            let (events, wake) = AsyncStream.makeStream(of: LookupEvent.self)
            for key in service.keys { lookups[key] = wake }
            lookupLoops.append((service.keys, service.name, service.known, events, wake))
        }
        let discovery = state.configured.discovery
        let task = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await ticker.run() }
                for service in lookupLoops {
                    group.addTask {
                        await lookupLoop(
                            service.name, keys: service.keys, discovery: discovery, known: service.known, settings: settings,
                            rounds: rounds, ticker: ticker, generation: generation, events: service.events, wake: service.wake,
                            sink: sink)
                    }
                }
                func run(_ loop: ProbeLoop) {
                    group.addTask {
                        await probeLoop(
                            loop.host, key: loop.key, tracker: loop.seed, settings: settings, rounds: rounds, ticker: ticker,
                            generation: generation, events: loop.events, wake: loop.wake, sink: sink)
                    }
                }
                for loop in loops { run(loop) }
                // Ends when the generation is cancelled.
                for await loop in additions { run(loop) }
            }
        }
        return ProbeTasks(
            task: task, wakes: Dictionary(loops.map { ($0.key, $0.wake) }, uniquingKeysWith: { a, _ in a }), lookups: lookups,
            additions: add, start: { host, key, seed in makeLoop(host, key, seed) })
    }

    /// What wakes a Service name's lookup loop: a request (a probe of its address failed), or its timer.
    fileprivate enum LookupEvent: Sendable {
        case ask
        case timer
    }

    /// One Service name: looked up at each round, and at once when asked (a probe of its address
    /// failed), at most once per `initial_interval`. While no address is known, a failed lookup is
    /// retried on the backoff instead of waiting for the round. Each answer goes to every host (`keys`)
    /// that uses the name.
    private func lookupLoop(
        _ name: String, keys: [HostKey], discovery: Discovery?, known: Bool, settings: ProbeSettings, rounds: RoundSchedule,
        ticker: RoundTicker, generation: Int, events: AsyncStream<LookupEvent>, wake: AsyncStream<LookupEvent>.Continuation,
        sink: AsyncStream<Event>.Continuation
    ) async {
        let backoff = Backoff(settings)
        let spacing = settings.initialInterval.duration
        var known = known
        var failures = 0
        var iterator = events.makeAsyncIterator()
        // A name carried over a reload with addresses waits for the round; a new one is looked up now.
        var due = known ? rounds.next(after: clock.now) : clock.now
        var lastStart: Duration?
        var lastSent: Resolution?
        // The wake-up waited for: a round (from the ticker, no task) or another instant (a task).
        var timer: (at: Duration, task: Task<Void, Never>?)?
        while !Task.isCancelled {
            let now = clock.now
            if due <= now {
                lastStart = now
                let resolution = await resolver.lookUp(name, using: discovery)
                if Task.isCancelled { break }
                // The same answer as last time changes nothing: the event loop is not woken for it.
                if resolution != lastSent {
                    for key in keys { sink.yield(.resolved(generation: generation, key: key, resolution)) }
                    lastSent = resolution
                }
                if case .addresses = resolution.usable {
                    known = true
                    failures = 0
                } else {
                    failures += 1
                }
                due = known ? rounds.next(after: clock.now) : clock.now + backoff.delay(attempt: failures, unit: random.unit())
                continue
            }
            if timer?.at != due {
                timer?.task?.cancel()
                let at = due
                if known && at == rounds.next(after: now) {
                    // A round: the generation's one timer wakes it with the steady hosts.
                    ticker.wake(.lookup(wake), at: at)
                    timer = (at, nil)
                } else {
                    timer = (at, Task {
                        await clock.sleep(until: at)
                        if !Task.isCancelled { wake.yield(.timer) }
                    })
                }
            }
            guard let event = await iterator.next(), !Task.isCancelled else { break }
            if case .ask = event, let lastStart {
                due = min(due, max(clock.now, lastStart + spacing))
            }
        }
        timer?.task?.cancel()
    }

    /// Counts a bypass of `key`; logs the first of a burst (containerd logs one line per request, and
    /// a pull makes many), then at most one line per host every 10 s with the count so far.
    private func noteBypass(_ key: HostKey, _ bypass: ContainerdLog.Bypass, watch: inout WatchProgress) {
        watch.bypassed[key, default: 0] += 1
        let now = clock.now
        if let last = watch.lastBypassLog[key], now - last < .seconds(10) { return }
        watch.lastBypassLog[key] = now
        var log = logger
        log[metadataKey: LogKey.upstream] = "\(key.upstream)"
        log[metadataKey: LogKey.host] = "\(key.url)"
        log[metadataKey: LogKey.reason] = "\(bypass.reason)"
        log.warning(
            "containerd went past this mirror (\(watch.bypassed[key] ?? 0) request\(watch.bypassed[key] == 1 ? "" : "s") since watch started; last: \(bypass.reason)): probing it now")
    }

    /// What wakes a host's loop: a probe's result, its silence, its timer, the round, or containerd's log.
    fileprivate enum HostEvent: Sendable {
        case result(ProbeResult, launched: Duration)
        case silent(launched: Duration)
        case timer(Int)
        case round(Duration)
        case poke
        /// The host is no longer probed (an address a Service name no longer has).
        case retire
    }

    /// One host: probes go out when `ProbeTiming` says, each in a child task, and results are recorded
    /// in the order they arrive; the loop waits on its own queue of events, so containerd's log can
    /// wake it whenever. A steady host waits for the round from the generation's `RoundTicker` (one
    /// timer for all of them); other plans get one timer task, replaced when the plan changes, except a
    /// steady host's silence, which a `SilenceReportingProber` reports without
    /// a timer. A steady round thus costs a host one wake-up and one probe.
    private func probeLoop(
        _ host: MirrorHost, key: HostKey, tracker: HostTracker, settings: ProbeSettings, rounds: RoundSchedule,
        ticker: RoundTicker, generation: Int, events: AsyncStream<HostEvent>, wake: AsyncStream<HostEvent>.Continuation,
        sink: AsyncStream<Event>.Continuation
    ) async {
        let timing = ProbeTiming(settings)
        let reporter = prober as? any SilenceReportingProber
        var tracker = tracker
        var inFlight: [Duration] = []
        var silenced: Duration?
        var lastLaunch: Duration?
        // A host carried over a reload is not probed again at once: it goes on as if just probed.
        if tracker.inFile != nil { lastLaunch = clock.now }
        var iterator = events.makeAsyncIterator()
        var poked = false
        await withDiscardingTaskGroup { group in
            var timer: (id: Int, at: Duration, task: Task<Void, Never>)?
            var timers = 0
            // The round this host waits for, kept until it goes: it has begun by the time the ticker
            // wakes the host; and the round it asked the ticker for.
            var round: Duration?
            var registered: Duration?
            while !Task.isCancelled {
                let now = clock.now
                let plan = timing.next(
                    tracker, inFlight: inFlight, lastLaunch: lastLaunch, silenced: silenced != nil && silenced == inFlight.first,
                    unit: random.unit()
                ) {
                    // Steady hosts all wake for the same round: one batch of probes per interval.
                    if round == nil { round = rounds.next(after: now) }
                    return round!
                }
                // containerd went past this host: probe it now, whatever the plan, unless a probe went
                // out less than initial_interval ago (a pull's burst of log lines is one piece of news).
                let pokeNow =
                    poked && inFlight.count < timing.maxInFlight
                    && lastLaunch.map { now - $0 >= settings.initialInterval.duration } != false
                poked = false
                if pokeNow || plan.map({ $0 <= now }) == true {
                    let silentAfter = timing.awaitsSilence(tracker, inFlight: inFlight.count + 1) ? timing.silence : nil
                    inFlight.append(now)
                    lastLaunch = now
                    round = nil
                    group.addTask {
                        let result: ProbeResult
                        if let reporter, let silentAfter {
                            result = await reporter.probe(host, settings: settings, silentAfter: silentAfter) {
                                wake.yield(.silent(launched: now))
                            }
                        } else {
                            result = await prober.probe(host, settings: settings)
                        }
                        wake.yield(.result(result, launched: now))
                    }
                    continue
                }
                if let at = plan, inFlight.isEmpty, at == round {
                    timer?.task.cancel()
                    timer = nil
                    if registered != at {
                        ticker.wake(.host(wake), at: at)
                        registered = at
                    }
                } else if let at = plan, reporter == nil || !timing.awaitsSilence(tracker, inFlight: inFlight.count) {
                    // The timer always stands for the current plan.
                    if timer?.at != at {
                        timer?.task.cancel()
                        timers += 1
                        let id = timers
                        timer = (id, at, Task {
                            await clock.sleep(until: at)
                            if !Task.isCancelled { wake.yield(.timer(id)) }
                        })
                    }
                } else {
                    // Nothing to time: as many probes out as may be, or the prober tells of silence.
                    timer?.task.cancel()
                    timer = nil
                }
                guard let event = await iterator.next(), !Task.isCancelled else { break }
                switch event {
                case .timer(let id):
                    if timer?.id == id { timer = nil }
                case .round(let at):
                    if registered == at { registered = nil }
                case .silent(let launched):
                    silenced = launched
                case .poke:
                    poked = true
                case .retire:
                    timer?.task.cancel()
                    group.cancelAll()
                    return
                case .result(let result, let launched):
                    if let i = inFlight.firstIndex(of: launched) { inFlight.remove(at: i) }
                    if silenced == launched { silenced = nil }
                    let changed = tracker.record(result, settings: settings)
                    sink.yield(.result(generation: generation, key: key, tracker: tracker, changed: changed))
                }
            }
            timer?.task.cancel()
            group.cancelAll()
        }
        wake.finish()
    }

    private func handle(
        _ key: HostKey, _ tracker: HostTracker, changed: Bool, state: inout MirrorState, watch: inout WatchProgress,
        probes: inout ProbeTasks
    ) {
        guard let previous = state.adopt(key, tracker) else { return }
        watch.lastResultTime = wallClock()
        var log = logger
        log[metadataKey: LogKey.upstream] = "\(key.upstream)"
        log[metadataKey: LogKey.host] = "\(key.url)"
        if let result = tracker.last {
            log[metadataKey: LogKey.result] = "\(result.state.rawValue)"
            log[metadataKey: LogKey.reason] = "\(result.reason)"
        }
        if let service = state.owners[key] {
            let candidate = state.isCandidate(key)
            if let update = state.promoteIfPassed(key) {
                serviceChanged(update, state: &state, watch: &watch, probes: &probes)
                if !watch.firstPassDone { checkFirstPass(state, &watch) }
                return
            }
            if tracker.last?.isUp == false {
                // The address may be gone with its Service: ask the DNS now rather than at the round.
                probes.lookUp(service)
            }
            if candidate {
                // Not in any file yet: its own line when its answer changes, none of "up", "back" or "suspect".
                if previous?.last?.state != tracker.last?.state, let name = state.services[service]?.name {
                    log[metadataKey: LogKey.service] = "\(name)"
                    log.info(
                        "service \(name): new address \(tracker.last?.isUp == true ? "answers" : "does not answer") (\(tracker.last?.reason ?? "")); it replaces the old one after \(state.promoteAfter) good probes in a row")
                }
                writeMetrics(state, &watch, force: false)
                return
            }
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
            files.carryOut(key.upstream, in: &state)
        } else if tracker.isSuspect && previous?.isSuspect != true {
            log.info("mirror suspect: \(tracker.last?.reason ?? ""); probing faster")
        }

        if !watch.firstPassDone && state.everyHostDecided {
            checkFirstPass(state, &watch)
        } else if changed && watch.firstPassDone {
            if notifier.isListening { notifier.status(statusText(state)) }
            writeMetrics(state, &watch, force: true)
        } else {
            // During the first pass every result is a change: writing the whole text for each would
            // make the first pass quadratic in the number of mirrors. Once a second is enough.
            writeMetrics(state, &watch, force: false)
        }
    }

    /// A Service name's addresses changed: probes follow, the file follows, the log says so.
    private func serviceChanged(
        _ update: MirrorState.ServiceUpdate, state: inout MirrorState, watch: inout WatchProgress, probes: inout ProbeTasks
    ) {
        let upstream = update.service.upstream
        let applied = state.applied[upstream]
        if !update.change.isEmpty {
            ServiceLog.changed(update, logger: logger)
            for key in update.stopped { probes.retire(key) }
            if update.probed {
                for (key, host, seed) in update.started { probes.add(host, key: key, seed: seed) }
            }
        }
        // Also with the addresses unchanged: a name with none that was pending (DNS unreachable) and is
        // now not found turns the file's "wait" into "remove".
        files.carryOut(upstream, in: &state)
        guard !update.change.isEmpty || state.applied[upstream] != applied else { return }
        if watch.firstPassDone {
            if notifier.isListening { notifier.status(statusText(state)) }
            writeMetrics(state, &watch, force: true)
        }
    }

    /// READY=1 once every probed host has its first result.
    private func checkFirstPass(_ state: MirrorState, _ watch: inout WatchProgress) {
        guard !watch.firstPassDone && state.everyHostDecided else { return }
        watch.firstPassDone = true
        logger.notice("watch: first pass done: \(statusText(state))")
        notifier.ready()
        notifier.status(statusText(state))
        writeMetrics(state, &watch, force: true)
    }

    /// SIGHUP: a valid new config, or nil when it is refused (the running one is kept).
    private func reloaded() -> AgentConfig? {
        switch reloadConfig() {
        case .failure(let error):
            for line in error.lines { logger.error("config reload: \(line)") }
            logger.error("config reload failed: keeping the running config")
            return nil
        case .success(let config):
            return config
        }
    }

    private func writeMetrics(_ state: MirrorState, _ watch: inout WatchProgress, force: Bool) {
        guard let metrics else { return }
        let now = wallClock()
        guard force || now - watch.lastMetricsWrite >= 1 else { return }
        watch.lastMetricsWrite = now
        let hosts = state.probedKeys.map { key in
            MetricsText.HostSample(
                upstream: key.upstream, url: key.url, tracker: state.trackers[key] ?? HostTracker(), bypassed: watch.bypassed[key] ?? 0,
                service: state.owners[key].flatMap { state.services[$0]?.name })
        }
        let files = state.config.registries.map { ($0.upstream, state.fileInPlace($0.upstream)) }
        metrics.write(MetricsText.render(hosts: hosts, filesInPlace: files, timestamp: watch.lastResultTime))
    }

    /// `3/3 registries have a mirror in hosts.toml; 4/5 mirrors in; out: quay.io http://...`
    func statusText(_ state: MirrorState) -> String {
        var out: [String] = []
        var inCount = 0
        for key in state.probedKeys {
            if state.trackers[key]?.inFile == true { inCount += 1 } else { out.append(key.description) }
        }
        let files = state.config.registries.filter { state.fileInPlace($0.upstream) }.count
        var text = "\(files)/\(state.config.registries.count) registries have a mirror in hosts.toml; \(inCount)/\(state.probedHosts) mirrors in"
        if !out.isEmpty { text += "; out: " + out.prefix(5).joined(separator: ", ") + (out.count > 5 ? " and \(out.count - 5) more" : "") }
        return text
    }
}

/// What only watch keeps beside the shared model.
struct WatchProgress {
    var generation = 0
    /// Requests containerd's log says went past each host, and when the last log line about it was.
    var bypassed: [HostKey: Int] = [:]
    var lastBypassLog: [HostKey: Duration] = [:]
    var firstPassDone = false
    var lastMetricsWrite = 0.0
    var lastResultTime = 0.0
}

/// The shared start times of probe rounds: every `interval` with ±20% jitter drawn once per round, so
/// the steady hosts of one node probe together while nodes drift apart. Times are the clock's `now`.
final class RoundSchedule: Sendable {
    private let interval: Duration
    private let random: RandomSource
    private let upcoming: Mutex<Duration?> = Mutex(nil)

    init(interval: Duration, random: RandomSource = .system) {
        self.interval = interval
        self.random = random
    }

    /// The next round start after `now`; the first is one jittered interval away.
    func next(after now: Duration) -> Duration {
        upcoming.withLock { upcoming in
            var next = upcoming ?? now + jittered()
            while next <= now { next += jittered() }
            upcoming = next
            return next
        }
    }

    private func jittered() -> Duration { interval * (0.8 + 0.4 * min(max(random.unit(), 0), 1)) }
}

/// Wakes the steady hosts and the Service name lookups of one generation at each round start with a
/// single timer: each asks for a round (`wake(_:at:)`), and when it comes every one that asked for it
/// gets `.round` (a lookup: `.timer`) in its queue. One that has moved on meanwhile ignores it. Round
/// starts only grow (`RoundSchedule`), so the ticker never has to wake earlier than it planned.
final class RoundTicker: Sendable {
    /// Whose queue a round goes to.
    fileprivate enum Waiter: Sendable {
        case host(AsyncStream<Watcher.HostEvent>.Continuation)
        case lookup(AsyncStream<Watcher.LookupEvent>.Continuation)
    }
    private struct Waiting {
        var waiters: [(round: Duration, waiter: Waiter)] = []
    }
    private let clock: AgentClock
    private let waiting = Mutex(Waiting())
    private let asked: AsyncStream<Void>
    private let ask: AsyncStream<Void>.Continuation

    init(clock: AgentClock) {
        self.clock = clock
        (asked, ask) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    fileprivate func wake(_ waiter: Waiter, at round: Duration) {
        waiting.withLock { $0.waiters.append((round, waiter)) }
        ask.yield()
    }

    /// Runs until cancelled (with the generation's probes).
    func run() async {
        var requests = asked.makeAsyncIterator()
        while !Task.isCancelled {
            guard let round = waiting.withLock({ $0.waiters.map(\.round).min() }) else {
                guard await requests.next() != nil else { return }
                continue
            }
            await clock.sleep(until: round)
            if Task.isCancelled { return }
            let now = clock.now
            let due = waiting.withLock { waiting in
                let due = waiting.waiters.filter { $0.round <= now }
                waiting.waiters.removeAll { $0.round <= now }
                return due
            }
            for entry in due {
                switch entry.waiter {
                case .host(let wake): wake.yield(.round(entry.round))
                case .lookup(let wake): wake.yield(.timer)
                }
            }
        }
    }
}
