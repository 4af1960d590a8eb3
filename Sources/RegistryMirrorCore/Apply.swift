import Logging
import Synchronization

/// Receives progress for the service manager (sd_notify `STATUS=`). A no-op outside systemd.
public protocol StatusReporter: Sendable {
    func status(_ text: String)
    /// False when nobody reads the status (no service manager): then it is not even built.
    var isListening: Bool { get }
}

extension StatusReporter {
    public var isListening: Bool { true }
}

public struct SilentStatus: StatusReporter {
    public init() {}
    public func status(_ text: String) {}
    public var isListening: Bool { false }
}

/// How an apply run ended.
public struct ApplyReport: Sendable, Equatable {
    /// Upstreams whose hosts.toml is written.
    public var configured: [String] = []
    /// Upstreams with no host up when apply ended.
    public var waiting: [String] = []
    /// Upstreams whose directory could not be written, with the reason.
    public var failed: [String: String] = [:]
    public var interrupted = false
    public var deadlineReached = false

    public var exitStatus: ExitStatus {
        if interrupted { return .interrupted }
        if !failed.isEmpty { return .cannotWrite }
        if !waiting.isEmpty { return .deadlineReached }
        return .ok
    }
}

/// apply (docs/design.md §4): watch's first pass with an exit condition. The same model
/// (`MirrorState`, `fileDecision`) decides the files; what differs is the schedule, where a host is
/// probed on the fast backoff until it is up and then left alone, and the end: when every registry
/// is configured and every host has answered once, at the deadline, or on a stop request.
public struct Applier: Sendable {
    public let config: AgentConfig
    public let prober: any MirrorProber
    public let files: RegistryFiles
    public let status: any StatusReporter
    public let logger: Logger
    public let clock: AgentClock
    public let random: RandomSource
    /// Looks Service names up (`[discovery]`); nil: every lookup fails as "no resolver".
    public let resolver: (any ServiceResolver)?
    /// Raised on a stop request (the signal thread raises it too): ends a wait for the lock.
    public let stopFlag: StopFlag
    /// When the run started on `clock`: the deadline counts from here (the process start, not the
    /// moment the config was read and containerd asked its version).
    public let started: Duration

    public init(
        config: AgentConfig, prober: any MirrorProber, store: any HostsStore, logger: Logger,
        status: any StatusReporter = SilentStatus(), clock: AgentClock = .continuous, random: RandomSource = .system,
        resolver: (any ServiceResolver)? = nil, stopFlag: StopFlag = StopFlag(), started: Duration? = nil
    ) {
        self.config = config
        self.resolver = resolver
        self.prober = prober
        self.stopFlag = stopFlag
        let started = started ?? clock.now
        self.started = started
        let deadline = config.probe.deadline.isZero ? nil : started + config.probe.deadline.duration
        let lockWait = LockWait.until(deadline, on: clock, or: stopFlag)
        self.files = RegistryFiles(
            reconciler: HostsReconciler(store: store, logger: logger, lockWait: lockWait), logger: logger, retryFailures: false)
        self.status = status
        self.logger = logger
        self.clock = clock
        self.random = random
    }

    /// apply's view of a host: the first result decides, and a host that comes up later is in at once.
    var settings: ProbeSettings {
        var settings = config.probe
        settings.failureThreshold = 1
        settings.successThreshold = 1
        return settings
    }

    enum Event: Sendable {
        case probed(HostKey, HostTracker)
        case resolved(HostKey, Resolution)
        case deadline
        case stop
    }

