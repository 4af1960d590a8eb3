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

/// apply (docs/design.md §4): watch's first pass with an exit condition, run by the one `Driver`.
/// What differs from watch is the schedule (`ApplyTiming`: a host is probed until it is up, then left
/// alone; thresholds of 1) and the end: when every registry is configured and every host has
/// answered once, at the deadline, or on a stop request.
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

    /// `target`: the containerd the files are for (default: the config's, the newest known release).
    public init(
        config: AgentConfig, target: ContainerdTarget? = nil, prober: any MirrorProber, store: any HostsStore, logger: Logger,
        status: any StatusReporter = SilentStatus(), clock: AgentClock = .continuous, random: RandomSource = .system,
        resolver: (any ServiceResolver)? = nil, stopFlag: StopFlag = StopFlag(), started: Duration? = nil
    ) {
        var config = config
        if let target { config.target = target }
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

    /// Runs apply. `stop` yields once when SIGTERM/SIGINT arrive.
    public func run(stop: AsyncStream<Void> = AsyncStream { $0.finish() }) async -> ApplyReport {
        let driver = Driver(
            mode: .apply, config: config, prober: prober, files: files, logger: logger, clock: clock, random: random,
            resolver: resolver, status: status, stopFlag: stopFlag, started: started)
        return await driver.run(Driver.Inputs(stop: stop))
    }

    /// How often a host that accepts no connection is probed (`ApplyTiming`): nil when the backoff
    /// alone rules (so many hosts that the interval would pass `max_interval`).
    var hedgeInterval: Duration? { ApplyTiming(config.probe, hosts: MirrorState(config: config).probedHosts).hedge }

    /// `2/3 registries configured; waiting for quay.io (http://10.0.0.7:5000: connection timed out, attempt 14)`
    func statusText(_ state: MirrorState) -> String { StatusText.render(state, .applying) }
}
