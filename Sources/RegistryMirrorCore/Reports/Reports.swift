/// The text `plan` prints and the text and JSON `check` prints. Pure: the command decides where it goes.
public enum PlanText {
    /// - Returns: the text and how many upstreams have changes pending.
    /// `target`: the containerd the files are written for; its first line says which, and what a dead
    /// mirror costs on it while still in a file.
    public static func render(_ survey: Survey, color: Bool, target: ContainerdTarget? = nil) -> (text: String, pending: Int) {
        let paint = Paint(enabled: color)
        var out = ""
        if let target {
            out += "files for \(target.description)\n"
            if let host = survey.entries.lazy.compactMap({ $0.registry?.hosts.first }).first {
                out += "  \(target.deadMirrorCost(host)) until watch takes it out; \(target.silentMirrorCost)\n"
            }
            out += "\n"
        }
        var pending = 0
        for entry in survey.entries {
            out += paint.bold("\(entry.upstream)") + "  (\(entry.filePath))\n"
            for status in entry.hosts {
                out += "  " + hostLine(status, paint: paint) + "\n"
            }
            if entry.hasChanges { pending += 1 }
            out += describe(entry, paint: paint)
            out += "\n"
        }
        if survey.entries.isEmpty { out += "no registries configured and no files of ours on disk\n" }
        out += pending == 0 ? "no changes\n" : "\(pending) of \(survey.entries.count) upstreams would change\n"
        return (out, pending)
    }

    static func hostLine(_ status: Survey.HostStatus, paint: Paint) -> String {
        // A Service name's address says which name it stands for.
        var host = status.host.url + (status.host.address != nil ? " (\(status.host.serviceName ?? ""))" : "")
        if status.onlyInFile { host += " (only in the file on disk)" }
        guard let result = status.result else {
            return "\(paint.dim("-   ")) \(host)  (not probed)"
        }
        let latency = result.latency.millisecondsText
        return result.isUp
            ? "\(paint.green("up  ")) \(host)  \(result.reason), \(latency)"
            : "\(paint.red("down")) \(host)  \(result.reason)"
    }

    static func describe(_ entry: Survey.Entry, paint: Paint) -> String {
        if let conflict = entry.conflict { return "  " + paint.red("cannot apply: \(conflict.message)") + "\n" }
        var lines: [String] = []
        let wouldWrite = entry.actions.contains { if case .write = $0 { true } else { false } }
        if entry.actions.contains(.backUpForeign) {
            lines.append("would back up foreign file to \(HostsFile.backupName)")
        }
        if wouldWrite {
            lines.append(
                entry.current != nil ? "would update hosts.toml"
                    : entry.actions.contains(.backUpForeign) ? "would replace it with hosts.toml of ours" : "would create hosts.toml")
        }
        if entry.actions.contains(.removeManaged) {
            lines.append(
                entry.registry == nil ? "would remove hosts.toml (upstream no longer configured)" : "would remove hosts.toml (no mirror is up)")
        }
        if entry.actions.contains(.restoreBackup) { lines.append("would restore \(HostsFile.backupName) to hosts.toml") }
        if !wouldWrite, entry.actions.contains(where: { if case .writeRecord = $0 { true } else { false } }) {
            lines.append("would write the ownership record \(OwnershipRecord.fileName) (hosts.toml itself unchanged)")
        }
        if entry.actions.contains(.removeDirectory) { lines.append("would remove the directory if empty") }
        if lines.isEmpty {
            lines.append(entry.desired == nil && entry.current == nil ? "no file (no mirror is up), unchanged" : "unchanged")
        }
        var out = lines.map { "  \($0)\n" }.joined()
        if wouldWrite || entry.actions.contains(.removeManaged) {
            // What containerd reads now against what it would read: a foreign file being backed up
            // is the old side too.
            let foreign = entry.actions.contains(.backUpForeign) ? entry.observed.foreignContent : nil
            let old = entry.current ?? foreign
            let diff = UnifiedDiff.make(
                old: old ?? "", new: entry.desired ?? "",
                oldName: old == nil
                    ? "/dev/null"
                    : "\(entry.filePath) (on disk\(foreign != nil ? ", not ours: backed up to \(HostsFile.backupName)" : ""))",
                newName: entry.desired == nil ? "/dev/null" : "\(entry.filePath) (apply would write)")
            for line in UnifiedDiff.lines(diff) {
                let painted =
                    line.hasPrefix("+++") || line.hasPrefix("---") ? paint.bold(line)
                    : line.hasPrefix("+") ? paint.green(line)
                    : line.hasPrefix("-") ? paint.red(line)
                    : line.hasPrefix("@@") ? paint.cyan(line) : line
                out += "    \(painted)\n"
            }
        }
        return out
    }
}

