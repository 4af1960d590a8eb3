import Glibc
import RegistryMirrorCore

/// Reading the config file from disk; parsing and validation are `ConfigLoader`'s.
public enum ConfigFile {
    /// The whole file, never a part of it. Opened without blocking and refused unless it is a regular
    /// file of at most `limit` bytes: a FIFO, a device like /dev/zero, a directory or a huge file gives
    /// `.unreadable` at once instead of hanging, reading forever or being cut silently.
    /// A file that does not exist fails with errno ENOENT (`SystemError.isMissing`).
    public static func read(_ path: String, limit: Int = ConfigLoader.maximumFileSize) throws(SystemError) -> [UInt8] {
        let bytes = try RegularFile.read(path, limit: limit)
        guard bytes.count <= limit else {
            let size = limit % (1 << 20) == 0 ? "\(limit >> 20) MiB" : "\(limit / 1024) KiB"
            throw SystemError(operation: "read", path: path, reason: "larger than \(size); a config file is a few KiB")
        }
        return bytes
    }

    /// containerd's config file as text, nil when it does not exist: read as `read` reads ours, up to
    /// `ContainerdConfigText.maximumFileSize`. Its bytes are not held to our config's rules
    /// (`ConfigBytes`): containerd reads a NUL in a comment, and `ContainerdConfigText` does too.
    public static func readContainerdConfig(_ path: String) throws(SystemError) -> String? {
        do {
            return String(decoding: try read(path, limit: ContainerdConfigText.maximumFileSize), as: UTF8.self)
        } catch where error.isMissing {
            return nil
        }
    }

    public static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }
}

/// Reading small files that must be regular files (configs, CA bundles, client keys) without ever
/// blocking on a FIFO or a device.
enum RegularFile {
    /// Up to `limit` + 1 bytes of the regular file at `path`.
    static func read(_ path: String, limit: Int) throws(SystemError) -> [UInt8] {
        let raw = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard raw >= 0 else { throw SystemError(operation: "read", path: path, errno: errno) }
        let fd = FileDescriptor(raw)
        var info = stat()
        guard fstat(fd.raw, &info) == 0 else { throw SystemError(operation: "read", path: path, errno: errno) }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw SystemError(operation: "read", path: path, errno: EINVAL, reason: "not a regular file (\(fileTypeName(info.st_mode)))")
        }
        var out: [UInt8] = []
        out.reserveCapacity(min(Int(info.st_size), limit) + 1)
        var chunk = [UInt8](repeating: 0, count: 65536)
        while out.count <= limit {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd.raw, $0.baseAddress, min($0.count, limit + 1 - out.count)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError(operation: "read", path: path, errno: errno)
            }
            if n == 0 { break }
            out += chunk[0..<n]
        }
        return out
    }

    static func fileTypeName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFDIR: "a directory"
        case S_IFSOCK: "a socket"
        default: "not a regular file"
        }
    }
}
