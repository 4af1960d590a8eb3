import Logging
import Synchronization

/// A failed file system operation under hosts_dir: what, where, and errno when a system call failed,
/// so callers can tell a read-only file system (EROFS) from a permission problem (EACCES) without
/// parsing text.
public struct StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    public var operation: String
    public var path: String
    /// errno of the failed call; nil for refusals of the agent's own (a file that changed under it).
    public var errno: Int32?
    public var reason: String

    public init(operation: String, path: String, reason: String) {
        self.operation = operation
        self.path = path
        self.errno = nil
        self.reason = reason
    }

    /// A failed system call (the system layer adds an initialiser that takes the text from strerror).
    public init(operation: String, path: String, errno: Int32, reason: String) {
        self.operation = operation
        self.path = path
        self.errno = errno
        self.reason = reason
    }

    public var description: String { "cannot \(operation) \(path): \(reason)" }
}

/// The hosts directory as the core sees it. The implementation never follows a symlink below the
/// root and never writes outside it.
public protocol HostsStore: Sendable {
    /// hosts_dir.
    var root: String { get }
    /// The path of an upstream's hosts.toml, for logs.
    func filePath(_ upstream: String) -> String
    func observe(_ upstream: String) throws(StoreError) -> UpstreamDirState
    /// Carries out the steps in order; stops at the first that fails.
    func perform(_ actions: [FileAction], upstream: String) throws(StoreError)
    /// Upstream directories that hold a file of ours (a managed hosts.toml or an ownership record).
    func upstreamsWithOurFiles() throws(StoreError) -> [String]
    /// Runs `body` holding the lock that keeps two instances from interleaving writes. The lock
    /// belongs to the hosts directory, whatever the spelling of its path, and only the agent's own
    /// user can take it. `creatingRoot`: create hosts_dir first (a write is coming); otherwise a
    /// missing hosts_dir needs no lock. While another instance holds it, the wait ends when `wait`
    /// says so (a deadline, a stop), with a `StoreError` naming why.
    func withLock<T>(creatingRoot: Bool, wait: LockWait, _ body: () throws -> T) throws -> T
    /// Removes what a run killed half-way left directly below hosts_dir (a directory being created
    /// under a temporary name). Call it holding the lock.
    func removeLeftovers()
}

/// Either way a directory can refuse to take the state we want.
public enum HostsError: Error, Sendable, CustomStringConvertible {
    case store(StoreError)
    case conflict(PlanConflict)

    public var description: String {
        switch self {
        case .store(let e): e.description
        case .conflict(let c): c.description
        }
    }
}

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

/// Brings one upstream's directory to the wanted state under the lock and logs what changed.
public struct HostsReconciler: Sendable {
    public let store: any HostsStore
    public let logger: Logger
    public let lockWait: LockWait

    public init(store: any HostsStore, logger: Logger, lockWait: LockWait = .untilFree) {
        self.store = store
        self.logger = logger
        self.lockWait = lockWait
    }

    /// - Returns: the steps carried out (empty when the file was already right).
    /// `sparingForeign`: a hosts.toml that is not ours (nor a regular file) is left as it is, with
    /// nothing done (watch restoring its own files: an administrator's file put there stays).
    @discardableResult
    public func reconcile(upstream: String, desired: String?, configured: Bool, sparingForeign: Bool = false) throws(HostsError)
        -> [FileAction]
    {
        let path = store.filePath(upstream)
        var log = logger
        log[metadataKey: LogKey.upstream] = "\(upstream)"
        log[metadataKey: LogKey.file] = "\(path)"
        let steps: [FileAction]
        do {
            steps = try store.withLock(creatingRoot: desired != nil, wait: lockWait) {
                let observed = try store.observe(upstream)
                if sparingForeign, observed.file == .foreign || observed.file == .notRegular { return [] }
                let steps = try HostsPlan.actions(
                    upstream: upstream, desired: desired, configured: configured, observed: observed)
                try store.perform(steps, upstream: upstream)
                return steps
            }
        } catch let e as StoreError {
            throw .store(e)
        } catch let e as PlanConflict {
            throw .conflict(e)
        } catch {
            throw .store(StoreError(operation: "lock", path: store.root, reason: "\(error)"))
        }
        if desired != nil && !steps.contains(where: { if case .write = $0 { true } else { false } }) {
            log.debug("hosts.toml unchanged")
        }
        for step in steps {
            switch step {
            case .backUpForeign:
                log.notice("backed up foreign hosts.toml to \(HostsFile.backupName)")
            case .write:
                log.notice("wrote hosts.toml")
            case .removeManaged:
                log.notice(configured ? "removed hosts.toml: no mirror is up" : "removed hosts.toml: upstream no longer configured")
            case .restoreBackup:
                log.notice("restored \(HostsFile.backupName) to hosts.toml")
            case .removeDirectory:
                log.info("removed directory \(store.root)/\(upstream) if empty")
            case .createDirectory, .writeRecord, .removeRecord:
                break
            }
        }
        return steps
    }
}

/// Metadata keys of our log lines; the journald handler turns them into upper-case journal fields.
public enum LogKey {
    public static let upstream = "registry_upstream"
    public static let host = "registry_host"
    public static let result = "probe_result"
    public static let attempts = "probe_attempts"
    public static let reason = "probe_reason"
    public static let file = "hosts_file"
    /// The Service name a host was found under (`[discovery]`).
    public static let service = "registry_service"
}

extension HostsReconciler {
    /// Everything of ours for upstreams not in `configured` goes: our file, the ownership record, the
    /// directory if we created it; a backed-up foreign file comes back. `remove` passes an empty set.
    /// - Returns: upstream (or hosts_dir) to error, for what could not be cleaned; empty when all went well.
    @discardableResult
    public func removeUpstreams(notIn configured: Set<String>) -> [String: String] {
        let upstreams: [String]
        do {
            // Every run starts here (apply, watch, remove): the moment to clear a killed run's leftovers.
            // The listing too is made under the lock: another instance may be renaming files meanwhile.
            upstreams = try store.withLock(creatingRoot: false, wait: lockWait) {
                store.removeLeftovers()
                return try store.upstreamsWithOurFiles().filter { !configured.contains($0) }
            }
        } catch {
            logger.error("\(error)")
            return [store.root: "\(error)"]
        }
        var failures: [String: String] = [:]
        for upstream in upstreams {
            do {
                try reconcile(upstream: upstream, desired: nil, configured: false)
            } catch {
                logger.error("\(error)", metadata: [LogKey.upstream: "\(upstream)"])
                failures[upstream] = error.description
            }
        }
        return failures
    }

    /// `remove`: every file of ours goes, backups come back, directories we created go when empty.
    public func removeEverything() -> [String: String] {
        let failures = removeUpstreams(notIn: [])
        logger.notice("remove done\(failures.isEmpty ? "" : " with \(failures.count) failures")")
        return failures
    }
}
