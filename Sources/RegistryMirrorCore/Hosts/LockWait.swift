import Synchronization

/// When a wait for the lock gives up. The lock is held by another instance of the agent only for
/// one upstream's observe and a few atomic writes, but that instance may be stopped (SIGSTOP, a
/// debugger, a full disk): the wait must still end at the deadline or on SIGTERM. It is asked between
/// attempts, from the waiting thread, so what it reads must not need the event loop.
public struct LockWait: Sendable {
    /// Why to stop waiting now; nil: go on.
    public let giveUp: @Sendable () -> String?

    public init(giveUp: @escaping @Sendable () -> String?) { self.giveUp = giveUp }

    /// Waits as long as it takes (remove, plan's tests): only another instance can hold the lock.
    public static let untilFree = LockWait { nil }

    /// Gives up once `stop` is raised, or (with a deadline) once `clock` reaches `deadline`.
    public static func until(_ deadline: Duration?, on clock: AgentClock, or stop: StopFlag) -> LockWait {
        LockWait {
            if stop.isRaised { return "interrupted" }
            if let deadline, clock.now >= deadline { return "deadline reached" }
            return nil
        }
    }
}

/// Raised once a stop was asked for (SIGTERM, SIGINT). The signal thread raises it before the event
/// loop hears of the signal, so a wait that holds up the loop (the lock) still ends.
public final class StopFlag: Sendable {
    private let raised = Atomic<Bool>(false)

    public init() {}

    public func raise() { raised.store(true, ordering: .releasing) }
    public var isRaised: Bool { raised.load(ordering: .acquiring) }
}
