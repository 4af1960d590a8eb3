import Synchronization

/// The shared start times of probe rounds: every `interval` with ±20% jitter drawn once per round, so
/// the steady hosts of one node probe together while nodes drift apart. Times are the clock's `now`.
/// A reload may change the interval; the round already planned stays.
final class RoundSchedule: Sendable {
    private struct State {
        var interval: Duration
        var upcoming: Duration?
    }
    private let random: RandomSource
    private let state: Mutex<State>

    init(interval: Duration, random: RandomSource = .system) {
        self.random = random
        state = Mutex(State(interval: interval))
    }

    var interval: Duration {
        get { state.withLock { $0.interval } }
        set { state.withLock { $0.interval = newValue } }
    }

    /// The next round start after `now`; the first is one jittered interval away.
    func next(after now: Duration) -> Duration {
        state.withLock { state in
            var next = state.upcoming ?? now + jittered(state.interval)
            while next <= now { next += jittered(state.interval) }
            state.upcoming = next
            return next
        }
    }

    private func jittered(_ interval: Duration) -> Duration {
        interval * (0.8 + 0.4 * min(max(random.unit(), 0), 1))
    }
}

/// Wakes whoever waits for a round (steady hosts, Service name lookups, watch's check of its files)
/// at each round start with a single timer: each asks for a round (`wake(at:_:)`), and when it comes
/// every one that asked for it is called. One that has moved on meanwhile ignores the call. Round
/// starts only grow (`RoundSchedule`), so the ticker never has to wake earlier than it planned.
final class RoundTicker: Sendable {
    typealias Waiter = @Sendable (Duration) -> Void
    private let clock: AgentClock
    private let waiting = Mutex<[(round: Duration, waiter: Waiter)]>([])
    private let asked: AsyncStream<Void>
    private let ask: AsyncStream<Void>.Continuation

    init(clock: AgentClock) {
        self.clock = clock
        (asked, ask) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Calls `waiter` with the round once `round` has come.
    func wake(at round: Duration, _ waiter: @escaping Waiter) {
        waiting.withLock { $0.append((round, waiter)) }
        ask.yield()
    }

    /// Runs until cancelled (with the run).
    func run() async {
        var requests = asked.makeAsyncIterator()
        while !Task.isCancelled {
            guard let round = waiting.withLock({ $0.map(\.round).min() }) else {
                guard await requests.next() != nil else { return }
                continue
            }
            await clock.sleep(until: round)
            if Task.isCancelled { return }
            let now = clock.now
            let due = waiting.withLock { waiting in
                let due = waiting.filter { $0.round <= now }
                waiting.removeAll { $0.round <= now }
                return due
            }
            for entry in due { entry.waiter(entry.round) }
        }
    }
}
