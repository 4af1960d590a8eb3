import CLinux
import CSignalGate
import Glibc
import RegistryMirrorCore
import Synchronization
/// SIGTERM, SIGINT and SIGHUP as the program sees them. The C gate (`CSignalGate`) catches them from
/// the moment the executable is loaded and only writes their numbers to a pipe; a thread here reads
/// the pipe and hands each signal to whoever subscribed. A signal that arrives before anyone has
/// subscribed is kept and delivered on subscription, so a SIGTERM during start-up still ends apply
/// with 75 instead of killing it half-way. Commands with nothing to finish call `exitOnTermination`.
public enum Signals {
    /// Starts reading the gate (installing it, if the executable's constructor did not). Idempotent.
    public static func start() {
        _ = hub
    }

    /// Yields once per signal in `signals`, and once at once if one of them arrived before.
    /// `raising`: raised on the signal thread before the yield, for waits that hold up the event loop.
    public static func stream(_ signals: [Int32] = [SIGTERM, SIGINT], raising flag: StopFlag? = nil) -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self)
        let id = hub.subscribe(signals, continuation, flag: flag)
        continuation.onTermination = { _ in hub.unsubscribe(id) }
        return stream
    }

    /// From now on a signal nobody subscribed to ends the process at once with 128 + its number, as
    /// the default action would (for plan, check and remove, which hold nothing that needs finishing).
    public static func exitOnTermination() {
        hub.exitOnUnhandled()
    }

    private static let hub: SignalHub = {
        let fd = ccr_signal_gate_install()
        precondition(fd >= 0, "cannot create the signal pipe: \(String(cString: strerror(errno)))")
        let hub = SignalHub(fd: fd)
        hub.startReading()
        return hub
    }()
}

private final class SignalHub: Sendable {
    struct Subscriber {
        var signals: [Int32]
        var continuation: AsyncStream<Void>.Continuation
        var flag: StopFlag?
    }
    struct State {
        var subscribers: [Int: Subscriber] = [:]
        var nextID = 0
        /// Signals received while nobody listened for them.
        var pending: [Int32] = []
        var exitWhenUnhandled = false
    }

    let fd: Int32
    let state = Mutex(State())

    init(fd: Int32) { self.fd = fd }

    func subscribe(_ signals: [Int32], _ continuation: AsyncStream<Void>.Continuation, flag: StopFlag?) -> Int {
        state.withLock { state in
            state.nextID += 1
            state.subscribers[state.nextID] = Subscriber(signals: signals, continuation: continuation, flag: flag)
            if state.pending.contains(where: signals.contains) {
                state.pending.removeAll(where: signals.contains)
                flag?.raise()
                continuation.yield(())
            }
            return state.nextID
        }
    }

    func unsubscribe(_ id: Int) {
        _ = state.withLock { $0.subscribers.removeValue(forKey: id) }
    }

    func exitOnUnhandled() {
        state.withLock { state in
            state.exitWhenUnhandled = true
            if let first = state.pending.first { _exit(128 + first) }
        }
    }

    func deliver(_ number: Int32) {
        state.withLock { state in
            let listeners = state.subscribers.values.filter { $0.signals.contains(number) }
            if !listeners.isEmpty {
                for listener in listeners {
                    listener.flag?.raise()
                    listener.continuation.yield(())
                }
            } else if state.exitWhenUnhandled {
                _exit(128 + number)
            } else {
                state.pending.append(number)
            }
        }
    }

    /// A thread blocked in read(2) on the gate's pipe: signals are rare, so it costs nothing idle.
    func startReading() {
        let rc = startDetachedThread(named: "ccr-signals") { [self] in
            var byte: UInt8 = 0
            while true {
                let n = read(fd, &byte, 1)
                if n == 1 {
                    deliver(Int32(byte))
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        }
        precondition(rc == 0, "cannot start the signal thread: \(String(cString: strerror(rc)))")
    }
}
