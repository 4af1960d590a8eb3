/// A failed operation at the edge of the system (a file, a socket, a process, the journal): what was
/// being done, on what, errno when a system call failed, and why. The one error of the system
/// layer, its text made here only: callers tell a read-only file system (EROFS) from a permission
/// problem (EACCES) by `errno`, never by parsing text.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    public var operation: String
    /// The file or socket; empty when the operation names its object itself.
    public var path: String
    /// errno of the failed call; nil for refusals of the agent's own (a file that changed under it).
    public var errno: Int32?
    public var reason: String

    public init(operation: String, path: String = "", reason: String) {
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

    public var description: String { path.isEmpty ? "cannot \(operation): \(reason)" : "cannot \(operation) \(path): \(reason)" }
}

/// The hosts directory as the core sees it. The implementation never follows a symlink below the
/// root and never writes outside it.
public protocol HostsStore: Sendable {
    /// hosts_dir.
    var root: String { get }
    /// The path of an upstream's hosts.toml, for logs.
    func filePath(_ upstream: String) -> String
    func observe(_ upstream: String) throws(SystemError) -> UpstreamDirState
    /// Carries out the steps in order; stops at the first that fails.
    func perform(_ actions: [FileAction], upstream: String) throws(SystemError)
    /// Upstream directories that hold a file of ours (a managed hosts.toml or an ownership record).
    func upstreamsWithOurFiles() throws(SystemError) -> [String]
    /// Runs `body` holding the lock that keeps two instances from interleaving writes. The lock
    /// belongs to the hosts directory, whatever the spelling of its path, and only the agent's own
    /// user can take it. `creatingRoot`: create hosts_dir first (a write is coming); otherwise a
    /// missing hosts_dir needs no lock. While another instance holds it, the wait ends when `wait`
    /// says so (a deadline, a stop), with a `SystemError` naming why.
    func withLock<T>(creatingRoot: Bool, wait: LockWait, _ body: () throws -> T) throws -> T
    /// Removes what a run killed half-way left directly below hosts_dir (a directory being created
    /// under a temporary name). Call it holding the lock.
    func removeLeftovers()
}

/// Either way a directory can refuse to take the state we want.
public enum HostsError: Error, Sendable, CustomStringConvertible {
    case store(SystemError)
    case conflict(PlanConflict)

    public var description: String {
        switch self {
        case .store(let e): e.description
        case .conflict(let c): c.description
        }
    }
}
