import Logging
import Synchronization

/// The one run loop of apply and watch (docs/design.md §9.2). Both hold the same model
/// (`MirrorState`, `fileDecision`), probe every host with one `ProbeLoop` and look every Service name
/// up with one `LookupLoop`, and carry decisions out with `RegistryFiles`; what differs is the
/// schedules (`ApplyTiming` and thresholds of 1, or `ProbeTiming` with hysteresis), and the end:
/// apply ends when every registry is settled, at its deadline or on a stop; watch on a stop.
///
/// Every event reaches one loop (`run`), which alone touches the state. Probe and lookup loops are
/// tasks of their own, one per host and per name, started and stopped as the state changes: a reload
/// keeps the loop (so the schedule and history) of every host whose settings it leaves unchanged.
struct Driver: Sendable {
    enum Mode: Sendable, Equatable { case apply, watch }

    enum Event: Sendable {
        case probed(HostKey, loop: Int, HostTracker, changed: Bool)
        case resolved(String, loop: Int, Resolution)
        case containerd(ContainerdLog.Event)
        /// What containerd is now, learnt off the loop (asking it may block for seconds).
        case target(ContainerdTarget)
        /// Something changed under these upstream directories (watch: restore our files).
        case filesChanged(Set<String>)
        /// A round came and no file watch reports changes: check our files.
        case verify
        case reload
        case stop
        case deadline
        case tick
    }

    let mode: Mode
    let config: AgentConfig
    let prober: any MirrorProber
    let files: RegistryFiles
    let logger: Logger
    let clock: AgentClock
    let random: RandomSource
    let resolver: (any ServiceResolver)?
    let status: any StatusReporter
    let stopFlag: StopFlag
    /// apply's deadline counts from here.
    let started: Duration
    var watch = WatchParts()

    /// What only watch has.
    struct WatchParts: Sendable {
        var notifier: (any ServiceNotifier)?
        var metrics: (any MetricsSink)?
        var watchdogInterval: Duration?
        var wallClock: @Sendable () -> Double = { 0 }
        var reloadConfig: Watcher.ConfigSource?
        var resolveTarget: (@Sendable (AgentConfig) -> ContainerdTarget)?
        /// Connection checks and held connections between HTTP probes; nil: HTTP every round.
        var connections: (any ConnectionChecker)?
    }

    /// A running probe or lookup loop.
    struct Handle<E: Sendable> {
        var id: Int
        var task: Task<Void, Never>
        var wake: AsyncStream<E>.Continuation
    }

    /// Everything the run loop keeps.
    struct RunState {
        var state: MirrorState
        var probes: [HostKey: (handle: Handle<ProbeLoop.Event>, host: MirrorHost, settings: ProbeSettings)] = [:]
        var lookups: [String: (handle: Handle<LookupLoop.Event>, discovery: Discovery?)] = [:]
        var nextLoop = 0
        var report = ApplyReport()
        var progress: Progress
        var statusDue: Duration = .zero
        var watch = WatchProgress()
        var ended = false

        init(state: MirrorState) {
            self.state = state
            progress = Progress(registries: state.config.registries.count)
        }
    }

    /// The parts every loop shares: the rounds and their one timer, and the run's queue.
    struct Shared: Sendable {
        let rounds: RoundSchedule
        let ticker: RoundTicker
        let sink: AsyncStream<Event>.Continuation
    }

    /// What the run takes from outside: stop requests, and for watch SIGHUP, containerd's log and
    /// how it learns of changes under the hosts directory.
    struct Inputs: Sendable {
        var stop: AsyncStream<Void>
        var hangup: AsyncStream<Void>? = nil
        var containerd: AsyncStream<ContainerdLog.Event>? = nil
        var files: FileWatch = .none
    }

    var probeSettings: ProbeSettings { config.probe }

