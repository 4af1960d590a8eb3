import Glibc
import RegistryMirrorCore

/// The lock that keeps two instances of the agent from interleaving writes under one hosts
/// directory (docs/design.md §5.2): `flock` on `<hosts_dir>/.configure-containerd-registries.lock`.
///
/// - Only the agent's own user can take it: the file is created 0600 and must be a regular file that
///   user owns, with one link, opened without following a symlink. (A `flock` on the hosts
///   directory itself, as before, could be taken by any user who can open the directory, and
///   stalled every run.)
/// - It belongs to the directory, not to the spelling of its path: every spelling and every mount
///   of the directory (a container's hostPath too) opens the same file.
/// - It exists only while held: the holder unlinks it before unlocking, so a run leaves nothing
///   behind. A waiter that gets the lock of a file unlinked meanwhile sees that the name now names
///   another file (or none) and starts again.
/// - Waiting polls with `LOCK_NB` (2 ms doubling to 64 ms) and asks `LockWait` between attempts, so
///   the wait ends at the deadline or on SIGTERM even while the holder is stopped.
struct HostsDirectoryLock {
    static let fileName = ".configure-containerd-registries.lock"

    private let dir: FileDescriptor
    private let file: FileDescriptor

    static func acquire(in dir: FileDescriptor, root: String, wait: LockWait) throws(SystemError) -> HostsDirectoryLock {
        let path = "\(root)/\(fileName)"
        var pause: Duration = .milliseconds(2)
        while true {
            // Nil: the file was unlinked between our open and our look at it (its holder let go).
            guard let file = try open(in: dir, path: path) else { continue }
            if flock(file.raw, LOCK_EX | LOCK_NB) != 0 {
                guard errno == EWOULDBLOCK || errno == EINTR else { throw SystemError(operation: "lock", path: path, errno: errno) }
                if let reason = wait.giveUp() {
                    throw SystemError(
                        operation: "lock", path: path,
                        reason: "\(reason) while another instance of the agent held the lock")
                }
                var ts = timespec(tv_sec: 0, tv_nsec: Int(pause.components.attoseconds / 1_000_000_000))
                nanosleep(&ts, nil)
                pause = min(pause * 2, .milliseconds(64))
                continue
            }
            // Locked. Still the file the name stands for? Its holder may have unlinked it just before
            // letting go; then another may be creating a new one, and this lock protects nothing.
            var opened = stat()
            var named = stat()
            if fstat(file.raw, &opened) == 0, fstatat(dir.raw, fileName, &named, AT_SYMLINK_NOFOLLOW) == 0,
                opened.st_dev == named.st_dev, opened.st_ino == named.st_ino
            {
                return HostsDirectoryLock(dir: dir, file: file)
            }
            flock(file.raw, LOCK_UN)
        }
    }

    /// The lock file, created if missing, checked to be one only this user can open; nil when it was
    /// unlinked meanwhile (no link left: its holder is letting go), so the caller opens it again.
    private static func open(in dir: FileDescriptor, path: String) throws(SystemError) -> FileDescriptor? {
        let raw: Int32
        do {
            raw = try retryingEINTR("open") {
                openat(dir.raw, fileName, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o600)
            }
        } catch {
            if error.errno == ELOOP {
                throw SystemError(operation: "lock", path: path, reason: "it is a symlink; remove it")
            }
            throw error.named("lock", path)
        }
        let fd = FileDescriptor(raw)
        var info = stat()
        guard fstat(fd.raw, &info) == 0 else { throw SystemError(operation: "lock", path: path, errno: errno) }
        if info.st_mode & S_IFMT == S_IFREG && info.st_nlink == 0 { return nil }
        guard info.st_mode & S_IFMT == S_IFREG, info.st_nlink == 1 else {
            throw SystemError(operation: "lock", path: path, reason: "it is not a plain file of the agent's; remove it")
        }
        guard info.st_uid == geteuid() else {
            throw SystemError(
                operation: "lock", path: path,
                reason: "it belongs to uid \(info.st_uid), not to this agent (uid \(geteuid())); remove it, and make the hosts directory writable by root only")
        }
        // Created 0600; a mode loosened since (by hand) would let others open it and take the lock.
        if info.st_mode & 0o077 != 0 && fchmod(fd.raw, 0o600) != 0 {
            throw SystemError(operation: "lock", path: path, errno: errno)
        }
        return fd
    }

    /// Unlinks the file, then unlocks: a waiter that held the old file open starts again.
    func release() {
        unlinkat(dir.raw, Self.fileName, 0)
        flock(file.raw, LOCK_UN)
    }
}
