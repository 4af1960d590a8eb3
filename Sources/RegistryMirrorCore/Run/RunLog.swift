import Logging

/// The log lines of probe results, the same in apply and watch (docs/design.md §8): one line when a
/// host's standing changes or it fails differently, with the attempt count.
///
/// - first result, or up after failing and never in its file before: `mirror up: HTTP 200 in 3.0ms`
///   (`after 4 attempts (last failure: connection refused)`), or `mirror not ready: <reason>; retrying`;
/// - out and failing with another reason than before: `mirror not ready: <reason>; retrying`;
/// - in its file and now out: `mirror down after 3 failed probes (last: ...): taking it out of hosts.toml`;
/// - out, having been in before, and back: `mirror back after 2 good probes: putting it back into hosts.toml`;
/// - a result that disagrees with where the host stands: `mirror suspect: <reason>; probing faster`.
enum RunLog {
    static func result(_ key: HostKey, _ tracker: HostTracker, previous: HostTracker?, changed: Bool, logger: Logger) {
        guard let result = tracker.last else { return }
        var log = logger
        log[metadataKey: LogKey.upstream] = "\(key.upstream)"
        log[metadataKey: LogKey.host] = "\(key.url)"
        log[metadataKey: LogKey.result] = "\(result.state.rawValue)"
        log[metadataKey: LogKey.reason] = "\(result.reason)"
        log[metadataKey: LogKey.attempts] = "\(tracker.probes)"
        let wasIn = previous?.wasInFile ?? false
        switch (changed, tracker.inFile) {
        case (true, true?) where !wasIn:
            let after =
                tracker.probes > 1 ? " after \(attempts(tracker.probes)) (last failure: \(previous?.last?.reason ?? "?"))" : ""
            log.notice("mirror up: \(result.reason) in \(result.latency.millisecondsText)\(after)")
        case (true, true?):
            log[metadataKey: LogKey.attempts] = "\(tracker.consecutiveSuccesses)"
            log.notice("mirror back after \(tracker.consecutiveSuccesses) good probes: putting it back into hosts.toml")
        case (true, false?) where previous?.inFile == true:
            log[metadataKey: LogKey.attempts] = "\(tracker.consecutiveFailures)"
            log.warning(
                "mirror down after \(tracker.consecutiveFailures) failed probes (last: \(result.reason)): taking it out of hosts.toml")
        case (true, _):
            log.warning("mirror not ready: \(result.reason); retrying")
        case (false, false?) where !result.isUp && previous?.last?.reason != result.reason:
            log.warning("mirror not ready: \(result.reason); retrying")
        default:
            if tracker.isSuspect && previous?.isSuspect != true {
                log.info("mirror suspect: \(result.reason); probing faster")
            }
        }
    }

    static func attempts(_ n: Int) -> String { n == 1 ? "1 attempt" : "\(n) attempts" }

    /// `a, b, c and 997 more`: a log line stays readable with a thousand registries.
    static func list(_ names: [String], limit: Int = 10) -> String {
        names.count <= limit
            ? names.joined(separator: ", ") : names.prefix(limit).joined(separator: ", ") + " and \(names.count - limit) more"
    }

    /// Counts a bypass of `key`; logs the first of a burst (containerd logs one line per request, and
    /// a pull makes many), then at most one line per host every 10 s with the count so far.
    static func bypass(_ key: HostKey, _ bypass: ContainerdLog.Bypass, count: Int, logger: Logger) {
        var log = logger
        log[metadataKey: LogKey.upstream] = "\(key.upstream)"
        log[metadataKey: LogKey.host] = "\(key.url)"
        log[metadataKey: LogKey.reason] = "\(bypass.reason)"
        log.warning(
            "containerd went past this mirror (\(count) request\(count == 1 ? "" : "s") since watch started; last: \(bypass.reason)): probing it now")
    }
}

/// sd_notify's `STATUS=`, one line of what the run stands at (docs/design.md §8).
enum StatusText {
    enum Phase {
        /// apply: `2/3 registries configured; waiting for quay.io (http://10.0.0.7:5000: connection timed out, attempt 14)`
        case applying
        /// watch: `3/3 registries have a mirror in hosts.toml; 4/5 mirrors in; out: quay.io http://...`
        case watching
    }

    static func render(_ state: MirrorState, _ phase: Phase) -> String {
        let registries = state.config.registries
        let files = registries.filter { state.fileInPlace($0.upstream) }.count
        switch phase {
        case .applying:
            var text = "\(files)/\(registries.count) registries configured"
            let waiting = registries.filter { !state.fileInPlace($0.upstream) && state.failed[$0.upstream] == nil }
            if !waiting.isEmpty {
                let parts = waiting.prefix(3).map { registry -> String in
                    let detail = state.reportedHosts(registry.upstream).compactMap { url, t, lookup -> String? in
                        if let lookup { return "\(url): \(lookup)" }
                        guard let t, let last = t.last else { return nil }
                        return "\(url): \(last.reason), attempt \(t.probes)"
                    }
                    return detail.isEmpty ? registry.upstream : "\(registry.upstream) (\(detail.joined(separator: "; ")))"
                }
                text += "; waiting for " + parts.joined(separator: ", ")
                if waiting.count > 3 { text += " and \(waiting.count - 3) more" }
            }
            return text
        case .watching:
            var out: [String] = []
            var inCount = 0
            for key in state.probedKeys {
                if state.trackers[key]?.inFile == true { inCount += 1 } else { out.append(key.description) }
            }
            var text = "\(files)/\(registries.count) registries have a mirror in hosts.toml; \(inCount)/\(state.probedHosts) mirrors in"
            if !out.isEmpty { text += "; out: " + out.prefix(5).joined(separator: ", ") + (out.count > 5 ? " and \(out.count - 5) more" : "") }
            return text
        }
    }
}
