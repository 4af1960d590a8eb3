/// An absolute http(s) URL split into the parts this agent needs.
public struct HostURL: Sendable, Equatable {
    public var scheme: String
    public var authority: String
    public var path: String

    /// Nil when `text` is not an absolute http(s) URL with a valid host.
    public init?(parsing text: String) {
        guard HostURL.problem(text) == nil, let sep = text.range(of: "://") else { return nil }
        scheme = text[..<sep.lowerBound].lowercased()
        let rest = text[sep.upperBound...]
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        authority = String(rest[..<slash])
        path = String(rest[slash...])
    }

    /// The port the URL names, or its scheme's default (80, 443).
    public var port: Int {
        let afterHost = authority.hasPrefix("[") ? authority.drop { $0 != "]" }.dropFirst() : Substring(authority)
        if let colon = afterHost.lastIndex(of: ":"), let n = Int(afterHost[afterHost.index(after: colon)...]) { return n }
        return scheme == "https" ? 443 : 80
    }

    /// Why `text` is not an absolute http(s) URL fit for hosts.toml, or nil. The rules are those under
    /// which containerd (Go's net/url applied to a `[host."..."]` key) reads the URL exactly as the agent
    /// probes it: a lowercase scheme, a host with no user information and no IPv6 zone, and a path of
    /// RFC 3986 characters with valid `%XX` escapes only. Anything else made containerd ignore the whole
    /// file, skip the host or send requests to another path.
    public static func problem(_ text: String) -> String? {
        if let bad = text.unicodeScalars.first(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            return "contains a control character (U+\(String(bad.value, radix: 16, uppercase: true)))"
        }
        if text.contains(where: { $0.isWhitespace }) { return "contains whitespace" }
        guard let sep = text.range(of: "://") else { return "is not an absolute URL (no scheme)" }
        let scheme = text[..<sep.lowerBound]
        guard scheme == "http" || scheme == "https" else {
            if scheme.lowercased() == "http" || scheme.lowercased() == "https" {
                return "has scheme \"\(scheme)\"; write it in lowercase (\(scheme.lowercased())://)"
            }
            return "has scheme \"\(scheme)\"; only http and https work"
        }
        if let bad = text.unicodeScalars.first(where: { !$0.isASCII }) {
            return "contains \"\(bad)\", which is not ASCII; percent-encode it (%XX)"
        }
        if text.contains("\"") || text.contains("\\") { return "contains a quote or backslash" }
        if text.contains("?") || text.contains("#") { return "has a query or fragment" }
        let rest = text[sep.upperBound...]
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        if authority.contains("@") { return "has user information; put credentials in a header instead" }
        if authority.isEmpty { return "has no host" }
        if let problem = Names.hostPortProblem(String(authority)) { return "host \(problem)" }
        let path = rest[slash...]
        // containerd cleans the path (path.Clean) before use: these would not be the path probed.
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        if segments.contains("..") || segments.contains(".") { return "has a \".\" or \"..\" segment in its path" }
        if segments.dropLast().contains("") { return "has an empty segment (//) in its path" }
        if let bad = path.first(where: { !pathCharacters.contains($0) && $0 != "%" }) {
            return "has \"\(bad)\" in its path; only letters, digits, -._~!$&'()*+,;=:@/ and %XX escapes are read as written"
        }
        if let problem = percentEscapeProblem(path) { return problem }
        return nil
    }

    /// RFC 3986 path characters other than `%`: unreserved, sub-delims, `:`, `@` and `/`.
    static let pathCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/")

    /// Every `%` must start an escape of two hex digits (Go's parser refuses the URL otherwise), and may
    /// only encode a byte that means the same decoded: containerd decodes the path and builds its
    /// requests from the decoded text, so `%2F` became a `/`, `%3F` cut the path, `%2E%2E` climbed a
    /// directory and `%25` was decoded twice. Non-ASCII bytes and unreserved letters, digits, `-`,
    /// `_` and `~` are fine.
    static func percentEscapeProblem(_ path: Substring) -> String? {
        var i = path.startIndex
        while let percent = path[i...].firstIndex(of: "%") {
            let digits = path[path.index(after: percent)...].prefix(2)
            guard digits.count == 2, let byte = UInt8(digits, radix: 16) else {
                return "has an invalid % escape in its path"
            }
            let meansTheSame = byte >= 0x80 || (byte < 0x80 && unreservedSafe.contains(Character(Unicode.Scalar(byte))))
            guard meansTheSame else {
                return "has %\(digits) in its path, which containerd decodes before use and so reads differently; remove it"
            }
            i = digits.endIndex
        }
        return nil
    }

    static let unreservedSafe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_~")
}
