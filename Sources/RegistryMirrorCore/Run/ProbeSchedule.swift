/// When a host's next probe goes out: watch's `ProbeTiming` or apply's `ApplyTiming`. Pure: the
/// probe loop (`ProbeLoop`) asks it after every event and does what it says.
protocol ProbeSchedule: Sendable {
    /// What results are recorded with (apply's thresholds are 1: the first result decides).
    var settings: ProbeSettings { get }
    /// Probes of one host in flight at most.
    var maxInFlight: Int { get }
    /// True once the host needs no more probes (apply: it is up).
    func isDone(_ tracker: HostTracker) -> Bool
    /// The instant of the next probe; nil while none is due before a result (or silence) arrives.
    /// `round`: the next round start, asked only when needed.
    func next(_ tracker: HostTracker, _ moment: ProbeMoment, round: () -> Duration) -> Duration?
    /// True when the next probe waits only for the one in flight to stay silent for `silence`.
    func awaitsSilence(_ tracker: HostTracker, inFlight: Int) -> Bool
    /// How long a steady host's probe may stay unanswered before another goes out beside it.
    var silence: Duration { get }
    /// With connection checks to be had: a steady host's rounds per HTTP probe (the others are
    /// checks). Nil: every probe is an HTTP probe (apply).
    var requestEvery: Int? { get }
}

/// What a schedule decides from, besides the tracker: the probes out, the last launch and answer.
struct ProbeMoment: Sendable {
    /// Launch instants of the probes not answered yet, oldest first.
    var inFlight: [Duration] = []
    /// The latest launch; nil before the first.
    var lastLaunch: Duration?
    /// When the latest result arrived; nil before the first.
    var lastResult: Duration?
    /// The prober said the oldest probe in flight has been silent for `silence`.
    var silenced = false
    /// Uniform in 0...1, drawn again after each launch and result (backoff jitter).
    var unit: Double = 1
}

extension ProbeTiming: ProbeSchedule {
    func isDone(_ tracker: HostTracker) -> Bool { false }

    func next(_ tracker: HostTracker, _ moment: ProbeMoment, round: () -> Duration) -> Duration? {
        next(tracker, inFlight: moment.inFlight, lastLaunch: moment.lastLaunch, silenced: moment.silenced, unit: moment.unit, round: round)
    }
}

/// apply's schedule (docs/design.md §4): probe a host until it is up, then leave it alone.
/// - While nothing has answered (refused, unreachable, a SYN dropped on a path kube-proxy has not
///   programmed yet), a new attempt every `hedge`, without waiting for the one before, at most
///   `maxHedged` in flight: the first attempt after the path opens connects, so the file follows
///   within about `hedge`. Nothing on the other side does work for such an attempt.
/// - Once the host answers without being up (HTTP 503, a TLS failure), one attempt at a time on the
///   backoff from its answer (`initial_interval` doubling to `max_interval`), so a cache in trouble
///   is not pressed.
/// - `hedge` nil (many hosts: the interval would pass `max_interval`): the backoff alone.
struct ApplyTiming: ProbeSchedule {
    let settings: ProbeSettings
    let hedge: Duration?

    static let fastestHedge: Duration = .milliseconds(150)
    /// Attempts in flight per host at most (a dropped path holds each for `connect_timeout`).
    static let maxHedged = 8

    /// `probe`: the config's settings; `hosts`: how many hosts apply probes. The hedge interval grows
    /// with them (1.5 ms each), so apply makes at most about 700 such attempts a second.
    init(_ probe: ProbeSettings, hosts: Int) {
        var settings = probe
        settings.failureThreshold = 1
        settings.successThreshold = 1
        self.settings = settings
        let interval = max(Self.fastestHedge, .microseconds(1500) * hosts)
        hedge = interval < probe.maxInterval.duration ? interval : nil
    }

    var maxInFlight: Int { hedge == nil ? 1 : Self.maxHedged }
    var silence: Duration { settings.timeout.duration }

    func isDone(_ tracker: HostTracker) -> Bool { tracker.last?.isUp == true }

    func awaitsSilence(_ tracker: HostTracker, inFlight: Int) -> Bool { false }

    var requestEvery: Int? { nil }

    func next(_ tracker: HostTracker, _ moment: ProbeMoment, round: () -> Duration) -> Duration? {
        guard let launched = moment.lastLaunch else { return .zero }
        if let hedge, tracker.last?.connected != true {
            return moment.inFlight.count < Self.maxHedged ? launched + hedge : nil
        }
        guard moment.inFlight.isEmpty else { return nil }
        let from = moment.lastResult ?? launched
        return from + Backoff(settings).delay(attempt: max(tracker.probes, 1), unit: moment.unit)
    }
}
