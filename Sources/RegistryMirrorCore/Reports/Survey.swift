import TOMLKit

/// One probe round over every host, set beside what is on disk: what `plan` shows and `check` judges.
public struct Survey: Sendable {
    public struct HostStatus: Sendable {
        public var host: MirrorHost
        /// Nil for registries with `readiness_probe = false`: they are not probed.
        public var result: ProbeResult?
        /// The managed hosts.toml on disk names this host.
        public var inFile: Bool
        /// Named by the file on disk but no longer by the config (or no longer an address of its
        /// Service name): probed all the same, since containerd still tries it.
        public var onlyInFile = false
        public var isUp: Bool { result?.isUp ?? true }
    }

    public struct Entry: Sendable {
        public var upstream: String
        public var filePath: String
        /// Nil for an upstream no longer configured that still has files of ours.
        public var registry: Registry?
        public var hosts: [HostStatus]
        public var observed: UpstreamDirState
        /// What apply would write now; nil: no file.
        public var desired: String?
        public var actions: [FileAction]
        public var conflict: PlanConflict?

        public var current: String? {
            if case .managed(let text) = observed.file { return text }
            return nil
        }
        /// True when apply would change something on disk for this upstream.
        public var hasChanges: Bool { !actions.isEmpty || conflict != nil }
    }

    public var entries: [Entry]

    /// Marks each configured upstream whose directory (or its `host_port_` form) exists in a
    /// `config_path` root that containerd tries before hosts_dir (`ContainerdConfigCheck.rootsBefore`).
    public mutating func markShadows(roots: [String], directories: any DirectoryLookup) {
        guard !roots.isEmpty else { return }
        for i in entries.indices where entries[i].registry != nil && entries[i].observed.shadowedBy == nil {
            let upstream = entries[i].upstream
            let names = [HostsFile.shadowingDirectory(upstream), upstream].compactMap { $0 }
            for root in roots {
                let base = root.hasPrefix("/") ? root : "/" + root
                if let name = names.first(where: { directories.exists("\(base)/\($0)") }) {
                    entries[i].observed.shadowedBy = "\(GoPath.clean(base))/\(name)"
                    break
                }
            }
        }
    }

    /// `config` with each registry's hosts as the survey saw them: Service names as their addresses,
    /// and the hosts only a file on disk still lists. What containerd's log names (an address, as the
    /// file has it) is matched against this, not against the config as read.
    public func hostsAsSeen(_ config: AgentConfig) -> AgentConfig {
        var seen = config
        let byUpstream = Dictionary(entries.map { ($0.upstream, $0) }, uniquingKeysWith: { a, _ in a })
        seen.registries = config.registries.map { registry in
            var registry = registry
            if let entry = byUpstream[registry.upstream] { registry.hosts = entry.hosts.map(\.host) }
            return registry
        }
        return seen
    }

    /// The config as plan and check see it: each Service name looked up once and replaced by its
    /// addresses (`MirrorHost.resolved`); a name with no address stays as it is, with `serviceName` set.
    public struct Resolved: Sendable {
        /// The model apply and watch decide files with, holding the lookups; `make` adds the probes.
        let state: MirrorState
        /// `MirrorState.reportView`: what plan and check show, names without an address included.
        public let config: AgentConfig

        init(state: MirrorState) {
            self.state = state
            config = state.reportView
        }
        /// A Service name host's lookup, by its key as configured.
        func lookup(_ key: HostKey) -> Resolution? { state.services[key]?.last }
    }

    /// plan and check: every Service name looked up once, every host probed once (those the file on
    /// disk still lists but the config no longer names too), set beside the hosts directory.
    public static func take(
        _ config: AgentConfig, resolver: (any ServiceResolver)?, prober: any MirrorProber, store: any HostsStore
    ) async throws(SystemError) -> Survey {
        let resolved = await resolveAll(config, resolver: resolver)
        let extra = try hostsOnlyInFiles(resolved, store: store)
        let results = await probeAll(resolved, prober: prober, extra: extra)
        return try make(resolved, results: results.view, store: store, extra: results.extra)
    }

