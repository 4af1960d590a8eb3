import CSystemd
import Dispatch
import Glibc
import Logging
import RegistryMirrorCore

/// sd_notify messages to systemd. Every call is a no-op when `NOTIFY_SOCKET` is unset.
public struct SystemdNotifier: ServiceNotifier {
    public init() {}

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

/// Signals as an async stream (SIGTERM and SIGINT by default): the handler only yields; the program
/// decides what stopping or reloading means.
public enum Signals {
    public static func stream(_ signals: [Int32] = [SIGTERM, SIGINT]) -> AsyncStream<Void> {
        AsyncStream { continuation in
            let sources = signals.map { number -> any DispatchSourceSignal in
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler { continuation.yield(()) }
                source.resume()
                return source
            }
            let keep = SourceBox(sources)
            continuation.onTermination = { _ in keep.cancelAll() }
        }
    }

    private final class SourceBox: @unchecked Sendable {
        let sources: [any DispatchSourceSignal]
        init(_ sources: [any DispatchSourceSignal]) { self.sources = sources }
        func cancelAll() { sources.forEach { $0.cancel() } }
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

/// Watch mode's metrics, replaced atomically (without fsync: they are rewritten every few seconds).
public struct MetricsFile: MetricsSink {
    public let path: String
    let logger: Logger

    public init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
    }

    public func write(_ text: String) {
        do {
            try AtomicFile.replace(path: path, content: text, sync: false)
        } catch {
            logger.warning("metrics: \(error)")
        }
    }
}

/// Seconds since the epoch.
public func wallClockSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
