#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import RegistryMirrorCore
import RenderCheck

/// `render-oracle FILE...`: loads each file as a config and prints one JSON object per line:
/// whether the loader accepted it, what it read (the expected values), the hosts.toml text rendered
/// for each registry, and the problems the in-process TOMLKit round trip found. fuzz/oracle.py then
/// parses the rendered text with Python's tomllib and compares.
///
/// The JSON is written by hand here, escaping every non-ASCII scalar, and not with the core's own
/// string quoting, which is part of what is under test.
@main
struct RenderOracle {
    static func main() {
        let paths = CommandLine.arguments.dropFirst()
        if paths.isEmpty || paths.contains("--help") || paths.contains("-h") {
            print("usage: render-oracle CONFIG.toml...   (one JSON line per file on stdout)")
            exit(paths.isEmpty ? 64 : 0)
        }
        if paths.first == "--self-test" {
            exit(selfTest(paths.dropFirst()) ? 0 : 1)
        }
        for path in paths {
            print(report(path: path))
        }
    }

    /// `render-oracle --self-test CONFIG...`: plants faults in the files rendered for each config and
    /// checks that the in-process round trip catches every one (a check that passes everything would
    /// look the same as a renderer without bugs).
    static func selfTest(_ paths: ArraySlice<String>) -> Bool {
        var planted = 0
        var missed: [String] = []
        for path in paths {
            guard let bytes = readFile(path), let config = try? ConfigLoader.load(bytes: bytes, path: path) else {
                missed.append("\(path): not an accepted config")
                continue
            }
            for file in renderAll(config) {
                guard let text = file.text, let host = file.registry.hosts.first else { continue }
                let quotedURL = "[host.\(HostsFile.quote(host.url))]"
                let dottedKey = "  \(HostsFile.quote(host.url))."
                let renamed =
                    text.contains(quotedURL)
                    ? text.replacingFirst(quotedURL, with: "[host.\(HostsFile.quote(host.url + "x"))]")
                    : text.replacingFirst(dottedKey, with: "  \(HostsFile.quote(host.url + "x")).")
                var faults: [(String, String)] = [
                    ("host renamed", renamed),
                    ("capability dropped", text.replacingFirst("capabilities = [\"pull\", ", with: "capabilities = [")),
                    ("extra key", text + "  dial_timout = \"1s\"\n"),
                    ("syntax broken", text + "[host\n"),
                    ("marker removed", String(text.drop { $0 != "\n" })),
                ]
                if !file.registry.server.isEmpty {
                    faults.append(("server changed", text.replacingFirst("server = \"", with: "server = \"x")))
                }
                if file.registry.hosts.count > 1, let second = file.registry.hosts.dropFirst().first {
                    // Swap the first two hosts: same tables, other order.
                    let secondHeader = "[host.\(HostsFile.quote(second.url))]"
                    let secondDotted = "  \(HostsFile.quote(second.url))."
                    var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
                    if let a = lines.firstIndex(where: { $0.hasPrefix(dottedKey) }),
                        let b = lines.firstIndex(where: { $0.hasPrefix(secondDotted) })
                    {
                        // The first keys of the two hosts swapped: the second host now starts first.
                        lines.swapAt(a, b)
                        faults.append(("dotted hosts swapped", lines.joined(separator: "\n")))
                    } else if let a = text.range(of: "\n" + quotedURL), let b = text.range(of: "\n" + secondHeader) {
                        let firstSection = text[a.lowerBound..<b.lowerBound]
                        let rest = text[b.lowerBound...]
                        let end = rest.dropFirst().range(of: "\n[host.")?.lowerBound ?? rest.endIndex
                        faults.append(("hosts swapped", String(text[..<a.lowerBound]) + rest[..<end] + firstSection + rest[end...]))
                    }
                }
                for (name, mutated) in faults where mutated != text {
                    planted += 1
                    if roundTripProblems(RenderedFile(registry: file.registry, target: file.target, text: mutated)).isEmpty {
                        missed.append("\(path): \(file.registry.upstream): planted fault not caught: \(name)")
                    }
                }
            }
        }
        for m in missed { print("FAIL: \(m)") }
        print("render-oracle self-test: \(planted - missed.count) of \(planted) planted faults caught")
        return missed.isEmpty && planted > 0
    }

