import RegistryMirrorCore
import TOMLKit

/// One registry's hosts.toml as `HostsFile.render` wrote it, with the registry it was rendered for.
public struct RenderedFile {
    public var registry: Registry
    /// The containerd it was rendered for (which decides dial_timeout and the IPv6 form).
    public var target: ContainerdTarget = .newest
    /// Nil when `render` refused (it does so only for an empty host list).
    public var text: String?

    public init(registry: Registry, target: ContainerdTarget = .newest, text: String?) {
        self.registry = registry
        self.target = target
        self.text = text
    }
}

/// Renders every registry of a loaded config with all its hosts, as apply does when every mirror is up.
/// Every registry rendered for containerd 1.6 (dotted keys for IPv6, no dial_timeout) and for the
/// newest known version (headers, dial_timeout).
public func renderAll(_ config: AgentConfig) -> [RenderedFile] {
    let targets = [ContainerdTarget(version: ContainerdVersion(1, 6, 20), source: "fuzz"), .newest]
    return targets.flatMap { target in
        config.registries.map { RenderedFile(registry: $0, target: target, text: HostsFile.render($0, hosts: $0.hosts, for: target)) }
    }
}

/// Everything wrong with `file`: its text must parse back (TOMLKit) to exactly the server, the hosts in
/// order, and each host's capabilities, dial_timeout, ca, client, skip_verify, override_path and
/// headers that the registry holds, and to nothing else. Empty when the file is right.
public func roundTripProblems(_ file: RenderedFile) -> [String] {
    var problems: [String] = []
    let registry = file.registry
    func fail(_ message: String) { problems.append("\(registry.upstream): \(message)") }

    guard let text = file.text else {
        fail("render returned nil for an accepted registry with \(registry.hosts.count) host(s)")
        return problems
    }
    if registry.hosts.isEmpty { fail("the loader accepted a registry without hosts") }
    if !HostsFile.isManaged(text) { fail("the rendered file does not start with the ownership marker") }

    let root: TOMLTable
    do {
        root = try TOMLTable(string: text)
    } catch {
        fail("the rendered file is not valid TOML: \(error)")
        return problems
    }

    // Top level: `server` (left out when empty) and `host`, nothing else.
    let wantTopKeys = registry.server.isEmpty ? ["host"] : ["host", "server"]
    if root.keys.sorted() != wantTopKeys { fail("top-level keys \(root.keys.sorted()), expected \(wantTopKeys)") }
    if !registry.server.isEmpty {
        // The server is the loader's own work when defaulted (https://<upstream>): it must still be
        // a URL the loader would accept if it were written out.
        if let why = HostURL.problem(registry.server) {
            fail("server \(show(registry.server)) would be refused as a configured server: it \(why)")
        }
        if root["server"]?.string != registry.server {
            fail("server reads back as \(describe(root["server"])), expected \(show(registry.server))")
        }
    }

    guard let hostTable = root["host"]?.table else {
        fail("no [host] table")
        return problems
    }
    let urls = registry.hosts.map(\.url)
    if Set(urls).count != urls.count { fail("the loader accepted duplicate host URLs \(urls.map(show))") }
    // TOMLKit's tables are sorted maps: the order of the hosts is read off the text, line by line.
    let order = hostOrder(text)
    if order != urls {
        fail("hosts in file order \(order.map(show)), expected \(urls.map(show))")
    }
    if hostTable.keys.sorted() != urls.sorted() {
        fail("host keys \(hostTable.keys.sorted().map(show)), expected \(urls.sorted().map(show))")
    }

    for host in registry.hosts {
        guard let t = hostTable[host.url]?.table else {
            fail("[host.\(show(host.url))] is missing or not a table")
            continue
        }
        problems += hostProblems(t, host, target: file.target).map { "\(registry.upstream): host \(show(host.url)): \($0)" }
    }
    return problems
}

/// The keys of the `host` table in the order the text defines them (as a TOML parser that keeps
/// order sees them): each line parsed on its own with TOMLKit gives a key path, under the table of the
/// last header line, so that both `[host."<url>"]` headers and `"<url>" = { ... }` lines under `[host]`
/// count. Needs every table header and key/value pair on one line, as the renderer writes them; a line
/// that does not parse alone shows up in the result and so fails the comparison.
func hostOrder(_ text: String) -> [String] {
    var order: [String] = []
    var section: [String] = []
    for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
        let trimmed = line.drop { $0 == " " || $0 == "\t" }
        if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
        guard let table = try? TOMLTable(string: String(trimmed)) else {
            order.append("<line that does not parse alone: \(show(String(trimmed)))>")
            continue
        }
        let path = keyPath(table)
        if trimmed.hasPrefix("[") {
            section = path
            if path.count < 2 { continue }
        }
        let full = trimmed.hasPrefix("[") ? path : section + path
        if full.count >= 2, full[0] == "host", !order.contains(full[1]) { order.append(full[1]) }
    }
    return order
}