    /// Runs apply. `stop` yields once when SIGTERM/SIGINT arrive.
    public func run(stop: AsyncStream<Void> = AsyncStream { $0.finish() }) async -> ApplyReport {
        var state = MirrorState(config: config, promoteAfter: settings.successThreshold)
        var progress = Progress(registries: config.registries.count)
        var report = ApplyReport()
        report.failed = files.removeUnconfigured(state.config)

        for registry in config.registries where !registry.readinessProbe {
            files.carryOut(registry.upstream, in: &state)
            progress.refresh(registry.upstream, in: state)
        }
        guard !progress.allSettled else { return finish(report, state: state, started: started) }

        // The status names what is still waiting; with a thousand registries building it on every
        // probe result would cost more than the probing, so it is rebuilt at most four times a second.
        var statusDue = clock.now
        func reportStatus() {
            guard status.isListening, clock.now >= statusDue else { return }
            status.status(statusText(state))
            statusDue = clock.now + .milliseconds(250)
        }
        reportStatus()

        let (events, sink) = AsyncStream.makeStream(of: Event.self)
        // Addresses a Service name no longer has: their probes stop at their next step.
        let retired = Retired()
        await withTaskGroup(of: Void.self) { group in
            for registry in state.config.registries where registry.readinessProbe {
                for host in registry.hosts {
                    let key = HostKey(upstream: registry.upstream, url: host.url)
                    group.addTask { await probeUntilUp(host, key: key, retired: retired, sink: sink) }
                }
            }
            for service in state.servicesByName {
                group.addTask { await resolveLoop(service.name, keys: service.keys, sink: sink) }
            }
            let deadline = config.probe.deadline
            if !deadline.isZero {
                group.addTask {
                    await clock.sleep(until: started + deadline.duration)
                    if !Task.isCancelled { sink.yield(.deadline) }
                }
            }
            group.addTask {
                for await _ in stop {
                    stopFlag.raise()
                    sink.yield(.stop)
                    return
                }
            }

            loop: for await event in events {
                switch event {
                case .probed(let key, let tracker):
                    guard let previous = state.adopt(key, tracker) else { continue }
                    logResult(key, tracker, previous: previous)
                    if let update = state.promoteIfPassed(key) {
                        ServiceLog.changed(update, logger: logger)
                        retired.add(update.stopped)
                    }
                    files.carryOut(key.upstream, in: &state)
                    progress.refresh(key.upstream, in: state)
                    if progress.allSettled { break loop }
                    reportStatus()
                case .resolved(let key, let resolution):
                    let before = state.services[key]?.last
                    guard let update = state.resolved(key, resolution) else { continue }
                    ServiceLog.lookup(update, before: before, logger: logger)
                    ServiceLog.changed(update, logger: logger)
                    retired.add(update.stopped)
                    if update.probed {
                        for (addressKey, host, _) in update.started {
                            retired.remove(addressKey)
                            group.addTask { await probeUntilUp(host, key: addressKey, retired: retired, sink: sink) }
                        }
                    }
                    files.carryOut(key.upstream, in: &state)
                    progress.refresh(key.upstream, in: state)
                    if progress.allSettled { break loop }
                    reportStatus()
                case .deadline:
                    report.deadlineReached = true
                    let waiting = config.registries.filter { !progress.isSettled($0.upstream) }.map(\.upstream)
                    logger.error("deadline of \(config.probe.deadline) reached; still waiting for \(Self.list(waiting))")
                    break loop
                case .stop:
                    report.interrupted = true
                    logger.warning("interrupted: stopping; files written so far are complete")
                    break loop
                }
            }
            group.cancelAll()
            sink.finish()
        }
        // Cancelled from outside (the task, not a signal): stopped before done, like an interrupt.
        if Task.isCancelled && !report.deadlineReached && !progress.allSettled { report.interrupted = true }
        return finish(report, state: state, started: started)
    }

    /// How often a host that accepts no connection is probed during apply: a new attempt every
    /// `hedgeInterval`, without waiting for the previous one, whose SYN may be lost on a path that
    /// drops packets (a cluster IP kube-proxy has not programmed yet). The moment the path opens,
    /// the next attempt connects, so the file follows within about this interval. Nothing on the
    /// other side does any work for such a probe. With many hosts the interval grows so that apply
    /// makes at most about 700 such attempts a second; past `max_interval` the backoff takes over.
    var hedgeInterval: Duration? {
        let hosts = config.registries.reduce(0) { $0 + ($1.readinessProbe ? $1.hosts.count : 0) }
        let interval = max(Self.fastestHedge, .microseconds(1500) * hosts)
        return interval < config.probe.maxInterval.duration ? interval : nil
    }

    static let fastestHedge: Duration = .milliseconds(150)
    /// Attempts in flight per host at most (a dropped path holds each for `connect_timeout`).
    static let maxInFlight = 8

