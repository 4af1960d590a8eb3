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
/// list every host (none: no file, as when a Service name of theirs has no address).
public func fileDecision(_ registry: Registry, tracker: (HostKey) -> HostTracker?) -> FileDecision {
    guard registry.readinessProbe else { return registry.hosts.isEmpty ? .remove : .write(registry.hosts) }
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

/// The state apply and watch share: every probed host's tracker by identity, per Service name its
/// addresses, and per registry the decision last carried out on disk. Pure; the callers probe, resolve
/// and write. Every update costs in proportion to one registry, never to all of them (but for a
/// Service's addresses changing, which is rare), so a run grows linearly with the config.
///
/// Two configs: `configured` as read (host URLs may be Service names) and `config`, the same with each
/// Service name replaced by its current addresses (`MirrorHost.resolved`): what files, probes, plans
/// and metrics work on. A host that is not a Service name is in both as it is.
struct MirrorState {
    private(set) var configured: AgentConfig
    private(set) var config: AgentConfig
    /// Upstream to its position in `config.registries` (the same in `configured`).
    private(set) var registryIndex: [String: Int] = [:]
    /// Hosts that are probed (of registries with `readiness_probe = true`), addresses of Service names
    /// included, candidates not.
    private(set) var probedHosts = 0
    private(set) var trackers: [HostKey: HostTracker] = [:]
    /// Probed hosts whose first result is in.
    private(set) var decidedHosts = 0
    /// Per Service name host (its key as configured), its addresses.
    private(set) var services: [HostKey: ServiceAddresses] = [:]
    /// Every probed address host (current or candidate) to its Service name host.
    private(set) var owners: [HostKey: HostKey] = [:]
    /// The decision last carried out on disk, per upstream; absent: nothing done yet.
    var applied: [String: FileDecision] = [:]
    /// Upstreams whose directory refused a write, with the reason.
    var failed: [String: String] = [:]
    /// Good probes in a row a new address of a Service needs before it replaces the old one.
    let promoteAfter: Int
    private var filedKeys: Set<HostKey> = []

    init(config: AgentConfig, promoteAfter: Int? = nil) {
        self.configured = config
        self.config = config
        self.promoteAfter = max(1, promoteAfter ?? config.probe.successThreshold)
        reindex()
    }

    /// A reloaded config: hosts still configured keep their history (a Service name its addresses),
    /// the others are forgotten, and every file is decided again (a host's settings or the server may
    /// have changed).
    mutating func replace(config: AgentConfig) {
        configured = config
        reindex()
        applied = [:]
        failed = [:]
    }

    private mutating func reindex() {
        var kept: [HostKey: ServiceAddresses] = [:]
        for registry in configured.registries {
            for host in registry.hosts {
                guard let name = configured.serviceName(of: host) else { continue }
                let key = HostKey(upstream: registry.upstream, url: host.url)
                kept[key] = services[key].flatMap { $0.name == name ? $0 : nil } ?? ServiceAddresses(name: name)
            }
        }
        services = kept
        registryIndex = Dictionary(
            configured.registries.enumerated().map { ($1.upstream, $0) }, uniquingKeysWith: { a, _ in a })
        config = configured
        config.registries = configured.registries.map { expand($0) }
        recount()
    }

    /// What plan and check show: `config`, but with each Service name that has no address kept as
    /// it is (`serviceName` set, no `address`), to be shown with its lookup. Never probed or written.
    var reportView: AgentConfig {
        var view = configured
        view.registries = configured.registries.map { expand($0, keepingUnresolved: true) }
        return view
    }

    /// The registry with each Service name replaced by its current addresses; a host listed twice (two
    /// names with one address, or a name and the address itself) only the first time.
    private func expand(_ registry: Registry, keepingUnresolved: Bool = false) -> Registry {
        guard !services.isEmpty else { return registry }
        var expanded = registry
        var seen = Set<String>()
        expanded.hosts = []
        for host in registry.hosts {
            if let addresses = services[HostKey(upstream: registry.upstream, url: host.url)] {
                if keepingUnresolved && addresses.current.isEmpty {
                    var unresolved = host
                    unresolved.serviceName = addresses.name
                    if seen.insert(host.url).inserted { expanded.hosts.append(unresolved) }
                }
                for address in addresses.current {
                    let resolved = host.resolved(to: address, name: addresses.name)
                    if seen.insert(resolved.url).inserted { expanded.hosts.append(resolved) }
                }
            } else if seen.insert(host.url).inserted {
                expanded.hosts.append(host)
            }
        }
        return expanded
    }

    /// Rebuilds what follows from the expanded config: the address owners, the probed keys and counts.
    private mutating func recount() {
        owners = [:]
        for (key, addresses) in services {
            guard let ri = registryIndex[key.upstream], let host = configured.registries[ri].hosts.first(where: { $0.url == key.url })
            else { continue }
            for address in addresses.probed {
                owners[HostKey(upstream: key.upstream, url: ServiceAddress.url(host.url, at: address))] = key
            }
        }
        filedKeys = Set(probedKeys)
        probedHosts = filedKeys.count
        trackers = trackers.filter { isProbed($0.key) }
        decidedHosts = trackers.filter { filedKeys.contains($0.key) && $0.value.inFile != nil }.count
    }

    /// Every probed host, with its key, in config order (Service names as their current addresses).
    var probedKeys: [HostKey] {
        config.registries.filter(\.readinessProbe).flatMap { r in r.hosts.map { HostKey(upstream: r.upstream, url: $0.url) } }
    }

    /// Each Service name once, with the hosts (keys as configured) that use it: a name several
    /// registries share is looked up once for all of them. `known`: every one of them has addresses.
    var servicesByName: [(name: String, keys: [HostKey], known: Bool)] {
        Dictionary(grouping: services, by: \.value.name).map { name, uses in
            (name, uses.map(\.key).sorted { $0.description < $1.description }, uses.allSatisfy { !$0.value.current.isEmpty })
        }.sorted { $0.name < $1.name }
    }

    /// The Service name hosts (keys as configured) that use `name`.
    func keys(ofService name: String) -> [HostKey] {
        services.filter { $0.value.name == name }.map(\.key).sorted { $0.description < $1.description }
    }

    /// Service names not looked up yet.
    var unresolvedServices: Int { services.values.filter { $0.last == nil }.count }

    var everyHostDecided: Bool { decidedHosts == probedHosts && unresolvedServices == 0 }

    /// What taking a probe's tracker did.
    enum Adoption {
        /// `key` is not probed (a result from before a reload, or of an address no longer used).
        case ignored
        /// The host's first tracker.
        case first
        /// The tracker it replaced.
        case replaced(HostTracker)

        /// The tracker before, nil when there was none (or the result was ignored).
        var previous: HostTracker? {
            if case .replaced(let tracker) = self { return tracker }
            return nil
        }
    }

    /// Takes a host's tracker after a probe (the probe loop keeps it, to schedule its next probe).
    mutating func adopt(_ key: HostKey, _ tracker: HostTracker) -> Adoption {
        guard isProbed(key) else { return .ignored }
        let previous = trackers.updateValue(tracker, forKey: key)
        if previous?.inFile == nil && tracker.inFile != nil && filedKeys.contains(key) { decidedHosts += 1 }
        return previous.map { .replaced($0) } ?? .first
    }

    /// What a Service name's lookup changed, for the caller to start and stop probes and log.
    struct ServiceUpdate {
        var service: HostKey
        var name: String
        var change: ServiceAddresses.Change
        /// The hosts now probed, with their keys and the tracker each starts from (a candidate's is
        /// `HostTracker.candidate`: out until it has passed).
        var started: [(key: HostKey, host: MirrorHost, seed: HostTracker)]
        var stopped: [HostKey]
        var current: [String]
        var probed: Bool
        /// The lookup as recorded (`Resolution.usable`); nil for a candidate that passed.
        var resolution: Resolution? = nil
    }

    /// Records a lookup of `service` (a Service name host's key as configured). Nil when it is not one.
    mutating func resolved(_ service: HostKey, _ answer: Resolution) -> ServiceUpdate? {
        guard services[service] != nil else { return nil }
        let resolution = answer.usable
        let probed = registryIndex[service.upstream].map { configured.registries[$0].readinessProbe } ?? true
        let change = services[service]!.record(resolution, atOnce: !probed)
        var update = apply(change, to: service)
        update?.resolution = resolution
        return update
    }

    /// After a result of `key`: if it is a candidate address that has now passed `promoteAfter` good
    /// probes, it replaces the Service's old addresses.
    mutating func promoteIfPassed(_ key: HostKey) -> ServiceUpdate? {
        guard let service = owners[key], let addresses = services[service], let tracker = trackers[key],
            tracker.consecutiveSuccesses >= promoteAfter,
            let address = addresses.candidates.first(where: { ServiceAddress.url(service.url, at: $0) == key.url })
        else { return nil }
        return apply(services[service]!.passed(address), to: service)
    }

    private mutating func apply(_ change: ServiceAddresses.Change, to service: HostKey) -> ServiceUpdate? {
        guard let ri = registryIndex[service.upstream], let host = configured.registries[ri].hosts.first(where: { $0.url == service.url }),
            let addresses = services[service]
        else { return nil }
        let registry = configured.registries[ri]
        // A key another host also stands for (a literal, or another name's address) was probed before
        // this change and stays probed after it: it is neither started nor stopped.
        let (filedBefore, ownersBefore) = (filedKeys, owners)
        if change.previous != nil || !change.added.isEmpty || !change.dropped.isEmpty {
            config.registries[ri] = expand(registry)
            recount()
        }
        return ServiceUpdate(
            service: service, name: addresses.name, change: change,
            started: change.added.compactMap { address in
                let resolved = host.resolved(to: address, name: addresses.name)
                let key = HostKey(upstream: service.upstream, url: resolved.url)
                guard !filedBefore.contains(key) && ownersBefore[key] == nil else { return nil }
                let seed = addresses.candidates.contains(address) ? HostTracker.candidate : HostTracker()
                return (key, resolved, seed)
            },
            stopped: change.dropped.map { HostKey(upstream: service.upstream, url: ServiceAddress.url(service.url, at: $0)) }
                .filter { !isProbed($0) },
            current: addresses.current, probed: registry.readinessProbe)
    }

    /// The key has a probe: a host of a file or an address of a Service name (current or candidate).
    private func isProbed(_ key: HostKey) -> Bool { filedKeys.contains(key) || owners[key] != nil }

    /// The host to probe for an address key of a Service name (current or candidate).
    func addressHost(_ key: HostKey) -> MirrorHost? {
        guard let service = owners[key], let ri = registryIndex[key.upstream], let addresses = services[service],
            let host = configured.registries[ri].hosts.first(where: { $0.url == service.url }),
            let address = addresses.probed.first(where: { ServiceAddress.url(host.url, at: $0) == key.url })
        else { return nil }
        return host.resolved(to: address, name: addresses.name)
    }

    /// An address a Service name's lookup gave that has not replaced the old ones yet.
    func isCandidate(_ key: HostKey) -> Bool { owners[key] != nil && !filedKeys.contains(key) }

    /// Candidate addresses (probed, not in files yet) of every Service name, with their hosts. Their
    /// trackers are kept (a reload carries them over).
    var candidateHosts: [(key: HostKey, host: MirrorHost)] {
        owners.keys.filter { !filedKeys.contains($0) }.sorted { $0.description < $1.description }.compactMap { key in
            addressHost(key).map { (key, $0) }
        }
    }

    /// Some Service name of the registry has no address yet and may still get one.
    func hasPendingService(_ upstream: String) -> Bool {
        guard let ri = registryIndex[upstream], !services.isEmpty else { return false }
        return configured.registries[ri].hosts.contains { services[HostKey(upstream: upstream, url: $0.url)]?.isPending == true }
    }

    /// What the registry's file should be now: `fileDecision` of its hosts, with a Service name that
    /// has no address yet and may still get one holding the file as it is rather than removing it.
    func decision(_ upstream: String) -> FileDecision? {
        guard let ri = registryIndex[upstream] else { return nil }
        let decision = fileDecision(config.registries[ri]) { trackers[$0] }
        return decision == .remove && hasPendingService(upstream) ? .wait : decision
    }

    /// True when the registry's file is in place (written, listing at least one host).
    func fileInPlace(_ upstream: String) -> Bool {
        if case .write? = applied[upstream] { return true }
        return false
    }

    /// Every probed host of the registry has answered at least once, and every Service name of it has
    /// been looked up.
    func everyHostAnswered(_ upstream: String) -> Bool {
        guard let ri = registryIndex[upstream] else { return true }
        let registry = config.registries[ri]
        let named = configured.registries[ri].hosts.allSatisfy {
            services[HostKey(upstream: upstream, url: $0.url)].map { $0.last != nil } ?? true
        }
        return named && (!registry.readinessProbe || registry.hosts.allSatisfy { trackers[HostKey(upstream: upstream, url: $0.url)] != nil })
    }

    /// Each configured host of a registry as a report names it: a host, each address of a Service name,
    /// or a Service name with no address yet and its last lookup.
    func reportedHosts(_ upstream: String) -> [(url: String, tracker: HostTracker?, lookup: Resolution?)] {
        guard let ri = registryIndex[upstream] else { return [] }
        return configured.registries[ri].hosts.flatMap { host -> [(url: String, tracker: HostTracker?, lookup: Resolution?)] in
            let key = HostKey(upstream: upstream, url: host.url)
            guard let addresses = services[key] else { return [(host.url, trackers[key], nil)] }
            guard !addresses.probed.isEmpty else { return [(host.url, nil, addresses.last)] }
            return addresses.probed.map { address in
                let url = ServiceAddress.url(host.url, at: address)
                return (url, trackers[HostKey(upstream: upstream, url: url)], nil)
            }
        }
    }
}
