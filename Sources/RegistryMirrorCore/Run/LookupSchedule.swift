/// When a Service name is looked up next (docs/design.md §4.1). Pure: `LookupLoop` asks it after
/// every lookup and request.
struct LookupSchedule: Sendable {
    enum Kind: Sendable {
        /// On the backoff while the name has no usable answer, every `max_interval` once it has one
        /// (a Service that moves while apply waits for its old address is followed).
        case apply
        /// Every round once it has addresses, on the backoff while it has none; at once when asked
        /// (a probe of its address failed), at most every `initial_interval`.
        case watch
    }

    let kind: Kind
    let settings: ProbeSettings

    /// The first lookup: at once, but for a name whose addresses watch already knows (carried over a
    /// reload), which waits for the round.
    func first(known: Bool, now: Duration, round: () -> Duration) -> Duration {
        kind == .watch && known ? round() : now
    }

    /// After a lookup that ended at `now`: `known` when the name has usable addresses, `failures` the
    /// lookups without one in a row.
    func next(known: Bool, failures: Int, now: Duration, unit: Double, round: () -> Duration) -> Duration {
        if known {
            return kind == .watch ? round() : now + settings.maxInterval.duration
        }
        return now + Backoff(settings).delay(attempt: max(failures, 1), unit: unit)
    }

    /// A request to look up now (a probe failed): the lookup is moved forward, at most to
    /// `initial_interval` after the last one began. Apply ignores requests: it looks up often anyway.
    func asked(due: Duration, now: Duration, lastStart: Duration?) -> Duration {
        guard kind == .watch, let lastStart else { return due }
        return min(due, max(now, lastStart + settings.initialInterval.duration))
    }
}
