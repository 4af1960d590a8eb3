import Foundation
@testable import RegistryMirrorCore
import Testing

@Suite("Unified diff for plan")
struct UnifiedDiffTests {
    /// `l1\n` ... `l<count>\n`, with `replace` swapping some lines (1-based line number to new text).
    static func numbered(_ count: Int, replace: [Int: String] = [:]) -> String {
        (1...count).map { "\(replace[$0] ?? "l\($0)")\n" }.joined()
    }

    static func diff(_ old: String, _ new: String, context: Int = 3) -> String {
        UnifiedDiff.make(old: old, new: new, oldName: "a/hosts.toml", newName: "b/hosts.toml", context: context)
    }

    @Test("equal texts give no diff at all", arguments: ["", "one line\n", numbered(40)])
    func equal(text: String) {
        #expect(Self.diff(text, text) == "")
    }

    @Test("creating a file: every line added, old range -0,0")
    func pureAddition() {
        let new = "a\nb\nc\n"
        #expect(Self.diff("", new) == "--- a/hosts.toml\n+++ b/hosts.toml\n@@ -0,0 +1,3 @@\n+a\n+b\n+c\n")
    }

    @Test("removing a file: every line removed, new range +0,0")
    func pureRemoval() {
        #expect(Self.diff("a\nb\nc\n", "") == "--- a/hosts.toml\n+++ b/hosts.toml\n@@ -1,3 +0,0 @@\n-a\n-b\n-c\n")
    }

