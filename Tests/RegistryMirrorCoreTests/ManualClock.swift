import Synchronization

/// A clock that moves only when the test says so. Sleepers wake, in deadline order, when `advance`
/// passes their deadline; a cancelled sleeper wakes at once with CancellationError, as with real clocks.
final class ManualClock: Clock, Sendable {
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (a: Instant, b: Instant) -> Bool { a.offset < b.offset }
    }

    private struct Sleeper {
        var id: Int
        var deadline: Instant
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now = Instant(offset: .zero)
        var sleepers: [Sleeper] = []
        var nextID = 0
        /// Sleeps cancelled before they were registered: a task cancelled already when it calls
        /// `sleep` runs the cancellation handler first, and must not then sleep for ever.
        var cancelledEarly: Set<Int> = []
    }

    private let state = Mutex(State())

    var now: Instant { state.withLock { $0.now } }
    var minimumResolution: Duration { .zero }

    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Now { case wake, cancel, sleep }
                let now = state.withLock { state -> Now in
                    if state.cancelledEarly.remove(id) != nil { return .cancel }
                    if deadline <= state.now { return .wake }
                    state.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    return .sleep
                }
                switch now {
                case .wake: continuation.resume()
                case .cancel: continuation.resume(throwing: CancellationError())
                case .sleep: break
                }
            }
        } onCancel: {
            let sleeper = state.withLock { state -> Sleeper? in
                guard let i = state.sleepers.firstIndex(where: { $0.id == id }) else {
                    state.cancelledEarly.insert(id)
                    return nil
                }
                return state.sleepers.remove(at: i)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// How many tasks are asleep on this clock.
    var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    /// The earliest deadline of a sleeper, as time since the clock's origin.
    var nextDeadline: Duration? { state.withLock { $0.sleepers.map(\.deadline.offset).min() } }

    /// Moves time to `offset` (since the origin) and wakes every sleeper whose deadline has come.
    func advance(to offset: Duration) {
        let woken = state.withLock { state -> [Sleeper] in
            state.now = Instant(offset: max(offset, state.now.offset))
            let due = state.sleepers.filter { $0.deadline <= state.now }.sorted { $0.deadline < $1.deadline }
            state.sleepers.removeAll { $0.deadline <= state.now }
            return due
        }
        for sleeper in woken { sleeper.continuation.resume() }
    }

    /// Waits (in real time, briefly) until `count` tasks sleep on this clock: the code under test has
    /// done everything it can do before time moves. False after 10 s of real time.
    func waitForSleepers(_ count: Int) async -> Bool {
        for _ in 0..<10_000 {
            if sleeperCount >= count { return true }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return sleeperCount >= count
    }
}
