/// A containerd release, as far as hosts.toml is concerned (docs/design.md §5.1).
public struct ContainerdVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var patch: Int

    public init(_ major: Int, _ minor: Int, _ patch: Int) {
        self.major = major
        self.minor = minor
        self.patch = patch
    }

    /// Reads `1.7.24`, `v2.1.9`, `1.6.20~ds1`, `2.1.9+unknown`, `2.0.0-rc.3`: the three leading
    /// numbers; nil when there are not three.
    public init?(parsing text: String) {
        var rest = Substring(text.trimmingLeadingSpaces)
        if rest.first == "v" { rest = rest.dropFirst() }
        var numbers: [Int] = []
        while numbers.count < 3 {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty, digits.count <= 6, let n = Int(digits) else { return nil }
            numbers.append(n)
            rest = rest.dropFirst(digits.count)
            if numbers.count < 3 {
                guard rest.first == "." else { return nil }
                rest = rest.dropFirst()
            }
        }
        self.init(numbers[0], numbers[1], numbers[2])
    }

    public var description: String { "\(major).\(minor).\(patch)" }

    public static func < (a: ContainerdVersion, b: ContainerdVersion) -> Bool {
        (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
    }

    /// The newest release whose behaviour the agent knows, verified on a real daemon (docs/design.md
    /// §5.1); an unknown version is rendered for it.
    public static let newestKnown = ContainerdVersion(2, 3, 4)

    /// containerd reads `dial_timeout` from a host from 2.0.7 on (before, it is ignored: a dead mirror
    /// costs the default 30 s dial per request). Measured on 1.6.20, 1.7.24 (ignored), 2.1.9, 2.2.7 and
    /// 2.3.4 (a dropped mirror costs 1 s per request).
    public var honoursDialTimeout: Bool { self >= ContainerdVersion(2, 0, 7) }

    /// 2.0.7 to 2.0.11: a host with `dial_timeout` and an `http://` URL on a port other than 80 is
    /// tried with HTTPS first.
    public var dialTimeoutBreaksPlainHTTP: Bool { self >= ContainerdVersion(2, 0, 7) && self < ContainerdVersion(2, 1, 0) }

    /// 1.x reads hosts.toml with go-toml v1, which ends a table header at the first `]` even inside
    /// quotes: a file with an IPv6 host must use dotted keys. 2.x orders hosts by their
    /// `[host."..."]` headers and skips hosts written otherwise: it must use headers.
    public var needsDottedKeysForIPv6: Bool { major < 2 }

    /// From 2.3 on, a request gives up on a host that accepted and sent no response headers after
    /// 30 s (the registry client's `ResponseHeaderTimeout`; measured on 2.3.4: 30 s per request, then
    /// the next host). Before, such a mirror stalls the pull for good (2.2.7: still hanging at 150 s).
    public var responseHeaderTimeout: Duration? { self >= ContainerdVersion(2, 3, 0) ? .seconds(30) : nil }

    /// From 2.3.2 on, a request to the last host (the upstream, after the mirrors) is tried again on a
    /// transient network error (EOF, a dial timeout; up to 5 attempts), never on a response timeout.
    public var retriesLastHost: Bool { self >= ContainerdVersion(2, 3, 2) }

    /// The newest config `version` this release starts with: 1.x reads 2 (1.6 reads a 3 as a 2;
    /// 1.7 refuses it), 2.0 to 2.2 read 3, 2.3 and later 4 (measured: 2.1.9 and 2.2.7 refuse a 4,
    /// 2.3.4 a 5).
    public var newestConfigVersion: Int {
        if major < 2 { return 2 }
        return self < ContainerdVersion(2, 3, 0) ? 3 : 4
    }

    /// How CRI pulls find hosts.toml on this release, given whether the config makes them use the
    /// local pull (`use_local_image_pull`, or a setting the transfer service does not take).
    /// - 1.x and 2.0 have only the local pull: `config_path` is a list of directories (`:`), tried in
    ///   order, the first that has a directory for the registry wins (measured on 1.6.20 and 1.7.24;
    ///   2.0 from its source).
    /// - From 2.1 on, CRI pulls go through the transfer service, which takes the whole `config_path`
    ///   as one directory: a list is no list there, and they read no hosts.toml at all (measured on
    ///   2.1.9, 2.2.7 and 2.3.4; containerd's own default `/etc/containerd/certs.d:/etc/docker/certs.d`
    ///   is read the same way). With the local pull, a list again.
    public func criPullsSplitConfigPath(localPull: Bool) -> Bool {
        self < ContainerdVersion(2, 1, 0) || localPull
    }

    /// What an empty or missing `config_path` becomes: from 2.2.2 on (the CRI plugin's init),
    /// `/etc/containerd/certs.d:/etc/docker/certs.d`; before, nothing (no hosts.toml is read; measured
    /// on 1.6.20, 1.7.24 and 2.1.9).
    public var defaultConfigPath: String? {
        self >= ContainerdVersion(2, 2, 2) ? "/etc/containerd/certs.d:/etc/docker/certs.d" : nil
    }
}

