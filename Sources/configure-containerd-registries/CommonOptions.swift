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
        name: .customLong("cluster-dns"),
        help: ArgumentHelp(
            "The cluster DNS Service's address (repeatable): host names under the cluster domain (discovery.domain, "
                + "default cluster.local) are looked up there, and files name the address (sets discovery.dns_servers).",
            valueName: "addr[:port]"))
    var clusterDNS: [String] = []

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

    /// Reads and validates the config and positional mirrors (`ConfigResolution` has the rules).
    func load(mirrors: [String], requireRegistries: Bool = true) throws(ConfigResolution.Failure) -> AgentConfig {
        try ConfigResolution.resolve(
            configPath: config, hostsDir: hostsDir, mirrors: mirrors, requireRegistries: requireRegistries, clusterDNS: clusterDNS)
    }

    /// Which containerd the files are for (`containerd_version`, else asked of the daemon or the
    /// binary: docs/design.md §5.1), logged when `logger` is given. `deadline` (apply's, else the
    /// config's `probe.deadline`), counted from `since`: the question gets at most what is left of it.
    func target(
        for config: AgentConfig, logger: Logger? = nil, deadline: GoDuration? = nil, since: ContinuousClock.Instant? = nil
    ) -> ContainerdTarget {
        var budget = ContainerdDaemon.questionTimeout
        let deadline = deadline ?? config.probe.deadline
        if let since, !deadline.isZero {
            budget = min(budget, deadline.duration - since.duration(to: .now))
        }
        let target = ContainerdDaemon.target(for: config, within: budget)
        if target.version == nil {
            logger?.warning("\(target.description)")
        } else {
            logger?.info("files for \(target.description)")
        }
        return target
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
            throw Exit.status(.invalidConfig)
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
