import ArgumentParser
import Glibc
import Logging
import RegistryMirrorCore
import RegistryMirrorSystem

extension LogFormat: ExpressibleByArgument {}

/// Options every subcommand takes.
struct CommonOptions: ParsableArguments {
    @Option(
        name: .long, help: ArgumentHelp("The config file.", valueName: "path"))
    var config: String?

    @Option(
        name: .customLong("hosts-dir"),
        help: ArgumentHelp("containerd's registry config_path (overrides the file's hosts_dir).", valueName: "path"))
    var hostsDir: String?

    @Option(
        name: .customLong("log-format"),
        help: ArgumentHelp(
            "auto, text, json or journal. auto: the journal when stderr is journald ($JOURNAL_STREAM), else text.",
            valueName: "format"))
    var logFormat: LogFormat = .auto

    @Flag(name: .shortAndLong, help: "Also log debug lines (every probe attempt, unchanged files).")
    var verbose = false

    func validate() throws {
        if let hostsDir, !hostsDir.hasPrefix("/") {
            throw ValidationError("--hosts-dir \(hostsDir): give an absolute path, e.g. /etc/containerd/certs.d")
        }
    }

    /// Sets up swift-log for this process and returns the program's logger.
    func makeLogger() -> Logger {
        let format = logFormat.resolved(environment: Environment.all)
        let level: Logger.Level = verbose ? .debug : .info
        LoggingSystem.bootstrap { label in format.makeHandler(label: label, level: level) }
        return Logger(label: "configure-containerd-registries")
    }

    /// Why the configuration could not be loaded; each command maps it to its own exit code.
    enum LoadFailure: Error {
        /// Nothing to configure, or a bad positional mirror: exit 64.
        case usage(String)
        /// The config file is missing (given explicitly), unreadable or invalid: exit 78 (check: 3).
        case invalid([String])

        var lines: [String] {
            switch self {
            case .usage(let message): [message]
            case .invalid(let lines): lines
            }
        }
    }

    /// Reads and validates the config and positional mirrors. `requireRegistries`: a config that names
    /// no registry is "nothing to configure" (a usage error), so apply, plan, check and watch never
    /// mistake an empty or emptied file for "remove every file"; only `remove` reads a config without.
    func load(mirrors: [String], requireRegistries: Bool = true) throws(LoadFailure) -> AgentConfig {
        let path = config ?? AgentConfig.defaultPath
        var bytes: [UInt8]?
        do {
            bytes = try ConfigFile.read(path)
        } catch .missing(_) where config == nil {
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
                    try ConfigLoader.load(bytes: bytes, path: path, mirrors: mirrors)
                } else {
                    try ConfigLoader.load(toml: nil, path: path, mirrors: mirrors)
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

    /// `load` with apply's exit codes: 64 for usage errors, 78 for an invalid file, logged.
    func loadConfig(mirrors: [String], logger: Logger, requireRegistries: Bool = true) throws -> AgentConfig {
        do {
            return try load(mirrors: mirrors, requireRegistries: requireRegistries)
        } catch .usage(let message) {
            throw ValidationError(message)
        } catch {
            for line in error.lines { logger.error("\(line)") }
            logger.error("config invalid: nothing was written")
            throw ExitCode(ExitStatus.invalidConfig.rawValue)
        }
    }
}

enum Environment {
    static var all: [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let eq = text.firstIndex(of: "=") {
                result[String(text[..<eq])] = String(text[text.index(after: eq)...])
            }
            pointer += 1
        }
        return result
    }
}

/// Parses a Go-style duration option (`--deadline 5m`): 0s, or at least 1ms.
func parseDurationOption(_ text: String, name: String) throws -> GoDuration {
    let duration: GoDuration
    do {
        duration = try GoDuration(parsing: text)
    } catch {
        throw ValidationError("\(name) \(text): \(error); write e.g. 30s, 5m or 1m30s")
    }
    if !duration.isZero && duration < .milliseconds(1) {
        throw ValidationError("\(name) \(text): below 1ms; write e.g. 30s, 5m or 1m30s (0s: no deadline)")
    }
    return duration
}
