import CSystemd
import Glibc
import RegistryMirrorCore

/// sd_notify messages to systemd. Every call is a no-op when `NOTIFY_SOCKET` is unset.
public struct SystemdNotifier: ServiceNotifier {
    public let isListening: Bool

    public init() { isListening = getenv("NOTIFY_SOCKET") != nil }

    public func status(_ text: String) { send("STATUS=\(text.replacingNewlines())") }
    public func ready() { send("READY=1") }
    public func stopping() { send("STOPPING=1") }
    public func watchdog() { send("WATCHDOG=1") }

    public func send(_ state: String) {
        _ = sd_notify(0, state)
    }
}

extension String {
    fileprivate func replacingNewlines() -> String {
        String(map { $0 == "\n" ? " " : $0 })
    }
}

extension SystemdNotifier {
    /// Half of `WATCHDOG_USEC` when the service manager wants keep-alives, else nil.
    public static func watchdogInterval(environment: [String: String]) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let usec = Int64(text), usec > 0 else { return nil }
        if let pid = environment["WATCHDOG_PID"], let n = Int32(pid), n != getpid() { return nil }
        return .microseconds(usec / 2)
    }
}
