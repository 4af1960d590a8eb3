/// A mirror host's identity: its upstream and its URL as configured. It stays the same when the
/// config is reloaded with the same host, and is what a host's history (`HostTracker`) is kept under.
public struct HostKey: Hashable, Sendable, CustomStringConvertible {
    public var upstream: String
    public var url: String

    public init(upstream: String, url: String) {
        self.upstream = upstream
        self.url = url
    }

    public var description: String { "\(upstream) \(url)" }
}

/// What a registry's hosts.toml should be now.
public enum FileDecision: Sendable, Equatable {
    /// The file lists these hosts, in config order.
    case write([MirrorHost])
    /// Every host has answered and none belongs in the file: no file (containerd uses the upstream).
    case remove
    /// No host belongs in the file yet, but some have not answered: leave the file as it is.
    case wait
}

/// The one rule, for apply and watch alike, of which hosts belong in a registry's file: those whose
/// tracker says so (`HostTracker.inFile`), in config order. Registries with `readiness_probe = false`
/// list every host.
public func fileDecision(_ registry: Registry, tracker: (HostKey) -> HostTracker?) -> FileDecision {
    guard registry.readinessProbe else { return .write(registry.hosts) }
    var listed: [MirrorHost] = []
    var undecided = false
    for host in registry.hosts {
        switch tracker(HostKey(upstream: registry.upstream, url: host.url))?.inFile {
        case true?: listed.append(host)
        case false?: break
        case nil: undecided = true
        }
    }
    if !listed.isEmpty { return .write(listed) }
    return undecided ? .wait : .remove
}

/// The state apply and watch share: every probed host's tracker by identity, and per registry the
/// decision last carried out on disk. Pure; the callers probe and write. Every update costs in
/// proportion to one registry, never to all of them, so a run grows linearly with the config.
struct MirrorState {
    private(set) var config: AgentConfig
    /// Upstream to its position in `config.registries`.
    private(set) var registryIndex: [String: Int] = [:]
    /// Hosts that are probed (of registries with `readiness_probe = true`).
    private(set) var probedHosts = 0
    private(set) var trackers: [HostKey: HostTracker] = [:]
    /// Probed hosts whose first result is in.
    private(set) var decidedHosts = 0
    /// The decision last carried out on disk, per upstream; absent: nothing done yet.
    var applied: [String: FileDecision] = [:]
    /// Upstreams whose directory refused a write, with the reason.
    var failed: [String: String] = [:]

    init(config: AgentConfig) {
        self.config = config
        index()
    }

    /// A reloaded config: hosts still configured keep their history, the others are forgotten, and
    /// every file is decided again (a host's settings or the server may have changed).
    mutating func replace(config: AgentConfig) {
        self.config = config
        index()
        let keys = Set(probedKeys)
        trackers = trackers.filter { keys.contains($0.key) }
        decidedHosts = trackers.values.filter { $0.inFile != nil }.count
        applied = [:]
        failed = [:]
    }

    private mutating func index() {
        registryIndex = Dictionary(config.registries.enumerated().map { ($1.upstream, $0) }, uniquingKeysWith: { a, _ in a })
        probedHosts = config.registries.reduce(0) { $0 + ($1.readinessProbe ? $1.hosts.count : 0) }
    }

    /// Every probed host, with its key, in config order.
    var probedKeys: [HostKey] {
        config.registries.filter(\.readinessProbe).flatMap { r in r.hosts.map { HostKey(upstream: r.upstream, url: $0.url) } }
    }

    var everyHostDecided: Bool { decidedHosts == probedHosts }

    /// Takes a host's tracker after a probe (the probe task keeps it, to schedule its next probe) and
    /// returns the one it replaces. Nil when `key` is not configured (a result from before a reload).
    mutating func adopt(_ key: HostKey, _ tracker: HostTracker) -> HostTracker?? {
        guard registryIndex[key.upstream] != nil else { return nil }
        let previous = trackers.updateValue(tracker, forKey: key)
        if previous?.inFile == nil && tracker.inFile != nil { decidedHosts += 1 }
        return .some(previous)
    }

    func decision(_ upstream: String) -> FileDecision? {
        guard let ri = registryIndex[upstream] else { return nil }
        return fileDecision(config.registries[ri]) { trackers[$0] }
    }

    /// True when the registry's file is in place (written, listing at least one host).
    func fileInPlace(_ upstream: String) -> Bool {
        if case .write? = applied[upstream] { return true }
        return false
    }

    /// Every probed host of the registry has answered at least once.
    func everyHostAnswered(_ registry: Registry) -> Bool {
        !registry.readinessProbe || registry.hosts.allSatisfy { trackers[HostKey(upstream: registry.upstream, url: $0.url)] != nil }
    }
}