    /// Per upstream, the hosts its managed file on disk lists that the current view does not have: a
    /// Service name's old address after a move, a host taken out of the config. containerd tries them
    /// until the file changes, so check must know whether they answer (a dead one stalls pulls). Each
    /// is probed with the settings of the configured host it stands for (its Service name's host, with
    /// TLS material and path), else as a plain host.
    static func hostsOnlyInFiles(_ resolved: Resolved, store: any HostsStore) throws(SystemError) -> [String: [MirrorHost]] {
        var extra: [String: [MirrorHost]] = [:]
        for (ri, registry) in resolved.config.registries.enumerated() {
            let listed = hostsListed(in: try store.observe(registry.upstream))
            let known = Set(registry.hosts.map(\.url))
            let configured = resolved.state.configured.registries[ri]
            let missing = listed.subtracting(known).sorted()
            guard !missing.isEmpty else { continue }
            extra[registry.upstream] = missing.map { url in
                for host in configured.hosts {
                    if host.url == url { return host }
                    if let name = resolved.config.serviceName(of: host), let address = ServiceAddress.address(in: url, for: host.url) {
                        return host.resolved(to: address, name: name)
                    }
                }
                return MirrorHost(url: url)
            }
        }
        return extra
    }

    /// Looks every Service name up once, concurrently (each name once, however many hosts use it).
    public static func resolveAll(_ config: AgentConfig, resolver: (any ServiceResolver)?) async -> Resolved {
        var state = MirrorState(config: config, promoteAfter: 1)
        guard let discovery = config.discovery else { return Resolved(state: state) }
        let services = state.servicesByName
        await withTaskGroup(of: (Int, Resolution).self) { group in
            for (index, service) in services.enumerated() {
                group.addTask { (index, await resolver.lookUp(service.name, using: discovery)) }
            }
            for await (index, answer) in group {
                for key in services[index].keys { _ = state.resolved(key, answer) }
            }
        }
        return Resolved(state: state)
    }

    /// Probes every host of every probed registry once, concurrently. A Service name with no address
    /// is not probed: it is down with its lookup as the reason (whether or not its registry is probed).
    public static func probeAll(_ resolved: Resolved, prober: any MirrorProber) async -> [[ProbeResult?]] {
        await probeAll(resolved, prober: prober, extra: [:]).view
    }

    /// `probeAll`, and the hosts of `extra` (`hostsOnlyInFiles`) beside them, whatever
    /// `readiness_probe` says: they are in a file containerd reads.
    static func probeAll(_ resolved: Resolved, prober: any MirrorProber, extra: [String: [MirrorHost]]) async
        -> (view: [[ProbeResult?]], extra: [String: [(MirrorHost, ProbeResult)]])
    {
        let config = resolved.config
        var results: [[ProbeResult?]] = config.registries.map { Array(repeating: nil, count: $0.hosts.count) }
        var extraResults: [String: [(MirrorHost, ProbeResult)]] = [:]
        enum Done: Sendable {
            case view(Int, Int, ProbeResult)
            case extra(String, MirrorHost, ProbeResult)
        }
        await withTaskGroup(of: Done.self) { group in
            for (ri, registry) in config.registries.enumerated() {
                for (hi, host) in registry.hosts.enumerated() {
                    if host.isUnresolvedService {
                        let lookup = resolved.lookup(HostKey(upstream: registry.upstream, url: host.url)) ?? .unreachable("not looked up")
                        results[ri][hi] = ProbeResult(state: .down, reason: lookup.description, connected: false)
                    } else if registry.readinessProbe {
                        group.addTask { .view(ri, hi, await prober.probe(host, settings: config.probe)) }
                    }
                }
            }
            for (upstream, hosts) in extra {
                for host in hosts {
                    group.addTask { .extra(upstream, host, await prober.probe(host, settings: config.probe)) }
                }
            }
            for await done in group {
                switch done {
                case .view(let ri, let hi, let result): results[ri][hi] = result
                case .extra(let upstream, let host, let result): extraResults[upstream, default: []].append((host, result))
                }
            }
        }
        return (results, extraResults.mapValues { $0.sorted { $0.0.url < $1.0.url } })
    }

