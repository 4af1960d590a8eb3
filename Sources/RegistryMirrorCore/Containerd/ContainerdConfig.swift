import TOMLKit

/// How `check` asks about directories on disk: the directory a path names as containerd would open
/// it. The system layer answers from the file system; the default compares cleaned paths only.
public protocol DirectoryLookup: Sendable {
    /// Whether `path` (absolute, or relative to containerd's working directory `/`) and `other` name
    /// the same directory: a symlink to it, `dir/.`, `dir//` and `dir/` are it; ` /dir` is not.
    func sameDirectory(_ path: String, _ other: String) -> Bool
    /// Whether something exists at `path` (not following a final symlink).
    func exists(_ path: String) -> Bool
}

/// Paths compared as strings after Go's `filepath.Clean` (what containerd does with a path before
/// opening it); nothing exists. For tests and where the disk is not asked.
public struct LexicalDirectories: DirectoryLookup {
    public init() {}
    public func sameDirectory(_ path: String, _ other: String) -> Bool { GoPath.clean(path) == GoPath.clean(other) }
    public func exists(_ path: String) -> Bool { false }
}

/// Go's `path/filepath` as containerd applies it, for Linux.
public enum GoPath {
    /// `filepath.Clean`: one `/` between elements, no `.`, `..` taken back lexically, no trailing `/`;
    /// a relative path stays relative (containerd opens it from its working directory).
    public static func clean(_ path: String) -> String {
        let rooted = path.hasPrefix("/")
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == "..", let last = parts.last, last != ".." {
                parts.removeLast()
            } else if part == ".." && rooted {
                continue
            } else {
                parts.append(part)
            }
        }
        let joined = parts.joined(separator: "/")
        if rooted { return "/" + joined }
        return joined.isEmpty ? "." : joined
    }

    /// `filepath.SplitList`: the elements of a `:`-separated list; none for "".
    public static func splitList(_ list: String) -> [String] {
        list.isEmpty ? [] : list.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
    }
}

/// Whether CRI pulls of the containerd on this node read our hosts directory, judged from its config
/// by the rules of its release (docs/design.md §6.2; every rule measured on a real daemon of that
/// release, as the design says). OK, CRITICAL with the exact line to write, or OK with warnings.
public struct ContainerdConfigCheck: Sendable, Equatable {
    public var state: HealthState
    public var message: String
    /// Caveats beside an OK or a CRITICAL (a config version newer than the agent knows).
    public var warnings: [String] = []
    /// `config_path` as written, when CRI pulls read our directory through it.
    public var configPath: String?
    /// The directories CRI pulls look in before ours (a list, on the local pull): one of them with a
    /// directory for an upstream takes its place.
    public var rootsBefore: [String] = []

    public static func reads(configPath: String, rootsBefore: [String] = [], warnings: [String] = [], message: String? = nil) -> Self {
        ContainerdConfigCheck(
            state: .ok, message: message ?? "containerd reads config_path = \"\(configPath)\"", warnings: warnings, configPath: configPath,
            rootsBefore: rootsBefore)
    }

    public static func problem(_ message: String, warnings: [String] = []) -> Self {
        ContainerdConfigCheck(state: .critical, message: message, warnings: warnings)
    }

