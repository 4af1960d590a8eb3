import CSystemd
import Dispatch
import Glibc
import RegistryMirrorCore

/// sd_notify messages to systemd. Every call is a no-op when `NOTIFY_SOCKET` is unset.
public struct SystemdNotifier: StatusReporter {
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

/// SIGTERM and SIGINT as an async stream: the handler only yields; the program decides what stopping means.
public enum StopSignals {
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
