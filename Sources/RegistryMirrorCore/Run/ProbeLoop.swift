/// One host's probes, for apply and watch alike (docs/design.md §6, §9.2): a probe goes out when the
/// schedule (`ProbeSchedule`) says, each in a child task, and results are recorded in the order they
/// arrive. The loop waits on its own queue of events, so containerd's log can wake it whenever
/// (`poke`). A host whose next probe is the round waits for the run's `RoundTicker` (one timer for all
/// of them); other plans get one timer task, replaced when the plan changes, except a steady host's
/// silence, which a `SilenceReportingProber` reports without a timer. A steady round thus costs a
/// host one wake-up and one probe. With `connections` (watch), a steady host's rounds are connection
/// checks but every `requestEvery`-th, which is the HTTP probe, and an idle connection is kept to it:
/// its loss, or a failed check, brings HTTP probes at once (docs/design.md §6.3). The loop ends when
/// its task is cancelled (the host is no longer probed, or the run ends) or when the schedule is
/// done with the host (apply: it is up).
struct ProbeLoop: Sendable {
    /// What wakes the loop.
    enum Event: Sendable {
        case result(ProbeResult, launched: Duration)
        case silent(launched: Duration)
        case timer(Int)
        case round(Duration)
        /// containerd went past the host: probe it now, unless as many probes as may be are out.
        case poke
        /// A connection check's outcome (nil: the host cannot be checked so).
        case checked(ProbeResult?, launched: Duration)
        /// The idle connection kept to the host broke: probe it now.
        case lost(String)
    }

    let host: MirrorHost
    let schedule: any ProbeSchedule
    let prober: any MirrorProber
    let clock: AgentClock
    let random: RandomSource
    let rounds: RoundSchedule
    let ticker: RoundTicker
    /// Connection-level signals between HTTP probes (watch); nil: every probe is an HTTP probe.
    var connections: (any ConnectionChecker)? = nil
    /// Receives each result's tracker, and whether it moved the host in or out of its file.
    let report: @Sendable (HostTracker, Bool) -> Void

    /// Probes until cancelled or done. `seed`: the host's history; `justProbed`: go on as if a probe
    /// had just gone out (a host whose loop is restarted with its history is not probed again at once).
    func run(seed: HostTracker, justProbed: Bool, events: AsyncStream<Event>, wake: AsyncStream<Event>.Continuation) async {
        let reporter = prober as? any SilenceReportingProber
        var tracker = seed
        var moment = ProbeMoment(unit: random.unit())
        if justProbed { moment.lastLaunch = clock.now }
        // The launch instant of the probe the prober called silent.
        var silenced: Duration?
        // Connection signals: the rounds left before the next HTTP probe (a random phase, so nodes
        // that start together do not send their requests together), whether the host can be checked
        // by connection at all, and the idle connection kept to it while it is steady.
        let requestEvery = connections == nil ? nil : schedule.requestEvery
        var roundsToRequest = requestEvery.map { Int(random.unit() * Double($0)) % $0 } ?? 0
        var checkable = requestEvery != nil
        var held: (any HeldConnection)?
        defer { held?.close() }
        var iterator = events.makeAsyncIterator()
        var poked = false
        // The idle connection broke: probe now, whatever the spacing (a killed cache is news at once).
        var urgent = false
        // The idle connection is kept while the host is in its file and not failing, and is made the
        // moment a result makes it so: a cache killed between its good answer and the next round
        // (right after the first pass, or after it came back) is then news at once, not only at the
        // next HTTP probe. Out of the file, or failing, there is nothing for it to watch.
        func holdWhileSteady() {
            guard checkable, let connections else { return }
            if tracker.inFile == true && tracker.consecutiveFailures == 0 {
                if held == nil { held = connections.hold(host) { reason in wake.yield(.lost(reason)) } }
            } else if tracker.inFile != true {
                held?.close()
                held = nil
            }
        }
        await withDiscardingTaskGroup { group in
            var timer: (id: Int, at: Duration, task: Task<Void, Never>)?
            var timers = 0
            // The round this host waits for, kept until it goes: it has begun by the time the ticker
            // wakes the host; and the round it asked the ticker for.
            var round: Duration?
            var registered: Duration?
            while !Task.isCancelled && !schedule.isDone(tracker) {
                let now = clock.now
                moment.silenced = silenced != nil && silenced == moment.inFlight.first
                let plan = schedule.next(tracker, moment) {
                    // Steady hosts all wake for the same round: one batch of probes per interval.
                    if round == nil { round = rounds.next(after: now) }
                    return round!
                }
                // containerd went past this host: probe it now, whatever the plan, unless a probe went
                // out less than initial_interval ago (a pull's burst of log lines is one piece of news).
                let pokeNow =
                    (urgent && moment.inFlight.count < schedule.maxInFlight)
                    || (poked && moment.inFlight.count < schedule.maxInFlight
                        && moment.lastLaunch.map { now - $0 >= schedule.settings.initialInterval.duration } != false)
                poked = false
                if pokeNow { urgent = false }
                if pokeNow || plan.map({ $0 <= now }) == true {
                    let steadyRound = !pokeNow && tracker.inFile == true && tracker.consecutiveFailures == 0 && moment.inFlight.isEmpty
                    moment.inFlight.append(now)
                    moment.lastLaunch = now
                    moment.unit = random.unit()
                    round = nil
                    let settings = schedule.settings
                    if steadyRound, checkable, let connections, let requestEvery {
                        // Held since the answer that made the host steady; made here if that found none.
                        holdWhileSteady()
                        if roundsToRequest > 0 {
                            // A round between HTTP probes: a connection check, which the cache does not see.
                            roundsToRequest -= 1
                            let timeout = settings.connectTimeout.duration
                            group.addTask { wake.yield(.checked(await connections.connect(host, timeout: timeout), launched: now)) }
                            continue
                        }
                        roundsToRequest = requestEvery - 1
                    }
                    let silentAfter = schedule.awaitsSilence(tracker, inFlight: moment.inFlight.count) ? schedule.silence : nil
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
                if let at = plan, moment.inFlight.isEmpty, at == round {
                    timer?.task.cancel()
                    timer = nil
                    if registered != at {
                        ticker.wake(at: at) { wake.yield(.round($0)) }
                        registered = at
                    }
                } else if let at = plan, reporter == nil || !schedule.awaitsSilence(tracker, inFlight: moment.inFlight.count) {
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
                case .result(let result, let launched):
                    if let i = moment.inFlight.firstIndex(of: launched) { moment.inFlight.remove(at: i) }
                    if silenced == launched { silenced = nil }
                    moment.lastResult = clock.now
                    moment.unit = random.unit()
                    let changed = tracker.record(result, settings: schedule.settings)
                    holdWhileSteady()
                    report(tracker, changed)
                case .checked(let result, let launched):
                    if let i = moment.inFlight.firstIndex(of: launched) { moment.inFlight.remove(at: i) }
                    guard let result else {
                        // Not to be checked by connection (a host named by DNS name): HTTP every round.
                        checkable = false
                        roundsToRequest = 0
                        poked = true
                        continue
                    }
                    // Only bad news counts: a connection made says nothing of the registry behind it.
                    guard !result.isUp else { continue }
                    moment.lastResult = clock.now
                    let changed = tracker.record(result, settings: schedule.settings)
                    holdWhileSteady()
                    report(tracker, changed)
                case .lost:
                    held = nil
                    urgent = true
                }
            }
            timer?.task.cancel()
            group.cancelAll()
        }
        wake.finish()
    }
}
