/// Syntax rules for the names this agent puts on disk and in hosts.toml. Pure string checks:
/// an upstream becomes a directory name, so anything that could escape hosts_dir is refused here.
public enum Names {
    /// Why `text` is not a valid upstream, or nil when it is: `_default`, or a DNS name, an IPv4
    /// address or a bracketed IPv6 literal, each with an optional port.
    public static func upstreamProblem(_ text: String) -> String? {
        if text == "_default" { return nil }
        if text.isEmpty { return "is empty" }
        if text.contains("://") { return "has a scheme; write the registry host only, e.g. \"docker.io\"" }
        if text.contains(where: { $0.isWhitespace }) { return "contains whitespace" }
        if text.contains("..") { return "contains \"..\"" }
        if text.contains("/") { return "contains \"/\" (a path); write the registry host only, e.g. \"docker.io\"" }
        return hostPortProblem(text)
    }

    /// Why `text` (host[:port], IPv6 bracketed) is not valid, or nil.
    static func hostPortProblem(_ text: String) -> String? {
        var host = Substring(text)
        var port: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return "has an unclosed \"[\" in an IPv6 literal" }
            let inner = host[host.index(after: host.startIndex)..<close]
            guard isIPv6(inner) else { return "has an invalid IPv6 literal \"\(inner)\"" }
            let after = host[host.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return "has text after the IPv6 literal" }
                port = after.dropFirst()
            }
            host = ""
        } else if let colon = host.firstIndex(of: ":") {
            port = host[host.index(after: colon)...]
            host = host[..<colon]
            if port!.contains(":") { return "looks like an IPv6 address; bracket it, e.g. \"[fd00::1]:5000\"" }
        }
        if let port {
            guard !port.isEmpty, port.allSatisfy({ $0.isASCII && $0.isNumber }), port.count <= 5, let n = Int(port),
                (1...65535).contains(n)
            else { return "has an invalid port \"\(port)\" (1-65535)" }
        }
        if host.isEmpty { return nil }
        if isIPv4(host) { return nil }
        if host.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) { return "is not a valid IPv4 address" }
        return dnsNameProblem(host)
    }

    static func dnsNameProblem(_ name: Substring) -> String? {
        guard name.count <= 253 else { return "is longer than 253 characters" }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            if label.isEmpty { return "has an empty DNS label" }
            if label.count > 63 { return "has a DNS label longer than 63 characters" }
            guard label.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
                return "is not a DNS name, IPv4 address or bracketed IPv6 literal"
            }
            if label.hasPrefix("-") || label.hasSuffix("-") { return "has a DNS label that starts or ends with \"-\"" }
        }
        return nil
    }

    static func isIPv4(_ text: Substring) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4
            && parts.allSatisfy { p in
                !p.isEmpty && p.count <= 3 && p.allSatisfy { $0.isASCII && $0.isNumber } && Int(p)! <= 255
            }
    }

    private static func splitOnDoubleColon(_ text: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var previousColon = false
        for ch in text {
            if ch == ":" && previousColon {
                current.removeLast()
                parts.append(current)
                current = ""
                previousColon = false
                continue
            }
            current.append(ch)
            previousColon = ch == ":"
        }
        parts.append(current)
        return parts
    }

    static func isIPv6(_ text: Substring) -> Bool {
        var text = text
        if let zone = text.firstIndex(of: "%") { text = text[..<zone] }  // fe80::1%eth0
        guard !text.isEmpty else { return false }
        let halves = splitOnDoubleColon(String(text))
        guard halves.count <= 2 else { return false }
        func groups(_ s: String, allowV4Tail: Bool) -> Int? {
            if s.isEmpty { return 0 }
            let parts = s.split(separator: ":", omittingEmptySubsequences: false)
            var count = 0
            for (i, p) in parts.enumerated() {
                if allowV4Tail, i == parts.count - 1, p.contains(".") {
                    guard isIPv4(p) else { return nil }
                    count += 2
                } else {
                    guard !p.isEmpty, p.count <= 4, p.allSatisfy(\.isHexDigit) else { return nil }
                    count += 1
                }
            }
            return count
        }
        if halves.count == 1 { return groups(halves[0], allowV4Tail: true) == 8 }
        guard let a = groups(halves[0], allowV4Tail: false), let b = groups(halves[1], allowV4Tail: true) else {
            return false
        }
        return a + b <= 7
    }
}

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

    /// Why `text` is not an absolute http(s) URL fit for hosts.toml, or nil.
    public static func problem(_ text: String) -> String? {
        guard let sep = text.range(of: "://") else { return "is not an absolute URL (no scheme)" }
        let scheme = text[..<sep.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { return "has scheme \"\(scheme)\"; only http and https work" }
        if text.contains(where: { $0.isWhitespace || $0.isNewline }) { return "contains whitespace" }
        if text.contains("?") || text.contains("#") { return "has a query or fragment" }
        let rest = text[sep.upperBound...]
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        if authority.contains("@") { return "has user information; put credentials in a header instead" }
        if authority.isEmpty { return "has no host" }
        if let problem = Names.hostPortProblem(String(authority)) { return "host \(problem)" }
        if rest[slash...].split(separator: "/").contains("..") { return "has \"..\" in its path" }
        return nil
    }
}
