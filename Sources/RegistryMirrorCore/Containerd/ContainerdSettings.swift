import TOMLKit

/// What the agent reads in containerd's config (docs/design.md §6.2), as containerd's releases read
/// it: the config `version`, each CRI registry table's `config_path`, the CRI settings that make a
/// 2.1+ pull leave the transfer service for the local pull, and the gRPC socket. Pure: from the
/// parsed text (`ContainerdConfigText`).
public struct ContainerdSettings: Sendable, Equatable {
    /// The plugin tables that hold CRI image settings, by config version: 1 `cri`, 2
    /// `io.containerd.grpc.v1.cri`, 3 and 4 `io.containerd.cri.v1.images`.
    public static let tables = [1: "cri", 2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.images", 4: "io.containerd.cri.v1.images"]

    /// The newest config version this agent knows (containerd 2.3's).
    public static let newestVersion = 4

    /// A table's `config_path`.
    public enum ConfigPath: Sendable, Equatable {
        case string(String)
        /// Set, but not to a string: containerd will not start with it.
        case notString
    }

    /// `version` as written; 1 when absent (as containerd reads it).
    public var version: Int
    /// `config_path` per plugin table that has a `registry` table with one.
    public var configPaths: [String: ConfigPath] = [:]
    /// Per plugin table, the settings in it that 2.1+'s CRI takes as a reason to pull without the
    /// transfer service (containerd's `CheckLocalImagePullConfigs`), as `key = value` text.
    public var localPullReasons: [String: [String]] = [:]
    /// `[grpc] address` (versions 1 to 3).
    public var grpcAddress: String?
    /// `[plugins."io.containerd.server.v1.grpc"] address` (version 4; 2.3 also takes it from a 3).
    public var grpcPluginAddress: String?
    /// The plugin table `io.containerd.server.v1.grpc` exists at all.
    public var hasGRPCPlugin = false

    public init(_ root: TOMLTable) {
        version = root["version"]?.int ?? 1
        let plugins = root["plugins"]?.table
        for name in Set(Self.tables.values) {
            guard let table = plugins?[name]?.table else { continue }
            if let value = table["registry"]?.table?["config_path"] {
                configPaths[name] = value.string.map(ConfigPath.string) ?? .notString
            }
            let reasons = Self.localPullReasons(in: table)
            if !reasons.isEmpty { localPullReasons[name] = reasons }
        }
        grpcAddress = root["grpc"]?.table?["address"]?.string
        let grpcPlugin = plugins?["io.containerd.server.v1.grpc"]?.table
        hasGRPCPlugin = grpcPlugin != nil
        grpcPluginAddress = grpcPlugin?["address"]?.string
    }

    /// `use_local_image_pull = true`, or a setting the transfer service does not take. In a version
    /// 2 table some of these sit in its `containerd` sub-table (migrated into the images table).
    static func localPullReasons(in table: TOMLTable) -> [String] {
        let containerd = table["containerd"]?.table
        func bool(_ key: String) -> Bool? { table[key]?.bool ?? containerd?[key]?.bool }
        var reasons: [String] = []
        if bool("use_local_image_pull") == true { reasons.append("use_local_image_pull = true") }
        if bool("disable_snapshot_annotations") == false { reasons.append("disable_snapshot_annotations = false") }
        if bool("discard_unpacked_layers") == true { reasons.append("discard_unpacked_layers = true") }
        if let n = table["max_concurrent_downloads"]?.int, n != 3 { reasons.append("max_concurrent_downloads = \(n)") }
        if bool("image_pull_with_sync_fs") == true { reasons.append("image_pull_with_sync_fs = true") }
        let registry = table["registry"]?.table
        for key in ["mirrors", "configs", "auths"] where (registry?[key]?.table?.count ?? 0) > 0 {
            reasons.append("registry.\(key)")
        }
        return reasons
    }

    /// The sockets containerd listens on for gRPC, most likely first, when `containerd_address` is
    /// not set: a version 4 file is served on its grpc plugin's address (its `[grpc]` is no longer
    /// read: measured on 2.3.4), else on the default; an older file on `[grpc] address` (2.3 takes
    /// the plugin's instead when both are there), else the plugin's, else the default.
    public var sockets: [String] {
        let fallback = AgentConfig.defaultContainerdAddress
        var out: [String]
        if version >= 4 {
            out = [grpcPluginAddress ?? fallback]
        } else {
            out = [grpcAddress, grpcPluginAddress].compactMap { $0 } + [fallback]
        }
        var seen = Set<String>()
        return out.filter { !$0.isEmpty && seen.insert($0).inserted }
    }
}
