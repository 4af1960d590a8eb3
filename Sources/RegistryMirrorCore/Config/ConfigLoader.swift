import TOMLKit

/// One thing wrong with the configuration: where (file and field path), what, and what to write instead.
public struct ConfigProblem: Error, Sendable, Equatable, CustomStringConvertible {
    /// The config file's path, or `command line` for positional mirrors.
    public var source: String
    /// `registry[1].host[0].url`, `probe.timeout`, `argument 2`; empty for whole-file problems.
    public var field: String
    public var message: String
    public var fix: String
    public var line: Int?

    public init(source: String, field: String, message: String, fix: String, line: Int? = nil) {
        self.source = source
        self.field = field
        self.message = message
        self.fix = fix
        self.line = line
    }

    public var description: String {
        var where_ = source
        if let line { where_ += ":\(line)" }
        if !field.isEmpty { where_ += ": \(field)" }
        return "\(where_): \(message)" + (fix.isEmpty ? "" : "; \(fix)")
    }
}

/// Every problem found in a configuration; nothing is written when there is one.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var problems: [ConfigProblem]
    /// True when every problem comes from the command line (a usage error rather than a bad file).
    public var isUsageError: Bool { problems.allSatisfy { $0.source == ConfigLoader.commandLine } }
    public var description: String { problems.map(\.description).joined(separator: "\n") }
}

/// Turns a TOML config file and positional `UPSTREAM,ENDPOINT[,SERVER]` mirrors into an `AgentConfig`,
/// enforcing every rule of the config format.
public enum ConfigLoader {
    public static let commandLine = "command line"

    /// The largest config file read: anything bigger is refused, never cut.
    public static let maximumFileSize = 1 << 20

    /// Checks the raw bytes of a config file, then parses and validates it: a file that is not valid
    /// UTF-8, holds a NUL byte (or a `\u0000` escape, which the TOML parser would cut a string at), or
    /// is larger than `maximumFileSize` is refused as a whole. `path` only names the source in messages.
    public static func load(
        bytes: some Collection<UInt8>, path: String, mirrors: [String] = [], clusterDNS: [String] = []
    ) throws(ConfigError) -> AgentConfig {
        if let problem = ConfigBytes.problem(bytes, path: path) { throw ConfigError(problems: [problem]) }
        return try load(toml: String(decoding: bytes, as: UTF8.self), path: path, mirrors: mirrors, clusterDNS: clusterDNS)
    }

    /// Parses and validates text already known to be clean (see `load(bytes:)`); nil: no config file,
    /// positional mirrors only. `path` only names the source in error messages.
    public static func load(
        toml: String?, path: String, mirrors: [String] = [], clusterDNS: [String] = []
    ) throws(ConfigError) -> AgentConfig {
        var problems: [ConfigProblem] = []
        var config = AgentConfig()
        if let toml, let problem = ConfigBytes.nulEscapeProblem(toml, path: path) {
            problems.append(problem)
        } else if let toml {
            do {
                let table = try TOMLGuard.parse(toml)
                var reader = Reader(source: path, problems: [])
                reader.readRoot(table, into: &config)
                problems += reader.problems
            } catch {
                problems.append(
                    ConfigProblem(
                        source: path, field: "", message: "not valid TOML: \(error.message)",
                        fix: "fix the syntax at column \(error.column)", line: error.line))
            }
        }
        if problems.isEmpty {
            problems += merge(mirrors: mirrors, into: &config)
            problems += merge(clusterDNS: clusterDNS, into: &config)
        }
        if problems.isEmpty, let discovery = config.discovery, discovery.servers.isEmpty {
            problems.append(
                ConfigProblem(
                    source: path, field: "discovery.dns_servers", message: "names no DNS server",
                    fix: "write the cluster DNS Service's address, e.g. dns_servers = [\"10.96.0.10\"], or pass --cluster-dns 10.96.0.10"))
        }
        if !problems.isEmpty { throw ConfigError(problems: problems) }
        return config
    }

    /// `--cluster-dns ADDR[:PORT]` (repeatable): replaces `dns_servers`, and turns discovery on with
    /// its defaults when the file has no `[discovery]`.
    static func merge(clusterDNS: [String], into config: inout AgentConfig) -> [ConfigProblem] {
        guard !clusterDNS.isEmpty else { return [] }
        var problems: [ConfigProblem] = []
        var servers: [Discovery.Server] = []
        for text in clusterDNS {
            do {
                servers.append(try Discovery.Server.parse(text))
            } catch let problem {
                problems.append(
                    ConfigProblem(
                        source: commandLine, field: "--cluster-dns \(text)", message: problem.message,
                        fix: "give the cluster DNS Service's cluster IP, e.g. --cluster-dns 10.96.0.10 or --cluster-dns [fd00::a]:53"))
            }
        }
        if problems.isEmpty {
            var discovery = config.discovery ?? Discovery(servers: [])
            discovery.servers = servers
            config.discovery = discovery
        }
        return problems
    }

