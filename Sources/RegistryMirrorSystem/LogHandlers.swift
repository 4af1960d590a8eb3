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
        for (key, value) in merged {
            let name = key.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" }
            fields.append("\(String(name))=\(value)")
        }
        Self.send(fields)
    }

    static func send(_ fields: [String]) {
        var buffers = fields.map { Array($0.utf8) }
        var vectors: [iovec] = []
        vectors.reserveCapacity(buffers.count)
        func build(_ index: Int) {
            if index == buffers.count {
                _ = sd_journal_sendv(vectors, Int32(vectors.count))
                return
            }
            buffers[index].withUnsafeMutableBytes { raw in
                vectors.append(iovec(iov_base: raw.baseAddress, iov_len: raw.count))
                build(index + 1)
            }
        }
        build(0)
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
