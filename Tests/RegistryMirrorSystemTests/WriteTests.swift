import Foundation
import Glibc
import RegistryMirrorCore
import RegistryMirrorSystem
import TOMLKit
import Testing

/// A hosts directory in a temp dir, its store (the lock is the directory itself) and a reconciler,
/// plus an `outside` directory for symlink targets that must stay untouched.
struct HostsTree {
    let temp: TempDir
    let root: String
    let outside: String
    let store: FileHostsStore
    let reconciler: HostsReconciler

    init() throws {
        temp = try TempDir("ccr-hosts")
        root = temp.sub("certs.d")
        outside = temp.sub("outside")
        try makeDirectory(root)
        try makeDirectory(outside)
        store = FileHostsStore(root: root)
        reconciler = HostsReconciler(store: store, logger: quietLogger)
    }

    func dir(_ upstream: String) -> String { "\(root)/\(upstream)" }
    func file(_ upstream: String) -> String { "\(root)/\(upstream)/hosts.toml" }
    func backup(_ upstream: String) -> String { "\(root)/\(upstream)/hosts.toml.orig" }
}

func registry(_ upstream: String, _ urls: [String], probe: Bool = true) -> Registry {
    Registry(upstream: upstream, readinessProbe: probe, hosts: urls.map { MirrorHost(url: $0) })
}

/// The file the agent writes for `upstream` listing `urls`.
func rendered(_ upstream: String, _ urls: [String]) -> String {
    HostsFile.render(registry(upstream, urls), hosts: urls.map { MirrorHost(url: $0) })!
}

/// Parses a hosts.toml with TOMLKit: its server and the set of host URLs.
func parseHostsFile(_ text: String) throws -> (server: String?, hosts: Set<String>) {
    let table = try TOMLTable(string: text)
    let hosts = table["host"]?.table.map { Set($0.keys) } ?? []
    return (table["server"]?.string, hosts)
}

let foreignContent = """
    # written by hand by an operator; not ours
    server = "https://registry.example"

    [host."https://mirror.example"]
      capabilities = ["pull"]

    """

func isWrite(_ step: FileAction) -> Bool { if case .write = step { true } else { false } }

/// docs/design.md §5: atomic replace, no rewrite when unchanged, foreign files backed up once and put back,
/// no symlink followed, directories we created removed again.
@Suite("Writing hosts.toml with FileHostsStore and HostsReconciler")
struct WriteTests {
    @Test("an unchanged file is not rewritten: same inode, same mtime, no step taken")
    func unchangedNotRewritten() async throws {
        let tree = try HostsTree()
        let content = rendered("docker.io", ["http://127.0.0.1:5000", "http://127.0.0.1:5001"])
        let first = try tree.reconciler.reconcile(upstream: "docker.io", desired: content, configured: true)
        #expect(first.contains(.write(content)))
        #expect(readText(tree.file("docker.io")) == content)
        let before = try #require(lstatInfo(tree.file("docker.io")))
        let listing = snapshot(tree.root)

        try await Task.sleep(for: .milliseconds(30))
        let second = try tree.reconciler.reconcile(upstream: "docker.io", desired: content, configured: true)
        #expect(second.isEmpty, "steps taken for an unchanged file: \(second)")
        let after = try #require(lstatInfo(tree.file("docker.io")))
        #expect(after.inode == before.inode)
        #expect(after.mtimeSec == before.mtimeSec && after.mtimeNsec == before.mtimeNsec)
        #expect(snapshot(tree.root) == listing)
    }

    @Test("changed content is replaced atomically: new inode, new content, file 0644, directory 0755, no temp file left")
    func changedRewritten() async throws {
        let tree = try HostsTree()
        let old = rendered("ghcr.io", ["http://127.0.0.1:5000"])
        let new = rendered("ghcr.io", ["http://127.0.0.1:5000", "https://127.0.0.1:5443"])
        try tree.reconciler.reconcile(upstream: "ghcr.io", desired: old, configured: true)
        let before = try #require(lstatInfo(tree.file("ghcr.io")))

        let steps = try tree.reconciler.reconcile(upstream: "ghcr.io", desired: new, configured: true)
        #expect(steps == [.write(new)])
        let text = try #require(readText(tree.file("ghcr.io")))
        #expect(text == new)
        #expect(text.hasPrefix(HostsFile.marker + "\n"))
        let parsed = try parseHostsFile(text)
        #expect(parsed.server == "https://ghcr.io")
        #expect(parsed.hosts == ["http://127.0.0.1:5000", "https://127.0.0.1:5443"])

        let after = try #require(lstatInfo(tree.file("ghcr.io")))
        #expect(after.isRegular)
        #expect(after.inode != before.inode, "rewritten in place rather than renamed over")
        #expect(after.mode == 0o644)
        #expect(lstatInfo(tree.dir("ghcr.io"))?.mode == 0o755)
        let names = try FileManager.default.contentsOfDirectory(atPath: tree.dir("ghcr.io"))
        #expect(Set(names) == ["hosts.toml", OwnershipRecord.fileName], "unexpected files: \(names)")
    }

