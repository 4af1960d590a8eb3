import ArgumentParser
import RegistryMirrorCore

/// The one place where the outcome of a command becomes the process's exit code (docs/design.md
/// §7): commands compute an `ExitStatus` (or check's `HealthState`) and end here.
enum Exit {
    /// Ends the command with `status`; 0 returns normally.
    static func with(_ status: ExitStatus) throws {
        if status != .ok { throw Exit.status(status) }
    }

    /// check: the monitoring-plugins state is the exit code.
    static func with(_ health: HealthState) throws {
        if health != .ok { throw ExitCode(health.rawValue) }
    }

    static func status(_ status: ExitStatus) -> ExitCode { ExitCode(status.rawValue) }
}