    func run(_ inputs: Inputs) async -> ApplyReport {
        var run = RunState(state: MirrorState(config: config, promoteAfter: mode == .apply ? 1 : nil))
        let (events, sink) = AsyncStream.makeStream(of: Event.self)
        let shared = Shared(rounds: RoundSchedule(interval: config.probe.watchInterval.duration, random: random), ticker: RoundTicker(clock: clock), sink: sink)
        let reloads = ReloadRequests()

        await withTaskGroup(of: Void.self) { group in
            group.addTask { await shared.ticker.run() }
            group.addTask {
                for await _ in inputs.stop {
                    stopFlag.raise()
                    sink.yield(.stop)
                    return
                }
            }
            if let hangup = inputs.hangup {
                // Reloads coalesce: while one is queued, more SIGHUPs add nothing.
                group.addTask { for await _ in hangup where reloads.request() { sink.yield(.reload) } }
            }
            if let containerd = inputs.containerd {
                group.addTask { for await event in containerd { sink.yield(.containerd(event)) } }
            }
            if case .changes(let changes) = inputs.files {
                group.addTask { for await upstreams in changes { sink.yield(.filesChanged(upstreams)) } }
            }
            if mode == .watch, let interval = watch.watchdogInterval {
                group.addTask {
                    while !Task.isCancelled {
                        await clock.sleep(for: interval)
                        sink.yield(.tick)
                    }
                }
            }
            if mode == .apply, !config.probe.deadline.isZero {
                let deadline = started + config.probe.deadline.duration
                group.addTask {
                    await clock.sleep(until: deadline)
                    if !Task.isCancelled { sink.yield(.deadline) }
                }
            }

            begin(&run, shared, verifyEachRound: inputs.files == .everyRound)
            if !run.ended {
                for await event in events {
                    handle(event, &run, shared, reloads: reloads)
                    if run.ended { break }
                }
            }
            for (_, loop) in run.probes { loop.handle.task.cancel() }
            for (_, loop) in run.lookups { loop.handle.task.cancel() }
            for (_, loop) in run.probes { await loop.handle.task.value }
            for (_, loop) in run.lookups { await loop.handle.task.value }
            group.cancelAll()
            sink.finish()
        }
        return mode == .apply ? finishApply(run) : run.report
    }

    /// The first pass: files of upstreams that left the config go, registries written without probing
    /// are written, and every probe and lookup loop starts.
    private func begin(_ run: inout RunState, _ shared: Shared, verifyEachRound: Bool) {
        run.report.failed = files.removeUnconfigured(run.state.config)
        for registry in run.state.config.registries where !registry.readinessProbe {
            files.carryOut(registry.upstream, in: &run.state)
            if mode == .apply { run.progress.refresh(registry.upstream, in: run.state) }
        }
        switch mode {
        case .apply:
            if run.progress.allSettled {
                run.ended = true
                return
            }
            reportStatus(&run)
        case .watch:
            let state = run.state
            let names = state.services.isEmpty ? "" : " (and looking up \(state.services.count) Service name\(state.services.count == 1 ? "" : "s"))"
            logger.notice("watch: probing \(state.probedHosts) mirrors of \(state.config.registries.count) registries\(names)")
            // Nothing to probe (every registry has readiness_probe = false): the first pass is already over.
            checkFirstPass(&run)
            if verifyEachRound { verifyAtNextRound(shared) }
        }
        syncLoops(&run, shared)
    }

    private func handle(_ event: Event, _ run: inout RunState, _ shared: Shared, reloads: ReloadRequests) {
        switch event {
        case .probed(let key, let loop, let tracker, let changed):
            guard run.probes[key]?.handle.id == loop else { return }
            probed(key, tracker, changed: changed, &run, shared)
        case .resolved(let name, let loop, let resolution):
            guard run.lookups[name]?.handle.id == loop else { return }
            for key in run.state.keys(ofService: name) {
                let before = run.state.services[key]?.last
                guard let update = run.state.resolved(key, resolution) else { continue }
                ServiceLog.lookup(update, before: before, logger: logger)
                serviceChanged(update, &run, shared)
            }
            settle(&run)
        case .deadline:
            run.report.deadlineReached = true
            let waiting = config.registries.filter { !run.progress.isSettled($0.upstream) }.map(\.upstream)
            logger.error("deadline of \(config.probe.deadline) reached; still waiting for \(RunLog.list(waiting))")
            run.ended = true
        case .stop:
            switch mode {
            case .apply:
                run.report.interrupted = true
                logger.warning("interrupted: stopping; files written so far are complete")
            case .watch:
                logger.notice("watch: stopping on signal; files are left as they are")
                watch.notifier?.stopping()
            }
            run.ended = true
        case .containerd(let event): containerdSaid(event, &run, shared)
        case .target(let target): retarget(target, &run, shared)
        case .filesChanged(let upstreams): verifyFiles(upstreams, &run)
        case .verify:
            verifyFiles([], &run)
            verifyAtNextRound(shared)
        case .reload:
            reloads.taken()
            reload(&run, shared)
        case .tick: watch.notifier?.watchdog()
        }
    }

