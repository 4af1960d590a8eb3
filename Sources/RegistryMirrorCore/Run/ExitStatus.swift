/// Exit codes of the command line (docs/design.md §7). sysexits.h values where one fits.
public enum ExitStatus: Int32, Sendable {
    case ok = 0
    /// An internal error (a bug); for `plan --exit-code`, changes are pending.
    case failure = 1
    case usage = 64
    /// The deadline passed with some registries still without a host up.
    case deadlineReached = 69
    /// Cannot create or write under hosts_dir.
    case cannotWrite = 73
    /// SIGTERM or SIGINT before done; what was written is complete.
    case interrupted = 75
    case invalidConfig = 78
}