    static func report(path: String) -> String {
        var out = JSONObject()
        out["file"] = .string(path)
        guard let bytes = readFile(path) else {
            out["error"] = .string("cannot read the file")
            return out.text
        }
        if KnownBugs.skipping, let reason = bytes.withUnsafeBufferPointer(KnownBugs.reason) {
            out["skipped"] = .string(reason)
            return out.text
        }
        let config: AgentConfig
        do {
            config = try ConfigLoader.load(bytes: bytes, path: path)
        } catch {
            out["accepted"] = .bool(false)
            out["problems"] = .array(error.problems.map { .string($0.description) })
            return out.text
        }
        out["accepted"] = .bool(true)
        if KnownBugs.skipping, let reason = KnownBugs.reason(config) {
            out["skipped"] = .string(reason)
            return out.text
        }
        let files = renderAll(config)
        // "registries": the files for the newest containerd, checked against the config as well;
        // "registries_containerd_1": the same registries rendered for containerd 1.x (dotted keys for
        // IPv6, no dial_timeout).
        out["registries"] = .array(files.filter { $0.target.rules.major >= 2 }.map(fileJSON))
        out["registries_containerd_1"] = .array(files.filter { $0.target.rules.major < 2 }.map(fileJSON))
        out["roundtrip_problems"] = .array(files.flatMap(roundTripProblems).map { .string($0) })
        return out.text
    }

    static func fileJSON(_ file: RenderedFile) -> JSONValue {
        var o = JSONObject()
        o["upstream"] = .string(file.registry.upstream)
        o["server"] = .string(file.registry.server)
        o["rendered"] = file.text.map { .string($0) } ?? .null
        o["containerd"] = .string(file.target.rules.description)
        o["hosts"] = .array(file.registry.hosts.map { hostJSON($0, target: file.target) })
        return .object(o)
    }

    /// What the file must hold for `host`: dial_timeout only where `target` writes it.
    static func hostJSON(_ host: MirrorHost, target: ContainerdTarget) -> JSONValue {
        var o = JSONObject()
        let dialTimeout = target.writesDialTimeout(host) ? host.dialTimeout : nil
        o["url"] = .string(host.url)
        o["capabilities"] = .array(host.capabilities.map { .string($0.rawValue) })
        o["dial_timeout"] = dialTimeout.map { .string($0.description) } ?? .null
        o["dial_timeout_ns"] = dialTimeout.map { .number($0.nanoseconds) } ?? .null
        o["ca"] = .array(host.ca.map { .string($0) })
        o["client"] = .array(host.client.map { .array($0.map { .string($0) }) })
        o["skip_verify"] = host.skipVerify.map { .bool($0) } ?? .null
        o["override_path"] = host.overridePath.map { .bool($0) } ?? .null
        o["headers"] = .array(host.headers.map { .array([.string($0.name), .array($0.values.map { .string($0) })]) })
        return .object(o)
    }

    static func readFile(_ path: String) -> [UInt8]? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, f)
            if n > 0 { bytes += buffer[0..<n] }
            if n < buffer.count { break }
        }
        return ferror(f) == 0 ? bytes : nil
    }
}

indirect enum JSONValue {
    case string(String), number(Int64), bool(Bool), null, array([JSONValue]), object(JSONObject)

    var text: String {
        switch self {
        case .string(let s): JSONValue.quote(s)
        case .number(let n): String(n)
        case .bool(let b): b ? "true" : "false"
        case .null: "null"
        case .array(let items): "[" + items.map(\.text).joined(separator: ",") + "]"
        case .object(let o): o.text
        }
    }

    /// A JSON string with every scalar outside printable ASCII as `\uXXXX` (surrogate pairs above U+FFFF).
    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            let v = scalar.value
            if v == 0x22 {
                out += "\\\""
            } else if v == 0x5C {
                out += "\\\\"
            } else if v >= 0x20 && v < 0x7F {
                out.unicodeScalars.append(scalar)
            } else if v < 0x10000 {
                out += unit(v)
            } else {
                let w = v - 0x10000
                out += unit(0xD800 + (w >> 10)) + unit(0xDC00 + (w & 0x3FF))
            }
        }
        return out + "\""
    }

    private static func unit(_ v: UInt32) -> String {
        let hex = String(v, radix: 16)
        return "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
    }
}

/// Keys kept in insertion order.
struct JSONObject {
    private var pairs: [(String, JSONValue)] = []

    subscript(key: String) -> JSONValue? {
        get { pairs.first { $0.0 == key }?.1 }
        set {
            pairs.removeAll { $0.0 == key }
            if let newValue { pairs.append((key, newValue)) }
        }
    }

    var text: String { "{" + pairs.map { JSONValue.quote($0.0) + ":" + $0.1.text }.joined(separator: ",") + "}" }
}

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let r = range(of: target) else { return self }
        return replacingCharacters(in: r, with: replacement)
    }
}