    /// Judges containerd's config text (nil: the file does not exist) for `release`.
    public static func evaluate(
        toml: String?, path: String, hostsDir: String, release: ContainerdVersion = .newestKnown,
        directories: any DirectoryLookup = LexicalDirectories()
    ) -> ContainerdConfigCheck {
        let fix = FixLine(release: release, hostsDir: hostsDir)
        guard let toml else {
            return .problem("\(path) does not exist: containerd \(release)'s CRI pulls then read no hosts.toml; create it with \(fix.whole)")
        }
        let root: TOMLTable
        do {
            root = try ContainerdConfigText.parse(toml)
        } catch {
            return .problem("\(path):\(error.line): not valid TOML (\(error.message)): containerd will not start with it")
        }
        let settings = ContainerdSettings(root)
        var warnings: [String] = []

        // The version the file is read as.
        var version = settings.version
        if version > ContainerdSettings.newestVersion {
            warnings.append(
                "\(path): config version \(version) is newer than any this agent knows: read as version \(ContainerdSettings.newestVersion)")
            version = ContainerdSettings.newestVersion
        } else if version > release.newestConfigVersion {
            if release.major == 1 && release.minor == 6 && version == 3 {
                // Measured: 1.6.20 starts with a version 3 file and reads it as a 2.
                warnings.append("\(path): config version 3 is read by containerd \(release) as version 2")
                version = 2
            } else {
                return .problem(
                    "\(path): config version \(version): containerd \(release) does not start with it (it reads up to version \(release.newestConfigVersion)); write version = \(release.newestConfigVersion) and \(fix.whole)",
                    warnings: warnings)
            }
        }
        guard version >= 1, let table = ContainerdSettings.tables[version] else {
            return .problem("\(path): config version \(settings.version) is not one containerd reads; write \(fix.whole)", warnings: warnings)
        }

        // The table CRI pulls take config_path from. containerd 2 migrates an older file's CRI table
        // into io.containerd.cri.v1.images; 2.3 does so for a version 3 file too, over what that table
        // says (measured: a v3 file's leftover [plugins."io.containerd.grpc.v1.cri".registry] is applied
        // by 2.3.4, ignored by 2.2.7).
        var source = table
        let legacy = ContainerdSettings.tables[2]!
        if release.major >= 2, version == 3, release >= ContainerdVersion(2, 3, 0), settings.configPaths[legacy] != nil {
            source = legacy
        }
        let section = "[plugins.\"\(source)\".registry]"
        let reasons = (settings.localPullReasons[table] ?? []) + (source != table ? settings.localPullReasons[source] ?? [] : [])
        let localPull = release >= ContainerdVersion(2, 1, 0) && !reasons.isEmpty
        let splits = release.criPullsSplitConfigPath(localPull: localPull)
        let how =
            release < ContainerdVersion(2, 1, 0)
            ? "containerd \(release)'s CRI pulls" : localPull
                ? "containerd \(release)'s CRI pulls (local pull: \(reasons.joined(separator: ", ")))"
                : "containerd \(release)'s CRI pulls (through the transfer service)"

        var written: String
        switch settings.configPaths[source] {
        case .notString?:
            return .problem("\(path): \(section) config_path is not a string: containerd will not start with it; write \(fix.line)", warnings: warnings)
        case .string(let value)?:
            written = value
        case nil:
            written = ""
        }
        let effective = written.isEmpty ? release.defaultConfigPath : written
        guard let effective else {
            let what = settings.configPaths[source] == nil ? "sets no config_path" : "sets config_path = \"\""
            return .problem("\(path) \(what) under \(section): \(how) read no hosts.toml; write \(fix.inTable(source))", warnings: warnings)
        }
        let shown = written.isEmpty ? "config_path = \"\" (containerd's default, \"\(effective)\")" : "config_path = \"\(written)\""

        if !splits {
            // The whole string names one directory.
            guard directories.sameDirectory(effective, hostsDir) else {
                let list = effective.contains(":") ? " as one directory, not as a list," : ""
                return .problem(
                    "\(path): \(section) \(shown): \(how) take config_path\(list) so they read no hosts.toml under \(hostsDir); write \(fix.inTable(source))",
                    warnings: warnings)
            }
            return .reads(configPath: written.isEmpty ? effective : written, warnings: warnings, message: "\(how) read \(hostsDir) (\(shown))")
        }
        let roots = GoPath.splitList(effective).filter { !$0.isEmpty }
        guard let index = roots.firstIndex(where: { directories.sameDirectory($0, hostsDir) }) else {
            let suggestion =
                release < ContainerdVersion(2, 1, 0) && !written.isEmpty ? "config_path = \"\(written):\(hostsDir)\"" : fix.line
            return .problem(
                "\(path): \(section) \(shown) does not include \(hostsDir): \(how) read no hosts.toml there; write \(suggestion) under \(section)",
                warnings: warnings)
        }
        return .reads(
            configPath: written.isEmpty ? effective : written, rootsBefore: Array(roots[..<index]), warnings: warnings,
            message: "\(how) read \(hostsDir) (\(shown))")
    }

    /// The line to write for `release`, in the table of the config version it reads.
    struct FixLine {
        let release: ContainerdVersion
        let hostsDir: String

        var line: String { "config_path = \"\(hostsDir)\"" }

        func inTable(_ table: String) -> String { "\(line) under [plugins.\"\(table)\".registry]" }

        /// For a file to write from nothing: its version and the table.
        var whole: String {
            let version = release.newestConfigVersion
            return "version = \(version) and \(inTable(ContainerdSettings.tables[version]!))"
        }
    }
}
