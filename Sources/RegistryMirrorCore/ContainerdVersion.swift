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

    /// The newest release whose behaviour the agent knows; an unknown version is rendered for it.
    public static let newestKnown = ContainerdVersion(2, 1, 9)

    /// containerd reads `dial_timeout` from a host from 2.0.7 on (before, it is ignored: a dead mirror
    /// costs the default 30 s dial per request).
    public var honoursDialTimeout: Bool { self >= ContainerdVersion(2, 0, 7) }

    /// 2.0.7 to 2.0.11: a host with `dial_timeout` and an `http://` URL on a port other than 80 is
    /// tried with HTTPS first.
    public var dialTimeoutBreaksPlainHTTP: Bool { self >= ContainerdVersion(2, 0, 7) && self < ContainerdVersion(2, 1, 0) }

    /// 1.x reads hosts.toml with go-toml v1, which ends a table header at the first `]` even inside
    /// quotes: a file with an IPv6 host must use dotted keys. 2.x orders hosts by their
    /// `[host."..."]` headers and skips hosts written otherwise: it must use headers.
    public var needsDottedKeysForIPv6: Bool { major < 2 }

    /// Transfer-service pulls (2.x) read only the first `config_path` directory.
    public var readsOneConfigPath: Bool { major >= 2 }

    /// A response-header timeout for hosts exists from 2.3 on; before, a mirror that accepts and never
    /// answers stalls a pull.
    public var stallsOnSilentMirror: Bool { self < ContainerdVersion(2, 3, 0) }
}

/// The containerd the files are written for: its version when known, and where that came from.
public struct ContainerdTarget: Sendable, Hashable {
    /// Nil: unknown; files are written as for `ContainerdVersion.newestKnown`.
    public var version: ContainerdVersion?
    /// How it was learnt: "the daemon at /run/containerd/containerd.sock", "containerd --version",
    /// "containerd_version in the config", or why it is unknown.
    public var source: String

    public init(version: ContainerdVersion?, source: String) {
        self.version = version
        self.source = source
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
        rules.stallsOnSilentMirror
            ? "a mirror that accepts but never answers stalls pulls (containerd \(rules) has no response timeout for hosts)"
            : "a mirror that accepts but never answers is given up after containerd's response timeout"
    }
}

/// What `check` says about the containerd the files are for (docs/design.md §6).
public enum ContainerdVersionCheck {
    /// The findings: its version and what a dead mirror costs on it (OK); WARNING when the version is
    /// unknown, when containerd started before its config file last changed, and when `config_path`
    /// lists several directories on a version whose transfer-service pulls read only the first.
    /// - Parameters:
    ///   - started, configChanged: seconds since the epoch, nil when not known.
    public static func findings(
        target: ContainerdTarget, configPath: String?, containerdConfig: String, hostsDir: String, started: Double?,
        configChanged: Double?, sample: MirrorHost?
    ) -> [HealthReport.Finding] {
        var out: [HealthReport.Finding] = []
        if let version = target.version {
            var text = "containerd \(version) (\(target.source))"
            if let sample { text += "; \(target.deadMirrorCost(sample)) until watch takes it out; \(target.silentMirrorCost)" }
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
        if let configPath, target.rules.readsOneConfigPath, configPath.contains(":") {
            let first = configPath.split(separator: ":").first.map(String.init) ?? ""
            let note =
                ContainerdConfigCheck.normalize(first) == ContainerdConfigCheck.normalize(hostsDir)
                ? "\(hostsDir) is the first, so they use it" : "they use \(first), not \(hostsDir); put \(hostsDir) first"
            out.append(
                .init(
                    state: .warning,
                    message:
                        "config_path = \"\(configPath)\" lists several directories; containerd \(target.rules)'s transfer-service pulls read only the first: \(note)"
                ))
        }
        return out
    }
}

extension String {
    fileprivate var trimmingLeadingSpaces: Substring { drop { $0 == " " || $0 == "\t" } }
}
