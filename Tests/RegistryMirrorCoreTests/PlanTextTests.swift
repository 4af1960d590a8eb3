@testable import RegistryMirrorCore
import Testing

@Suite("plan: rendered text")
struct PlanTextTests {
    typealias K = SurveyKit

    static let docker = K.docker
    static let bothText = HostsFile.render(docker, hosts: [K.hostA, K.hostB])!
    static let onlyAText = HostsFile.render(docker, hosts: [K.hostA])!

    static func render(_ entries: [Survey.Entry], color: Bool = false) -> (text: String, pending: Int) {
        PlanText.render(Survey(entries: entries), color: color)
    }

    /// The rendered lines, without the two-space indent.
    static func lines(_ text: String) -> [String] {
        text.split(separator: "\n").map { String($0.drop { $0 == " " }) }
    }

    // MARK: one entry per action

    @Test("create: no file yet, a host up")
    func create() {
        let entry = K.entry(results: [K.up(), K.down()], listed: [], observed: .absent)
        let (text, pending) = Self.render([entry])
        #expect(pending == 1)
        let lines = Self.lines(text)
        #expect(lines.first == "docker.io  (/etc/containerd/certs.d/docker.io/hosts.toml)")
        #expect(lines.contains("would create hosts.toml"))
        #expect(!text.contains("would update"))
        #expect(lines.contains("--- /dev/null"))
        #expect(lines.contains("+++ /etc/containerd/certs.d/docker.io/hosts.toml (apply would write)"))
        #expect(lines.contains("@@ -0,0 +1,\(UnifiedDiff.lines(Self.onlyAText).count) @@"))
        for line in UnifiedDiff.lines(Self.onlyAText) { #expect(lines.contains("+" + line), "diff line +\(line)") }
        #expect(!text.contains(K.urlB + "\"]"), "the down host is not written")
        #expect(lines.last == "1 of 1 upstreams would change")
    }

    @Test("update: a recovered host is added to our file")
    func update() {
        let entry = K.entry(results: [K.up(), K.up()], listed: [K.urlA], observed: K.dir(.managed(Self.onlyAText)))
        let (text, pending) = Self.render([entry])
        #expect(pending == 1)
        let lines = Self.lines(text)
        #expect(lines.contains("would update hosts.toml"))
        #expect(!text.contains("would create"))
        #expect(lines.contains("--- /etc/containerd/certs.d/docker.io/hosts.toml (on disk)"))
        #expect(lines.contains("+++ /etc/containerd/certs.d/docker.io/hosts.toml (apply would write)"))
        #expect(lines.contains("+[host.\"\(K.urlB)\"]"))
        #expect(lines.contains { $0.hasPrefix("@@ -") })
        #expect(!lines.contains { $0.hasPrefix("-[host.") }, "nothing is removed")
    }

    @Test("remove: every host down, our file goes")
    func removeNoMirrorUp() {
        let entry = K.entry(results: [K.down(), K.down()], listed: [K.urlA, K.urlB], observed: K.dir(.managed(Self.bothText)))
        let (text, pending) = Self.render([entry])
        #expect(pending == 1)
        let lines = Self.lines(text)
        #expect(lines.contains("would remove hosts.toml (no mirror is up)"))
        #expect(lines.contains("+++ /dev/null"))
        #expect(lines.contains("@@ -1,\(UnifiedDiff.lines(Self.bothText).count) +0,0 @@"))
        for line in UnifiedDiff.lines(Self.bothText) { #expect(lines.contains("-" + line), "diff line -\(line)") }
        #expect(lines.contains("down \(K.urlA)  connection refused"))
    }

    @Test("backup: a foreign file is moved aside before our first write")
    func backup() {
        var observed = K.dir(.foreign, record: nil)
        observed.foreignContent = "server = \"https://registry-1.docker.io\"\n\n[host.\"http://hand-written:5000\"]\n"
        let entry = K.entry(results: [K.up(), K.up()], listed: [], observed: observed)
        let (text, pending) = Self.render([entry])
        #expect(pending == 1)
        let lines = Self.lines(text)
        #expect(lines.contains("would back up foreign file to hosts.toml.orig"))
        #expect(lines.contains("would replace it with hosts.toml of ours"))
        let backUp = lines.firstIndex(of: "would back up foreign file to hosts.toml.orig")
        let replace = lines.firstIndex(of: "would replace it with hosts.toml of ours")
        #expect(backUp != nil && replace != nil && backUp! < replace!, "the backup is named first, as it happens first")
        // The diff runs from what containerd reads now, the foreign file, to ours.
        #expect(lines.contains { $0.hasPrefix("--- ") && $0.hasSuffix("(on disk, not ours: backed up to hosts.toml.orig)") })
        #expect(lines.contains("-[host.\"http://hand-written:5000\"]"))
        #expect(lines.contains("server = \"https://registry-1.docker.io\""), "context line")
        #expect(lines.contains("+[host.\"\(K.urlB)\"]"))
    }

    @Test("restore: an upstream left the config; our file goes and the backup comes back")
    func restore() {
        let gone = Registry(upstream: "old.example.com", hosts: [K.hostA])
        let ours = HostsFile.render(gone, hosts: [K.hostA])!
        let entry = K.orphan(
            "old.example.com", listing: [K.urlA], observed: K.dir(.managed(ours), backup: true, record: OwnershipRecord(createdDirectory: false, madeBackup: true)))
        #expect(entry.actions == [.removeManaged, .restoreBackup, .removeRecord])
        let (text, pending) = Self.render([entry])
        #expect(pending == 1)
        let lines = Self.lines(text)
        #expect(lines.contains("would remove hosts.toml (upstream no longer configured)"))
        #expect(lines.contains("would restore hosts.toml.orig to hosts.toml"))
        #expect(lines.contains("-    \(K.urlA)  (not probed)"))
        #expect(lines.contains("+++ /dev/null"))
        #expect(lines.contains("-server = \"https://old.example.com\""))
    }

    @Test("a directory this agent created is removed when the upstream leaves")
    func removeDirectory() {
        let gone = Registry(upstream: "old.example.com", hosts: [K.hostA])
        let entry = K.orphan("old.example.com", listing: [K.urlA], observed: K.dir(K.managed(gone, listing: [K.hostA])))
        let lines = Self.lines(Self.render([entry]).text)
        #expect(lines.contains("would remove the directory if empty"))
    }

    @Test("unchanged: our file is what apply would write")
    func unchanged() {
        let entry = K.entry(results: [K.up(), K.up()], listed: [K.urlA, K.urlB], observed: K.dir(.managed(Self.bothText)))
        let (text, pending) = Self.render([entry])
        #expect(pending == 0)
        let lines = Self.lines(text)
        #expect(lines.contains("unchanged"))
        #expect(!text.contains("@@"), "no diff")
        #expect(!text.contains("would "))
        #expect(lines.contains("up   \(K.urlA)  HTTP 200, 12ms"))
        #expect(lines.last == "no changes")
    }

    @Test("no host up and no file: nothing to do")
    func nothingUpNoFile() {
        let entry = K.entry(results: [K.down(), K.down()], listed: [], observed: .absent)
        let (text, pending) = Self.render([entry])
        #expect(pending == 0)
        #expect(Self.lines(text).contains("no file (no mirror is up), unchanged"))
        #expect(Self.lines(text).last == "no changes")
    }

    @Test("conflict: cannot apply, with the reason")
    func conflict() throws {
        let entry = K.entry(
            results: [K.up(), K.up()], listed: [], observed: UpstreamDirState(directory: .directory, file: .foreign, backupExists: true))
        let conflict = try #require(entry.conflict)
        let (text, pending) = Self.render([entry])
        #expect(pending == 1)
        #expect(Self.lines(text).contains("cannot apply: \(conflict.message)"))
        #expect(!text.contains("@@"))
    }

    // MARK: counting and colour

    @Test("pending counts upstreams with changes; the last line says how many")
    func pendingCount() {
        let unchanged = K.entry(results: [K.up(), K.up()], listed: [K.urlA, K.urlB], observed: K.dir(.managed(Self.bothText)))
        var quay = Self.docker
        quay.upstream = "quay.io"
        let create = K.entry(quay, results: [K.up(), K.up()], listed: [], observed: .absent)
        var ghcr = Self.docker
        ghcr.upstream = "ghcr.io"
        let conflicted = K.entry(ghcr, results: [K.up(), K.up()], listed: [], observed: UpstreamDirState(directory: .notDirectory))
        let (text, pending) = Self.render([unchanged, create, conflicted])
        #expect(pending == 2)
        #expect(Self.lines(text).last == "2 of 3 upstreams would change")
        // Each upstream gets its own block, in survey order.
        let headers = Self.lines(text).filter { $0.hasSuffix("/hosts.toml)") }
        #expect(headers.map { String($0.prefix { $0 != " " }) } == ["docker.io", "quay.io", "ghcr.io"])
    }

    @Test("an empty survey: nothing configured, no changes")
    func empty() {
        let (text, pending) = Self.render([])
        #expect(pending == 0)
        #expect(text == "no registries configured and no files of ours on disk\nno changes\n")
    }

    static func everyKind() -> [Survey.Entry] {
        var quay = docker
        quay.upstream = "quay.io"
        return [
            K.entry(results: [K.up(), K.down()], listed: [K.urlA, K.urlB], observed: K.dir(.managed(bothText))),
            K.entry(quay, results: [K.up(), K.up()], listed: [], observed: .absent),
            K.orphan("old.example.com", listing: [K.urlA], observed: K.dir(.managed(onlyAText))),
        ]
    }

    @Test("colour only when asked: ANSI escapes with color true, none with false")
    func color() {
        let plain = Self.render(Self.everyKind(), color: false)
        let painted = Self.render(Self.everyKind(), color: true)
        #expect(!plain.text.contains("\u{1B}"))
        #expect(painted.text.contains("\u{1B}[31m"), "red for down hosts and removed lines")
        #expect(painted.text.contains("\u{1B}[32m"), "green for up hosts and added lines")
        #expect(painted.text.contains("\u{1B}[0m"))
        #expect(painted.pending == plain.pending)
        // Without the escapes the two are the same text.
        #expect(Self.stripANSI(painted.text) == plain.text)
    }

    static func stripANSI(_ s: String) -> String {
        var out = ""
        var inEscape = false
        for c in s.unicodeScalars {
            if inEscape {
                if c == "m" { inEscape = false }
            } else if c == "\u{1B}" {
                inEscape = true
            } else {
                out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// A directory of ours whose ownership record went missing: apply would write the record, so the
    /// upstream counts as pending; the text should then say what would change rather than "unchanged".
    @Test("a change counted as pending is also described")
    func recordOnlyChange() {
        let entry = K.entry(results: [K.up(), K.up()], listed: [K.urlA, K.urlB], observed: K.dir(.managed(Self.bothText), record: nil))
        #expect(entry.actions == [.writeRecord(OwnershipRecord(createdDirectory: false))])
        let (text, pending) = Self.render([entry])
        #expect(pending == 1)
        #expect(!Self.lines(text).contains("unchanged"))
    }
}
