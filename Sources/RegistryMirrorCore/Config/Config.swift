/// What containerd may use a mirror host for (`capabilities` in hosts.toml).
public enum Capability: String, Sendable, Hashable, CaseIterable {
    case pull, resolve, push
}

/// One mirror of an upstream registry: a `[host."<url>"]` table in hosts.toml.
public struct MirrorHost: Sendable, Hashable {
    /// Absolute http(s) URL, verbatim as configured (it is the table key in hosts.toml).
    public var url: String
    public var capabilities: [Capability]
    /// `nil` leaves `dial_timeout` out of the file (`dial_timeout = "0s"` in the config).
    public var dialTimeout: GoDuration?
    public var ca: [String]
    /// Client certificate and key pairs; a pair with one element is a combined PEM file.
    public var client: [[String]]
    public var skipVerify: Bool?
    public var overridePath: Bool?
    /// Header name to values, in the order given.
    public var headers: [(name: String, values: [String])]
    /// Set on a host made from a Service name (`[discovery]`): the name its address was found under.
    /// `url` then names the address.
    public var serviceName: String?

    public init(
        url: String, capabilities: [Capability] = [.pull, .resolve], dialTimeout: GoDuration? = .seconds(1),
        ca: [String] = [], client: [[String]] = [], skipVerify: Bool? = nil, overridePath: Bool? = nil,
        headers: [(name: String, values: [String])] = []
    ) {
        self.url = url
        self.capabilities = capabilities
        self.dialTimeout = dialTimeout
        self.ca = ca
        self.client = client
        self.skipVerify = skipVerify
        self.overridePath = overridePath
        self.headers = headers
    }

    public static func == (a: MirrorHost, b: MirrorHost) -> Bool {
        a.url == b.url && a.capabilities == b.capabilities && a.dialTimeout == b.dialTimeout && a.ca == b.ca
            && a.client == b.client && a.skipVerify == b.skipVerify && a.overridePath == b.overridePath
            && a.headers.map(\.name) == b.headers.map(\.name) && a.headers.map(\.values) == b.headers.map(\.values)
            && a.serviceName == b.serviceName
    }

    /// The address this host was resolved to, for a host made from a Service name.
    /// Nil for a Service name that has no address (plan and check show it with its failed lookup).
    public var address: String? {
        guard serviceName != nil, let split = HostURL(parsing: url) else { return nil }
        let host = HostURL.hostPart(split.authority)
        if host.hasPrefix("[") { return String(host.dropFirst().dropLast()) }
        return Names.isIPv4(Substring(host)) ? host : nil
    }

    /// A Service name with no address: shown by plan and check, never probed or written.
    public var isUnresolvedService: Bool { serviceName != nil && address == nil }

    /// This host at `address`: what the file names and probes reach for a Service name.
    public func resolved(to address: String, name: String) -> MirrorHost {
        var host = self
        host.url = ServiceAddress.url(url, at: address)
        host.serviceName = name
        return host
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(url) }

    /// The URL a readiness probe fetches: the registry API root, as containerd would build it
    /// (`<url>/v2/`), or the URL itself when `override_path` is set.
    public var probeURL: String {
        if overridePath == true { return url }
        guard let split = HostURL(parsing: url) else { return url }
        var path = split.path
        while path.hasSuffix("/") { path.removeLast() }
        if !path.hasSuffix("/v2") { path += "/v2" }
        return split.scheme + "://" + split.authority + path + "/"
    }
}

/// An upstream registry and the mirrors that stand in for it.
public struct Registry: Sendable, Hashable {
    /// `docker.io`, `my-registry.io:5000`, `[fd00::1]:5000` or `_default`: the directory name under hosts_dir.
    public var upstream: String
    /// The `server` of hosts.toml: where containerd falls back to. Empty for `_default` unless configured.
    public var server: String
    public var readinessProbe: Bool
    public var hosts: [MirrorHost]

    public init(upstream: String, server: String? = nil, readinessProbe: Bool = true, hosts: [MirrorHost]) {
        self.upstream = upstream
        self.server = server ?? Registry.defaultServer(for: upstream)
        self.readinessProbe = readinessProbe
        self.hosts = hosts
    }

    /// `https://registry-1.docker.io` for docker.io, else `https://<upstream>`.
    /// `_default` has no server of its own: containerd then uses the requested host.
    public static func defaultServer(for upstream: String) -> String {
        switch upstream {
        case "_default": ""
        case "docker.io": "https://registry-1.docker.io"
        default: "https://\(upstream)"
        }
    }
}

/// Timing of probes, apply and watch (`[probe]` in the config file).
public struct ProbeSettings: Sendable, Hashable {
    public var connectTimeout: GoDuration = .seconds(1)
    public var timeout: GoDuration = .seconds(2)
    public var initialInterval: GoDuration = .milliseconds(200)
    public var maxInterval: GoDuration = .seconds(1)
    /// Zero: apply waits until every registry is configured.
    public var deadline: GoDuration = .zero
    /// watch: the round. A steady mirror gets a TCP connection check (half-open, no request: nothing
    /// the cache's process sees) each round, and the HTTP probe every `requestInterval`.
    public var watchInterval: GoDuration = .seconds(2)
    /// watch: how often a steady mirror gets `GET /v2/` (rounded to whole rounds; at least one round).
    /// Set to `watch_interval` for an HTTP probe every round (the cost before: docs/design.md §6.3).
    public var requestInterval: GoDuration = .seconds(30)
    public var failureThreshold: Int = 3
    public var successThreshold: Int = 2

    public init() {}
}

/// The whole, validated configuration of one run.
public struct AgentConfig: Sendable, Hashable {
    public static let defaultPath = "/etc/configure-containerd-registries/config.toml"
    public static let defaultHostsDir = "/etc/containerd/certs.d"
    public static let defaultContainerdConfig = "/etc/containerd/config.toml"
    public static let defaultContainerdUnit = "containerd.service"
    public static let defaultContainerdAddress = "/run/containerd/containerd.sock"

    public var hostsDir: String = AgentConfig.defaultHostsDir
    public var containerdConfig: String = AgentConfig.defaultContainerdConfig
    /// The systemd unit whose journal entries are containerd's log (watch and check read it for
    /// requests that went past a mirror); empty: not read.
    public var containerdUnit: String = AgentConfig.defaultContainerdUnit
    /// containerd's socket, asked for its version when `containerdVersion` is nil ("auto"). Nil when
    /// `containerd_address` is not set: the socket containerd's own config names
    /// (`ContainerdSettings.sockets`), else `defaultContainerdAddress`.
    public var containerdAddress: String?
    /// `containerd_version`: nil for "auto", else the version whose rules files follow.
    public var containerdVersion: ContainerdVersion?
    /// The containerd the files are written for, resolved by the run (not read from the file).
    public var target: ContainerdTarget = .newest
    public var probe = ProbeSettings()
    public var registries: [Registry] = []
    /// `[discovery]` or `--cluster-dns`: nil, and host names are written as given.
    public var discovery: Discovery?

    public init() {}

    /// The Service name `host` stands for, when discovery is on and its host is under the domain.
    public func serviceName(of host: MirrorHost) -> String? {
        guard host.serviceName == nil else { return nil }
        return discovery?.serviceName(of: host.url)
    }
}
