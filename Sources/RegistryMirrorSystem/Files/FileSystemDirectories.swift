import Glibc
import RegistryMirrorCore

/// `DirectoryLookup` on the file system: a directory is its device and inode, as the kernel opens
/// the path (symlinks followed). A relative path is taken from `/`, containerd's working directory
/// under systemd: `config_path = " /dir"` names `/ /dir`, not `/dir`. A path that does not exist is
/// compared as cleaned text (hosts_dir may not exist yet on a fresh node).
public struct FileSystemDirectories: DirectoryLookup {
    public init() {}

    public func sameDirectory(_ path: String, _ other: String) -> Bool {
        let a = Self.fromRoot(path)
        let b = Self.fromRoot(other)
        var sa = stat()
        var sb = stat()
        if stat(a, &sa) == 0, stat(b, &sb) == 0 {
            return sa.st_mode & S_IFMT == S_IFDIR && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
        }
        return GoPath.clean(a) == GoPath.clean(b)
    }

    public func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(Self.fromRoot(path), &info) == 0
    }

    static func fromRoot(_ path: String) -> String { path.hasPrefix("/") ? path : "/" + path }
}