    @Test("upstream names with a port, an IPv6 literal and _default get their own directory, verbatim")
    func upstreamDirectoryNames() throws {
        let tree = try HostsTree()
        for upstream in ["my-registry.io:5000", "[::1]:5000", "_default"] {
            let content = HostsFile.render(
                registry(upstream, ["http://127.0.0.1:5000"]), hosts: [MirrorHost(url: "http://127.0.0.1:5000")])!
            try tree.reconciler.reconcile(upstream: upstream, desired: content, configured: true)
            #expect(readText(tree.file(upstream)) == content)
        }
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: tree.root)) == ["my-registry.io:5000", "[::1]:5000", "_default"])
    }

    enum Restore: String, Sendable, CaseIterable { case upstreamLeavesConfig, removeEverything }

    @Test("a foreign hosts.toml is backed up once and restored byte for byte", arguments: Restore.allCases)
    func foreignBackedUpAndRestored(_ how: Restore) throws {
        let tree = try HostsTree()
        try makeDirectory(tree.dir("quay.io"))
        try writeText(tree.file("quay.io"), foreignContent)
        chmod(tree.file("quay.io"), 0o600)
        try writeText(tree.dir("quay.io") + "/ca.crt", "not really a certificate\n")
        let original = snapshot(tree.root)

        let a = rendered("quay.io", ["http://127.0.0.1:5000"])
        let steps = try tree.reconciler.reconcile(upstream: "quay.io", desired: a, configured: true)
        #expect(steps.contains(.backUpForeign))
        #expect(readText(tree.backup("quay.io")) == foreignContent)
        #expect(lstatInfo(tree.backup("quay.io"))?.mode == 0o600)
        #expect(readText(tree.file("quay.io")) == a)

        // A second write replaces our file only: the backup keeps the foreign content, not ours.
        let b = rendered("quay.io", ["http://127.0.0.1:5001"])
        let again = try tree.reconciler.reconcile(upstream: "quay.io", desired: b, configured: true)
        #expect(!again.contains(.backUpForeign))
        #expect(readText(tree.backup("quay.io")) == foreignContent)
        #expect(readText(tree.file("quay.io")) == b)

        // While configured with no host up, our file goes but the backup stays for the next write.
        try tree.reconciler.reconcile(upstream: "quay.io", desired: nil, configured: true)
        #expect(!exists(tree.file("quay.io")))
        #expect(readText(tree.backup("quay.io")) == foreignContent)
        try tree.reconciler.reconcile(upstream: "quay.io", desired: b, configured: true)
        #expect(readText(tree.file("quay.io")) == b)
        #expect(readText(tree.backup("quay.io")) == foreignContent)

        switch how {
        case .upstreamLeavesConfig:
            try tree.reconciler.reconcile(upstream: "quay.io", desired: nil, configured: false)
        case .removeEverything:
            #expect(tree.reconciler.removeEverything().isEmpty)
        }
        #expect(snapshot(tree.root) == original, "the foreign file is back, byte for byte and mode, nothing of ours left")
    }

    @Test("a foreign hosts.toml with a hosts.toml.orig already beside it is a conflict; nothing changes")
    func foreignWithExistingBackup() throws {
        let tree = try HostsTree()
        try makeDirectory(tree.dir("quay.io"))
        try writeText(tree.file("quay.io"), foreignContent)
        try writeText(tree.backup("quay.io"), "older backup\n")
        let original = snapshot(tree.root)
        #expect(throws: HostsError.self) {
            try tree.reconciler.reconcile(upstream: "quay.io", desired: rendered("quay.io", ["http://127.0.0.1:5000"]), configured: true)
        }
        #expect(snapshot(tree.root) == original)
    }

    @Test("an apply run removes the managed file of an upstream that left the config and restores a backup")
    func staleManagedFileRemovedByApply() async throws {
        let tree = try HostsTree()
        // Earlier runs: old.example in a directory we created; kept.example over a foreign file.
        try tree.reconciler.reconcile(upstream: "old.example", desired: rendered("old.example", ["http://127.0.0.1:5000"]), configured: true)
        try makeDirectory(tree.dir("kept.example"))
        try writeText(tree.file("kept.example"), foreignContent)
        try tree.reconciler.reconcile(upstream: "kept.example", desired: rendered("kept.example", ["http://127.0.0.1:5000"]), configured: true)
        // Somebody else's directory, never ours.
        try makeDirectory(tree.dir("foreign.example"))
        try writeText(tree.file("foreign.example"), foreignContent)
        #expect(exists(tree.file("old.example")))

        var config = AgentConfig()
        config.hostsDir = tree.root
        config.registries = [registry("new.example", ["http://127.0.0.1:5002"], probe: false)]
        let report = await Applier(config: config, prober: CurlProber.shared, store: tree.store, logger: quietLogger).run()
        #expect(report.exitStatus == .ok)
        #expect(report.configured == ["new.example"])
        #expect(!exists(tree.dir("old.example")), "stale managed file (and the directory we created) still there")
        #expect(readText(tree.file("kept.example")) == foreignContent)
        #expect(!exists(tree.backup("kept.example")))
        #expect(readText(tree.file("foreign.example")) == foreignContent)
        #expect(readText(tree.file("new.example")) == rendered("new.example", ["http://127.0.0.1:5002"]))
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: tree.root)) == ["kept.example", "foreign.example", "new.example"])
    }

    enum LinkTarget: String, Sendable, CaseIterable { case existing, dangling }

    @Test("a symlinked upstream directory is refused and its target untouched", arguments: LinkTarget.allCases)
    func symlinkedDirectory(_ target: LinkTarget) async throws {
        let tree = try HostsTree()
        let elsewhere = tree.outside + "/registry-dir"
        if target == .existing {
            try makeDirectory(elsewhere)
            // A file that even looks like ours: it must still not be touched through the link.
            try writeText(elsewhere + "/hosts.toml", rendered("docker.io", ["http://127.0.0.1:6000"]))
            try writeText(elsewhere + "/hosts.toml.orig", foreignContent)
        }
        try symlink(elsewhere, at: tree.dir("docker.io"))
        let outsideBefore = snapshot(tree.outside)
        let rootBefore = snapshot(tree.root)

        #expect(throws: HostsError.self) {
            try tree.reconciler.reconcile(upstream: "docker.io", desired: rendered("docker.io", ["http://127.0.0.1:5000"]), configured: true)
        }
        try tree.reconciler.reconcile(upstream: "docker.io", desired: nil, configured: false)
        #expect(tree.reconciler.removeEverything().isEmpty)

        var config = AgentConfig()
        config.hostsDir = tree.root
        config.registries = [registry("docker.io", ["http://127.0.0.1:5000"], probe: false)]
        let report = await Applier(config: config, prober: CurlProber.shared, store: tree.store, logger: quietLogger).run()
        #expect(report.exitStatus == .cannotWrite)
        #expect(report.failed["docker.io"]?.contains("symlink") == true, "\(report.failed)")

        #expect(snapshot(tree.outside) == outsideBefore)
        #expect(snapshot(tree.root) == rootBefore)
        #expect(lstatInfo(tree.dir("docker.io"))?.isSymlink == true)
    }

    @Test("a symlinked hosts.toml is refused and its target untouched", arguments: LinkTarget.allCases)
    func symlinkedFile(_ target: LinkTarget) async throws {
        let tree = try HostsTree()
        let elsewhere = tree.outside + "/target.toml"
        if target == .existing {
            try writeText(elsewhere, rendered("docker.io", ["http://127.0.0.1:6000"]))
        }
        try makeDirectory(tree.dir("docker.io"))
        try symlink(elsewhere, at: tree.file("docker.io"))
        let outsideBefore = snapshot(tree.outside)
        let linkBefore = try FileManager.default.destinationOfSymbolicLink(atPath: tree.file("docker.io"))
        let rootBefore = snapshot(tree.root)

        #expect(throws: HostsError.self) {
            try tree.reconciler.reconcile(upstream: "docker.io", desired: rendered("docker.io", ["http://127.0.0.1:5000"]), configured: true)
        }
        try tree.reconciler.reconcile(upstream: "docker.io", desired: nil, configured: true)
        try tree.reconciler.reconcile(upstream: "docker.io", desired: nil, configured: false)
        #expect(tree.reconciler.removeEverything().isEmpty)

        var config = AgentConfig()
        config.hostsDir = tree.root
        config.registries = [registry("docker.io", ["http://127.0.0.1:5000"], probe: false)]
        let report = await Applier(config: config, prober: CurlProber.shared, store: tree.store, logger: quietLogger).run()
        #expect(report.exitStatus == .cannotWrite)

        #expect(snapshot(tree.outside) == outsideBefore)
        #expect(lstatInfo(tree.file("docker.io"))?.isSymlink == true)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: tree.file("docker.io")) == linkBefore)
        #expect(!exists(tree.backup("docker.io")))
        #expect(snapshot(tree.root) == rootBefore, "nothing written beside the symlink either")
    }

    /// A run killed between creating its temp file and renaming it (the crash test shows this
    /// happens) leaves `.hosts.toml.<pid>.<n>.tmp`. The store cleans such files before its next write,
    /// but not on removal, so `remove` leaves the directory it created behind, and with the ownership
    /// record gone nothing will ever clean it (docs/design.md §6: remove deletes every file this agent
    /// manages and removes directories it created if empty).
    @Test("remove after a killed write: our leftover temp file does not keep a directory we created")
    func removeAfterKilledWrite() throws {
        let tree = try HostsTree()
        try tree.reconciler.reconcile(
            upstream: "created.io", desired: rendered("created.io", ["http://127.0.0.1:5000"]), configured: true)
        // What a run killed mid-write leaves: a partial temp file beside hosts.toml.
        try writeText(tree.dir("created.io") + "/.hosts.toml.99999.12345.tmp", HostsFile.marker + "\nserver = \"https://cre")
        #expect(tree.reconciler.removeEverything().isEmpty)
        #expect(!exists(tree.dir("created.io")), "left behind: \(snapshot(tree.root).keys.sorted())")
    }

    @Test("remove leaves only what was not ours, byte for byte; created directories go, pre-existing ones stay")
    func removeEverythingOnMixedTree() throws {
        let tree = try HostsTree()
        let r = tree.root
        // What was there before the agent: foreign files, foreign directories, symlinks.
        try writeText(r + "/README", "operator notes\n")
        try makeDirectory(r + "/foreign.io")
        try writeText(r + "/foreign.io/hosts.toml", foreignContent)
        try makeDirectory(r + "/backed.io")
        try writeText(r + "/backed.io/hosts.toml", foreignContent + "# backed.io\n")
        try writeText(r + "/backed.io/ca.crt", "ca bytes\u{0}\u{1}\n")
        try makeDirectory(r + "/shared.io")
        try writeText(r + "/shared.io/client.pem", "client\n")
        try makeDirectory(r + "/orig-only.io")
        try writeText(r + "/orig-only.io/hosts.toml.orig", "somebody's backup\n")
        try makeDirectory(tree.outside + "/linked")
        try writeText(tree.outside + "/linked/hosts.toml", rendered("linked.io", ["http://127.0.0.1:6000"]))
        try symlink(tree.outside + "/linked", at: r + "/linked.io")
        try makeDirectory(r + "/filelink.io")
        try writeText(tree.outside + "/file.toml", rendered("filelink.io", ["http://127.0.0.1:6000"]))
        try symlink(tree.outside + "/file.toml", at: r + "/filelink.io/hosts.toml")
        try makeDirectory(r + "/empty.io")
        let before = snapshot(r)
        let outsideBefore = snapshot(tree.outside)

        // The agent writes: new directories, over a foreign file, beside foreign files, an empty
        // pre-existing directory.
        for upstream in ["created.io", "[::1]:5000", "_default", "backed.io", "shared.io", "empty.io", "later.io"] {
            try tree.reconciler.reconcile(
                upstream: upstream, desired: rendered(upstream, ["http://127.0.0.1:5000"]), configured: true)
            #expect(readText(tree.file(upstream))?.hasPrefix(HostsFile.marker) == true)
        }
        #expect(readText(r + "/backed.io/hosts.toml.orig") == foreignContent + "# backed.io\n")
        // An operator drops a certificate into a directory the agent created: it must survive, and
        // with it the directory.
        try writeText(r + "/later.io/ca.crt", "added later\n")
        var expected = before
        for (path, entry) in snapshot(r) where path == "later.io" || path == "later.io/ca.crt" { expected[path] = entry }

        let failures = tree.reconciler.removeEverything()
        #expect(failures.isEmpty, "\(failures)")
        #expect(snapshot(r) == expected)
        #expect(snapshot(tree.outside) == outsideBefore)

        // Idempotent.
        #expect(tree.reconciler.removeEverything().isEmpty)
        #expect(snapshot(r) == expected)
    }
}
