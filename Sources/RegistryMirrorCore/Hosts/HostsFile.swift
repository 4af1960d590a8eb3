import TOMLKit

/// The hosts.toml this agent writes for one upstream, and how to tell its files from others'.
public enum HostsFile {
    /// The directory containerd tries before `<upstream>/` for an upstream with a port: `host:port`
    /// becomes `host_port_` (containerd's `hostDirectory`: the last ':' at an index above 0). If it
    /// exists, containerd reads it and never ours, even when it holds no hosts.toml. Nil for names
    /// without such a ':'.
    public static func shadowingDirectory(_ upstream: String) -> String? {
        guard let colon = upstream.lastIndex(of: ":"), colon > upstream.startIndex else { return nil }
        return upstream[..<colon] + "_" + upstream[upstream.index(after: colon)...] + "_"
    }

    /// First line of every file this agent owns. A hosts.toml without it is foreign and never changed.
    public static let marker = "# managed by configure-containerd-registries; manual changes are overwritten"
    public static let fileName = "hosts.toml"
    public static let backupName = "hosts.toml.orig"

    /// True when `content` is a file this agent wrote.
    public static func isManaged(_ content: String) -> Bool {
        content.hasPrefix(marker + "\n") || content == marker
    }

    /// Renders the file for `registry` listing `hosts` (the up ones, in config order).
    /// Returns nil for an empty host list: containerd 1.6/1.7 reject a file without a `[host]` table,
    /// and with no file at all containerd pulls straight from the upstream.
    ///
    /// Each host is a `[host."<url>"]` table, except in a file with an IPv6 host: the TOML reader of
    /// containerd 1.6 and 1.7 (go-toml v1) ends a table header at the first `]` even inside quotes
    /// (escaping it does not help: it does not unescape header keys), and then ignores the whole file.
    /// Such a file lists every host's fields as dotted keys under one `[host]`
    /// (`"http://[fd00::1]:5000".capabilities = [...]`), one per line. Not inline tables: go-toml v1
    /// gives every inline table line 0, containerd 1.6/1.7 order hosts by the line their table starts
    /// on, and so tried them in a random order (seen as a flaky parse check); a dotted key's table
    /// starts on the line of its first key. containerd 2's source orders hosts by their
    /// `[host."..."]` headers only and skips hosts written any other way, so on 2.x such a file means
    /// pulls from the upstream (docs/design.md §5). The two forms are never mixed in one file.
    ///
    /// `target`: the containerd the file is for; it decides whether `dial_timeout` is written and
    /// which form a file with an IPv6 host takes (`ContainerdTarget`, docs/design.md §5.1).
    public static func render(_ registry: Registry, hosts: [MirrorHost], for target: ContainerdTarget = .newest) -> String? {
        guard !hosts.isEmpty else { return nil }
        var out = marker + "\n"
        if !registry.server.isEmpty {
            out += "server = \(quote(registry.server))\n"
        }
        if target.rules.needsDottedKeysForIPv6 && hosts.contains(where: { $0.url.contains("]") }) {
            out += "\n[host]\n"
            for host in hosts {
                for (key, value) in settings(host, for: target) {
                    out += "  \(quote(host.url)).\(key) = \(value)\n"
                }
            }
            return out
        }
        for host in hosts {
            out += "\n[host.\(quote(host.url))]\n"
            for (key, value) in settings(host, for: target) where key != "header" {
                out += "  \(key) = \(value)\n"
            }
            if !host.headers.isEmpty {
                out += "  [host.\(quote(host.url)).header]\n"
                for (name, values) in host.headers {
                    out += "    \(quote(name)) = \(array(values))\n"
                }
            }
        }
        return out
    }

    /// A host's fields as TOML values, in file order; `header` as an inline table.
    static func settings(_ host: MirrorHost, for target: ContainerdTarget) -> [(key: String, value: String)] {
        var fields: [(key: String, value: String)] = [("capabilities", array(host.capabilities.map(\.rawValue)))]
        if let dial = host.dialTimeout, target.writesDialTimeout(host) { fields.append(("dial_timeout", quote(dial.description))) }
        if !host.ca.isEmpty { fields.append(("ca", array(host.ca))) }
        if !host.client.isEmpty { fields.append(("client", "[\(host.client.map(array).joined(separator: ", "))]")) }
        if let skip = host.skipVerify { fields.append(("skip_verify", "\(skip)")) }
        if let override = host.overridePath { fields.append(("override_path", "\(override)")) }
        if !host.headers.isEmpty {
            fields.append(("header", "{ " + host.headers.map { "\(quote($0.name)) = \(array($0.values))" }.joined(separator: ", ") + " }"))
        }
        return fields
    }

    /// Why containerd would not read `text` (a hosts.toml) as meant: not TOML (containerd then ignores
    /// the whole file), a host key or server it parses differently from the agent, a header it would
    /// refuse. Empty when the file is fine. A file this agent rendered from a valid config never has any.
    public static func readProblems(_ text: String) -> [String] {
        let table: TOMLTable
        do {
            table = try TOMLGuard.parse(text)
        } catch {
            return ["is not valid TOML, so containerd ignores all of it"]
        }
        var problems: [String] = []
        if let server = table["server"] {
            if let url = server.string, let why = HostURL.problem(url) {
                problems.append("server \(quote(url)) \(why)")
            } else if server.string == nil {
                problems.append("server is not a string")
            }
        }
        for key in (table["host"]?.table?.keys).map(Array.init) ?? [] {
            if let why = HostURL.problem(key) {
                problems.append("host \(quote(key)) \(why), so containerd does not use it as the agent probed it")
            }
            guard let headers = table["host"]?.table?[key]?.table?["header"]?.table else { continue }
            for name in headers.keys {
                let values = headers[name]?.array.map { $0.compactMap(\.string) } ?? headers[name]?.string.map { [$0] } ?? []
                if values.contains(where: { v in v.unicodeScalars.contains { ($0.value < 0x20 && $0 != "\t") || $0.value == 0x7F } }) {
                    problems.append("host \(quote(key)) header \(quote(name)) holds a control character")
                }
            }
        }
        return problems
    }

    static func array(_ items: [String]) -> String {
        "[" + items.map { quote($0) }.joined(separator: ", ") + "]"
    }

    /// A TOML basic string: quotes, backslashes and control characters escaped.
    public static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                let hex = String(scalar.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
