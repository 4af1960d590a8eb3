import CLinux
import Glibc
import RegistryMirrorCore

/// The hosts directory on disk. Every path below the root is opened relative to a directory
/// descriptor with O_NOFOLLOW, so a symlinked upstream directory or hosts.toml is seen as such and
/// never followed; names are validated upstreams, so nothing escapes the root.
public final class FileHostsStore: HostsStore, Sendable {
    public let root: String

    public init(root: String) {
        var root = root
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        self.root = root
    }

    public func filePath(_ upstream: String) -> String { "\(root)/\(upstream)/\(HostsFile.fileName)" }

    // MARK: Reading

    public func observe(_ upstream: String) throws(SystemError) -> UpstreamDirState {
        guard let rootFD = try openRoot(create: false) else { return .absent }
        let dirPath = "\(root)/\(upstream)"
        var shadowedBy: String?
        if let shadow = HostsFile.shadowingDirectory(upstream), try kind(rootFD, shadow, path: "\(root)/\(shadow)") != nil {
            shadowedBy = "\(root)/\(shadow)"
        }
        switch try kind(rootFD, upstream, path: dirPath) {
        case nil:
            var state = UpstreamDirState.absent
            state.shadowedBy = shadowedBy
            return state
        case .some(let mode) where mode & S_IFMT != S_IFDIR:
            var state = UpstreamDirState(directory: .notDirectory)
            state.shadowedBy = shadowedBy
            return state
        default: break
        }
        let dirFD = try openDirectory(rootFD, upstream, path: dirPath)
        var state = UpstreamDirState(directory: .directory)
        state.shadowedBy = shadowedBy
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
        let backup = try kind(dirFD, HostsFile.backupName, path: "\(dirPath)/\(HostsFile.backupName)")
        state.backupExists = backup != nil
        state.backupIsRegularFile = backup.map { $0 & S_IFMT == S_IFREG } ?? false
        let recordPath = "\(dirPath)/\(OwnershipRecord.fileName)"
        if let mode = try kind(dirFD, OwnershipRecord.fileName, path: recordPath), mode & S_IFMT == S_IFREG {
            state.record = OwnershipRecord(parsing: try readSmallFile(dirFD, OwnershipRecord.fileName, path: recordPath))
        }
        return state
    }

    public func upstreamsWithOurFiles() throws(SystemError) -> [String] {
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

    public func perform(_ actions: [FileAction], upstream: String) throws(SystemError) {
        guard !actions.isEmpty else { return }
        let creating = actions.contains { if case .createDirectory = $0 { true } else { false } }
        guard let rootFD = try openRoot(create: creating) else {
            throw SystemError(operation: "open", path: root, reason: "directory does not exist")
        }
        let dirPath = "\(root)/\(upstream)"
        var dirFD: FileDescriptor?
        func dir() throws(SystemError) -> FileDescriptor {
            if let dirFD { return dirFD }
            let fd = try openDirectory(rootFD, upstream, path: dirPath)
            dirFD = fd
            return fd
        }
        for action in actions {
            switch action {
            case .createDirectory(let record):
                try createDirectory(rootFD, upstream, holding: record, path: dirPath)
            case .writeRecord(let record):
                try AtomicFile.replace(in: try dir(), OwnershipRecord.fileName, record.serialized, dirPath: dirPath)
            case .write(let content):
                try removeStaleTemporaries(try dir(), dirPath: dirPath)
                try AtomicFile.replace(in: try dir(), HostsFile.fileName, content, dirPath: dirPath)
            case .backUpForeign:
                let fd = try dir()
                // Still a foreign regular file? An administrator may have changed it since we looked.
                guard case .foreign = try fileState(fd, path: dirPath) else {
                    throw SystemError(operation: "back up", path: "\(dirPath)/\(HostsFile.fileName)", reason: "it changed since it was read; run again")
                }
                try renameNoReplace(fd, HostsFile.fileName, HostsFile.backupName, dirPath: dirPath)
            case .restoreBackup:
                let fd = try dir()
                guard try kind(fd, HostsFile.backupName, path: dirPath).map({ $0 & S_IFMT == S_IFREG }) == true else {
                    throw SystemError(operation: "restore", path: "\(dirPath)/\(HostsFile.backupName)", reason: "it is no longer a regular file")
                }
                try renameNoReplace(fd, HostsFile.backupName, HostsFile.fileName, dirPath: dirPath)
            case .removeManaged:
                let fd = try dir()
                try removeStaleTemporaries(fd, dirPath: dirPath)
                try unlinkIfStillManaged(fd, dirPath: dirPath)
            case .removeRecord:
                let fd = try dir()
                try removeStaleTemporaries(fd, dirPath: dirPath)
                try call("remove", "\(dirPath)/\(OwnershipRecord.fileName)") { unlinkat(fd.raw, OwnershipRecord.fileName, 0) }
                try call("sync", dirPath) { fsync(fd.raw) }
            case .removeDirectory:
                dirFD = nil
                if unlinkat(rootFD.raw, upstream, AT_REMOVEDIR) != 0, errno != ENOTEMPTY, errno != EEXIST, errno != ENOENT {
                    throw SystemError(operation: "remove directory", path: dirPath, errno: errno)
                }
                try call("sync", root) { fsync(rootFD.raw) }
            }
        }
    }

    /// The lock is a file of the agent's own in the hosts directory (`HostsDirectoryLock`), so it
    /// belongs to the directory and not to the spelling of its path, and only the agent's user can
    /// open it. When the root does not exist and `creatingRoot` is false there is nothing to lock, nor
    /// anything for `body` to find.
    public func withLock<T>(creatingRoot: Bool, wait: LockWait, _ body: () throws -> T) throws -> T {
        guard let rootFD = try openRoot(create: creatingRoot) else { return try body() }
        let lock = try HostsDirectoryLock.acquire(in: rootFD, root: root, wait: wait)
        defer { lock.release() }
        return try body()
    }

    public func removeLeftovers() {
        guard let rootFD = try? openRoot(create: false) else { return }
        for name in (try? listDirectory(rootFD, path: root)) ?? [] where name.hasPrefix(Self.newDirectoryPrefix) {
            removeNewDirectory(rootFD, name)
        }
    }

    // MARK: Primitives

    /// The root's descriptor; nil when it does not exist and `create` is false. Created with parents
    /// (0755) when asked: a fresh node may not have /etc/containerd/certs.d yet. The root itself may be
    /// a symlink: that is the administrator's choice, unlike anything below it.
    private func openRoot(create: Bool) throws(SystemError) -> FileDescriptor? {
        if create { try makeDirectories(root) }
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT && !create { return nil }
            throw SystemError(operation: "open", path: root, errno: errno)
        }
        return FileDescriptor(fd)
    }

