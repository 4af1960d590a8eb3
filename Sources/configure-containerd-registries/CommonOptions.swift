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

    /// Sets up swift-log for this process and returns the program's logger.
    func makeLogger() -> Logger {
        let format = logFormat.resolved(environment: Environment.all)
        let level: Logger.Level = verbose ? .debug : .info
        LoggingSystem.bootstrap { label in format.makeHandler(label: label, level: level) }
        return Logger(label: "configure-containerd-registries")
    }

    /// Reads and validates the config and positional mirrors; errors become the documented exit codes.
    func loadConfig(mirrors: [String], logger: Logger) throws -> AgentConfig {
        let path = config ?? AgentConfig.defaultPath
        var text: String?
        do {
            text = try ConfigFile.read(path)
        } catch ConfigFile.ReadError.missing(_) where config == nil && !mirrors.isEmpty {
            text = nil  // positional mirrors alone: every other setting is a default
        } catch ConfigFile.ReadError.missing(_) where config == nil {
            throw ValidationError(
                "nothing to configure: \(path) does not exist and no UPSTREAM,ENDPOINT[,SERVER] mirrors were given. "
                    + "Write the config file, pass --config PATH, or give mirrors such as "
                    + "docker.io,http://10.4.246.205:5000")
        } catch {
            logger.error("config: \(error)")
            throw ExitCode(ExitStatus.invalidConfig.rawValue)
        }
        var loaded: AgentConfig
        do {
            loaded = try ConfigLoader.load(toml: text, path: path, mirrors: mirrors)
        } catch {
            for problem in error.problems { logger.error("config: \(problem)") }
            if error.isUsageError { throw ExitCode(ExitStatus.usage.rawValue) }
            logger.error("config invalid: nothing was written")
            throw ExitCode(ExitStatus.invalidConfig.rawValue)
        }
        if let hostsDir {
            guard hostsDir.hasPrefix("/") else {
                throw ValidationError("--hosts-dir \(hostsDir): give an absolute path, e.g. /etc/containerd/certs.d")
            }
            loaded.hostsDir = hostsDir
        }
        return loaded
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

/// Parses a Go-style duration option (`--deadline 5m`).
func parseDurationOption(_ text: String, name: String) throws -> GoDuration {
    do {
        return try GoDuration(parsing: text)
    } catch {
        throw ValidationError("\(name) \(text): \(error); write e.g. 30s, 5m or 1m30s")
    }
}