    // MARK: Probe results and Service names

    private func probed(_ key: HostKey, _ tracker: HostTracker, changed: Bool, _ run: inout RunState, _ shared: Shared) {
        let adoption = run.state.adopt(key, tracker)
        if case .ignored = adoption { return }
        let previous = adoption.previous
        run.watch.lastResultTime = watch.wallClock()
        if let service = run.state.owners[key] {
            let candidate = run.state.isCandidate(key)
            if let update = run.state.promoteIfPassed(key) {
                serviceChanged(update, &run, shared)
                settle(&run)
                return
            }
            if tracker.last?.isUp == false, let name = run.state.services[service]?.name {
                // The address may be gone with its Service: ask the DNS now rather than at the round.
                run.lookups[name]?.handle.wake.yield(.ask)
            }
            if candidate {
                // Not in any file yet: its own line when its answer changes, none of "up", "back" or "suspect".
                if previous?.last?.state != tracker.last?.state, let name = run.state.services[service]?.name {
                    var log = logger
                    log[metadataKey: LogKey.upstream] = "\(key.upstream)"
                    log[metadataKey: LogKey.host] = "\(key.url)"
                    log[metadataKey: LogKey.service] = "\(name)"
                    log.info(
                        "service \(name): new address \(tracker.last?.isUp == true ? "answers" : "does not answer") (\(tracker.last?.reason ?? "")); it replaces the old one after \(run.state.promoteAfter) good probes in a row")
                }
                writeMetrics(&run, force: false)
                return
            }
        }
        RunLog.result(key, tracker, previous: previous, changed: changed, logger: logger)
        if changed { files.carryOut(key.upstream, in: &run.state) }
        switch mode {
        case .apply:
            run.progress.refresh(key.upstream, in: run.state)
            settle(&run)
        case .watch:
            if !run.watch.firstPassDone && run.state.everyHostDecided {
                checkFirstPass(&run)
            } else if changed && run.watch.firstPassDone {
                if watch.notifier?.isListening == true { watch.notifier?.status(StatusText.render(run.state, .watching)) }
                writeMetrics(&run, force: true)
            } else {
                // During the first pass every result is a change: writing the whole text for each would
                // make the first pass quadratic in the number of mirrors. Once a second is enough.
                writeMetrics(&run, force: false)
            }
        }
    }

    /// A Service name's addresses changed: probes follow, the file follows, the log says so.
    private func serviceChanged(_ update: MirrorState.ServiceUpdate, _ run: inout RunState, _ shared: Shared) {
        let upstream = update.service.upstream
        let applied = run.state.applied[upstream]
        if !update.change.isEmpty {
            ServiceLog.changed(update, logger: logger)
            for key in update.stopped { stopProbe(key, &run) }
            if update.probed {
                for (key, host, seed) in update.started where run.probes[key] == nil {
                    startProbe(key, host, seed: seed, justProbed: false, &run, shared)
                }
            }
        }
        // Also with the addresses unchanged: a name with none that was pending (DNS unreachable) and is
        // now not found turns the file's "wait" into "remove".
        files.carryOut(upstream, in: &run.state)
        if mode == .apply { run.progress.refresh(upstream, in: run.state) }
        guard !update.change.isEmpty || run.state.applied[upstream] != applied else { return }
        if mode == .watch && run.watch.firstPassDone {
            if watch.notifier?.isListening == true { watch.notifier?.status(StatusText.render(run.state, .watching)) }
            writeMetrics(&run, force: true)
        }
    }

    /// After a change (the registries it touched already refreshed in `progress`): apply ends once
    /// every registry is settled (else says how far it is); watch's first pass may be over.
    private func settle(_ run: inout RunState) {
        switch mode {
        case .apply:
            if run.progress.allSettled { run.ended = true } else { reportStatus(&run) }
        case .watch:
            if !run.watch.firstPassDone { checkFirstPass(&run) }
        }
    }

    // MARK: Loops

