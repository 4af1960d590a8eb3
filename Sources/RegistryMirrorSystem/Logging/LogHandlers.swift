import CSystemd
import Glibc
import Logging
import RegistryMirrorCore
import Synchronization

/// Where log lines go (`--log-format`).
public enum LogFormat: String, CaseIterable, Sendable {
    case auto, text, json, journal

    /// `auto`: the journal when stderr is connected to journald (`$JOURNAL_STREAM` names stderr's
    /// device and inode), else text.
    public func resolved(environment: [String: String]) -> LogFormat {
        guard self == .auto else { return self }
        return Self.stderrIsJournal(environment["JOURNAL_STREAM"]) ? .journal : .text
    }

    static func stderrIsJournal(_ journalStream: String?) -> Bool {
        guard let value = journalStream else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    public func makeHandler(label: String, level: Logger.Level) -> any LogHandler {
        switch self {
        case .auto, .text: StreamLineHandler(style: .text, level: level)
        case .json: StreamLineHandler(style: .json, level: level)
        case .journal: JournalLogHandler(level: level)
        }
    }
}

/// One line per event on stderr: `HH:MM:SS.mmm LEVEL message key=value ...` or one JSON object.
public struct StreamLineHandler: LogHandler {
    public enum Style: Sendable { case text, json }
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    let style: Style
    private static let output = Mutex(())

    public init(style: Style, level: Logger.Level) {
        self.style = style
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let line =
            switch style {
            case .text: textLine(event.level, "\(event.message)", merged)
            case .json: jsonLine(event.level, "\(event.message)", merged)
            }
        Self.output.withLock { _ in
            var bytes = Array(line.utf8)
            bytes.append(0x0A)
            bytes.withUnsafeBytes { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
        }
    }

    func textLine(_ level: Logger.Level, _ message: String, _ metadata: Logger.Metadata) -> String {
        // `upstream host: message`, then the other fields; result and reason are already in the message.
        let subject = [LogKey.upstream, LogKey.host].compactMap { metadata[$0].map { "\($0)" } }
        var line = "\(Self.timestamp(iso: false)) \(level.rawValue.uppercased()) "
        line += subject.isEmpty ? message : "\(subject.joined(separator: " ")): \(message)"
        let shown = Set([LogKey.upstream, LogKey.host, LogKey.result, LogKey.reason])
        for key in metadata.keys.sorted() where !shown.contains(key) {
            let value = "\(metadata[key]!)"
            let needsQuotes = value.isEmpty || value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" })
            line += " \(key)=" + (needsQuotes ? HostsFile.quote(value) : value)
        }
        return line
    }

    func jsonLine(_ level: Logger.Level, _ message: String, _ metadata: Logger.Metadata) -> String {
        var fields = [
            ("time", Self.timestamp(iso: true)), ("level", level.rawValue), ("message", message),
        ]
        for key in metadata.keys.sorted() { fields.append((key, "\(metadata[key]!)")) }
        return "{" + fields.map { "\(JSON.string($0.0)):\(JSON.string($0.1))" }.joined(separator: ",") + "}"
    }

    static func timestamp(iso: Bool) -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        if iso { gmtime_r(&seconds, &parts) } else { localtime_r(&seconds, &parts) }
        func pad(_ n: Int32, _ width: Int = 2) -> String {
            let s = String(n)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let millis = pad(Int32(now.tv_nsec / 1_000_000), 3)
        let time = "\(pad(parts.tm_hour)):\(pad(parts.tm_min)):\(pad(parts.tm_sec)).\(millis)"
        guard iso else { return time }
        return "\(parts.tm_year + 1900)-\(pad(parts.tm_mon + 1))-\(pad(parts.tm_mday))T\(time)Z"
    }
}

/// Native journal entries through `sd_journal_sendv`: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and every
/// metadata key upper-cased as its own field (REGISTRY_UPSTREAM, REGISTRY_HOST, PROBE_RESULT, ...).
public struct JournalLogHandler: LogHandler {
    public static let identifier = "configure-containerd-registries"
    static let socketPath = "/run/systemd/journal/socket"
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]

    public init(level: Logger.Level) { self.logLevel = level }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        var fields = [
            "MESSAGE=\(event.message)", "PRIORITY=\(Self.priority(event.level))", "SYSLOG_IDENTIFIER=\(Self.identifier)",
        ]
        for key in merged.keys.sorted() {
            fields.append("\(Self.fieldName(key))=\(merged[key]!)")
        }
        // sd_journal_sendv succeeds silently when journald's socket is missing: check it, so that
        // `--log-format journal` without a journal still shows every line (as text on stderr).
        if access(Self.socketPath, F_OK) != 0 || Self.send(fields) < 0 {
            fallback.log(event: event)
        }
    }

    private var fallback: StreamLineHandler {
        var handler = StreamLineHandler(style: .text, level: logLevel)
        handler.metadata = metadata
        return handler
    }

    /// A journal field name: upper case letters, digits and underscores, not starting with an
    /// underscore or a digit (those are reserved or invalid), at most 64 characters.
    static func fieldName(_ key: String) -> String {
        var name = String(key.uppercased().map { ($0.isASCII && ($0.isLetter || $0.isNumber)) ? $0 : "_" })
        while name.first == "_" || name.first?.isNumber == true { name.removeFirst() }
        if name.isEmpty { name = "FIELD" }
        return String(name.prefix(64))
    }

    /// Sends one entry with `sd_journal_sendv`; every field is `NAME=value` (values may hold newlines
    /// or any bytes). Returns its result: 0, or a negative errno.
    @discardableResult
    static func send(_ fields: [String]) -> Int32 {
        let bytes = fields.map { Array($0.utf8) }
        let total = bytes.reduce(0) { $0 + $1.count }
        // One contiguous buffer for all fields; the iovecs point into it.
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(total, 1), alignment: 1)
        defer { storage.deallocate() }
        var vectors: [iovec] = []
        vectors.reserveCapacity(bytes.count)
        var offset = 0
        for field in bytes {
            let start = storage.baseAddress! + offset
            field.withUnsafeBytes { start.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            vectors.append(iovec(iov_base: start, iov_len: field.count))
            offset += field.count
        }
        return vectors.withUnsafeBufferPointer { sd_journal_sendv($0.baseAddress, Int32($0.count)) }
    }

    /// syslog priorities: notice is 5, our "something changed" level.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }
}