    private func makeDirectories(_ path: String) throws(SystemError) {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/\(component)"
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw SystemError(operation: "create directory", path: current, errno: errno)
            }
        }
    }

    private func openDirectory(_ parent: FileDescriptor, _ name: String, path: String) throws(SystemError) -> FileDescriptor {
        let fd = openat(parent.raw, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let reason = errno == ELOOP || errno == ENOTDIR ? "is a symlink or not a directory" : String(cString: strerror(errno))
            throw SystemError(operation: "open directory", path: path, reason: reason)
        }
        return FileDescriptor(fd)
    }

    /// The file type bits of `name` without following a symlink; nil when it does not exist.
    private func kind(_ dir: FileDescriptor, _ name: String, path: String) throws(SystemError) -> mode_t? {
        var info = stat()
        if fstatat(dir.raw, name, &info, AT_SYMLINK_NOFOLLOW) != 0 {
            if errno == ENOENT { return nil }
            throw SystemError(operation: "inspect", path: path, errno: errno)
        }
        return info.st_mode
    }

    private func readSmallFile(_ dir: FileDescriptor, _ name: String, path: String) throws(SystemError) -> String {
        let raw = openat(dir.raw, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard raw >= 0 else { throw SystemError(operation: "read", path: path, errno: errno) }
        return try readAll(FileDescriptor(raw), path: path)
    }

    /// Up to 1 MiB of an open file, as text.
    private func readAll(_ fd: FileDescriptor, path: String) throws(SystemError) -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while bytes.count < 1 << 20 {
            let n: Int
            do {
                n = try retryingEINTR("read") { chunk.withUnsafeMutableBytes { read(fd.raw, $0.baseAddress, $0.count) } }
            } catch {
                throw error.named("read", path)
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// hosts.toml as it is now, for the checks made just before a rename or unlink.
    private func fileState(_ dir: FileDescriptor, path dirPath: String) throws(SystemError) -> UpstreamDirState.File {
        let path = "\(dirPath)/\(HostsFile.fileName)"
        guard let mode = try kind(dir, HostsFile.fileName, path: path) else { return .absent }
        guard mode & S_IFMT == S_IFREG else { return .notRegular }
        let content = try readSmallFile(dir, HostsFile.fileName, path: path)
        return HostsFile.isManaged(content) ? .managed(content) : .foreign
    }

    /// Unlinks hosts.toml only if the file there now is still ours: read it through a descriptor,
    /// check the marker, and check the name still points at that same inode just before unlinking.
    private func unlinkIfStillManaged(_ dir: FileDescriptor, dirPath: String) throws(SystemError) {
        let path = "\(dirPath)/\(HostsFile.fileName)"
        let raw = openat(dir.raw, HostsFile.fileName, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        if raw < 0 && errno == ENOENT { return }
        guard raw >= 0 else { throw SystemError(operation: "remove", path: path, errno: errno) }
        let fd = FileDescriptor(raw)
        var opened = stat()
        var named = stat()
        guard fstat(fd.raw, &opened) == 0, opened.st_mode & S_IFMT == S_IFREG,
            HostsFile.isManaged(try readAll(fd, path: path)),
            fstatat(dir.raw, HostsFile.fileName, &named, AT_SYMLINK_NOFOLLOW) == 0,
            named.st_ino == opened.st_ino, named.st_dev == opened.st_dev
        else {
            throw SystemError(operation: "remove", path: path, reason: "it is no longer a file of ours; left alone")
        }
        try call("remove", path) { unlinkat(dir.raw, HostsFile.fileName, 0) }
        try call("sync", dirPath) { fsync(dir.raw) }
    }

    /// Creates `<root>/<name>` holding the ownership record: the directory is built under a temporary
    /// name and renamed into place (never over an existing one), so a crash or a full disk at any
    /// moment leaves either no directory or one that says it is ours.
    private func createDirectory(_ rootFD: FileDescriptor, _ name: String, holding record: OwnershipRecord, path: String) throws(SystemError) {
        let temporary = "\(Self.newDirectoryPrefix)\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        try call("create directory", path) { mkdirat(rootFD.raw, temporary, 0o755) }
        do throws(SystemError) {
            let fd = try openDirectory(rootFD, temporary, path: "\(root)/\(temporary)")
            // mkdirat applies the umask; directories are 0755 whatever it is.
            try call("set mode of", path) { fchmod(fd.raw, 0o755) }
            try AtomicFile.replace(in: fd, OwnershipRecord.fileName, record.serialized, dirPath: "\(root)/\(temporary)")
            try call("create directory", path) { ccr_rename_noreplace(rootFD.raw, temporary, rootFD.raw, name) }
        } catch {
            removeNewDirectory(rootFD, temporary)
            // Name the directory being made, not its temporary name.
            var named = error
            named.operation = "create directory"
            named.path = path
            throw named
        }
        try call("sync", root) { fsync(rootFD.raw) }
    }

    static let newDirectoryPrefix = ".configure-containerd-registries.new."

    /// Removes a temporary directory of ours with what it holds (the record or its temp file).
    private func removeNewDirectory(_ rootFD: FileDescriptor, _ name: String) {
        let raw = openat(rootFD.raw, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if raw >= 0 {
            let fd = FileDescriptor(raw)
            // Everything in it is ours (the record, or its temp file): the name says nobody else's.
            for entry in (try? listDirectory(fd, path: name)) ?? [] {
                unlinkat(fd.raw, entry, 0)
            }
        }
        unlinkat(rootFD.raw, name, AT_REMOVEDIR)
    }

    /// Leftovers of a run killed between creating a temp file and renaming it (hosts.toml or the
    /// ownership record); safe to delete because the lock keeps other writers out.
    private func removeStaleTemporaries(_ dir: FileDescriptor, dirPath: String) throws(SystemError) {
        let prefixes = [".\(HostsFile.fileName).", ".\(OwnershipRecord.fileName)."]
        for name in try listDirectory(dir, path: dirPath)
        where name.hasSuffix(".tmp") && prefixes.contains(where: { name.hasPrefix($0) }) {
            unlinkat(dir.raw, name, 0)
        }
    }

    private func renameNoReplace(_ dir: FileDescriptor, _ from: String, _ to: String, dirPath: String) throws(SystemError) {
        // RENAME_NOREPLACE: never clobber a file that appeared since we looked.
        try call("rename", "\(dirPath)/\(from) to \(to)") { ccr_rename_noreplace(dir.raw, from, dir.raw, to) }
        try call("sync", dirPath) { fsync(dir.raw) }
    }

    private func listDirectory(_ dir: FileDescriptor, path: String) throws(SystemError) -> [String] {
        // fdopendir takes ownership of the descriptor it is given: hand it a duplicate.
        let copy = dup(dir.raw)
        guard copy >= 0, let stream = fdopendir(copy) else {
            throw SystemError(operation: "list", path: path, errno: errno)
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
