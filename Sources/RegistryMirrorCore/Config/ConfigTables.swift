import TOMLKit

/// The config's tables, each read into the model with its rules (docs/design.md §3).
extension Reader {
    mutating func readRoot(_ root: TOMLTable, into config: inout AgentConfig) {
        rejectUnknownKeys(root, at: "", known: [
                "hosts_dir", "containerd_config", "containerd_unit", "containerd_address", "containerd_version", "probe",
                "discovery", "registry",
            ])
        if let dir = string(root, "hosts_dir", at: "hosts_dir", example: "\"/etc/containerd/certs.d\"") {
            if dir.hasPrefix("/") {
                config.hostsDir = dir
            } else {
                problem("hosts_dir", "\"\(dir)\" is not an absolute path", "write e.g. hosts_dir = \"/etc/containerd/certs.d\"")
            }
        }
        if let path = string(root, "containerd_config", at: "containerd_config", example: "\"/etc/containerd/config.toml\"") {
            config.containerdConfig = path
        }
        if let address = string(root, "containerd_address", at: "containerd_address", example: "\"/run/containerd/containerd.sock\"") {
            if address.hasPrefix("/") {
                config.containerdAddress = address
            } else {
                problem(
                    "containerd_address", "\"\(address)\" is not an absolute path to containerd's socket",
                    "write e.g. containerd_address = \"/run/containerd/containerd.sock\"")
            }
        }
        if let text = string(root, "containerd_version", at: "containerd_version", example: "\"auto\"") {
            if text == "auto" {
                config.containerdVersion = nil
            } else if let version = ContainerdVersion(parsing: text), text.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 }) {
                config.containerdVersion = version
            } else {
                problem(
                    "containerd_version", "\"\(text)\" is not a containerd version",
                    "write \"auto\" (ask the running containerd) or a version such as \"2.1.9\"")
            }
        }
        if let unit = string(root, "containerd_unit", at: "containerd_unit", example: "\"containerd.service\"") {
            if unit.isEmpty || (unit.hasSuffix(".service") && unit.count > 8
                && unit.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ":-_.\\@0123456789".unicodeScalars.contains($0)) }))
            {
                config.containerdUnit = unit
            } else {
                problem(
                    "containerd_unit", "\"\(unit)\" is not a systemd service name",
                    "write e.g. containerd_unit = \"containerd.service\", or \"\" not to read containerd's journal")
            }
        }
        if let value = root["probe"], let probe = table(value, at: "probe", example: "[probe]") {
            readProbe(probe, into: &config.probe)
        }
        if let value = root["discovery"], let t = table(value, at: "discovery", example: "[discovery]") {
            config.discovery = readDiscovery(t)
        }
        if let value = root["registry"] {
            guard let array = value.array else {
                problem("registry", "expected an array of tables, found \(value.type)", "write each registry as [[registry]]")
                return
            }
            for (i, element) in array.enumerated() {
                guard let t = table(element, at: "registry[\(i)]", example: "[[registry]]") else { continue }
                if let registry = readRegistry(t, at: "registry[\(i)]") {
                    if let first = config.registries.firstIndex(where: { $0.upstream == registry.upstream }) {
                        problem(
                            "registry[\(i)].upstream", "duplicate upstream \"\(registry.upstream)\" (also registry[\(first)])",
                            "merge the two into one [[registry]] with several [[registry.host]]")
                    } else {
                        config.registries.append(registry)
                    }
                }
            }
        }
    }

    mutating func readProbe(_ t: TOMLTable, into probe: inout ProbeSettings) {
        let durations: [(String, WritableKeyPath<ProbeSettings, GoDuration>)] = [
            ("connect_timeout", \.connectTimeout), ("timeout", \.timeout), ("initial_interval", \.initialInterval),
            ("max_interval", \.maxInterval), ("deadline", \.deadline), ("watch_interval", \.watchInterval),
            ("request_interval", \.requestInterval),
        ]
        let thresholds: [(String, WritableKeyPath<ProbeSettings, Int>)] = [
            ("failure_threshold", \.failureThreshold), ("success_threshold", \.successThreshold),
        ]
        rejectUnknownKeys(t, at: "probe", known: durations.map(\.0) + thresholds.map(\.0))
        for (key, keyPath) in durations {
            if let d = duration(t, key, at: "probe.\(key)") { probe[keyPath: keyPath] = d }
        }
        for (key, keyPath) in thresholds {
            guard let value = t[key] else { continue }
            guard let n = value.int else {
                problem("probe.\(key)", "expected an integer, found \(value.type)", "write e.g. \(key) = 3")
                continue
            }
            guard n >= 1 else {
                problem("probe.\(key)", "\(n) is below 1", "write a whole number of rounds, 1 or more")
                continue
            }
            probe[keyPath: keyPath] = n
        }
        // Below a millisecond, libcurl's millisecond options round a timeout to 0, which means "none".
        for (key, keyPath) in durations where t[key] != nil {
            let d = probe[keyPath: keyPath]
            if key == "deadline" {
                if !d.isZero && d < .milliseconds(1) {
                    problem("probe.deadline", "\(d) is below 1ms", "write at least \"1ms\", or \"0s\" to wait without a deadline")
                }
            } else if d.isZero {
                problem("probe.\(key)", "must be greater than 0s", "write e.g. \(key) = \"1s\"")
            } else if d < .milliseconds(1) {
                problem("probe.\(key)", "\(d) is below 1ms", "write at least \"1ms\", e.g. \(key) = \"1s\"")
            }
        }
        if probe.requestInterval < probe.watchInterval {
            problem(
                "probe.request_interval", "\(probe.requestInterval) is shorter than watch_interval \(probe.watchInterval)",
                "make request_interval at least watch_interval (equal: an HTTP probe every round)")
        }
        if probe.initialInterval > probe.maxInterval {
            problem(
                "probe.initial_interval", "\(probe.initialInterval) is longer than max_interval \(probe.maxInterval)",
                "make initial_interval at most max_interval")
        }
    }

    /// `[discovery]`: the DNS servers to ask, the cluster domain, the time one query may take.
    mutating func readDiscovery(_ t: TOMLTable) -> Discovery {
        rejectUnknownKeys(t, at: "discovery", known: ["dns_servers", "domain", "timeout", "lookup_interval"])
        var discovery = Discovery(servers: [])
        if let value = t["dns_servers"], let list = strings(value, at: "discovery.dns_servers", example: "dns_servers = [\"10.96.0.10\"]") {
            for (i, text) in list.enumerated() {
                do {
                    discovery.servers.append(try Discovery.Server.parse(text))
                } catch let p {
                    problem(
                        "discovery.dns_servers[\(i)]", "\"\(text)\" \(p.message)",
                        "write the cluster DNS Service's cluster IP[:port], e.g. \"10.96.0.10\" or \"[fd00::a]:53\"")
                }
            }
        }
        if let text = string(t, "domain", at: "discovery.domain", example: "\"cluster.local\"") {
            var domain = text.lowercased()
            if domain.hasSuffix(".") { domain.removeLast() }
            if domain.isEmpty || Names.dnsNameProblem(Substring(domain)) != nil || Names.isIPv4(Substring(domain)) {
                problem(
                    "discovery.domain", "\"\(text)\" is not a DNS domain",
                    "write the cluster's domain, e.g. domain = \"cluster.local\"")
            } else {
                discovery.domain = domain
            }
        }
        if let d = duration(t, "timeout", at: "discovery.timeout") {
            if d < .milliseconds(1) {
                problem("discovery.timeout", "\(d) is below 1ms", "write e.g. timeout = \"1s\"")
            } else if d > .seconds(60) {
                problem("discovery.timeout", "\(d) is longer than a minute", "write e.g. timeout = \"1s\"")
            } else {
                discovery.timeout = d
            }
        }
        if let d = duration(t, "lookup_interval", at: "discovery.lookup_interval") {
            if d < .milliseconds(1) {
                problem("discovery.lookup_interval", "\(d) is below 1ms", "write e.g. lookup_interval = \"30s\"")
            } else {
                discovery.lookupInterval = d
            }
        }
        return discovery
    }

    mutating func readRegistry(_ t: TOMLTable, at path: String) -> Registry? {
        rejectUnknownKeys(t, at: path, known: ["upstream", "server", "readiness_probe", "host"])
        let before = problems.count
        var upstream: String?
        if t["upstream"] == nil {
            problem("\(path).upstream", "missing", "add upstream = \"docker.io\" (the registry this cache mirrors)")
        } else if let u = string(t, "upstream", at: "\(path).upstream", example: "\"docker.io\"") {
            if let why = Names.upstreamProblem(u) {
                problem(
                    "\(path).upstream", "\"\(u)\" \(why)",
                    "write a host[:port] such as \"docker.io\", \"my-registry.io:5000\", \"[fd00::1]:5000\" or \"_default\"")
            } else {
                upstream = u
            }
        }
        var server: String?
        if let s = string(t, "server", at: "\(path).server", example: "\"https://registry-1.docker.io\"") {
            if let why = HostURL.problem(s) {
                problem("\(path).server", "\"\(s)\" \(why)", "write e.g. server = \"https://registry-1.docker.io\"")
            } else {
                server = s
            }
        }
        let probe = bool(t, "readiness_probe", at: "\(path).readiness_probe") ?? true
        var hosts: [MirrorHost] = []
        if let value = t["host"] {
            if let array = value.array, !array.isEmpty {
                for (i, element) in array.enumerated() {
                    let hostPath = "\(path).host[\(i)]"
                    guard let ht = table(element, at: hostPath, example: "[[registry.host]]") else { continue }
                    guard let host = readHost(ht, at: hostPath) else { continue }
                    if hosts.contains(where: { $0.url == host.url }) {
                        problem("\(hostPath).url", "\(host.url) is listed twice", "list each mirror URL once")
                    } else {
                        hosts.append(host)
                    }
                }
            } else {
                problem("\(path).host", "expected one or more [[registry.host]] tables", "add [[registry.host]] with url = \"http://...\"")
            }
        } else {
            problem(
                "\(path).host", "missing: a registry needs at least one mirror host",
                "add [[registry.host]] with url = \"http://10.4.246.205:5000\"")
        }
        guard problems.count == before, let upstream else { return nil }
        return Registry(upstream: upstream, server: server, readinessProbe: probe, hosts: hosts)
    }

    mutating func readHost(_ t: TOMLTable, at path: String) -> MirrorHost? {
        rejectUnknownKeys(
            t, at: path,
            known: ["url", "capabilities", "dial_timeout", "ca", "client", "skip_verify", "override_path", "header"])
        let before = problems.count
        var host = MirrorHost(url: "")
        if t["url"] == nil {
            problem("\(path).url", "missing", "add url = \"http://10.4.246.205:5000\" (the cache's Service address)")
        } else if let url = string(t, "url", at: "\(path).url", example: "\"http://10.4.246.205:5000\"") {
            if let why = HostURL.problem(url) {
                problem("\(path).url", "\"\(url)\" \(why)", "write an absolute http(s) URL, e.g. \"http://10.4.246.205:5000\"")
            }
            host.url = url
        }
        if let value = t["capabilities"],
            let names = strings(value, at: "\(path).capabilities", example: "capabilities = [\"pull\", \"resolve\"]")
        {
            var caps: [Capability] = []
            for (i, name) in names.enumerated() {
                guard let cap = Capability(rawValue: name) else {
                    problem("\(path).capabilities[\(i)]", "unknown capability \"\(name)\"", "use pull, resolve or push")
                    continue
                }
                if !caps.contains(cap) { caps.append(cap) }
            }
            if names.isEmpty {
                problem("\(path).capabilities", "is empty: containerd would never use this host", "write [\"pull\", \"resolve\"]")
            }
            host.capabilities = caps
        }
        if t["dial_timeout"] != nil, let d = duration(t, "dial_timeout", at: "\(path).dial_timeout") {
            if !d.isZero && d < .milliseconds(1) {
                problem("\(path).dial_timeout", "\(d) is below 1ms", "write at least \"1ms\", or \"0s\" to leave it out")
            }
            host.dialTimeout = d.isZero ? nil : d
        }
        if let value = t["ca"], let ca = strings(value, at: "\(path).ca", example: "ca = [\"/etc/containerd/certs.d/ca.pem\"]") {
            host.ca = ca
            checkPaths(ca, at: "\(path).ca")
        }
        if let value = t["client"] { host.client = readClient(value, at: "\(path).client") }
        host.skipVerify = bool(t, "skip_verify", at: "\(path).skip_verify")
        host.overridePath = bool(t, "override_path", at: "\(path).override_path")
        if let value = t["header"], let ht = table(value, at: "\(path).header", example: "[registry.host.header]") {
            for name in ht.keys.sorted() {
                let field = "\(path).header.\(name)"
                // An RFC 9110 token.
                if name.isEmpty || !name.unicodeScalars.allSatisfy({ $0.isASCII && (Self.tokenCharacters.contains(Character($0))) }) {
                    problem(field, "\"\(name)\" is not a valid HTTP header name", "use letters, digits and - only")
                    continue
                }
                guard let values = strings(ht[name]!, at: field, example: "\(name) = [\"value\"]") else { continue }
                if values.contains(where: { v in v.unicodeScalars.contains { ($0.value < 0x20 && $0 != "\t") || $0.value == 0x7F } }) {
                    problem(field, "a header value contains a control character (a line break, NUL, ...)", "remove it; only tab is allowed")
                    continue
                }
                host.headers.append((name, values))
            }
        }
        return problems.count == before ? host : nil
    }

    mutating func readClient(_ value: TOMLValueConvertible, at path: String) -> [[String]] {
        let example = "client = [[\"/etc/certs/client.crt\", \"/etc/certs/client.key\"]]"
        if let s = value.string {
            checkPaths([s], at: path)
            return [[s]]
        }
        guard let array = value.array else {
            problem(path, "expected an array of [certificate, key] pairs, found \(value.type)", "write \(example)")
            return []
        }
        var pairs: [[String]] = []
        for (i, element) in array.enumerated() {
            let field = "\(path)[\(i)]"
            if let s = element.string {
                pairs.append([s])
                checkPaths([s], at: field)
            } else if let pair = strings(element, at: field, example: example) {
                guard (1...2).contains(pair.count) else {
                    problem(field, "expected [certificate, key], found \(pair.count) strings", "write \(example)")
                    continue
                }
                pairs.append(pair)
                checkPaths(pair, at: field)
            }
        }
        return pairs
    }

    mutating func checkPaths(_ paths: [String], at field: String) {
        for p in paths where !p.hasPrefix("/") {
            problem(field, "\"\(p)\" is not an absolute path", "write the full path, e.g. \"/etc/containerd/certs.d/ca.pem\"")
        }
    }
}

/// Levenshtein distance, for "did you mean" suggestions on unknown keys.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    for i in 1...a.count {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}
