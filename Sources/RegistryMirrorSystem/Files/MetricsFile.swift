import Glibc
import Logging
import RegistryMirrorCore
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
