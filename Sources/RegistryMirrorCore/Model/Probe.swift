/// The outcome of one readiness probe of a mirror host.
public struct ProbeResult: Sendable, Equatable {
    public enum State: String, Sendable { case up, down }
    public var state: State
    /// Why the host is down (`connection refused`, `timed out after 2s`, `HTTP 503`, `TLS: ...`),
    /// or what it answered when up (`HTTP 200`, `HTTP 401`).
    public var reason: String
    /// Time the probe took.
    public var latency: Duration
    /// False when no connection was made at all (refused, unreachable, connect timeout, no address):
    /// nothing on the other side did any work, so probing again soon costs nobody anything.
    public var connected: Bool

    public init(state: State, reason: String, latency: Duration = .zero, connected: Bool = true) {
        self.state = state
        self.reason = reason
        self.latency = latency
        self.connected = connected
    }

    public var isUp: Bool { state == .up }

    /// A registry answers `/v2/` with 200, or 401 when it wants credentials: both mean it is serving.
    public static func classify(httpStatus: Int, latency: Duration) -> ProbeResult {
        let up = httpStatus == 200 || httpStatus == 401
        return ProbeResult(state: up ? .up : .down, reason: "HTTP \(httpStatus)", latency: latency)
    }
}

/// Probes one mirror host once. Implementations must return within the settings' `timeout` (plus a
/// little), must not block the cooperative thread pool, and return promptly when the task is cancelled.
public protocol MirrorProber: Sendable {
    func probe(_ host: MirrorHost, settings: ProbeSettings) async -> ProbeResult
}

/// A prober that can tell, without a timer of the caller's, that a probe has had no answer for a while
/// (watch sends another beside it then: `ProbeTiming.silence`). CurlProber does it on its own loop
/// thread, which wakes for its transfers anyway; a timer task per probe would cost a wake-up each.
public protocol SilenceReportingProber: MirrorProber {
    /// Probes like `probe(_:settings:)`, and calls `silent` once if no answer has come `silentAfter`
    /// after the start (never after it returns).
    func probe(_ host: MirrorHost, settings: ProbeSettings, silentAfter: Duration, silent: @escaping @Sendable () -> Void) async
        -> ProbeResult
}

/// Exponential backoff with jitter between `initial_interval` and `max_interval`.
public struct Backoff: Sendable {
    public var initial: Duration
    public var maximum: Duration

    public init(initial: Duration, maximum: Duration) {
        self.initial = initial
        self.maximum = max(initial, maximum)
    }

    public init(_ settings: ProbeSettings) {
        self.init(initial: settings.initialInterval.duration, maximum: settings.maxInterval.duration)
    }

    /// The ceiling before the `attempt`th retry (1-based): initial, 2×initial, ... capped at maximum.
    public func ceiling(attempt: Int) -> Duration {
        var d = initial
        for _ in 1..<max(1, attempt) {
            d *= 2
            if d >= maximum { return maximum }
        }
        return min(d, maximum)
    }

    /// The wait before the `attempt`th retry: uniformly between half the ceiling and the ceiling, so
    /// nodes that started together drift apart while a mirror that comes up is still seen within
    /// about `maximum`.
    public func delay(attempt: Int, unit: Double) -> Duration {
        ceiling(attempt: attempt) * (0.5 + 0.5 * min(max(unit, 0), 1))
    }

    public func delay<R: RandomNumberGenerator>(attempt: Int, using rng: inout R) -> Duration {
        delay(attempt: attempt, unit: Double.random(in: 0...1, using: &rng))
    }
}
