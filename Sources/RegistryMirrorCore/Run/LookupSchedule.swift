/// When a Service name is looked up next (docs/design.md §4.1). Pure: `LookupLoop` asks it after
/// every lookup and request.
struct LookupSchedule: Sendable {
    enum Kind: Sendable {
        /// On the backoff while the name has no usable answer, every `max_interval` once it has one
        /// (a Service that moves while apply waits for its old address is followed).
        case apply
        /// Every `lookup_interval` (±20%) once it has addresses, on the backoff while it has none; at
        /// once when asked (a probe of its address failed), at most every `initial_interval`.
        case watch
    }

    let kind: Kind
    let settings: ProbeSettings
    /// `[discovery] lookup_interval`.
    var lookupInterval: Duration = .seconds(30)

    /// The first lookup: at once, but for a name whose addresses watch already knows (carried over a
    /// reload), which waits its interval.
    func first(known: Bool, now: Duration, unit: Double) -> Duration {
        kind == .watch && known ? now + jittered(unit) : now
    }

    private func jittered(_ unit: Double) -> Duration { lookupInterval * (0.8 + 0.4 * min(max(unit, 0), 1)) }

    /// After a lookup that ended at `now`: `known` when the name has usable addresses, `failures` the
    /// lookups without one in a row.
    func next(known: Bool, failures: Int, now: Duration, unit: Double) -> Duration {
        if known {
            return kind == .watch ? now + jittered(unit) : now + settings.maxInterval.duration
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
