import TOMLKit

/// Whether containerd's own config makes its CRI plugin read our hosts directory.
public enum ContainerdConfigCheck: Sendable, Equatable {
    case reads(configPath: String)
    case problem(String)

    /// Inspects containerd's config.toml text (nil: the file does not exist).
    ///
    /// Version 2 keeps the setting at `plugins."io.containerd.grpc.v1.cri".registry.config_path`,
    /// version 3 (containerd 2.x) at `plugins."io.containerd.cri.v1.images".registry.config_path`,
    /// version 1 at `plugins.cri.registry.config_path`. `config_path` may list several directories
    /// separated by `:`.
    public static func evaluate(toml: String?, path: String, hostsDir: String) -> ContainerdConfigCheck {
        let pluginTable: String
        let line = "config_path = \"\(hostsDir)\""
        guard let toml else {
            return .problem("\(path) does not exist: containerd then ignores \(hostsDir); create it with [plugins.\"io.containerd.grpc.v1.cri\".registry] \(line)")
        }
        let root: TOMLTable
        do {
            root = try ContainerdConfigText.parse(toml)
        } catch {
            return .problem("\(path):\(error.line): not valid TOML (\(error.message)): containerd will not start with it")
        }
        let version = root["version"]?.int ?? 1
        switch version {
        case 3: pluginTable = "io.containerd.cri.v1.images"
        case 2: pluginTable = "io.containerd.grpc.v1.cri"
        case 1: pluginTable = "cri"
        default: return .problem("\(path): unknown config version \(version)")
        }
        let section = "[plugins.\"\(pluginTable)\".registry]"
        let registry = root["plugins"]?.table?[pluginTable]?.table?["registry"]?.table
        guard let value = registry?["config_path"] else {
            return .problem("\(path) sets no config_path for the CRI registry: containerd ignores \(hostsDir); add \(line) under \(section)")
        }
        guard let configPath = value.string else {
            return .problem("\(path): \(section) config_path is not a string; write \(line)")
        }
        let wanted = normalize(hostsDir)
        let listed = configPath.split(separator: ":").map { normalize(String($0)) }
        guard listed.contains(wanted) else {
            let fix = configPath.isEmpty ? line : "config_path = \"\(configPath):\(hostsDir)\""
            return .problem("\(path): \(section) config_path = \"\(configPath)\" does not include \(hostsDir); write \(fix)")
        }
        return .reads(configPath: configPath)
    }

    static func normalize(_ path: String) -> String {
        var p = path.trimmingWhitespace()
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while s.first?.isWhitespace == true { s.removeFirst() }
        while s.last?.isWhitespace == true { s.removeLast() }
        return String(s)
    }
}