/// The dotted key a one-line document defines: down through tables of one key, stopping at a value,
/// an inline table or an empty table.
func keyPath(_ table: TOMLTable) -> [String] {
    var path: [String] = []
    var current = table
    while current.keys.count == 1, let key = current.keys.first {
        path.append(key)
        guard let next = current[key]?.table, !next.inline else { break }
        current = next
    }
    return path
}

func hostProblems(_ t: TOMLTable, _ host: MirrorHost, target: ContainerdTarget) -> [String] {
    var problems: [String] = []
    var want: Set<String> = ["capabilities"]
    let dialTimeout = target.writesDialTimeout(host) ? host.dialTimeout : nil
    if dialTimeout != nil { want.insert("dial_timeout") }
    if !host.ca.isEmpty { want.insert("ca") }
    if !host.client.isEmpty { want.insert("client") }
    if host.skipVerify != nil { want.insert("skip_verify") }
    if host.overridePath != nil { want.insert("override_path") }
    if !host.headers.isEmpty { want.insert("header") }
    if Set(t.keys) != want || t.keys.count != want.count {
        problems.append("keys \(t.keys.sorted()), expected \(want.sorted())")
    }

    let caps = host.capabilities.map(\.rawValue)
    if strings(t["capabilities"]) != caps {
        problems.append("capabilities read back as \(describe(t["capabilities"])), expected \(caps)")
    }
    if let dial = dialTimeout {
        if t["dial_timeout"]?.string != dial.description {
            problems.append("dial_timeout reads back as \(describe(t["dial_timeout"])), expected \"\(dial)\"")
        } else if !reparses(dial) {
            problems.append("dial_timeout \"\(dial)\" does not parse back to \(dial.nanoseconds)ns")
        }
    }
    if !host.ca.isEmpty, strings(t["ca"]) != host.ca {
        problems.append("ca reads back as \(describe(t["ca"])), expected \(host.ca.map(show))")
    }
    if !host.client.isEmpty {
        let pairs = t["client"]?.array.flatMap { array in
            (0..<array.count).map { strings(array[$0]) }.reduce([[String]]?.some([])) { acc, pair in
                guard let acc, let pair else { return nil }
                return acc + [pair]
            }
        }
        if pairs != host.client {
            problems.append("client reads back as \(describe(t["client"])), expected \(host.client.map { $0.map(show) })")
        }
    }
    if let skip = host.skipVerify, t["skip_verify"]?.bool != skip {
        problems.append("skip_verify reads back as \(describe(t["skip_verify"])), expected \(skip)")
    }
    if let override = host.overridePath, t["override_path"]?.bool != override {
        problems.append("override_path reads back as \(describe(t["override_path"])), expected \(override)")
    }
    if !host.headers.isEmpty {
        guard let headers = t["header"]?.table else {
            problems.append("header is \(describe(t["header"])), expected a table")
            return problems
        }
        let names = host.headers.map(\.name)
        if Set(names).count != names.count { problems.append("duplicate header names \(names.map(show))") }
        if headers.keys.sorted() != names.sorted() {
            problems.append("header names \(headers.keys.sorted().map(show)), expected \(names.sorted().map(show))")
        }
        for (name, values) in host.headers where strings(headers[name]) != values {
            problems.append("header \(show(name)) reads back as \(describe(headers[name])), expected \(values.map(show))")
        }
    }
    return problems
}

/// The strings of a TOML array of strings; nil for anything else.
func strings(_ value: TOMLValueConvertible?) -> [String]? {
    guard let array = value?.array else { return nil }
    var out: [String] = []
    for i in 0..<array.count {
        guard let s = array[i].string else { return nil }
        out.append(s)
    }
    return out
}

/// The rendered `dial_timeout` must mean the configured duration to a duration parser: exactly, up to
/// the rounding of the parser's floating-point sum (about one part in 2^52).
func reparses(_ d: GoDuration) -> Bool {
    guard let back = try? GoDuration(parsing: d.description) else { return false }
    let slack = max(1, d.nanoseconds >> 50)
    return abs(back.nanoseconds - d.nanoseconds) <= slack
}

/// A string as a TOML basic string: control characters and quotes visible in messages.
func show(_ s: String) -> String { HostsFile.quote(s) }

func describe(_ value: TOMLValueConvertible?) -> String {
    guard let value else { return "<absent>" }
    if let s = value.string { return show(s) }
    return "\(value.type): \(value.debugDescription)"
}