    /// Probes `host` until it is up. While it accepts no connection, attempts overlap on the hedge
    /// interval; once it answers without being up (an HTTP error, a TLS failure), a cache in trouble is
    /// not pressed: one attempt at a time, on the backoff.
    private func probeUntilUp(_ host: MirrorHost, key: HostKey, retired: Retired, sink: AsyncStream<Event>.Continuation) async {
        enum Step: Sendable {
            case result(ProbeResult)
            case timer
        }
        let settings = self.settings
        let backoff = Backoff(settings)
        let hedge = hedgeInterval
        var tracker = HostTracker()
        await withTaskGroup(of: Step.self) { group in
            var inFlight = 0
            var timerPending = false
            var hedging = hedge != nil
            func launch() {
                inFlight += 1
                group.addTask { .result(await prober.probe(host, settings: settings)) }
            }
            // One timer at a time. When the mode changes the pending timer is kept, not replaced:
            // the first retry after an answer comes at the hedge interval instead of the first backoff
            // step, which is of the same size.
            func startTimer(_ delay: Duration) {
                timerPending = true
                group.addTask {
                    await clock.sleep(for: delay)
                    return .timer
                }
            }
            launch()
            if let hedge { startTimer(hedge) }
            while let step = await group.next(), !Task.isCancelled, !retired.contains(key) {
                switch step {
                case .timer:
                    timerPending = false
                    if hedging, let hedge {
                        if inFlight < Self.maxInFlight { launch() }
                        startTimer(hedge)
                    } else if inFlight == 0 {
                        launch()
                    }
                case .result(let result):
                    inFlight -= 1
                    _ = tracker.record(result, settings: settings)
                    sink.yield(.probed(key, tracker))
                    if result.isUp {
                        group.cancelAll()
                        return
                    }
                    hedging = hedge != nil && !result.connected
                    guard !timerPending else { continue }
                    if hedging, let hedge {
                        startTimer(hedge)
                    } else if inFlight == 0 {
                        startTimer(backoff.delay(attempt: tracker.probes, unit: random.unit()))
                    }
                }
            }
            group.cancelAll()
        }
    }

    /// Looks a Service name up until apply ends: on the backoff while it fails (not found, DNS
    /// unreachable: the host is not ready), every `max_interval` once it has addresses, so a Service
    /// that moves while apply waits for its old address is followed. Each answer goes to every host
    /// (`keys`) that uses the name.
    private func resolveLoop(_ name: String, keys: [HostKey], sink: AsyncStream<Event>.Continuation) async {
        let backoff = Backoff(settings)
        var failures = 0
        while !Task.isCancelled {
            let resolution = await resolver.lookUp(name, using: config.discovery)
            if Task.isCancelled { return }
            for key in keys { sink.yield(.resolved(key, resolution)) }
            if case .addresses = resolution.usable {
                failures = 0
                await clock.sleep(for: settings.maxInterval.duration)
            } else {
                failures += 1
                await clock.sleep(for: backoff.delay(attempt: failures, unit: random.unit()))
            }
        }
    }

    /// One line when a host comes up, starts failing or fails differently; the attempt count is in each.
    private func logResult(_ key: HostKey, _ tracker: HostTracker, previous: HostTracker?) {
        guard let result = tracker.last else { return }
        var log = logger
        log[metadataKey: LogKey.upstream] = "\(key.upstream)"
        log[metadataKey: LogKey.host] = "\(key.url)"
        log[metadataKey: LogKey.result] = "\(result.state.rawValue)"
        log[metadataKey: LogKey.attempts] = "\(tracker.probes)"
        log[metadataKey: LogKey.reason] = "\(result.reason)"
        if result.isUp {
            let after =
                tracker.probes > 1 ? " after \(Self.attempts(tracker.probes)) (last failure: \(previous?.last?.reason ?? "?"))" : ""
            log.notice("mirror up: \(result.reason) in \(result.latency.millisecondsText)\(after)")
        } else if previous?.last?.reason != result.reason {
            log.warning("mirror not ready: \(result.reason); retrying")
        }
    }

    private func finish(_ report: ApplyReport, state: MirrorState, started: Duration) -> ApplyReport {
        var report = report
        // A stop that came while the loop waited for the lock (or before anything was probed).
        if stopFlag.isRaised { report.interrupted = true }
        for registry in config.registries {
            if state.fileInPlace(registry.upstream) {
                report.configured.append(registry.upstream)
            } else if let failure = state.failed[registry.upstream] {
                report.failed[registry.upstream] = failure
            } else {
                report.waiting.append(registry.upstream)
                for (url, tracker, lookup) in state.reportedHosts(registry.upstream) {
                    let reason = lookup?.description ?? tracker?.last?.reason ?? "not probed yet"
                    logger.warning(
                        "mirror still down after \(Self.attempts(tracker?.probes ?? 0)): \(reason)",
                        metadata: [
                            LogKey.upstream: "\(registry.upstream)", LogKey.host: "\(url)", LogKey.result: "down",
                            LogKey.attempts: "\(tracker?.probes ?? 0)", LogKey.reason: "\(reason)",
                        ])
                }
            }
        }
        let summary = "\(report.configured.count)/\(config.registries.count) registries configured in \((clock.now - started).millisecondsText)"
        switch report.exitStatus {
        case .ok: logger.notice("apply done: \(summary)")
        default: logger.warning("apply ended (exit \(report.exitStatus.rawValue)): \(summary)")
        }
        status.status(summary)
        return report
    }

