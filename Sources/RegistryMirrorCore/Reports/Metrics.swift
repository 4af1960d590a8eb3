/// Prometheus text exposition (format 0.0.4) of watch mode's state, for node_exporter's textfile
/// collector. Small enough to write by hand; `promtool check metrics` accepts it (tested).
public enum MetricsText {
    public struct HostSample: Sendable {
        public var upstream: String
        public var url: String
        public var tracker: HostTracker
        /// Requests containerd's log says went past this mirror to the next host.
        public var bypassed: Int
        /// The Service name the host's address was found under (`service` label), if any.
        public var service: String?

        public init(upstream: String, url: String, tracker: HostTracker, bypassed: Int = 0, service: String? = nil) {
            self.upstream = upstream
            self.url = url
            self.tracker = tracker
            self.bypassed = bypassed
            self.service = service
        }
    }

    public static let prefix = "configure_containerd_registries"

    /// - Parameters:
    ///   - filesInPlace: upstream to whether its hosts.toml is written.
    ///   - timestamp: seconds since the epoch of the last probe round.
    public static func render(hosts: [HostSample], filesInPlace: [(String, Bool)], timestamp: Double) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(String, String)]) {
            out += "# HELP \(prefix)_\(name) \(help)\n# TYPE \(prefix)_\(name) \(type)\n"
            for (labels, value) in samples { out += "\(prefix)_\(name){\(labels)} \(value)\n" }
        }
        func labels(_ h: HostSample) -> String {
            "upstream=\(quote(h.upstream)),host=\(quote(h.url))" + (h.service.map { ",service=\(quote($0))" } ?? "")
        }

        family(
            "mirror_up", "gauge", "1 when the last probe of the mirror answered like a registry, else 0.",
            hosts.map { (labels($0), $0.tracker.last?.isUp == true ? "1" : "0") })
        family(
            "mirror_in_hosts_file", "gauge", "1 when the mirror is listed in its upstream's hosts.toml.",
            hosts.map { (labels($0), $0.tracker.inFile == true ? "1" : "0") })
        family(
            "mirror_probe_latency_seconds", "gauge", "Duration of the last probe of the mirror.",
            hosts.map { (labels($0), number(($0.tracker.last?.latency ?? .zero).fractionalSeconds)) })
        family(
            "mirror_consecutive_failures", "gauge", "Failed probes of the mirror since its last success.",
            hosts.map { (labels($0), "\($0.tracker.consecutiveFailures)") })
        family(
            "mirror_transitions_total", "counter", "Times the mirror was taken out of or put back into hosts.toml.",
            hosts.map { (labels($0), "\($0.tracker.transitions)") })
        family(
            "mirror_probes_total", "counter", "Probes of the mirror since watch started.",
            hosts.map { (labels($0), "\($0.tracker.probes)") })
        family(
            "mirror_bypassed_total", "counter",
            "Requests that containerd's log (\"trying next host\") says went past the mirror since watch started.",
            hosts.map { (labels($0), "\($0.bypassed)") })
        family(
            "registry_file_in_place", "gauge", "1 when the upstream's hosts.toml is written (a mirror is up).",
            filesInPlace.map { ("upstream=\(quote($0.0))", $0.1 ? "1" : "0") })
        out += "# HELP \(prefix)_last_round_timestamp_seconds Time of the last probe result, seconds since the epoch.\n"
        out += "# TYPE \(prefix)_last_round_timestamp_seconds gauge\n"
        out += "\(prefix)_last_round_timestamp_seconds \(number(timestamp))\n"
        return out
    }

    /// A label value: backslash, double quote and line feed escaped.
    static func quote(_ s: String) -> String {
        var out = "\""
        for ch in s {
            switch ch {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(ch)
            }
        }
        return out + "\""
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : "\(value)"
    }
}
