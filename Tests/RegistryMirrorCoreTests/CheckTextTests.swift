import Foundation
@testable import RegistryMirrorCore
import Testing

@Suite("check: text and JSON output")
struct CheckTextTests {
    typealias K = SurveyKit

    /// docker.io: A up (12.5 ms), B down and left out; quay.io: unprobed, matching file;
    /// old.example.com: orphaned. Overall WARNING with three warnings.
    static func report(reason: String = "connection refused") -> HealthReport {
        let docker = K.docker
        let dockerEntry = K.entry(
            results: [ProbeResult(state: .up, reason: "HTTP 200", latency: .microseconds(12_500)), K.down(reason)],
            listed: [K.urlA], observed: K.dir(K.managed(docker, listing: [K.hostA])))
        let quay = Registry(upstream: "quay.io", readinessProbe: false, hosts: [K.hostB])
        let quayEntry = K.entry(quay, results: [nil], listed: [K.urlB], observed: K.dir(K.managed(quay, listing: [K.hostB])))
        let gone = Registry(upstream: "old.example.com", hosts: [K.hostA])
        let orphan = K.orphan("old.example.com", listing: [K.urlA], observed: K.dir(K.managed(gone, listing: [K.hostA])))
        return K.evaluate([dockerEntry, quayEntry, orphan])
    }

    // MARK: text

    @Test("text: the summary first, then a line per registry and per host, containerd last")
    func text() throws {
        let report = Self.report()
        #expect(report.state == .warning)
        let lines = CheckText.render(report).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.first == report.summary)
        #expect(lines.last == "", "ends with a newline")
        #expect(lines.dropLast().last == "OK containerd: \(report.containerd.message)")

        let registryLines = lines.filter { !$0.hasPrefix(" ") && $0 != report.summary && !$0.isEmpty && !$0.contains("containerd:") }
        #expect(
            registryLines == [
                "WARNING docker.io: file ok (/etc/containerd/certs.d/docker.io/hosts.toml)",
                "OK quay.io: file ok (/etc/containerd/certs.d/quay.io/hosts.toml)",
                "WARNING old.example.com: file orphaned (/etc/containerd/certs.d/old.example.com/hosts.toml)",
            ])
        let hostLines = lines.filter { $0.hasPrefix("  host ") }
        #expect(
            hostLines == [
                "  host \(K.urlA): up (HTTP 200, 12.5 ms), in file",
                "  host \(K.urlB): down (connection refused, 3 ms), not in file",
                "  host \(K.urlB): unprobed, in file",
                "  host \(K.urlA): unprobed, in file",
            ])
        let findingLines = lines.filter { $0.hasPrefix("  WARNING: ") }
        #expect(findingLines.count == 2)
        // The docker.io lines come in order: registry, its finding, its hosts.
        let docker = try #require(lines.firstIndex(of: registryLines[0]))
        #expect(lines[docker + 1].hasPrefix("  WARNING: \(K.urlB) is down"))
        #expect(lines[docker + 2] == hostLines[0])
    }

    @Test("text of an UNKNOWN report: the summary and containerd not checked")
    func unknownText() {
        let text = CheckText.render(HealthReport.unknown("config unreadable"))
        #expect(text == "UNKNOWN: config unreadable\nUNKNOWN containerd: not checked\n")
    }

    // MARK: JSON

    static func parse(_ json: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        #expect(json.hasSuffix("}\n"), sourceLocation: sourceLocation)
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8))
        return try #require(object as? [String: Any], sourceLocation: sourceLocation)
    }

    @Test("JSON: one object with the overall state, and per registry and host the fields monitoring reads")
    func json() throws {
        let report = Self.report()
        let root = try Self.parse(CheckText.json(report))
        #expect(root["state"] as? String == "WARNING")
        #expect(root["exit_code"] as? Int == 1)
        #expect(root["summary"] as? String == report.summary)
        let containerd = try #require(root["containerd"] as? [String: Any])
        #expect(containerd["state"] as? String == "OK")
        #expect(containerd["message"] as? String == report.containerd.message)

        let registries = try #require(root["registries"] as? [[String: Any]])
        #expect(registries.map { $0["upstream"] as? String } == ["docker.io", "quay.io", "old.example.com"])
        #expect(registries.map { $0["file"] as? String } == report.registries.map(\.file))
        #expect(registries.map { $0["file_state"] as? String } == ["ok", "ok", "orphaned"])
        #expect(registries.map { $0["state"] as? String } == ["WARNING", "OK", "WARNING"])
        let findings = try #require(registries[0]["findings"] as? [[String: Any]])
        #expect(findings.count == 1)
        #expect(findings.first?["state"] as? String == "WARNING")

        let dockerHosts = try #require(registries[0]["hosts"] as? [[String: Any]])
        #expect(dockerHosts.map { $0["url"] as? String } == [K.urlA, K.urlB])
        #expect(dockerHosts.map { $0["state"] as? String } == ["up", "down"])
        #expect(dockerHosts.map { $0["reason"] as? String } == ["HTTP 200", "connection refused"])
        #expect(dockerHosts.map { ($0["latency_ms"] as? NSNumber)?.doubleValue } == [12.5, 3])
        #expect(dockerHosts.map { $0["in_file"] as? Bool } == [true, false])

        let quayHosts = try #require(registries[1]["hosts"] as? [[String: Any]])
        #expect(quayHosts.count == 1)
        #expect(quayHosts.first?["state"] as? String == "unprobed")
        #expect(quayHosts.first?["latency_ms"] is NSNull, "an unprobed host has latency null")
        #expect(quayHosts.first?["in_file"] as? Bool == true)
    }

    @Test(
        "JSON stays valid whatever a probe reason holds",
        arguments: ["TLS: \"bad\" certificate\nchain", "back\\slash\ttab", "bell \u{07} and \u{1F}", "unicode: café ✓"])
    func jsonEscaping(reason: String) throws {
        let root = try Self.parse(CheckText.json(Self.report(reason: reason)))
        let registries = try #require(root["registries"] as? [[String: Any]])
        let hosts = try #require(registries.first?["hosts"] as? [[String: Any]])
        #expect(hosts.last?["reason"] as? String == reason)
        #expect(root["summary"] as? String == Self.report(reason: reason).summary)
    }

    @Test("JSON of an UNKNOWN report: exit code 3 and no registries")
    func unknownJSON() throws {
        let root = try Self.parse(CheckText.json(HealthReport.unknown("config unreadable")))
        #expect(root["state"] as? String == "UNKNOWN")
        #expect(root["exit_code"] as? Int == 3)
        #expect(root["summary"] as? String == "UNKNOWN: config unreadable")
        #expect((root["registries"] as? [Any])?.isEmpty == true)
    }

    @Test("JSON exit_code follows the state", arguments: [HealthState.ok, .warning, .critical])
    func exitCode(state: HealthState) throws {
        let entries: [Survey.Entry]
        let both = K.dir(K.managed(K.docker, listing: [K.hostA, K.hostB]))
        switch state {
        case .ok: entries = [K.entry(results: [K.up(), K.up()], listed: [K.urlA, K.urlB], observed: both)]
        case .warning: entries = [K.entry(results: [K.down(), K.down()], listed: [], observed: K.dir(.absent))]
        default: entries = [K.entry(results: [K.up(), K.down()], listed: [K.urlA, K.urlB], observed: both)]
        }
        let report = K.evaluate(entries)
        #expect(report.state == state)
        let root = try Self.parse(CheckText.json(report))
        #expect(root["exit_code"] as? Int == Int(state.rawValue))
        #expect(root["state"] as? String == state.description)
    }
}
