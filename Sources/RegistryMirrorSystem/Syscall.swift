import Glibc
import RegistryMirrorCore

/// A failed system call: which one, on what, and errno.
struct SystemCallError: Error, CustomStringConvertible {
    let call: String
    let errno: Int32
    var description: String { "\(call): \(String(cString: strerror(errno)))" }
    var reason: String { String(cString: strerror(errno)) }
}

/// Runs a system call returning -1 on failure, retrying on EINTR; errno becomes a typed error here only.
@discardableResult
func retryingEINTR<T: BinaryInteger>(_ call: String, _ body: () -> T) throws(SystemCallError) -> T {
    while true {
        let rc = body()
        if rc >= 0 { return rc }
        let code = errno
        if code == EINTR { continue }
        throw SystemCallError(call: call, errno: code)
    }
}

/// An owned file descriptor, closed on deinit.
final class FileDescriptor {
    let raw: Int32
    init(_ raw: Int32) { self.raw = raw }
    deinit { close(raw) }
}

extension StoreError {
    /// A failed call on `path`: errno kept, its text from strerror.
    init(operation: String, path: String, errno: Int32) {
        self.init(operation: operation, path: path, errno: errno, reason: String(cString: strerror(errno)))
    }
}