    /// Adds positional mirrors: a new upstream becomes a registry with default settings; a known one
    /// gets the endpoint appended to its hosts.
    static func merge(mirrors: [String], into config: inout AgentConfig) -> [ConfigProblem] {
        var problems: [ConfigProblem] = []
        for (index, argument) in mirrors.enumerated() {
            let field = "argument \(index + 1) (\"\(argument)\")"
            func fail(_ message: String, _ fix: String) {
                problems.append(ConfigProblem(source: commandLine, field: field, message: message, fix: fix))
            }
            let parts = argument.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2 || parts.count == 3 else {
                fail(
                    "expected UPSTREAM,ENDPOINT[,SERVER]",
                    "write e.g. docker.io,http://10.4.246.205:5000,https://registry-1.docker.io")
                continue
            }
            if let problem = Names.upstreamProblem(parts[0]) {
                fail("upstream \"\(parts[0])\" \(problem)", "write the registry host only, e.g. docker.io")
                continue
            }
            if let problem = HostURL.problem(parts[1]) {
                fail("endpoint \"\(parts[1])\" \(problem)", "write e.g. http://10.4.246.205:5000")
                continue
            }
            if parts.count == 3, let problem = HostURL.problem(parts[2]) {
                fail("server \"\(parts[2])\" \(problem)", "write e.g. https://registry-1.docker.io")
                continue
            }
            let host = MirrorHost(url: parts[1])
            if let i = config.registries.firstIndex(where: { $0.upstream == parts[0] }) {
                if parts.count == 3, parts[2] != config.registries[i].server {
                    fail(
                        "server \(parts[2]) differs from \(config.registries[i].server) given earlier for \(parts[0])",
                        "give one server per upstream")
                    continue
                }
                if config.registries[i].hosts.contains(where: { $0.url == host.url }) {
                    fail("endpoint \(host.url) is already a host of \(parts[0])", "list each endpoint once")
                    continue
                }
                config.registries[i].hosts.append(host)
            } else {
                config.registries.append(
                    Registry(upstream: parts[0], server: parts.count == 3 ? parts[2] : nil, hosts: [host]))
            }
        }
        return problems
    }
}

/// Walks the parsed TOML document, collecting every problem rather than stopping at the first.
/// Reads the tables of a config, collecting every problem (`problem`): the one idiom of validation
/// here, each rule reporting what is wrong and the fix and reading on, so all problems come at once.
struct Reader {
    static let tokenCharacters = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

    let source: String
    var problems: [ConfigProblem]

    mutating func problem(_ field: String, _ message: String, _ fix: String) {
        problems.append(ConfigProblem(source: source, field: field, message: message, fix: fix))
    }

    /// Reports keys of `table` not in `known`, suggesting the nearest known key.
    mutating func rejectUnknownKeys(_ table: TOMLTable, at path: String, known: [String]) {
        for key in table.keys where !known.contains(key) {
            let field = path.isEmpty ? key : "\(path).\(key)"
            let nearest = known.min { editDistance($0, key) < editDistance($1, key) }
            let fix =
                if let nearest, editDistance(nearest, key) <= 3 {
                    "did you mean \"\(nearest)\"?"
                } else {
                    "remove it; known keys here: \(known.joined(separator: ", "))"
                }
            problem(field, "unknown key \"\(key)\"", fix)
        }
    }

    mutating func string(_ table: TOMLTable, _ key: String, at path: String, example: String) -> String? {
        guard let value = table[key] else { return nil }
        guard let s = value.string else {
            problem(path, "expected a string, found \(value.type)", "write e.g. \(key) = \(example)")
            return nil
        }
        return s
    }

    mutating func bool(_ table: TOMLTable, _ key: String, at path: String) -> Bool? {
        guard let value = table[key] else { return nil }
        guard let b = value.bool else {
            problem(path, "expected true or false, found \(value.type)", "write \(key) = true or \(key) = false")
            return nil
        }
        return b
    }

    mutating func duration(_ table: TOMLTable, _ key: String, at path: String) -> GoDuration? {
        guard let text = string(table, key, at: path, example: "\"2s\"") else { return nil }
        do {
            return try GoDuration(parsing: text)
        } catch {
            problem(path, "\"\(text)\" is not a duration: \(error)", "write e.g. \(key) = \"200ms\", \"2s\" or \"1m30s\"")
            return nil
        }
    }

    /// A string, or an array of strings (containerd accepts both for `ca` and header values).
    mutating func strings(_ value: TOMLValueConvertible, at path: String, example: String) -> [String]? {
        if let s = value.string { return [s] }
        guard let array = value.array else {
            problem(path, "expected an array of strings, found \(value.type)", "write e.g. \(example)")
            return nil
        }
        var out: [String] = []
        for (i, element) in array.enumerated() {
            guard let s = element.string else {
                problem("\(path)[\(i)]", "expected a string, found \(element.type)", "write e.g. \(example)")
                return nil
            }
            out.append(s)
        }
        return out
    }

    mutating func table(_ value: TOMLValueConvertible, at path: String, example: String) -> TOMLTable? {
        guard let t = value.table else {
            problem(path, "expected a table, found \(value.type)", "write it as \(example)")
            return nil
        }
        return t
    }
}
