import CSystemd
import Glibc
import RegistryMirrorCore
import Synchronization

/// containerd's log as journald keeps it: the entries of one unit (`_SYSTEMD_UNIT=`) that record a
/// request going past a host (`ContainerdLog`), read with libsystemd's sd_journal API
/// (docs/design.md §6.1). Nothing here writes to the journal or needs a privilege beyond reading it.
public enum ContainerdJournal {
    /// At most this many entries of the unit are looked at in one `recent` call: a chatty containerd
    /// cannot make `check` slow.
    static let scanLimit = 200_000

    /// The events `unit` logged in the last `window` seconds, oldest first.
    public static func recent(unit: String, window: Double) -> Result<[ContainerdLog.Event], SystemError> {
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
    public static func follow(unit: String) -> Result<AsyncStream<ContainerdLog.Event>, SystemError> {
        follow(match: "_SYSTEMD_UNIT=\(unit)")
    }

    /// `follow(unit:)` for any journal match (`FIELD=value`); the test tool follows its own entries.
    public static func follow(match: String) -> Result<AsyncStream<ContainerdLog.Event>, SystemError> {
        let reader: Reader
        switch Reader.open(match: match) {
        case .success(let opened): reader = opened
        case .failure(let error): return .failure(error)
        }
        let (stream, sink) = AsyncStream.makeStream(of: ContainerdLog.Event.self, bufferingPolicy: .bufferingNewest(1024))
        let follower = Follower(reader: reader, sink: sink)
        follower.start()
        return .success(stream)
    }

    /// Reads the entries that follow a position of its own: the cursor of the last entry it read, or,
    /// before any, the time it was opened (what came before is not news).
    ///
    /// Every pass seeks back to that position rather than going on from where sd_journal stopped.
    /// journald counts an entry in the file (`n_entries`) before it links the entry to its fields, and
    /// sd_journal, having once found no match at the end of a file, looks at that file again only when
    /// its count changes. A pass that runs between the two steps would then hide the entry until the
    /// next entry of any unit reaches that file, which on a quiet node can be minutes. A seek resets
    /// that per-file memory; it costs a bisection per file and pass.
    public final class Reader: @unchecked Sendable {
        let journal: Journal
        private var cursor: String?
        private let openedAt: UInt64

        private init(journal: Journal, openedAt: UInt64) {
            self.journal = journal
            self.openedAt = openedAt
        }

        /// Opens the journal, matched on `match`; the first pass reads what came after this call.
        public static func open(match: String) -> Result<Reader, SystemError> {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            let openedAt = UInt64(max(0, now.tv_sec)) * 1_000_000 + UInt64(max(0, now.tv_nsec)) / 1000
            return Journal.open(match: match).map { Reader(journal: $0, openedAt: openedAt) }
        }

        /// Hands each event recorded after the last pass (or after `open`) to `body`.
        public func pass(_ body: (ContainerdLog.Event) -> Void) {
            let handle = journal.handle
            // The seek lands on the entry of the cursor, already read: it is stepped over. When that
            // entry is gone (its file rotated away and vacuumed), the first entry after it is new.
            var readAlready = cursor
            if let cursor {
                sd_journal_seek_cursor(handle, cursor)
            } else {
                sd_journal_seek_realtime_usec(handle, openedAt)
            }
            while sd_journal_next(handle) > 0 {
                if let last = readAlready {
                    readAlready = nil
                    if sd_journal_test_cursor(handle, last) > 0 { continue }
                }
                var text: UnsafeMutablePointer<CChar>?
                if sd_journal_get_cursor(handle, &text) >= 0, let text {
                    cursor = String(cString: text)
                    free(text)
                }
                if let event = journal.currentEvent() { body(event) }
            }
        }

        /// Waits for the journal to change, up to `microseconds`; negative on failure.
        func wait(microseconds: UInt64) -> Int32 { sd_journal_wait(journal.handle, microseconds) }

        public func close() { journal.close() }
    }

    /// An open sd_journal handle. Unchecked: the handle is used by one thread at a time (the caller
    /// of `recent`, or the follower's thread after `follow` hands it over).
    final class Journal: @unchecked Sendable {
        let handle: OpaquePointer

        private init(handle: OpaquePointer) { self.handle = handle }

        static func open(unit: String) -> Result<Journal, SystemError> { open(match: "_SYSTEMD_UNIT=\(unit)") }

        static func open(match: String) -> Result<Journal, SystemError> {
            var handle: OpaquePointer?
            let rc = sd_journal_open(&handle, Int32(SD_JOURNAL_LOCAL_ONLY | SD_JOURNAL_SYSTEM))
            guard rc >= 0, let handle else {
                return .failure(SystemError(operation: "read the journal", reason: "cannot open the journal: \(String(cString: strerror(-rc)))"))
            }
            let added = match.withCString { sd_journal_add_match(handle, $0, 0) }
            guard added >= 0 else {
                sd_journal_close(handle)
                return .failure(SystemError(operation: "read the journal", reason: "cannot match \(match): \(String(cString: strerror(-added)))"))
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
        let reader: Reader
        let sink: AsyncStream<ContainerdLog.Event>.Continuation
        /// Set when nobody reads the stream any more: the thread then closes the journal and ends.
        let stopped = Atomic<Bool>(false)

        init(reader: Reader, sink: AsyncStream<ContainerdLog.Event>.Continuation) {
            self.reader = reader
            self.sink = sink
        }

        func start() {
            sink.onTermination = { [self] _ in stopped.store(true, ordering: .relaxed) }
            if startDetachedThread(named: "ccr-journal", { [self] in run() }) != 0 {
                sink.finish()
                reader.close()
            }
        }

        private func run() {
            var failures = 0
            while !stopped.load(ordering: .relaxed) {
                reader.pass { sink.yield($0) }
                // Wakes on new entries of any unit (journald tells of changes at most 4 times a
                // second), rotation or a change of files; after a minute at most, so a stream nobody
                // reads any more is noticed without waking an idle node every second.
                let rc = reader.wait(microseconds: 60_000_000)
                if rc < 0 {
                    failures += 1
                    if failures > 10 { break }
                    sleep(1)
                } else {
                    failures = 0
                }
            }
            sink.finish()
            reader.close()
        }
    }
}
