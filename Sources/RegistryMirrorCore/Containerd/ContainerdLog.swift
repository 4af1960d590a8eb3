/// What containerd's own log says about the mirrors (docs/design.md §6.1): a pull that gave up on a
/// host and went on to the next one. containerd logs it at info level, one line per host it left:
///
///     time="..." level=info msg="trying next host" error="failed to do request: Head \"http://...\":
///         dial tcp 10.96.0.20:5000: i/o timeout" host="10.96.0.20:5000"
///     time="..." level=info msg="trying next host - response was http.StatusNotFound" host="10.96.0.20:5000"   (1.6, 1.7)
///     time="..." level=info msg="trying next host after status: 404 Not Found" host="10.96.0.20:5000"          (2.x)
///         method=HEAD url="http://10.96.0.20:5000/v2/library/busybox/manifests/1?ns=docker.io"          (2.3 adds these)
///
/// (logrus text, containerd's default; `format = "json"` gives the same fields as a JSON object).
/// `host` is the authority of the host's URL in hosts.toml, as written there. The request's URL, in
/// `url` (2.3) or quoted in `error`, carries `ns=<upstream>` percent-encoded (`ns=127.0.0.1%3A5001`).
public enum ContainerdLog {
    /// One request that went past a host.
    public struct Bypass: Sendable, Equatable {
        /// host[:port] as containerd names it.
        public var authority: String
        /// containerd's error, or what the host answered.
        public var reason: String
        /// The upstream the request was for (`ns=` of its URL), when the line names the URL.
        public var namespace: String?

        /// `namespace` nil: taken from the URL `reason` quotes, if any.
        public init(authority: String, reason: String, namespace: String? = nil) {
            self.authority = authority
            self.reason = reason
            self.namespace = namespace ?? ContainerdLog.namespace(in: reason)
        }
    }

    /// Text every line `event(in:)` recognises contains: a cheap test before any parsing.
    public static let marker = "trying next host"
    public static let bootMarker = "containerd successfully booted"

    /// What watch acts on in containerd's log.
    public enum Event: Sendable, Equatable {
        /// A request went past a host.
        case bypass(Bypass)
        /// containerd (re)started: its version may have changed.
        case started
    }

    /// The event a log message records, nil for any other message.
    public static func event(in message: String) -> Event? {
        if let bypass = bypass(in: message) { return .bypass(bypass) }
        guard message.utf8.count < 65_536, message.contains(bootMarker) else { return nil }
        let fields = message.first == "{" ? jsonFields(message) : logfmtFields(message)
        return fields["msg"]?.hasPrefix(bootMarker) == true ? .started : nil
    }

    /// The bypass a log message records, nil for any other message.
    public static func bypass(in message: String) -> Bypass? {
        // Cheap test first: nearly every line is something else.
        guard message.utf8.count < 65_536, message.contains(marker) else { return nil }
        let fields = message.first == "{" ? jsonFields(message) : logfmtFields(message)
        guard let msg = fields["msg"], msg.hasPrefix(marker), let host = fields["host"], !host.isEmpty else { return nil }
        var reason = fields["error"] ?? ""
        if reason.isEmpty {
            reason = String(msg.dropFirst(marker.count).drop { $0 == " " || $0 == "-" })
        }
        let namespace = (fields["url"]).flatMap(Self.namespace(in:)) ?? Self.namespace(in: reason)
        return Bypass(authority: host, reason: reason.isEmpty ? "no reason given" : reason, namespace: namespace)
    }

    /// The `ns=` query parameter in `text` (a URL, or an error quoting one), percent-decoded.
    static func namespace(in text: String) -> String? {
        for start in ["?ns=", "&ns="] {
            guard let range = text.range(of: start) else { continue }
            let raw = text[range.upperBound...].prefix { !"\"&# \\".contains($0) }
            return percentDecoded(raw)
        }
        return nil
    }

    private static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var utf8 = text.utf8[...]
        while let b = utf8.first {
            utf8 = utf8.dropFirst()
            guard b == UInt8(ascii: "%") else {
                bytes.append(b)
                continue
            }
            guard utf8.count >= 2, let v = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16) else { return nil }
            bytes.append(v)
            utf8 = utf8.dropFirst(2)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// The hosts of `config` that `bypass` names: probed hosts whose URL authority is the one
    /// containerd logged (compared without case, as host names are). When one cache serves several
    /// upstreams, the request's `ns=<upstream>` (in the error's URL) picks the registry.
    public static func hosts(named bypass: Bypass, in config: AgentConfig) -> [HostKey] {
        let wanted = bypass.authority.lowercased()
        let keys = config.registries.filter(\.readinessProbe).flatMap { registry in
            registry.hosts.compactMap { host in
                HostURL(parsing: host.url)?.authority.lowercased() == wanted
                    ? HostKey(upstream: registry.upstream, url: host.url) : nil
            }
        }
        guard let namespace = bypass.namespace?.lowercased() else { return keys }
        let named = keys.filter { $0.upstream.lowercased() == namespace }
        return named.isEmpty ? keys : named
    }