/// The containerd the files are written for: its version when known, and where that came from.
public struct ContainerdTarget: Sendable, Hashable {
    /// Nil: unknown; files are written as for `ContainerdVersion.newestKnown`.
    public var version: ContainerdVersion?
    /// How it was learnt: "the daemon at /run/containerd/containerd.sock", "containerd --version",
    /// "containerd_version in the config", or why it is unknown.
    public var source: String
    /// The socket where the daemon answered, when it did.
    public var address: String?

    public init(version: ContainerdVersion?, source: String, address: String? = nil) {
        self.version = version
        self.source = source
        self.address = address
    }

    /// For a run that did not look (tests, and files rendered without a containerd in mind).
    public static let newest = ContainerdTarget(version: ContainerdVersion.newestKnown, source: "the newest known version")

    /// The rules the files follow.
    public var rules: ContainerdVersion { version ?? .newestKnown }

    public var description: String {
        version.map { "containerd \($0) (\(source))" } ?? "containerd of unknown version (\(source)); files written as for \(ContainerdVersion.newestKnown)"
    }

    /// Whether `host`'s dial_timeout goes into the file for this version.
    public func writesDialTimeout(_ host: MirrorHost) -> Bool {
        guard host.dialTimeout != nil, rules.honoursDialTimeout else { return false }
        if rules.dialTimeoutBreaksPlainHTTP, let url = HostURL(parsing: host.url), url.scheme == "http" {
            return url.port == 80
        }
        return true
    }

    /// What a mirror that dies costs each request while it is still in a file, on this version.
    public func deadMirrorCost(_ host: MirrorHost) -> String {
        let v = rules
        if writesDialTimeout(host), let dial = host.dialTimeout {
            return "containerd \(v) gives up dialing a dead mirror after its dial_timeout (\(dial)) per request"
        }
        if v.honoursDialTimeout {
            return "containerd \(v) would try HTTPS first with dial_timeout on this http:// port, so it is left out: a dead mirror costs the default 30 s dial per request"
        }
        return "containerd \(v) ignores dial_timeout: a dead mirror costs the default 30 s dial per request"
    }

    /// What a mirror that accepts and never answers costs, on this version.
    public var silentMirrorCost: String {
        guard let timeout = rules.responseHeaderTimeout else {
            return "a mirror that accepts but never answers stalls pulls (containerd \(rules) has no response timeout for hosts)"
        }
        return "a mirror that accepts but never answers costs \(timeout.components.seconds) s per request (containerd \(rules)'s response-header timeout)"
    }
}

/// What `check` says about the containerd the files are for (docs/design.md §6).
public enum ContainerdVersionCheck {
    /// The findings: its version and what a dead mirror costs on it (OK); WARNING when the version is
    /// unknown, and when containerd started before its config file last changed. (What `config_path`
    /// means on the version is `ContainerdConfigCheck`'s.)
    /// - Parameters:
    ///   - started, configChanged: seconds since the epoch, nil when not known.
    public static func findings(
        target: ContainerdTarget, containerdConfig: String, started: Double?, configChanged: Double?, sample: MirrorHost?
    ) -> [HealthReport.Finding] {
        var out: [HealthReport.Finding] = []
        if let version = target.version {
            var text = "containerd \(version) (\(target.source))"
            if let sample { text += "; \(target.deadMirrorCost(sample)) until watch takes it out; \(target.silentMirrorCost)" }
            if version.retriesLastHost { text += "; the upstream, tried last, is tried again on a transient error (up to 5 attempts)" }
            out.append(.init(state: .ok, message: text))
        } else {
            out.append(
                .init(
                    state: .warning,
                    message:
                        "containerd's version is unknown (\(target.source)): files are written as for \(ContainerdVersion.newestKnown); set containerd_version in the config"
                ))
        }
        // 2 s of slack: a config written in the moment containerd starts (a script that writes it
        // and starts the daemon at once) is not a change after the start.
        if let started, let configChanged, started + 2 < configChanged {
            out.append(
                .init(
                    state: .warning,
                    message:
                        "containerd started before \(containerdConfig) last changed: its config_path may not be in effect until containerd restarts"
                ))
        }
        return out
    }
}

extension String {
    fileprivate var trimmingLeadingSpaces: Substring { drop { $0 == " " || $0 == "\t" } }
}
