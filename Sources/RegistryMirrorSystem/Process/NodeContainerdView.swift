import RegistryMirrorCore

/// `ContainerdView` on this node: containerd's config file, its journal, its process and the file
/// system, each question bounded.
public struct NodeContainerdView: ContainerdView {
    public init() {}

    public func configText(_ path: String) throws(SystemError) -> String? { try ConfigFile.readContainerdConfig(path) }

    public func recentBypasses(unit: String, window: Double) -> [ContainerdLog.Bypass] {
        guard case .success(let events) = ContainerdJournal.recent(unit: unit, window: window) else { return [] }
        return events.compactMap { if case .bypass(let b) = $0 { b } else { nil } }
    }

    public func startTime(address: String) -> Double? { ContainerdDaemon.startTime(address: address) }

    public func modified(_ path: String) -> Double? { ContainerdDaemon.modified(path) }

    public func address(for config: AgentConfig) -> String {
        ContainerdDaemon.addresses(for: config).first ?? AgentConfig.defaultContainerdAddress
    }

    public var directories: any DirectoryLookup { FileSystemDirectories() }
}
