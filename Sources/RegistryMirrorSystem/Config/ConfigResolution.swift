import RegistryMirrorCore

/// Where the configuration of a run comes from: the config file (the default path, or `--config`),
/// positional mirrors, and `--hosts-dir`. The rules, in one place that tests run in-process:
/// - a missing file at the default path is fine when mirrors are given (all else defaults);
/// - a missing file given with `--config`, or one that cannot be read or is invalid, is `.invalid` (78);
/// - a config naming no registry is "nothing to configure", `.usage` (64), unless the command only
///   needs hosts_dir (`remove`);
/// - `--hosts-dir` overrides the file's `hosts_dir`.
public enum ConfigResolution {
    /// Why the configuration could not be loaded; each command maps it to its own exit code.
    public enum Failure: Error, Equatable {
        /// Nothing to configure, or a bad positional mirror: exit 64.
        case usage(String)
        /// The config file is missing (given explicitly), unreadable or invalid: exit 78 (check: 3).
        case invalid([String])

        public var lines: [String] {
            switch self {
            case .usage(let message): [message]
            case .invalid(let lines): lines
            }
        }
    }

    public static func resolve(
        configPath: String?, hostsDir: String?, mirrors: [String], requireRegistries: Bool, clusterDNS: [String] = [],
        read: (String) throws(SystemError) -> [UInt8] = { path throws(SystemError) in try ConfigFile.read(path) }
    ) throws(Failure) -> AgentConfig {
        let path = configPath ?? AgentConfig.defaultPath
        var bytes: [UInt8]?
        do {
            bytes = try read(path)
        } catch where error.isMissing && configPath == nil {
            guard !mirrors.isEmpty || !requireRegistries else {
                throw .usage(
                    "nothing to configure: \(path) does not exist and no UPSTREAM,ENDPOINT[,SERVER] mirrors were given. "
                        + "Write the config file, pass --config PATH, or give mirrors such as "
                        + "docker.io,http://10.4.246.205:5000")
            }
            bytes = nil  // positional mirrors alone: every other setting is a default
        } catch {
            throw .invalid(["config: \(error)"])
        }
        var loaded: AgentConfig
        do {
            loaded =
                if let bytes {
                    try ConfigLoader.load(bytes: bytes, path: path, mirrors: mirrors, clusterDNS: clusterDNS)
                } else {
                    try ConfigLoader.load(toml: nil, path: path, mirrors: mirrors, clusterDNS: clusterDNS)
                }
        } catch {
            let lines = error.problems.map { "config: \($0)" }
            if error.isUsageError { throw .usage(lines.joined(separator: "\n")) }
            throw .invalid(lines)
        }
        if requireRegistries && loaded.registries.isEmpty {
            throw .usage(
                "nothing to configure: \(path) names no [[registry]] and no UPSTREAM,ENDPOINT[,SERVER] mirrors were given; "
                    + "nothing was changed. Add a [[registry]] with a [[registry.host]], or run `remove` to delete this "
                    + "program's files")
        }
        if let hostsDir { loaded.hostsDir = hostsDir }
        return loaded
    }
}
