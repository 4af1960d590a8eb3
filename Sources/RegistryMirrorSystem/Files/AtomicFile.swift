import Glibc
import RegistryMirrorCore

/// Replacing a file so that readers see the old content or the new, never a mix.
public enum AtomicFile {
    /// Temp file in the same directory, fsync, rename over the target, fsync the directory: a crash at
    /// any point leaves the old file or the new one.
    static func replace(in dir: FileDescriptor, _ name: String, _ content: String, dirPath: String, sync: Bool = true) throws(SystemError) {
        let temporary = ".\(name).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        let path = "\(dirPath)/\(name)"
        let raw = openat(dir.raw, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard raw >= 0 else { throw SystemError(operation: "write", path: path, errno: errno) }
        do throws(SystemError) {
            let fd = FileDescriptor(raw)
            try call("write", path) { fchmod(fd.raw, 0o644) }
            var bytes = Array(content.utf8)
            var offset = 0
            while offset < bytes.count {
                let n: Int
                do {
                    n = try retryingEINTR("write") {
                        bytes.withUnsafeMutableBytes { write(fd.raw, $0.baseAddress! + offset, $0.count - offset) }
                    }
                } catch {
                    throw error.named("write", path)
                }
                offset += n
            }
            if sync { try call("sync", path) { fsync(fd.raw) } }
            try call("replace", path) { renameat(dir.raw, temporary, dir.raw, name) }
        } catch {
            unlinkat(dir.raw, temporary, 0)
            throw error
        }
        if sync { try call("sync", dirPath) { fsync(dir.raw) } }
    }


    /// Atomically replaces `path` (its directory must exist). `sync: false` skips the fsyncs, for files
    /// like metrics that are rewritten every few seconds and worthless after a crash.
    public static func replace(path: String, content: String, sync: Bool = true) throws(SystemError) {
        let slash = path.lastIndex(of: "/")
        let dirPath = slash.map { path[..<$0].isEmpty ? "/" : String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let raw = open(dirPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard raw >= 0 else { throw SystemError(operation: "open", path: dirPath, errno: errno) }
        try replace(in: FileDescriptor(raw), name, content, dirPath: dirPath, sync: sync)
    }
}

/// Runs a call returning 0 on success, retrying on EINTR; any other failure becomes a SystemError.
func call(_ operation: String, _ path: String, _ body: () throws(SystemError) -> Int32) throws(SystemError) {
    while true {
        if try body() == 0 { return }
        if errno == EINTR { continue }
        throw SystemError(operation: operation, path: path, errno: errno)
    }
}