    /// What containerd's log says about one host over a window: how often it went past it, and the
    /// latest reason.
    public struct Tally: Sendable, Equatable {
        public var count: Int
        public var last: Bypass
    }

    /// Bypasses per configured host, in order of time.
    public static func tally(_ bypasses: [Bypass], in config: AgentConfig) -> [HostKey: Tally] {
        var out: [HostKey: Tally] = [:]
        for bypass in bypasses {
            for key in hosts(named: bypass, in: config) {
                out[key] = Tally(count: (out[key]?.count ?? 0) + 1, last: bypass)
            }
        }
        return out
    }

    /// key=value pairs of a logrus text line; values bare or Go-quoted.
    static func logfmtFields(_ line: String) -> [String: String] {
        var fields: [String: String] = [:]
        var scalars = Substring(line).unicodeScalars[...]
        func skipSpaces() { while let c = scalars.first, c == " " || c == "\t" { scalars.removeFirst() } }
        while true {
            skipSpaces()
            guard !scalars.isEmpty else { break }
            var key = ""
            while let c = scalars.first, c != "=", c != " " {
                key.unicodeScalars.append(c)
                scalars.removeFirst()
            }
            guard scalars.first == "=" else { continue }
            scalars.removeFirst()
            var value = ""
            if scalars.first == "\"" {
                scalars.removeFirst()
                while let c = scalars.first {
                    scalars.removeFirst()
                    if c == "\"" { break }
                    if c == "\\", let next = scalars.first {
                        scalars.removeFirst()
                        switch next {
                        case "n": value += "\n"
                        case "t": value += "\t"
                        default: value.unicodeScalars.append(next)
                        }
                    } else {
                        value.unicodeScalars.append(c)
                    }
                }
            } else {
                while let c = scalars.first, c != " " {
                    value.unicodeScalars.append(c)
                    scalars.removeFirst()
                }
            }
            if !key.isEmpty { fields[key] = value }
        }
        return fields
    }

    /// The string members of a flat JSON object (others are skipped); empty when it is not one.
    static func jsonFields(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        var s = Substring(text).unicodeScalars[...]
        func skipSpaces() { while let c = s.first, c == " " || c == "\t" || c == "\n" || c == "\r" { s.removeFirst() } }
        func string() -> String? {
            guard s.first == "\"" else { return nil }
            s.removeFirst()
            var out = ""
            while let c = s.first {
                s.removeFirst()
                if c == "\"" { return out }
                guard c == "\\" else {
                    out.unicodeScalars.append(c)
                    continue
                }
                guard let e = s.first else { return nil }
                s.removeFirst()
                switch e {
                case "n": out += "\n"
                case "t": out += "\t"
                case "r": out += "\r"
                case "b": out += "\u{08}"
                case "f": out += "\u{0C}"
                case "u":
                    let hex = String(String.UnicodeScalarView(s.prefix(4)))
                    guard hex.count == 4, let v = UInt32(hex, radix: 16) else { return nil }
                    s.removeFirst(4)
                    out.unicodeScalars.append(Unicode.Scalar(v) ?? "\u{FFFD}")
                default: out.unicodeScalars.append(e)
                }
            }
            return nil
        }
        /// Skips a non-string value: up to the next comma or brace at depth zero, strings honoured.
        func skipValue() {
            var depth = 0
            while let c = s.first {
                if c == "\"" {
                    _ = string()
                    continue
                }
                if depth == 0 && (c == "," || c == "}") { return }
                if c == "{" || c == "[" { depth += 1 }
                if c == "}" || c == "]" { depth -= 1 }
                s.removeFirst()
            }
        }
        skipSpaces()
        guard s.first == "{" else { return [:] }
        s.removeFirst()
        while true {
            skipSpaces()
            guard let key = string() else { return fields }
            skipSpaces()
            guard s.first == ":" else { return fields }
            s.removeFirst()
            skipSpaces()
            if s.first == "\"" {
                guard let value = string() else { return fields }
                fields[key] = value
            } else {
                skipValue()
            }
            skipSpaces()
            guard s.first == "," else { return fields }
            s.removeFirst()
        }
    }
}
