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
        // It becomes a directory name: one the file system cannot hold is a config error, not a write error.
        if text.utf8.count > maximumUpstreamBytes {
            return "is \(text.utf8.count) bytes long; a directory name holds at most \(maximumUpstreamBytes)"
        }
        return hostPortProblem(text)
    }

    /// NAME_MAX on Linux file systems: the longest name a directory entry can have.
    public static let maximumUpstreamBytes = 255

    /// Why `text` (host[:port], IPv6 bracketed) is not valid, or nil.
    static func hostPortProblem(_ text: String) -> String? {
        var host = Substring(text)
        var port: Substring?
        var bracketed = false
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return "has an unclosed \"[\" in an IPv6 literal" }
            let inner = host[host.index(after: host.startIndex)..<close]
            // containerd cannot use a zone (fe80::1%eth0): Go's URL parser wants it escaped as %25,
            // and a zone is meaningless to every other node anyway.
            if inner.contains("%") { return "has an IPv6 zone (\"%...\"); use an address without a zone" }
            guard isIPv6(inner) else { return "has an invalid IPv6 literal" }
            let after = host[host.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return "has text after the IPv6 literal" }
                port = after.dropFirst()
            }
            host = ""
            bracketed = true
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
        if host.isEmpty { return bracketed ? nil : "has no host name before the port" }
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

    /// Dotted decimal without leading zeros: curl reads `127.0.0.010` as octal (127.0.0.8) while Go,
    /// and so containerd, takes it for a host name to look up; the two would not meet.
    public static func isIPv4(_ text: Substring) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4
            && parts.allSatisfy { p in
                !p.isEmpty && p.count <= 3 && p.allSatisfy { $0.isASCII && $0.isNumber } && Int(p)! <= 255
                    && !(p.count > 1 && p.first == "0")
            }
    }

    static func splitOnDoubleColon(_ text: String) -> [String] {
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

    /// An IPv6 address without a zone.
    public static func isIPv6(_ text: Substring) -> Bool {
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
                    guard !p.isEmpty, p.count <= 4, p.allSatisfy({ $0.isASCII && $0.isHexDigit }) else { return nil }
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