    @Test("a pure insertion in the middle keeps three lines of context on each side")
    func insertionInMiddle() {
        var lines = (1...20).map { "l\($0)" }
        lines.insert("new", at: 10)  // after l10
        let new = lines.map { $0 + "\n" }.joined()
        #expect(
            Self.diff(Self.numbered(20), new)
                == "--- a/hosts.toml\n+++ b/hosts.toml\n@@ -8,6 +8,7 @@\n l8\n l9\n l10\n+new\n l11\n l12\n l13\n")
    }

    @Test("one changed line in a long file: one hunk, three lines of context, correct ranges")
    func middleChange() {
        let diff = Self.diff(Self.numbered(30), Self.numbered(30, replace: [15: "changed"]))
        let lines = UnifiedDiff.lines(diff)
        #expect(lines.prefix(3) == ["--- a/hosts.toml", "+++ b/hosts.toml", "@@ -12,7 +12,7 @@"])
        #expect(lines.filter { $0.hasPrefix("@@") }.count == 1)
        #expect(lines.filter { $0.hasPrefix(" ") } == [" l12", " l13", " l14", " l16", " l17", " l18"])
        #expect(Set(lines.filter { $0.hasPrefix("-") && !$0.hasPrefix("---") }) == ["-l15"])
        #expect(Set(lines.filter { $0.hasPrefix("+") && !$0.hasPrefix("+++") }) == ["+changed"])
        // Context before, the change, context after.
        #expect(Array(lines[3...5]) == [" l12", " l13", " l14"])
        #expect(Array(lines[8...10]) == [" l16", " l17", " l18"])
        #expect(lines.count == 11)
    }

    @Test("changes far apart give two hunks; near ones share a hunk")
    func separateHunks() {
        let far = Self.diff(Self.numbered(40), Self.numbered(40, replace: [5: "x", 30: "y"]))
        let farHeaders = UnifiedDiff.lines(far).filter { $0.hasPrefix("@@") }
        #expect(farHeaders == ["@@ -2,7 +2,7 @@", "@@ -27,7 +27,7 @@"])
        #expect(!far.contains(" l15\n"), "lines between the hunks are left out")

        // Six unchanged lines between two changes (2 x context): the windows touch, one hunk.
        let near = Self.diff(Self.numbered(40), Self.numbered(40, replace: [10: "x", 17: "y"]))
        #expect(UnifiedDiff.lines(near).filter { $0.hasPrefix("@@") } == ["@@ -7,14 +7,14 @@"])
        // Seven: two hunks.
        let apart = Self.diff(Self.numbered(40), Self.numbered(40, replace: [10: "x", 18: "y"]))
        #expect(UnifiedDiff.lines(apart).filter { $0.hasPrefix("@@") } == ["@@ -7,7 +7,7 @@", "@@ -15,7 +15,7 @@"])
    }

    @Test("changes at the very start and end clip the context at the file's edges")
    func edges() {
        let diff = Self.diff(Self.numbered(10), Self.numbered(10, replace: [1: "first", 10: "last"]))
        #expect(UnifiedDiff.lines(diff).filter { $0.hasPrefix("@@") } == ["@@ -1,4 +1,4 @@", "@@ -7,4 +7,4 @@"])
    }

    @Test("a smaller context narrows the hunk")
    func smallerContext() {
        let diff = Self.diff(Self.numbered(10), Self.numbered(10, replace: [5: "x"]), context: 1)
        #expect(UnifiedDiff.lines(diff).filter { $0.hasPrefix("@@") } == ["@@ -4,3 +4,3 @@"])
    }

    // MARK: against diff -u

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var old: String
        var new: String
        var context: Int = 3
        var testDescription: String { name }
    }

    static let hostsOld = """
        # managed by configure-containerd-registries; manual changes are overwritten
        server = "https://registry-1.docker.io"

        [host."http://10.0.0.1:5000"]
          capabilities = ["pull", "resolve"]
          dial_timeout = "1s"

        [host."http://10.0.0.2:5000"]
          capabilities = ["pull", "resolve"]
          dial_timeout = "1s"

        """
    static let hostsNew = """
        # managed by configure-containerd-registries; manual changes are overwritten
        server = "https://registry-1.docker.io"

        [host."http://10.0.0.2:5000"]
          capabilities = ["pull", "resolve"]
          dial_timeout = "2s"

        [host."http://10.0.0.3:5000"]
          capabilities = ["pull", "resolve"]
          dial_timeout = "2s"
          skip_verify = true

        """

    static let cases: [Case] = [
        Case(name: "create", old: "", new: hostsNew),
        Case(name: "remove", old: hostsOld, new: ""),
        Case(name: "hosts.toml rewrite", old: hostsOld, new: hostsNew),
        Case(name: "one line in a long file", old: numbered(30), new: numbered(30, replace: [15: "x"])),
        Case(name: "two far hunks", old: numbered(40), new: numbered(40, replace: [5: "x", 30: "y"])),
        Case(name: "hunks six apart merge", old: numbered(40), new: numbered(40, replace: [10: "x", 17: "y"])),
        Case(name: "hunks seven apart split", old: numbered(40), new: numbered(40, replace: [10: "x", 18: "y"])),
        Case(name: "lines appended", old: numbered(8), new: numbered(8) + "m1\nm2\n"),
        Case(name: "lines dropped at the start", old: numbered(12), new: (4...12).map { "l\($0)\n" }.joined()),
        Case(name: "insertion, no context", old: numbered(6), new: numbered(6, replace: [3: "l3\nnew"]), context: 0),
        Case(name: "removal, no context", old: numbered(6), new: numbered(6, replace: [3: "l3\nnew"]).replacingOccurrences(of: "l5\n", with: ""), context: 0),
    ]

    @Test("hunks equal those of /usr/bin/diff -u (change blocks compared as sets)", arguments: cases)
    func matchesDiffU(_ c: Case) throws {
        let ours = UnifiedDiff.lines(Self.diff(c.old, c.new, context: c.context))
        let theirs = try Self.systemDiff(c.old, c.new, context: c.context)
        try #require(ours.count >= 2 && theirs.count >= 2)
        #expect(ours[0] == "--- a/hosts.toml")
        #expect(ours[1] == "+++ b/hosts.toml")
        #expect(theirs[0].hasPrefix("--- ") && theirs[1].hasPrefix("+++ "))
        #expect(Self.canonical(Array(ours.dropFirst(2))) == Self.canonical(Array(theirs.dropFirst(2))))
    }

    /// Where both are correct, `diff -u` lists a block's removed lines before its added ones.
    @Test("a replaced line reads '-old' then '+new', as diff -u prints it")
    func removalsBeforeAdditions() throws {
        let old = Self.numbered(30), new = Self.numbered(30, replace: [15: "x"])
        let theirs = try Self.systemDiff(old, new, context: 3).dropFirst(2).map(Self.rangeWithCount)
        let ours = UnifiedDiff.lines(Self.diff(old, new)).dropFirst(2)
        #expect(Array(ours) == theirs)
    }

    /// Runs `/usr/bin/diff -U<context>` on two temporary files; returns its output lines.
    static func systemDiff(_ old: String, _ new: String, context: Int) throws -> [String] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("unified-diff-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("old"), b = dir.appendingPathComponent("new")
        try old.write(to: a, atomically: false, encoding: .utf8)
        try new.write(to: b, atomically: false, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/diff")
        process.arguments = ["-U\(context)", a.path, b.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try #require(process.terminationStatus == 1, "diff exits 1 when the files differ")
        return UnifiedDiff.lines(String(decoding: data, as: UTF8.self))
    }

    /// GNU diff leaves out `,1` in a hunk range of one line: `@@ -5 +5 @@` is `@@ -5,1 +5,1 @@`.
    static func rangeWithCount(_ line: String) -> String {
        guard line.hasPrefix("@@ ") else { return line }
        let parts = line.split(separator: " ").map { part -> String in
            guard part.first == "-" || part.first == "+", !part.contains(",") else { return String(part) }
            return part + ",1"
        }
        return parts.joined(separator: " ")
    }

    /// Hunk lines with single-line ranges spelled out and each run of `-`/`+` lines sorted removals
    /// first: two correct diffs of the same texts may order a change block either way.
    static func canonical(_ lines: [String]) -> [String] {
        var out: [String] = [], removed: [String] = [], added: [String] = []
        func flush() {
            out += removed + added
            removed = []; added = []
        }
        for line in lines.map(rangeWithCount) {
            if line.hasPrefix("-") { removed.append(line) }
            else if line.hasPrefix("+") { added.append(line) }
            else { flush(); out.append(line) }
        }
        flush()
        return out
    }
}
