/// The clock apply and watch run on, taken from outside so the timing logic (backoff, hysteresis,
/// rounds, deadline) can be driven by a manual clock in tests. Any `Clock` with `Duration` fits;
/// time is read as a duration since the clock was adopted.
public struct AgentClock: Sendable {
    private let elapsed: @Sendable () -> Duration
    private let sleeper: @Sendable (Duration) async throws -> Void

    public init<C: Clock>(_ clock: C) where C.Duration == Duration {
        let origin = clock.now
        elapsed = { origin.duration(to: clock.now) }
        sleeper = { duration in try await clock.sleep(until: clock.now.advanced(by: duration), tolerance: nil) }
    }

    public static let continuous = AgentClock(ContinuousClock())

    /// Time since the clock was adopted.
    public var now: Duration { elapsed() }

    /// Sleeps for `duration`; returns early (without throwing) when the task is cancelled.
    public func sleep(for duration: Duration) async {
        try? await sleeper(max(duration, .zero))
    }

    /// Sleeps until `now` reaches `instant`.
    public func sleep(until instant: Duration) async {
        await sleep(for: instant - now)
    }
}

/// Where jitter comes from: uniform numbers in 0...1. Taken from outside so tests are repeatable.
public struct RandomSource: Sendable {
    private let next: @Sendable () -> Double

    public init(_ next: @escaping @Sendable () -> Double) { self.next = next }

    public static let system = RandomSource { Double.random(in: 0...1) }

    /// A uniform number in 0...1.
    public func unit() -> Double { next() }
}
