import Logging

/// What only watch keeps beside the shared model.
struct WatchProgress {
    /// Requests containerd's log says went past each host, and when the last log line about it was.
    var bypassed: [HostKey: Int] = [:]
    var lastBypassLog: [HostKey: Duration] = [:]
    var firstPassDone = false
    var lastMetricsWrite = 0.0
    var lastResultTime = 0.0
    /// A question to containerd for its version is out; another is wanted once it is answered.
    var targetAsked = false
    var targetAgain = false
    /// Upstreams whose file was found replaced by a foreign one (logged once until it changes back).
    var foreignNoted: Set<String> = []
}

// watch's own events: containerd's log, its version, reloads, and files changed behind its back.
extension Driver {
    /// READY=1 once every probed host has its first result.
    func checkFirstPass(_ run: inout RunState) {
        guard mode == .watch, !run.watch.firstPassDone, run.state.everyHostDecided else { return }
        run.watch.firstPassDone = true
        let text = StatusText.render(run.state, .watching)
        logger.notice("watch: first pass done: \(text)")
        watch.notifier?.ready()
        watch.notifier?.status(text)
        writeMetrics(&run, force: true)
    }

    func writeMetrics(_ run: inout RunState, force: Bool) {
        guard mode == .watch, let metrics = watch.metrics else { return }
        let now = watch.wallClock()
        guard force || now - run.watch.lastMetricsWrite >= 1 else { return }
        run.watch.lastMetricsWrite = now
        let state = run.state
        let hosts = state.probedKeys.map { key in
            MetricsText.HostSample(
                upstream: key.upstream, url: key.url, tracker: state.trackers[key] ?? HostTracker(), bypassed: run.watch.bypassed[key] ?? 0,
                service: state.owners[key].flatMap { state.services[$0]?.name })
        }
        let files = state.config.registries.map { ($0.upstream, state.fileInPlace($0.upstream)) }
        metrics.write(MetricsText.render(hosts: hosts, filesInPlace: files, timestamp: run.watch.lastResultTime))
    }

    func containerdSaid(_ event: ContainerdLog.Event, _ run: inout RunState, _ shared: Shared) {
        switch event {
        case .bypass(let bypass):
            for key in ContainerdLog.hosts(named: bypass, in: run.state.config) {
                run.watch.bypassed[key, default: 0] += 1
                let now = clock.now
                if run.watch.lastBypassLog[key].map({ now - $0 >= .seconds(10) }) != false {
                    run.watch.lastBypassLog[key] = now
                    RunLog.bypass(key, bypass, count: run.watch.bypassed[key] ?? 0, logger: logger)
                }
                run.probes[key]?.handle.wake.yield(.poke)
            }
            writeMetrics(&run, force: false)
        case .started:
            // containerd (re)started, perhaps another release: files follow its version.
            askTarget(&run, shared)
        }
    }

    /// Asks containerd which release it is, off the loop (it may take seconds), one question at a time.
    func askTarget(_ run: inout RunState, _ shared: Shared) {
        guard let resolveTarget = watch.resolveTarget else { return }
        guard !run.watch.targetAsked else {
            run.watch.targetAgain = true
            return
        }
        run.watch.targetAsked = true
        let config = run.state.configured
        let sink = shared.sink
        // Detached: a stop does not wait for the answer (a yield after it goes nowhere).
        Task.detached { sink.yield(.target(resolveTarget(config))) }
    }

    func retarget(_ target: ContainerdTarget, _ run: inout RunState, _ shared: Shared) {
        run.watch.targetAsked = false
        if run.watch.targetAgain {
            // The config changed while the question was out: ask again, for the config now.
            run.watch.targetAgain = false
            askTarget(&run, shared)
        }
        guard target != run.state.config.target else { return }
        logger.notice("containerd: files are now written for \(target.description)")
        var config = run.state.configured
        config.target = target
        run.state.replace(config: config)
        for registry in config.registries { files.carryOut(registry.upstream, in: &run.state) }
    }

    /// SIGHUP: a valid config is taken up (the running one is kept otherwise). Hosts whose settings
    /// it leaves unchanged keep their probe loops, schedules and histories; containerd's version is
    /// learnt again off the loop.
    func reload(_ run: inout RunState, _ shared: Shared) {
        guard let source = watch.reloadConfig else { return }
        var config: AgentConfig
        switch source() {
        case .failure(let error):
            for line in error.lines { logger.error("config reload: \(line)") }
            logger.error("config reload failed: keeping the running config")
            return
        case .success(let reloaded):
            config = reloaded
        }
        // The version is the running one until containerd answers again (`retarget`).
        config.target = run.state.config.target
        run.state.replace(config: config)
        shared.rounds.interval = config.probe.watchInterval.duration
        _ = files.removeUnconfigured(config)
        for registry in config.registries { files.carryOut(registry.upstream, in: &run.state) }
        syncLoops(&run, shared)
        logger.notice("config reloaded: \(config.registries.count) registries, \(run.state.probedHosts) mirrors")
        askTarget(&run, shared)
    }

    /// Files of ours changed, or a round came: each is checked and restored if it was changed or
    /// deleted behind the agent's back.
    /// An empty set: anything may have changed (the hosts directory itself came or went).
    func verifyFiles(_ upstreams: Set<String>, _ run: inout RunState) {
        let upstreams = upstreams.isEmpty ? Set(run.state.config.registries.map(\.upstream)) : upstreams
        for upstream in upstreams.sorted() where run.state.registryIndex[upstream] != nil {
            let log = files.log(upstream)
            switch files.verify(upstream, in: run.state) {
            case .intact:
                run.watch.foreignNoted.remove(upstream)
            case .restored:
                run.watch.foreignNoted.remove(upstream)
                log.warning("hosts.toml was changed or deleted behind the agent's back: restored")
            case .foreign:
                if run.watch.foreignNoted.insert(upstream).inserted {
                    log.warning("a hosts.toml that is not ours took the place of ours: left alone (check reports it)")
                }
            case .failed(let reason):
                log.error("cannot restore hosts.toml: \(reason)")
            }
        }
    }

    /// Without a file watch, the files are checked at each round.
    func verifyAtNextRound(_ shared: Shared) {
        let sink = shared.sink
        shared.ticker.wake(at: shared.rounds.next(after: clock.now)) { _ in sink.yield(.verify) }
    }
}
