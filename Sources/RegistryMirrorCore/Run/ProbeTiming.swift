/// When watch sends a host's next probe (docs/design.md §6). Probes do not wait for each other: a
/// probe that hangs or a SYN that is dropped must not hold back the evidence that follows it.
///
/// - steady and in the file: once a round (`RoundSchedule`): a connection check (`ConnectionChecker`),
///   and the HTTP probe every `requestEvery` rounds; a probe unanswered after `silence`
///   (a quarter of `timeout`, 200-500 ms) gets company at once, as a failure would;
/// - in the file and failing (or silent): a probe every `initial_interval`, so `failure_threshold`
///   failures are in hand about `timeout` after the first instead of `failure_threshold` timeouts later;
/// - out of the file: on the backoff (`initial_interval` doubling to `max_interval`), not waiting for
///   a probe still connecting, so a path that opens is seen within about `max_interval` (but one at a
///   time while the host answers with errors); once one succeeds, the next goes out after `initial_interval` to confirm it.
/// At most `max(failure_threshold, success_threshold)` probes of one host are in flight.
public struct ProbeTiming: Sendable {
    public let settings: ProbeSettings

    public init(_ settings: ProbeSettings) { self.settings = settings }

    public var maxInFlight: Int { max(settings.failureThreshold, settings.successThreshold, 1) }

    /// A steady host's rounds per HTTP probe (`request_interval` / `watch_interval`, at least 1); the
    /// other rounds are connection checks.
    public var requestEvery: Int? {
        let rounds = settings.requestInterval.duration / settings.watchInterval.duration
        return max(1, Int(rounds.rounded()))
    }

    /// How long a steady host's probe may stay unanswered before another goes out beside it.
    public var silence: Duration {
        min(max(settings.timeout.duration / 4, settings.initialInterval.duration), .milliseconds(500))
    }

    /// True when the next probe waits only for the one in flight to stay silent for `silence`.
    public func awaitsSilence(_ tracker: HostTracker, inFlight: Int) -> Bool {
        tracker.inFile == true && tracker.consecutiveFailures == 0 && inFlight == 1
    }

    /// The instant of the next probe, nil while `maxInFlight` are out (the next result decides).
    /// `inFlight`: launch instants of the probes not answered yet, oldest first; `lastLaunch`: the
    /// latest launch (nil before the first); `silenced`: the prober said the oldest is silent;
    /// `round`: the next round start, asked only when needed; `unit`: uniform in 0...1 (backoff jitter).
    public func next(
        _ tracker: HostTracker, inFlight: [Duration], lastLaunch: Duration?, silenced: Bool = false, unit: Double,
        round: () -> Duration
    ) -> Duration? {
        guard inFlight.count < maxInFlight else { return nil }
        guard let last = lastLaunch else { return .zero }
        let quick = settings.initialInterval.duration
        switch tracker.inFile {
        case true? where tracker.consecutiveFailures > 0:
            return last + quick
        case true?:
            guard let oldest = inFlight.first else { return round() }
            if awaitsSilence(tracker, inFlight: inFlight.count) { return silenced ? oldest : oldest + silence }
            return last + quick
        case false? where tracker.consecutiveSuccesses > 0:
            return last + quick
        case false?, nil:
            // Something answered (an HTTP error, or a connection that then hung): that side is doing
            // work, so wait for the probe in flight instead of adding to it.
            if tracker.last?.connected == true && !inFlight.isEmpty { return nil }
            return last + Backoff(settings).delay(attempt: max(tracker.consecutiveFailures, 1), unit: unit)
        }
    }
}
