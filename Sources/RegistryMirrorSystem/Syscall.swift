import CLinux
import Glibc
import RegistryMirrorCore

/// Runs a system call returning -1 on failure, retrying on EINTR; errno becomes a typed error here only.
@discardableResult
func retryingEINTR<T: BinaryInteger>(_ call: String, path: String = "", _ body: () -> T) throws(SystemError) -> T {
    while true {
        let rc = body()
        if rc >= 0 { return rc }
        let code = errno
        if code == EINTR { continue }
        throw SystemError(operation: call, path: path, errno: code)
    }
}

/// An owned file descriptor, closed on deinit.
final class FileDescriptor {
    let raw: Int32
    init(_ raw: Int32) { self.raw = raw }
    deinit { close(raw) }
}

extension SystemError {
    /// The same failure, said of `operation` on `path` (a call's error, named for what it was part of).
    func named(_ operation: String, _ path: String) -> SystemError {
        var named = self
        named.operation = operation
        named.path = path
        return named
    }

    /// What was to be read does not exist.
    public var isMissing: Bool { errno == ENOENT }

    /// A failed call on `path`: errno kept, its text from strerror (made here, nowhere else).
    init(operation: String, path: String = "", errno: Int32) {
        self.init(operation: operation, path: path, errno: errno, reason: errno == ENOENT ? "no such file" : String(cString: strerror(errno)))
    }
}

/// Starts a detached thread running `body`, named `name` (for `top -H` and /proc: a thread otherwise
/// inherits the name of whichever thread created it), with a 256 KiB stack. Returns pthread_create's
/// result: 0, or the error number.
func startDetachedThread(named name: String, _ body: @escaping @Sendable () -> Void) -> Int32 {
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setstacksize(&attributes, 256 * 1024)
    var thread = pthread_t()
    let box = Unmanaged.passRetained(ThreadBody(name: name, run: body)).toOpaque()
    let rc = pthread_create(&thread, &attributes, { raw in
        let body = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
        ccr_set_thread_name(body.name)
        body.run()
        return nil
    }, box)
    guard rc == 0 else {
        Unmanaged<ThreadBody>.fromOpaque(box).release()
        return rc
    }
    pthread_detach(thread)
    return 0
}

private final class ThreadBody: Sendable {
    let name: String
    let run: @Sendable () -> Void
    init(name: String, run: @escaping @Sendable () -> Void) {
        self.name = name
        self.run = run
    }
}

extension Duration {
    /// Whole milliseconds, rounded up (a wait of 0.2 ms is 1 ms, not 0: no busy loop), for C calls.
    var millisecondsRoundedUp: Int {
        let (seconds, attoseconds) = components
        return Int(seconds) * 1000 + Int((attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    }
}
