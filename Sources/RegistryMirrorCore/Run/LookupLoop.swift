/// One Service name's lookups, for apply and watch alike (docs/design.md §4.1): when the next goes
/// out is `LookupSchedule`'s call; each wait is one timer task (every `lookup_interval` once steady). A request (`ask`: a probe of its address failed)
/// can move the next lookup forward. Ends when its task is cancelled.
struct LookupLoop: Sendable {
    enum Event: Sendable {
        case ask
        case timer
    }

    let name: String
    let discovery: Discovery?
    let schedule: LookupSchedule
    let resolver: (any ServiceResolver)?
    let clock: AgentClock
    let random: RandomSource
    /// Receives each answer that differs from the one before (the same answer again changes nothing,
    /// so the run's loop is not woken for it).
    let report: @Sendable (Resolution) -> Void

    /// `known`: the name already has addresses (carried over a reload).
    func run(known: Bool, events: AsyncStream<Event>, wake: AsyncStream<Event>.Continuation) async {
        var known = known
        var failures = 0
        var iterator = events.makeAsyncIterator()
        var due = schedule.first(known: known, now: clock.now, unit: random.unit())
        var lastStart: Duration?
        var lastSent: Resolution?
        // The wake-up waited for.
        var timer: (at: Duration, task: Task<Void, Never>)?
        while !Task.isCancelled {
            if due <= clock.now {
                lastStart = clock.now
                let resolution = await resolver.lookUp(name, using: discovery)
                if Task.isCancelled { break }
                if resolution != lastSent {
                    report(resolution)
                    lastSent = resolution
                }
                if case .addresses = resolution.usable {
                    known = true
                    failures = 0
                } else {
                    failures += 1
                }
                due = schedule.next(known: known, failures: failures, now: clock.now, unit: random.unit())
                continue
            }
            if schedule.kind == .apply {
                // apply takes no requests: nothing can move the next lookup, so it simply waits.
                await clock.sleep(until: due)
                continue
            }
            if timer?.at != due {
                timer?.task.cancel()
                let at = due
                timer = (at, Task {
                    await clock.sleep(until: at)
                    if !Task.isCancelled { wake.yield(.timer) }
                })
            }
            guard let event = await iterator.next(), !Task.isCancelled else { break }
            if case .ask = event {
                due = schedule.asked(due: due, now: clock.now, lastStart: lastStart)
            }
        }
        timer?.task.cancel()
        wake.finish()
    }
}
