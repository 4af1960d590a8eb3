import Glibc
import RegistryMirrorCore

/// Changes under the hosts directory, as inotify reports them (docs/design.md §6): watch restores a
/// file of its own that was changed or deleted behind its back within moments, instead of at its
/// next decision. Our own writes are reported too; checking them finds nothing to do.
///
/// One inotify instance on a thread of its own (blocked in poll while nothing happens): a watch on
/// the hosts directory (entries created, deleted, moved; the directory itself deleted or moved) and
/// one on each directory in it (files written, moved, deleted, their mode changed). Directories that
/// appear get a watch. While the hosts directory does not exist (a fresh node, or deleted), it is
/// looked for every second. Events are gathered for 50 ms and yielded as the set of upstream
/// directory names they touched; an empty set means anything may have changed (the hosts directory
/// itself came or went).
public enum HostsDirectoryWatch {
    public static func start(root: String) -> Result<AsyncStream<Set<String>>, SystemError> {
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { return .failure(SystemError(operation: "watch the hosts directory", reason: "inotify: \(String(cString: strerror(errno)))")) }
        let (stream, sink) = AsyncStream.makeStream(of: Set<String>.self, bufferingPolicy: .bufferingNewest(64))
        let watcher = Watcher(fd: fd, root: root, sink: sink)
        let rc = startDetachedThread(named: "ccr-hostsdir") { watcher.run() }
        guard rc == 0 else {
            close(fd)
            return .failure(SystemError(operation: "watch the hosts directory", reason: "cannot start its thread: \(String(cString: strerror(rc)))"))
        }
        return .success(stream)
    }

    private static let rootEvents = UInt32(IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
    private static let dirEvents = UInt32(
        IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW)

    /// The thread's state: used by that thread only.
    private final class Watcher: @unchecked Sendable {
        let fd: Int32
        let root: String
        let sink: AsyncStream<Set<String>>.Continuation
        var rootWatch: Int32 = -1
        /// Watch descriptor to the upstream directory name it watches.
        var dirs: [Int32: String] = [:]

        init(fd: Int32, root: String, sink: AsyncStream<Set<String>>.Continuation) {
            self.fd = fd
            self.root = root
            self.sink = sink
        }

        func run() {
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            while true {
                if rootWatch < 0 {
                    if watchRoot() {
                        sink.yield([])
                    } else {
                        wait(milliseconds: 1000)
                        continue
                    }
                }
                guard wait(milliseconds: -1) else { continue }
                var touched = Set<String>()
                var everything = false
                // Gather what follows within 50 ms: one write is several events.
                repeat {
                    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    guard n > 0 else { break }
                    everything = handle(buffer, count: n, into: &touched) || everything
                } while wait(milliseconds: 50)
                sink.yield(everything ? [] : touched)
            }
        }

        /// True when the descriptor became readable within `milliseconds` (-1: no limit).
        @discardableResult
        func wait(milliseconds: Int32) -> Bool {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            return poll(&pfd, 1, milliseconds) > 0
        }

        func watchRoot() -> Bool {
            rootWatch = inotify_add_watch(fd, root, rootEvents)
            guard rootWatch >= 0 else { return false }
            for name in subdirectories() { watchDirectory(name) }
            return true
        }

        func watchDirectory(_ name: String) {
            let wd = inotify_add_watch(fd, "\(root)/\(name)", dirEvents)
            if wd >= 0 { dirs[wd] = name }
        }

        func subdirectories() -> [String] {
            guard let dir = opendir(root) else { return [] }
            defer { closedir(dir) }
            var names: [String] = []
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
                }
                if name != "." && name != ".." && Int32(entry.pointee.d_type) == Int32(DT_DIR) { names.append(name) }
            }
            return names
        }

        /// Reads the events in `buffer`; returns true when the hosts directory itself went away.
        func handle(_ buffer: [UInt8], count: Int, into touched: inout Set<String>) -> Bool {
            var offset = 0
            var rootGone = false
            let header = MemoryLayout<inotify_event>.size
            while offset + header <= count {
                let (wd, mask, length) = buffer.withUnsafeBytes { raw -> (Int32, UInt32, Int) in
                    let event = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    return (event.wd, event.mask, Int(event.len))
                }
                let nameBytes = buffer[(offset + header)..<min(count, offset + header + length)].prefix { $0 != 0 }
                let name = String(decoding: nameBytes, as: UTF8.self)
                offset += header + length
                if wd == rootWatch {
                    if mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED) != 0 {
                        rootGone = true
                        continue
                    }
                    guard !name.isEmpty else { continue }
                    if mask & UInt32(IN_ISDIR) != 0 && mask & UInt32(IN_CREATE | IN_MOVED_TO) != 0 { watchDirectory(name) }
                    touched.insert(name)
                } else if let dir = dirs[wd] {
                    if mask & UInt32(IN_IGNORED) != 0 { dirs[wd] = nil }
                    touched.insert(dir)
                }
            }
            if rootGone {
                if rootWatch >= 0 { inotify_rm_watch(fd, rootWatch) }
                for wd in dirs.keys { inotify_rm_watch(fd, wd) }
                rootWatch = -1
                dirs = [:]
            }
            return rootGone
        }
    }
}
