/// Watch mode's view of one mirror host: hysteresis on probe results, and when to probe next.
///
/// A host's first result decides at once (as apply does). After that it leaves the file after
/// `failure_threshold` consecutive failures and comes back after `success_threshold` consecutive
/// successes. When its next probe goes out is `ProbeTiming`'s call.
public struct HostTracker: Sendable, Equatable {
    /// Whether the host belongs in hosts.toml; nil until its first result.
    public private(set) var inFile: Bool?
    public private(set) var consecutiveFailures = 0
    public private(set) var consecutiveSuccesses = 0
    /// Times the host went in or out of the file after its first result.
    public private(set) var transitions = 0
    public private(set) var last: ProbeResult?
    public private(set) var probes = 0
    /// The host has been in its file at some time (a host that comes back is "back", not "up").
    public private(set) var wasInFile = false

    public init() {}

    /// A host that must prove itself before it goes in: out until `success_threshold` good probes in a
    /// row (a Service name's new address), and probed as an out host that answers, `initial_interval` apart.
    public static var candidate: HostTracker {
        var tracker = HostTracker()
        tracker.inFile = false
        return tracker
    }

    /// Records a result; returns true when `inFile` changed.
    public mutating func record(_ result: ProbeResult, settings: ProbeSettings) -> Bool {
        probes += 1
        last = result
        if result.isUp {
            consecutiveSuccesses += 1
            consecutiveFailures = 0
        } else {
            consecutiveFailures += 1
            consecutiveSuccesses = 0
        }
        defer { if inFile == true { wasInFile = true } }
        switch inFile {
        case nil:
            inFile = result.isUp
            return true
        case true? where consecutiveFailures >= settings.failureThreshold:
            inFile = false
            transitions += 1
            return true
        case false? where consecutiveSuccesses >= settings.successThreshold:
            inFile = true
            transitions += 1
            return true
        default:
            return false
        }
    }

    /// A result that disagrees with where the host stands: it may be about to move.
    public var isSuspect: Bool {
        (inFile == true && consecutiveFailures > 0) || (inFile == false && consecutiveSuccesses > 0)
    }
}
