import CLinux
import Glibc
import RegistryMirrorCore

/// The hosts directory on disk. Every path below the root is opened relative to a directory
/// descriptor with O_NOFOLLOW, so a symlinked upstream directory or hosts.toml is seen as such and
/// never followed; names are validated upstreams, so nothing escapes the root.
public final class FileHostsStore: HostsStore, @unchecked Sendable {
    public let root: String
    public let lockPath: String

    /// - Parameter lockPath: defaults to `Self.defaultLockPath(for:)`.
    public init(root: String, lockPath: String? = nil) {
        var root = root
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        self.root = root
        self.lockPath = lockPath ?? Self.defaultLockPath(for: root)
    }

    /// One lock per hosts directory under /run, or beside the hosts directory when /run is not writable
    /// (tests, containers). Every instance for the same directory computes the same path.
    public static func defaultLockPath(for root: String) -> String {
        let runDir = "/run/configure-containerd-registries"
        if mkdir(runDir, 0o755) == 0 || errno == EEXIST, access(runDir, W_OK) == 0 {
            let escaped = root.split(separator: "/").joined(separator: "-")
            return "\(runDir)/\(escaped.isEmpty ? "root" : escaped).lock"
        }
        let parent = root.split(separator: "/").dropLast().joined(separator: "/")
        let base = root.split(separator: "/").last.map(String.init) ?? "root"
        return "/\(parent)\(parent.isEmpty ? "" : "/").\(base).configure-containerd-registries.lock"
    }

    public func filePath(_ upstream: String) -> String { "\(root)/\(upstream)/\(HostsFile.fileName)" }

    // MARK: Reading

    public func observe(_ upstream: String) throws(StoreError) -> UpstreamDirState {
        guard let rootFD = try openRoot(create: false) else { return .absent }
        let dirPath = "\(root)/\(upstream)"
        switch try kind(rootFD, upstream, path: dirPath) {
        case nil: return .absent
        case .some(let mode) where mode & S_IFMT != S_IFDIR: return UpstreamDirState(directory: .notDirectory)
        default: break
        }
        let dirFD = try openDirectory(rootFD, upstream, path: dirPath)
        var state = UpstreamDirState(directory: .directory)
        let filePath = "\(dirPath)/\(HostsFile.fileName)"
        if let mode = try kind(dirFD, HostsFile.fileName, path: filePath) {
            if mode & S_IFMT == S_IFREG {
                let content = try readSmallFile(dirFD, HostsFile.fileName, path: filePath)
                if HostsFile.isManaged(content) {
                    state.file = .managed(content)
                } else {
                    state.file = .foreign
                    state.foreignContent = content
                }
            } else {
                state.file = .notRegular
            }
        }
        state.backupExists = try kind(dirFD, HostsFile.backupName, path: "\(dirPath)/\(HostsFile.backupName)") != nil
        let recordPath = "\(dirPath)/\(OwnershipRecord.fileName)"
        if let mode = try kind(dirFD, OwnershipRecord.fileName, path: recordPath), mode & S_IFMT == S_IFREG {
            state.record = OwnershipRecord(parsing: try readSmallFile(dirFD, OwnershipRecord.fileName, path: recordPath))
        }
        return state
    }

    public func upstreamsWithOurFiles() throws(StoreError) -> [String] {
        guard let rootFD = try openRoot(create: false) else { return [] }
        var names: [String] = []
        for name in try listDirectory(rootFD, path: root) {
            guard Names.upstreamProblem(name) == nil,
                let mode = try kind(rootFD, name, path: "\(root)/\(name)"), mode & S_IFMT == S_IFDIR
            else { continue }
            if try observe(name).isOurs { names.append(name) }
        }
        return names.sorted()
    }

    // MARK: Writing

    public func perform(_ actions: [FileAction], upstream: String) throws(StoreError) {
        guard !actions.isEmpty else { return }
        let creating = actions.contains(.createDirectory)
        guard let rootFD = try openRoot(create: creating) else {
            throw StoreError(operation: "open", path: root, reason: "directory does not exist")
        }
        let dirPath = "\(root)/\(upstream)"
        var dirFD: FileDescriptor?
        func dir() throws(StoreError) -> FileDescriptor {
            if let dirFD { return dirFD }
            let fd = try openDirectory(rootFD, upstream, path: dirPath)
            dirFD = fd
            return fd
        }
        for action in actions {
            switch action {
            case .createDirectory:
                try call("create directory", dirPath) { mkdirat(rootFD.raw, upstream, 0o755) }
                let fd = try dir()
                // mkdirat applies the umask; the design wants 0755 whatever it is.
                try call("set mode of", dirPath) { fchmod(fd.raw, 0o755) }
                try call("sync", root) { fsync(rootFD.raw) }
            case .writeRecord(let record):
                try AtomicFile.replace(in: try dir(), OwnershipRecord.fileName, record.serialized, dirPath: dirPath)
            case .write(let content):
                try removeStaleTemporaries(try dir(), dirPath: dirPath)
                try AtomicFile.replace(in: try dir(), HostsFile.fileName, content, dirPath: dirPath)
            case .backUpForeign:
                try renameNoReplace(try dir(), HostsFile.fileName, HostsFile.backupName, dirPath: dirPath)
            case .restoreBackup:
                try renameNoReplace(try dir(), HostsFile.backupName, HostsFile.fileName, dirPath: dirPath)
            case .removeManaged:
                let fd = try dir()
                try removeStaleTemporaries(fd, dirPath: dirPath)
                try call("remove", "\(dirPath)/\(HostsFile.fileName)") { unlinkat(fd.raw, HostsFile.fileName, 0) }
                try call("sync", dirPath) { fsync(fd.raw) }
            case .removeRecord:
                let fd = try dir()
                try removeStaleTemporaries(fd, dirPath: dirPath)
                try call("remove", "\(dirPath)/\(OwnershipRecord.fileName)") { unlinkat(fd.raw, OwnershipRecord.fileName, 0) }
                try call("sync", dirPath) { fsync(fd.raw) }
            case .removeDirectory:
                dirFD = nil
                if unlinkat(rootFD.raw, upstream, AT_REMOVEDIR) != 0, errno != ENOTEMPTY, errno != EEXIST, errno != ENOENT {
                    throw StoreError(operation: "remove directory", path: dirPath, reason: String(cString: strerror(errno)))
                }
                try call("sync", root) { fsync(rootFD.raw) }
            }
        }
    }