    /// Starts, keeps or stops the loops so that every probed host and every Service name has one:
    /// a host whose settings are unchanged keeps its loop, one that changed gets a new loop seeded
    /// with its history.
    func syncLoops(_ run: inout RunState, _ shared: Shared) {
        let state = run.state
        var wanted: [(HostKey, MirrorHost)] = []
        for registry in state.config.registries where registry.readinessProbe {
            for host in registry.hosts { wanted.append((HostKey(upstream: registry.upstream, url: host.url), host)) }
        }
        wanted += state.candidateHosts.map { ($0.key, $0.host) }
        var keep = Set<HostKey>()
        for (key, host) in wanted where keep.insert(key).inserted {
            if let running = run.probes[key], running.host == host, running.settings == probeSettings(for: state) { continue }
            stopProbe(key, &run)
            let seed = state.trackers[key] ?? (state.isCandidate(key) ? .candidate : HostTracker())
            startProbe(key, host, seed: seed, justProbed: state.trackers[key] != nil, &run, shared)
        }
        for key in run.probes.keys where !keep.contains(key) { stopProbe(key, &run) }

        let discovery = state.configured.discovery
        var names = Set<String>()
        for service in state.servicesByName {
            names.insert(service.name)
            if let running = run.lookups[service.name], running.discovery == discovery { continue }
            run.lookups.removeValue(forKey: service.name)?.handle.task.cancel()
            startLookup(service.name, known: service.known, discovery: discovery, &run, shared)
        }
        for name in run.lookups.keys where !names.contains(name) { run.lookups.removeValue(forKey: name)?.handle.task.cancel() }
    }

    private func probeSettings(for state: MirrorState) -> ProbeSettings { state.config.probe }

    private func schedule(for state: MirrorState) -> any ProbeSchedule {
        switch mode {
        case .apply: ApplyTiming(state.config.probe, hosts: state.probedHosts)
        case .watch: ProbeTiming(state.config.probe)
        }
    }

    private func startProbe(
        _ key: HostKey, _ host: MirrorHost, seed: HostTracker, justProbed: Bool, _ run: inout RunState, _ shared: Shared
    ) {
        run.nextLoop += 1
        let id = run.nextLoop
        let sink = shared.sink
        var loop = ProbeLoop(
            host: host, schedule: schedule(for: run.state), prober: prober, clock: clock, random: random, rounds: shared.rounds,
            ticker: shared.ticker
        ) { tracker, changed in
            sink.yield(.probed(key, loop: id, tracker, changed: changed))
        }
        if mode == .watch { loop.connections = watch.connections }
        let (events, wake) = AsyncStream.makeStream(of: ProbeLoop.Event.self)
        let task = Task { await loop.run(seed: seed, justProbed: justProbed, events: events, wake: wake) }
        run.probes[key] = (Handle(id: id, task: task, wake: wake), host, probeSettings(for: run.state))
    }

    private func stopProbe(_ key: HostKey, _ run: inout RunState) {
        run.probes.removeValue(forKey: key)?.handle.task.cancel()
    }

    private func startLookup(_ name: String, known: Bool, discovery: Discovery?, _ run: inout RunState, _ shared: Shared) {
        run.nextLoop += 1
        let id = run.nextLoop
        let sink = shared.sink
        let loop = LookupLoop(
            name: name, discovery: discovery,
            schedule: LookupSchedule(
                kind: mode == .apply ? .apply : .watch, settings: run.state.config.probe,
                lookupInterval: discovery?.lookupInterval.duration ?? .seconds(30)),
            resolver: resolver, clock: clock, random: random
        ) { resolution in
            sink.yield(.resolved(name, loop: id, resolution))
        }
        let (events, wake) = AsyncStream.makeStream(of: LookupLoop.Event.self)
        let task = Task { await loop.run(known: known, events: events, wake: wake) }
        run.lookups[name] = (Handle(id: id, task: task, wake: wake), discovery)
    }
}

/// How watch learns that its files were changed behind its back (docs/design.md §6).
public enum FileWatch: Sendable, Equatable {
    /// It does not: files are rewritten only when their decision changes.
    case none
    /// Upstreams under the hosts directory where something changed (inotify); an empty set: anything
    /// may have changed.
    case changes(AsyncStream<Set<String>>)
    /// No change notices to be had: every file is checked at each round.
    case everyRound

    public static func == (a: FileWatch, b: FileWatch) -> Bool {
        switch (a, b) {
        case (.none, .none), (.everyRound, .everyRound): true
        default: false
        }
    }
}

/// SIGHUPs waiting to be handled: one queued reload stands for all that come before it runs.
final class ReloadRequests: Sendable {
    private let pending = Atomic<Bool>(false)

    /// True when this request queues a reload (none was queued).
    func request() -> Bool { !pending.exchange(true, ordering: .acquiringAndReleasing) }

    /// The queued reload is being handled: a SIGHUP from now on queues another.
    func taken() { pending.store(false, ordering: .releasing) }
}