public enum CheckText {
    /// Summary first (monitoring shows the first line), then a line per registry and host.
    public static func render(_ report: HealthReport) -> String {
        var out = report.summary + "\n"
        for registry in report.registries {
            out += "\(registry.state) \(registry.upstream): file \(registry.fileState) (\(registry.file))\n"
            for finding in registry.findings { out += "  \(finding.state): \(finding.message)\n" }
            for host in registry.hosts {
                var line = "  host \(host.url)" + (host.address != nil ? " (\(host.name ?? ""))" : "") + ": \(host.state)"
                if !host.reason.isEmpty { line += " (\(host.reason)" + (host.latencyMilliseconds.map { ", \(format($0)) ms" } ?? "") + ")" }
                line += host.inFile ? ", in file" : ", not in file"
                if host.bypassed > 0 { line += ", containerd went past it \(host.bypassed)x recently" }
                out += line + "\n"
            }
        }
        out += "\(report.containerd.state) containerd: \(report.containerd.message)\n"
        for finding in report.containerdVersion { out += "\(finding.state) containerd: \(finding.message)\n" }
        return out
    }

    public static func json(_ report: HealthReport) -> String {
        func finding(_ f: HealthReport.Finding) -> String {
            "{\"state\":\(JSON.string(f.state.description)),\"message\":\(JSON.string(f.message))}"
        }
        let registries = report.registries.map { r in
            let hosts = r.hosts.map { h in
                "{\"url\":\(JSON.string(h.url)),\"state\":\(JSON.string(h.state.rawValue)),\"reason\":\(JSON.string(h.reason)),"
                    + "\"latency_ms\":\(h.latencyMilliseconds.map { format($0) } ?? "null"),\"in_file\":\(h.inFile),"
                    + "\"bypassed_recently\":\(h.bypassed),\"name\":\(h.name.map(JSON.string) ?? "null"),"
                    + "\"address\":\(h.address.map(JSON.string) ?? "null")}"
            }
            return "{\"upstream\":\(JSON.string(r.upstream)),\"file\":\(JSON.string(r.file)),"
                + "\"file_state\":\(JSON.string(r.fileState.rawValue)),\"state\":\(JSON.string(r.state.description)),"
                + "\"findings\":[\(r.findings.map(finding).joined(separator: ","))],\"hosts\":[\(hosts.joined(separator: ","))]}"
        }
        return "{\"state\":\(JSON.string(report.state.description)),\"exit_code\":\(report.state.rawValue),"
            + "\"summary\":\(JSON.string(report.summary)),\"containerd\":\(finding(report.containerd)),"
            + "\"containerd_version\":[\(report.containerdVersion.map(finding).joined(separator: ","))],"
            + "\"registries\":[\(registries.joined(separator: ","))]}\n"
    }

    static func format(_ ms: Double) -> String {
        let rounded = (ms * 10).rounded() / 10
        return rounded == rounded.rounded() ? "\(Int(rounded))" : "\(rounded)"
    }
}

/// ANSI colours, only when writing to a terminal.
struct Paint {
    let enabled: Bool
    func wrap(_ code: String, _ s: String) -> String { enabled ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }
    func red(_ s: String) -> String { wrap("31", s) }
    func green(_ s: String) -> String { wrap("32", s) }
    func cyan(_ s: String) -> String { wrap("36", s) }
    func bold(_ s: String) -> String { wrap("1", s) }
    func dim(_ s: String) -> String { wrap("2", s) }
}
