import CSystemd
import Glibc
import RegistryMirrorCore
import Synchronization

/// containerd's log as journald keeps it: the entries of one unit (`_SYSTEMD_UNIT=`) that record a
/// request going past a host (`ContainerdLog`), read with libsystemd's sd_journal API
/// (docs/design.md §6.1). Nothing here writes to the journal or needs a privilege beyond reading it.
public enum ContainerdJournal {
    /// Why the journal could not be read.
    public struct Unreadable: Error, Sendable {
        public var reason: String
    }

    /// At most this many entries of the unit are looked at in one `recent` call: a chatty containerd
    /// cannot make `check` slow.
    static let scanLimit = 200_000

    /// The events `unit` logged in the last `window` seconds, oldest first.
    public static func recent(unit: String, window: Double) -> Result<[ContainerdLog.Event], Unreadable> {
        let journal: Journal
        switch Journal.open(unit: unit) {
        case .success(let opened): journal = opened
        case .failure(let error): return .failure(error)
        }
        defer { journal.close() }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let since = max(0, (Double(now.tv_sec) - window) * 1_000_000)
        sd_journal_seek_realtime_usec(journal.handle, UInt64(since))
        var events: [ContainerdLog.Event] = []
        var scanned = 0
        while scanned < scanLimit, sd_journal_next(journal.handle) > 0 {
            scanned += 1
            if let event = journal.currentEvent() { events.append(event) }
        }
        return .success(events)
    }

    /// Follows `unit`'s new entries from now on, on a thread of its own (sd_journal_wait blocks), and
    /// yields each event. A failure, with the reason, when the journal cannot be opened.
    public static func follow(unit: String) -> Result<AsyncStream<ContainerdLog.Event>, Unreadable> {
        let journal: Journal
        switch Journal.open(unit: unit) {
        case .success(let opened): journal = opened
        case .failure(let error): return .failure(error)
        }
        // From the end: what containerd logged before the watcher started is not news.
        sd_journal_seek_tail(journal.handle)
        sd_journal_previous(journal.handle)
        let (stream, sink) = AsyncStream.makeStream(of: ContainerdLog.Event.self, bufferingPolicy: .bufferingNewest(1024))
        let follower = Follower(journal: journal, sink: sink)
        follower.start()
        return .success(stream)
    }

    /// An open sd_journal handle. Unchecked: the handle is used by one thread at a time (the caller
    /// of `recent`, or the follower's thread after `follow` hands it over).
    final class Journal: @unchecked Sendable {
        let handle: OpaquePointer

        private init(handle: OpaquePointer) { self.handle = handle }

        static func open(unit: String) -> Result<Journal, Unreadable> {
            var handle: OpaquePointer?
            let rc = sd_journal_open(&handle, Int32(SD_JOURNAL_LOCAL_ONLY | SD_JOURNAL_SYSTEM))
            guard rc >= 0, let handle else {
                return .failure(Unreadable(reason: "cannot open the journal: \(String(cString: strerror(-rc)))"))
            }
            let match = "_SYSTEMD_UNIT=\(unit)"
            let added = match.withCString { sd_journal_add_match(handle, $0, 0) }
            guard added >= 0 else {
                sd_journal_close(handle)
                return .failure(Unreadable(reason: "cannot match \(match): \(String(cString: strerror(-added)))"))
            }
            return .success(Journal(handle: handle))
        }

        func close() { sd_journal_close(handle) }

        static let marker = Array(ContainerdLog.marker.utf8)
        static let bootMarker = Array(ContainerdLog.bootMarker.utf8)


        /// The event the current entry records, if any. The MESSAGE bytes are searched for the
        /// markers before any string is made: most of containerd's lines are something else.
        func currentEvent() -> ContainerdLog.Event? {
            var data: UnsafeRawPointer?
            var length = 0
            guard sd_journal_get_data(handle, "MESSAGE", &data, &length) >= 0, let data, length > 8 else { return nil }
            // "MESSAGE=" prefix, then the text.
            let bytes = UnsafeRawBufferPointer(start: data + 8, count: length - 8)
            guard bytes.firstRange(of: Self.marker) != nil || bytes.firstRange(of: Self.bootMarker) != nil else { return nil }
            let text = String(decoding: bytes, as: UTF8.self)
            return ContainerdLog.event(in: text)
        }
    }

    /// The thread that waits on the journal for the life of the process.
    private final class Follower: Sendable {
        let journal: Journal
        let sink: AsyncStream<ContainerdLog.Event>.Continuation
        /// Set when nobody reads the stream any more: the thread then closes the journal and ends.
        let stopped = Atomic<Bool>(false)

        init(journal: Journal, sink: AsyncStream<ContainerdLog.Event>.Continuation) {
            self.journal = journal
            self.sink = sink
        }

        func start() {
            sink.onTermination = { [self] _ in stopped.store(true, ordering: .relaxed) }
            if startDetachedThread(named: "ccr-journal", { [self] in run() }) != 0 {
                sink.finish()
                journal.close()
            }
        }

        private func run() {
            var failures = 0
            while !stopped.load(ordering: .relaxed) {
                while sd_journal_next(journal.handle) > 0 {
                    if let event = journal.currentEvent() { sink.yield(event) }
                }
                // Wakes on new entries of any unit (journald tells of changes at most 4 times a
                // second), rotation or a change of files; after a minute at most, so a stream nobody
                // reads any more is noticed without waking an idle node every second.
                let rc = sd_journal_wait(journal.handle, 60_000_000)
                if rc < 0 {
                    failures += 1
                    if failures > 10 { break }
                    sleep(1)
                } else {
                    failures = 0
                }
            }
            sink.finish()
            journal.close()
        }
    }
}