    /// `2/3 registries configured; waiting for quay.io (http://10.0.0.7:5000: connection timed out, attempt 14)`
    func statusText(_ state: MirrorState) -> String {
        let configured = config.registries.filter { state.fileInPlace($0.upstream) }.count
        var text = "\(configured)/\(config.registries.count) registries configured"
        let waiting = config.registries.filter { !state.fileInPlace($0.upstream) && state.failed[$0.upstream] == nil }
        if !waiting.isEmpty {
            let parts = waiting.prefix(3).map { registry -> String in
                let detail = state.reportedHosts(registry.upstream).compactMap { url, t, lookup -> String? in
                    if let lookup { return "\(url): \(lookup)" }
                    guard let t, let last = t.last else { return nil }
                    return "\(url): \(last.reason), attempt \(t.probes)"
                }
                return detail.isEmpty ? registry.upstream : "\(registry.upstream) (\(detail.joined(separator: "; ")))"
            }
            text += "; waiting for " + parts.joined(separator: ", ")
            if waiting.count > 3 { text += " and \(waiting.count - 3) more" }
        }
        return text
    }

    /// `a, b, c and 997 more`: a log line stays readable with a thousand registries.
    static func list(_ names: [String], limit: Int = 10) -> String {
        names.count <= limit
            ? names.joined(separator: ", ") : names.prefix(limit).joined(separator: ", ") + " and \(names.count - limit) more"
    }

    static func attempts(_ n: Int) -> String { n == 1 ? "1 attempt" : "\(n) attempts" }
}

/// Which registries apply is done with, counted so that "all done?" costs nothing per probe result.
/// A registry is settled when its directory refused a write, or when its file is in place and every
/// host has answered once, so the file lists every host that is up, not only the quickest. Hosts
/// still down then are not waited for: watch adds them later.
struct Progress {
    private var settled: Set<String> = []
    let registries: Int

    init(registries: Int) { self.registries = registries }

    var allSettled: Bool { settled.count == registries }

    func isSettled(_ upstream: String) -> Bool { settled.contains(upstream) }

    mutating func refresh(_ upstream: String, in state: MirrorState) {
        let now = state.failed[upstream] != nil || (state.fileInPlace(upstream) && state.everyHostAnswered(upstream))
        if now { settled.insert(upstream) } else { settled.remove(upstream) }
    }
}

/// Keys whose probes stop (apply: addresses a Service name no longer has).
final class Retired: Sendable {
    private let keys = Mutex<Set<HostKey>>([])
    func add(_ list: [HostKey]) { if !list.isEmpty { keys.withLock { $0.formUnion(list) } } }
    func remove(_ key: HostKey) { _ = keys.withLock { $0.remove(key) } }
    func contains(_ key: HostKey) -> Bool { keys.withLock { $0.contains(key) } }
}

/// Carries out file decisions for apply and watch: a registry's file is rewritten or removed only
/// when its decision changed. apply leaves a directory that refused a write alone from then on (it
/// ends with 73); watch tries again at the next change.
public struct RegistryFiles: Sendable {
    public let reconciler: HostsReconciler
    let logger: Logger
    let retryFailures: Bool

    /// Files of upstreams that left the config go first: they may name dead mirrors, and apply may
    /// wait a long time. Returns the upstreams that could not be cleaned, with the reason.
    func removeUnconfigured(_ config: AgentConfig) -> [String: String] {
        let failures = reconciler.removeUpstreams(notIn: Set(config.registries.map(\.upstream)))
        // Given up waiting for the lock (the deadline, a stop): the run ends for that reason instead.
        return reconciler.lockWait.giveUp() == nil ? failures : [:]
    }

    /// Brings the registry's file in line with its decision, if that changed since last time.
    func carryOut(_ upstream: String, in state: inout MirrorState) {
        guard state.failed[upstream] == nil, let ri = state.registryIndex[upstream], let decision = state.decision(upstream),
            decision != .wait, decision != state.applied[upstream]
        else { return }
        let registry = state.config.registries[ri]
        let desired: String?
        switch decision {
        case .write(let hosts): desired = HostsFile.render(registry, hosts: hosts, for: state.config.target)
        case .remove, .wait: desired = nil
        }
        do {
            try reconciler.reconcile(upstream: upstream, desired: desired, configured: true)
            state.applied[upstream] = decision
        } catch {
            // Given up waiting for the lock (the deadline, a stop): the run ends for that reason, not
            // for a directory that refused the write.
            if !retryFailures && reconciler.lockWait.giveUp() == nil { state.failed[upstream] = error.description }
            var log = logger
            log[metadataKey: LogKey.upstream] = "\(upstream)"
            log[metadataKey: LogKey.file] = "\(reconciler.store.filePath(upstream))"
            log.error("\(error)")
        }
    }
}
