import Logging

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

/// The apply algorithm (design section 4): probe every mirror of every registry concurrently until it
/// answers, write each registry's hosts.toml as soon as one of its mirrors is up, and stop when all are
/// configured, the deadline passes or a stop is requested.
public struct Applier: Sendable {
    public let config: AgentConfig
    public let prober: any MirrorProber
    public let reconciler: HostsReconciler
    public let status: any StatusReporter
    public let logger: Logger

    public init(
        config: AgentConfig, prober: any MirrorProber, store: any HostsStore, logger: Logger,
        status: any StatusReporter = SilentStatus()
    ) {
        self.config = config
        self.prober = prober
        self.reconciler = HostsReconciler(store: store, logger: logger)
        self.status = status
        self.logger = logger
    }

    enum Event: Sendable {
        case probed(registry: Int, host: Int, attempt: Int, result: ProbeResult)
        case deadline
        case stop
    }

    /// Runs apply. `stop` yields once when SIGTERM/SIGINT arrive.
    public func run(stop: AsyncStream<Void> = AsyncStream { $0.finish() }) async -> ApplyReport {
        let started = ContinuousClock.now
        var report = ApplyReport()
        var state = ProgressState(config: config)

        removeUnconfigured(&report)

        for (ri, registry) in config.registries.enumerated() where !registry.readinessProbe {
            write(ri, hosts: registry.hosts, state: &state, report: &report)
        }
        if state.allSettled {
            return finish(report, state: state, started: started)
        }
        // The status names what is still waiting; with a thousand registries building it on every
        // probe result would cost more than the probing, so it is rebuilt at most four times a second.
        var statusDue = ContinuousClock.now
        func reportStatus() {
            guard status.isListening, ContinuousClock.now >= statusDue else { return }
            status.status(state.statusText)
            statusDue = ContinuousClock.now + .milliseconds(250)
        }
        reportStatus()

        let (events, sink) = AsyncStream.makeStream(of: Event.self)
        await withTaskGroup(of: Void.self) { group in
            for (ri, registry) in config.registries.enumerated() where registry.readinessProbe {
                for (hi, host) in registry.hosts.enumerated() {
                    group.addTask { await probeUntilUp(registry: ri, host: hi, host, sink: sink) }
                }
            }
            let deadline = config.probe.deadline
            if !deadline.isZero {
                group.addTask {
                    try? await Task.sleep(for: deadline.duration)
                    if !Task.isCancelled { sink.yield(.deadline) }
                }
            }
            group.addTask {
                for await _ in stop {
                    sink.yield(.stop)
                    return
                }
            }

            loop: for await event in events {
                switch event {
                case .probed(let ri, let hi, let attempt, let result):
                    handle(ri, hi, attempt, result, state: &state, report: &report)
                    if state.allSettled { break loop }
                    reportStatus()
                case .deadline:
                    report.deadlineReached = true
                    logger.error(
                        "deadline of \(config.probe.deadline) reached; still waiting for \(Self.list(state.unsettledNames))")
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
        if Task.isCancelled && !report.deadlineReached && !state.allSettled { report.interrupted = true }
        return finish(report, state: state, started: started)
    }

    private func probeUntilUp(registry ri: Int, host hi: Int, _ host: MirrorHost, sink: AsyncStream<Event>.Continuation) async {
        let backoff = Backoff(config.probe)
        var rng = SystemRandomNumberGenerator()
        var attempt = 0
        while !Task.isCancelled {
            attempt += 1
            let result = await prober.probe(host, settings: config.probe)
            if Task.isCancelled { return }
            sink.yield(.probed(registry: ri, host: hi, attempt: attempt, result: result))
            if result.isUp { return }
            try? await Task.sleep(for: backoff.delay(attempt: attempt, using: &rng))
        }
    }

    private func handle(
        _ ri: Int, _ hi: Int, _ attempt: Int, _ result: ProbeResult, state: inout ProgressState, report: inout ApplyReport
    ) {
        let registry = config.registries[ri]
        let host = registry.hosts[hi]
        let previous = state.hosts[ri][hi]
        state.hosts[ri][hi] = HostProgress(attempts: attempt, last: result)
        defer { state.refresh(ri) }
        var log = logger
        log[metadataKey: LogKey.upstream] = "\(registry.upstream)"
        log[metadataKey: LogKey.host] = "\(host.url)"
        log[metadataKey: LogKey.result] = "\(result.state.rawValue)"
        log[metadataKey: LogKey.attempts] = "\(attempt)"
        log[metadataKey: LogKey.reason] = "\(result.reason)"

        if result.isUp {
            let after = attempt > 1 ? " after \(Self.attempts(attempt)) (last failure: \(previous?.last.reason ?? "?"))" : ""
            log.notice("mirror up: \(result.reason) in \(result.latency.millisecondsText)\(after)")
            if !state.failed[ri] {
                let up = registry.hosts.indices.filter { state.hosts[ri][$0]?.last.isUp == true }.map { registry.hosts[$0] }
                write(ri, hosts: up, state: &state, report: &report)
            }
            return
        }
        // One line when a host starts failing or fails differently; the attempt count is in every line.
        if previous == nil || previous?.last.reason != result.reason {
            log.warning("mirror not ready: \(result.reason); retrying")
        }
        // Once every host of a registry has failed once, a file of ours that still names them is
        // worse than none: containerd would wait on each dead mirror before falling back.
        if !state.configured[ri], !state.failed[ri], !state.staleChecked[ri],
            state.hosts[ri].allSatisfy({ $0 != nil && $0!.last.isUp == false })
        {
            state.staleChecked[ri] = true
            do {
                try reconciler.reconcile(upstream: registry.upstream, desired: nil, configured: true)
            } catch {
                fail(ri, error, state: &state, report: &report)
            }
        }
    }

    private func write(_ ri: Int, hosts: [MirrorHost], state: inout ProgressState, report: inout ApplyReport) {
        let registry = config.registries[ri]
        do {
            try reconciler.reconcile(
                upstream: registry.upstream, desired: HostsFile.render(registry, hosts: hosts), configured: true)
            state.configured[ri] = true
            state.refresh(ri)
        } catch {
            fail(ri, error, state: &state, report: &report)
        }
    }

    private func fail(_ ri: Int, _ error: HostsError, state: inout ProgressState, report: inout ApplyReport) {
        let upstream = config.registries[ri].upstream
        state.failed[ri] = true
        state.refresh(ri)
        report.failed[upstream] = error.description
        var log = logger
        log[metadataKey: LogKey.upstream] = "\(upstream)"
        log[metadataKey: LogKey.file] = "\(reconciler.store.filePath(upstream))"
        log.error("\(error)")
    }

    /// Step 4 of apply, done first: files of upstreams that left the config may name dead mirrors.
    private func removeUnconfigured(_ report: inout ApplyReport) {
        let failures = reconciler.removeUpstreams(notIn: Set(config.registries.map(\.upstream)))
        report.failed.merge(failures) { $1 }
    }

    private func finish(_ report: ApplyReport, state: ProgressState, started: ContinuousClock.Instant) -> ApplyReport {
        var report = report
        for (ri, registry) in config.registries.enumerated() {
            if state.configured[ri] {
                report.configured.append(registry.upstream)
            } else if !state.failed[ri] {
                report.waiting.append(registry.upstream)
                for (hi, host) in registry.hosts.enumerated() {
                    let progress = state.hosts[ri][hi]
                    logger.warning(
                        "mirror still down after \(Self.attempts(progress?.attempts ?? 0)): \(progress?.last.reason ?? "not probed yet")",
                        metadata: [
                            LogKey.upstream: "\(registry.upstream)", LogKey.host: "\(host.url)", LogKey.result: "down",
                            LogKey.attempts: "\(progress?.attempts ?? 0)",
                            LogKey.reason: "\(progress?.last.reason ?? "not probed yet")",
                        ])
                }
            }
        }
        let elapsed = ContinuousClock.now - started
        let summary =
            "\(report.configured.count)/\(config.registries.count) registries configured in \(elapsed.millisecondsText)"
        switch report.exitStatus {
        case .ok: logger.notice("apply done: \(summary)")
        default: logger.warning("apply ended (exit \(report.exitStatus.rawValue)): \(summary)")
        }
        status.status(summary)
        return report
    }

    /// `a, b, c and 997 more`: a log line stays readable with a thousand registries.
    static func list(_ names: [String], limit: Int = 10) -> String {
        names.count <= limit
            ? names.joined(separator: ", ") : names.prefix(limit).joined(separator: ", ") + " and \(names.count - limit) more"
    }

    static func attempts(_ n: Int) -> String { n == 1 ? "1 attempt" : "\(n) attempts" }
}

struct HostProgress: Sendable {
    var attempts: Int
    var last: ProbeResult
}

/// Per-registry progress of one apply run. Whether each registry is settled is kept up to date by
/// `refresh` and counted, so "is everything settled?" costs nothing per probe result.
struct ProgressState {
    let config: AgentConfig
    var hosts: [[HostProgress?]]
    var configured: [Bool]
    var failed: [Bool]
    var staleChecked: [Bool]
    private var settled: [Bool]
    private var settledCount = 0

    init(config: AgentConfig) {
        self.config = config
        hosts = config.registries.map { Array(repeating: nil, count: $0.hosts.count) }
        configured = Array(repeating: false, count: config.registries.count)
        failed = configured
        staleChecked = configured
        settled = configured
    }

    /// Every registry has failed for good, or is configured and every one of its hosts has answered
    /// at least once (bounded by the probe timeout), so a file lists all the hosts that are up, not
    /// only the quickest. Hosts still down after that are not waited for: watch adds them later.
    var allSettled: Bool { settledCount == config.registries.count }

    /// Re-evaluates registry `ri` after its progress changed.
    mutating func refresh(_ ri: Int) {
        let now =
            failed[ri] || (configured[ri] && (!config.registries[ri].readinessProbe || hosts[ri].allSatisfy { $0 != nil }))
        guard now != settled[ri] else { return }
        settled[ri] = now
        settledCount += now ? 1 : -1
    }

    var unsettledNames: [String] {
        config.registries.indices.filter { !configured[$0] && !failed[$0] }.map { config.registries[$0].upstream }
    }

    /// `2/3 registries configured; waiting for quay.io (http://10.0.0.7:5000: connection timed out, attempt 14)`
    var statusText: String {
        let done = configured.filter { $0 }.count
        var text = "\(done)/\(config.registries.count) registries configured"
        let waiting = config.registries.indices.filter { !configured[$0] && !failed[$0] }
        if !waiting.isEmpty {
            let parts = waiting.prefix(4).map { ri -> String in
                let registry = config.registries[ri]
                let detail = registry.hosts.indices.compactMap { hi -> String? in
                    guard let p = hosts[ri][hi] else { return nil }
                    return "\(registry.hosts[hi].url): \(p.last.reason), attempt \(p.attempts)"
                }
                return detail.isEmpty ? registry.upstream : "\(registry.upstream) (\(detail.joined(separator: "; ")))"
            }
            text += "; waiting for " + parts.prefix(3).joined(separator: ", ")
            if waiting.count > 3 { text += " and \(waiting.count - 3) more" }
        }
        return text
    }
}