    /// Sets `results` (from `probeAll`) beside the hosts directory. Reads only. What apply would do
    /// with each file is decided by apply's own rule (`MirrorState.decision`), each host's one result
    /// deciding it as apply's first probe does: a file while a Service name's DNS is unreachable stays
    /// as it is, as apply leaves it.
    /// `extra`: hosts only the file on disk still lists, with their results (`take`).
    public static func make(
        _ resolved: Resolved, results: [[ProbeResult?]], store: any HostsStore, extra: [String: [(MirrorHost, ProbeResult)]] = [:]
    ) throws(SystemError) -> Survey {
        let config = resolved.config
        var state = resolved.state
        for (ri, registry) in config.registries.enumerated() where registry.readinessProbe {
            for (hi, host) in registry.hosts.enumerated() where !host.isUnresolvedService {
                guard let result = results[ri][hi] else { continue }
                var tracker = HostTracker()
                _ = tracker.record(result, settings: config.probe)
                _ = state.adopt(HostKey(upstream: registry.upstream, url: host.url), tracker)
            }
        }
        var entries: [Entry] = []
        for (ri, registry) in config.registries.enumerated() {
            let observed = try store.observe(registry.upstream)
            let listed = hostsListed(in: observed)
            let hosts =
                registry.hosts.enumerated().map { hi, host in
                    HostStatus(host: host, result: results[ri][hi], inFile: listed.contains(host.url))
                }
                + (extra[registry.upstream] ?? []).map { HostStatus(host: $0, result: $1, inFile: true, onlyInFile: true) }
            let desired: String?
            switch state.decision(registry.upstream) {
            case .write(let filed)?: desired = HostsFile.render(registry, hosts: filed, for: config.target)
            case .wait?:
                if case .managed(let text) = observed.file { desired = text } else { desired = nil }
            case .remove?, nil: desired = nil
            }
            entries.append(
                entry(upstream: registry.upstream, registry: registry, hosts: hosts, observed: observed, desired: desired, store: store))
        }
        let configured = Set(config.registries.map(\.upstream))
        for upstream in try store.upstreamsWithOurFiles() where !configured.contains(upstream) {
            let observed = try store.observe(upstream)
            let hosts = hostsListed(in: observed).sorted().map {
                HostStatus(host: MirrorHost(url: $0), result: nil, inFile: true)
            }
            entries.append(entry(upstream: upstream, registry: nil, hosts: hosts, observed: observed, desired: nil, store: store))
        }
        return Survey(entries: entries)
    }

    private static func entry(
        upstream: String, registry: Registry?, hosts: [HostStatus], observed: UpstreamDirState, desired: String?,
        store: any HostsStore
    ) -> Entry {
        var entry = Entry(
            upstream: upstream, filePath: store.filePath(upstream), registry: registry, hosts: hosts, observed: observed,
            desired: desired, actions: [], conflict: nil)
        do {
            entry.actions = try HostsPlan.actions(
                upstream: upstream, desired: desired, configured: registry != nil, observed: observed)
        } catch {
            entry.conflict = error
        }
        return entry
    }

    /// The `[host."<url>"]` keys of our file on disk.
    static func hostsListed(in observed: UpstreamDirState) -> Set<String> {
        guard case .managed(let text) = observed.file, let table = try? TOMLGuard.parse(text),
            let hosts = table["host"]?.table
        else { return [] }
        return Set(hosts.keys)
    }
}
