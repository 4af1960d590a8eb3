import TOMLKit

/// One probe round over every host, set beside what is on disk: what `plan` shows and `check` judges.
public struct Survey: Sendable {
    public struct HostStatus: Sendable {
        public var host: MirrorHost
        /// Nil for registries with `readiness_probe = false`: they are not probed.
        public var result: ProbeResult?
        /// The managed hosts.toml on disk names this host.
        public var inFile: Bool
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

    /// The config as plan and check see it: each Service name looked up once and replaced by its
    /// addresses (`MirrorHost.resolved`); a name with no address stays as it is, with `serviceName` set.
    public struct Resolved: Sendable {
        /// The model apply and watch decide files with, holding the lookups; `make` adds the probes.
        var state: MirrorState
        public var config: AgentConfig { state.config }
        /// A Service name host's lookup, by its key as configured.
        func lookup(_ key: HostKey) -> Resolution? { state.services[key]?.last }
    }

    /// Looks every Service name up once, concurrently (each name once, however many hosts use it).
    public static func resolveAll(_ config: AgentConfig, resolver: (any ServiceResolver)?) async -> Resolved {
        var state = MirrorState(config: config, promoteAfter: 1, keepUnresolved: true)
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
        let config = resolved.config
        var results: [[ProbeResult?]] = config.registries.map { Array(repeating: nil, count: $0.hosts.count) }
        await withTaskGroup(of: (Int, Int, ProbeResult).self) { group in
            for (ri, registry) in config.registries.enumerated() {
                for (hi, host) in registry.hosts.enumerated() {
                    if host.isUnresolvedService {
                        let lookup = resolved.lookup(HostKey(upstream: registry.upstream, url: host.url)) ?? .unreachable("not looked up")
                        results[ri][hi] = ProbeResult(state: .down, reason: lookup.description, connected: false)
                    } else if registry.readinessProbe {
                        group.addTask { (ri, hi, await prober.probe(host, settings: config.probe)) }
                    }
                }
            }
            for await (ri, hi, result) in group { results[ri][hi] = result }
        }
        return results
    }

    /// Sets `results` (from `probeAll`) beside the hosts directory. Reads only. What apply would do
    /// with each file is decided by apply's own rule (`MirrorState.decision`), each host's one result
    /// deciding it as apply's first probe does: a file while a Service name's DNS is unreachable stays
    /// as it is, as apply leaves it.
    public static func make(_ resolved: Resolved, results: [[ProbeResult?]], store: any HostsStore) throws(StoreError) -> Survey {
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
            let hosts = registry.hosts.enumerated().map { hi, host in
                HostStatus(host: host, result: results[ri][hi], inFile: listed.contains(host.url))
            }
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