    public func withLock<T>(_ body: () throws -> T) throws -> T {
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            throw StoreError(operation: "open lock file", path: lockPath, reason: String(cString: strerror(errno)))
        }
        let lock = FileDescriptor(fd)
        do {
            try retryingEINTR("flock") { flock(lock.raw, LOCK_EX) }
        } catch {
            throw StoreError(operation: "lock", path: lockPath, reason: error.reason)
        }
        defer { flock(lock.raw, LOCK_UN) }
        return try body()
    }

    // MARK: Primitives

    /// The root's descriptor; nil when it does not exist and `create` is false. Created with parents
    /// (0755) when asked: a fresh node may not have /etc/containerd/certs.d yet. The root itself may be
    /// a symlink: that is the administrator's choice, unlike anything below it.
    private func openRoot(create: Bool) throws(StoreError) -> FileDescriptor? {
        if create { try makeDirectories(root) }
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT && !create { return nil }
            throw StoreError(operation: "open", path: root, reason: String(cString: strerror(errno)))
        }
        return FileDescriptor(fd)
    }

    private func makeDirectories(_ path: String) throws(StoreError) {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/\(component)"
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw StoreError(operation: "create directory", path: current, reason: String(cString: strerror(errno)))
            }
        }
    }

    private func openDirectory(_ parent: FileDescriptor, _ name: String, path: String) throws(StoreError) -> FileDescriptor {
        let fd = openat(parent.raw, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let reason = errno == ELOOP || errno == ENOTDIR ? "is a symlink or not a directory" : String(cString: strerror(errno))
            throw StoreError(operation: "open directory", path: path, reason: reason)
        }
        return FileDescriptor(fd)
    }

    /// The file type bits of `name` without following a symlink; nil when it does not exist.
    private func kind(_ dir: FileDescriptor, _ name: String, path: String) throws(StoreError) -> mode_t? {
        var info = stat()
        if fstatat(dir.raw, name, &info, AT_SYMLINK_NOFOLLOW) != 0 {
            if errno == ENOENT { return nil }
            throw StoreError(operation: "inspect", path: path, reason: String(cString: strerror(errno)))
        }
        return info.st_mode
    }

    private func readSmallFile(_ dir: FileDescriptor, _ name: String, path: String) throws(StoreError) -> String {
        let raw = openat(dir.raw, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard raw >= 0 else { throw StoreError(operation: "read", path: path, reason: String(cString: strerror(errno))) }
        let fd = FileDescriptor(raw)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while bytes.count < 1 << 20 {
            let n: Int
            do {
                n = try retryingEINTR("read") { chunk.withUnsafeMutableBytes { read(fd.raw, $0.baseAddress, $0.count) } }
            } catch {
                throw StoreError(operation: "read", path: path, reason: error.reason)
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Leftovers of a run killed between creating a temp file and renaming it (hosts.toml or the
    /// ownership record); safe to delete because the lock keeps other writers out.
    private func removeStaleTemporaries(_ dir: FileDescriptor, dirPath: String) throws(StoreError) {
        let prefixes = [".\(HostsFile.fileName).", ".\(OwnershipRecord.fileName)."]
        for name in try listDirectory(dir, path: dirPath)
        where name.hasSuffix(".tmp") && prefixes.contains(where: { name.hasPrefix($0) }) {
            unlinkat(dir.raw, name, 0)
        }
    }

    private func renameNoReplace(_ dir: FileDescriptor, _ from: String, _ to: String, dirPath: String) throws(StoreError) {
        // RENAME_NOREPLACE: never clobber a file that appeared since we looked.
        try call("rename", "\(dirPath)/\(from) to \(to)") { ccr_rename_noreplace(dir.raw, from, dir.raw, to) }
        try call("sync", dirPath) { fsync(dir.raw) }
    }

    private func listDirectory(_ dir: FileDescriptor, path: String) throws(StoreError) -> [String] {
        // fdopendir takes ownership of the descriptor it is given: hand it a duplicate.
        let copy = dup(dir.raw)
        guard copy >= 0, let stream = fdopendir(copy) else {
            throw StoreError(operation: "list", path: path, reason: String(cString: strerror(errno)))
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

}
