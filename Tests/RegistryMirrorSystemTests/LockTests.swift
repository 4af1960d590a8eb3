import Foundation
import Glibc
import RegistryMirrorCore
import Testing

// The hosts directory as several agents and accidents see it: one lock per directory whatever the
// spelling of its path (flock on the agent's lock file in it), one that only the agent's user can
// take, and upstream directories that appear only together with their ownership record, so a kill -9
// or a full disk never leaves a directory that `remove` does not know to be ours.

// MARK: - Helpers

/// A config whose registries are all written at once (readiness_probe = false), `hostsPerUpstream`
/// loopback hosts each (nothing has to listen: they are never probed).
func writeAtOnceConfig(_ upstreams: [String], hostsPerUpstream: Int = 3) -> String {
    // Pinned: no asking containerd for its version (an exec of `containerd --version` when no daemon
    // answers, some 25 ms) shifts the moment these tests aim their kills at.
    var toml = "containerd_version = \"\(ContainerdVersion.newestKnown)\"\n"
    for (u, upstream) in upstreams.enumerated() {
        toml += "[[registry]]\nupstream = \"\(upstream)\"\nreadiness_probe = false\n"
        if upstream == "_default" { toml += "server = \"https://fallback.example\"\n" }
        for h in 0..<hostsPerUpstream {
            toml += "  [[registry.host]]\n  url = \"http://127.0.0.1:\(20_000 + u * 100 + h)\"\n"
        }
        toml += "\n"
    }
    return toml
}

/// The agent's lock on a hosts directory (`<dir>/.configure-containerd-registries.lock`, flock),
/// held by this test process the way another instance of the agent holds it. The descriptor is
/// close-on-exec, so no child of the test process shares (and keeps) the lock.
final class HeldAgentLock: @unchecked Sendable {
    static let fileName = ".configure-containerd-registries.lock"
    private var fd: Int32
    let path: String

    init(_ hostsDir: String) throws {
        path = "\(hostsDir)/\(Self.fileName)"
        fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TestFailure("open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw TestFailure("flock \(path): \(reason)")
        }
    }

    /// As the agent lets go: the file goes first, so a waiter holding it open starts again.
    func release() {
        guard fd >= 0 else { return }
        unlink(path)
        flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }

    deinit { release() }
}

enum HostsDirSpelling: String, Sendable, CaseIterable, CustomTestStringConvertible {
    case dotSuffix = "D/."
    case symlinked = "a symlink to D"
    case trailingSlash = "D/"

    var testDescription: String { rawValue }

    /// The spelling of `hostsDir`; a symlink is made in `temp`.
    func spell(_ hostsDir: String, in temp: TempDir) throws -> String {
        switch self {
        case .dotSuffix: return "\(hostsDir)/."
        case .trailingSlash: return "\(hostsDir)/"
        case .symlinked:
            let link = temp.sub("certs.d-link")
            try symlink(hostsDir, at: link)
            return link
        }
    }
}

// MARK: - One lock per hosts directory

@Suite("One lock per hosts directory, whatever the spelling of its path", .serialized)
struct HostsDirectoryLockTests {
    init() throws {
        try #require(
            FileManager.default.isExecutableFile(atPath: agentExecutable),
            "the built executable is missing at \(agentExecutable); run swift build first")
    }

    @Test(
        "remove waits while another instance holds the hosts directory's lock, then deletes our file once it is released",
        arguments: HostsDirSpelling.allCases)
    func removeWaitsForTheDirectoryLock(_ spelling: HostsDirSpelling) async throws {
        let temp = try TempDir("ccr-lock")
        let hostsDir = temp.sub("certs.d")
        let config = temp.sub("config.toml")
        try writeText(config, writeAtOnceConfig(["locked.example"]))
        let applied = try await runAgent(["apply", "--config", config, "--hosts-dir", hostsDir], timeout: .seconds(15))
        try #require(applied.status == 0, "stderr: \(applied.stderr)")
        let file = "\(hostsDir)/locked.example/hosts.toml"
        try #require(exists(file))

        let spelled = try spelling.spell(hostsDir, in: temp)
        let lock = try HeldAgentLock(hostsDir)
        let remove = try ChildProcess(agentExecutable, ["remove", "--hosts-dir", spelled], stderrPath: temp.sub("remove.stderr"))
        try await Task.sleep(for: .milliseconds(700))
        let stillWaiting = remove.isRunning
        let fileKept = exists(file)
        lock.release()
        #expect(stillWaiting, "remove --hosts-dir \(spelled) did not wait for the lock held on \(hostsDir); stderr: \(remove.stderrText)")
        #expect(fileKept, "remove --hosts-dir \(spelled) deleted \(file) while another holder had the lock")

        let (status, timedOut) = await remove.waitForExit(timeout: .seconds(10))
        #expect(!timedOut, "remove did not finish within 10 s of the lock's release; stderr: \(remove.stderrText)")
        #expect(status == 0, "remove exited \(status); stderr: \(remove.stderrText)")
        #expect(!exists(file), "our hosts.toml is still there after remove")
        #expect(snapshot(hostsDir).isEmpty, "left under the hosts dir: \(snapshot(hostsDir).keys.sorted())")
    }

    /// docs/design.md §5: never touch a file the agent did not write. Each round starts `apply --hosts-dir D`
    /// and `remove --hosts-dir D/.` at the same moment; with a lock per path string they interleave.
    @Test("30 rounds of apply on D and remove on D/. started together never change a foreign hosts.toml nor an administrator's hosts.toml.orig")
    func applyAndRemoveRacing() async throws {
        let temp = try TempDir("ccr-race")
        let hostsDir = temp.sub("certs.d")
        let foreignDir = "\(hostsDir)/foreign.example"
        let adminDir = "\(hostsDir)/admin.example"
        try makeDirectory(foreignDir)
        try makeDirectory(adminDir)
        let foreignText = "# written by hand; no marker line\nserver = \"https://foreign.example\"\n\n[host.\"http://10.9.9.9:5000\"]\n  capabilities = [\"pull\"]\n"
        let adminText = "# the administrator's own backup\nserver = \"https://admin.example\"\n"
        try writeText("\(foreignDir)/hosts.toml", foreignText)
        try writeText("\(adminDir)/hosts.toml.orig", adminText)
        // apply writes all three: a directory it creates, one whose foreign file it backs up, and one
        // that holds an administrator's .orig it must never restore.
        let config = temp.sub("config.toml")
        try writeText(config, writeAtOnceConfig(["fresh.example", "foreign.example", "admin.example"]))
        let initial = snapshot(hostsDir)

        var completedRounds = 0
        var generator = SystemRandomNumberGenerator()
        for round in 1...30 {
            let applyArguments = ["apply", "--config", config, "--hosts-dir", hostsDir]
            let removeArguments = ["remove", "--hosts-dir", "\(hostsDir)/."]
            // Which one starts first alternates, and the second follows 0-25 ms later, so that their
            // writes overlap in ever different ways.
            let offset = Duration.milliseconds(Int.random(in: 0...25, using: &generator))
            let apply: ChildProcess
            let remove: ChildProcess
            if round % 2 == 0 {
                apply = try ChildProcess(agentExecutable, applyArguments, stderrPath: temp.sub("apply.stderr"))
                try await Task.sleep(for: offset)
                remove = try ChildProcess(agentExecutable, removeArguments, stderrPath: temp.sub("remove.stderr"))
            } else {
                remove = try ChildProcess(agentExecutable, removeArguments, stderrPath: temp.sub("remove.stderr"))
                try await Task.sleep(for: offset)
                apply = try ChildProcess(agentExecutable, applyArguments, stderrPath: temp.sub("apply.stderr"))
            }
            let applied = await apply.waitForExit(timeout: .seconds(10))
            let removed = await remove.waitForExit(timeout: .seconds(10))
            var ok = true
            func check(_ condition: Bool, _ message: @autoclosure () -> String) {
                if !condition { ok = false }
                #expect(condition, "round \(round): \(message())")
            }
            check(!applied.timedOut && applied.status == 0, "apply exited \(applied.status); stderr: \(apply.stderrText)")
            check(!removed.timedOut && removed.status == 0, "remove exited \(removed.status); stderr: \(remove.stderrText)")

            // Right after the pair: the foreign text is in hosts.toml or (backed up by apply) in
            // hosts.toml.orig, unchanged; the administrator's .orig is where it was, unchanged.
            let foreignNow = readText("\(foreignDir)/hosts.toml")
            let foreignBackup = readText("\(foreignDir)/hosts.toml.orig")
            check(
                foreignNow == foreignText || (foreignBackup == foreignText && foreignNow?.hasPrefix("# managed by") == true),
                "the foreign file is gone or changed: hosts.toml \(foreignNow.debugDescription), hosts.toml.orig \(foreignBackup.debugDescription)")
            check(readText("\(adminDir)/hosts.toml.orig") == adminText, "the administrator's hosts.toml.orig changed or moved")
            if let adminNow = readText("\(adminDir)/hosts.toml") {
                check(adminNow.hasPrefix("# managed by"), "admin.example/hosts.toml is not ours: \(adminNow.debugDescription)")
            }

            // A remove on its own then puts everything back exactly as it was before the first round.
            let cleanup = try await runAgent(["remove", "--hosts-dir", hostsDir], timeout: .seconds(10))
            check(cleanup.status == 0, "the cleanup remove exited \(cleanup.status); stderr: \(cleanup.stderr)")
            let after = snapshot(hostsDir)
            let differing = Set(after.keys).union(initial.keys).filter { after[$0] != initial[$0] }.sorted()
            check(after == initial, "after remove the hosts dir differs from the start in \(differing)")
            guard ok else { break }  // the next round would start from a different state
            completedRounds += 1
        }
        print("apply/remove race: \(completedRounds)/30 rounds left foreign files untouched")
    }
}

// MARK: - Upstream directories are created with their record

@Suite("An upstream directory appears only together with its ownership record", .serialized)
struct DirectoryCreationTests {
    static let upstreams = ["docker.io", "ghcr.io", "quay.io", "registry.k8s.io", "my-registry.io:5000", "_default"]

    init() throws {
        try #require(
            FileManager.default.isExecutableFile(atPath: agentExecutable),
            "the built executable is missing at \(agentExecutable); run swift build first")
    }

    @Test("40 applies on a fresh hosts dir killed with SIGKILL while they create directories: remove then leaves the hosts dir empty")
    func killNineWhileCreatingDirectories() async throws {
        let temp = try TempDir("ccr-mkdir-crash")
        let config = temp.sub("config.toml")
        try writeText(config, writeAtOnceConfig(Self.upstreams, hostsPerUpstream: 4))

        // A run to completion says how long start-up plus writing takes here; the kills are spread
        // around that moment and walk towards the window in which directories are being created.
        let calibration = try await runAgent(["apply", "--config", config, "--hosts-dir", temp.sub("calibration")])
        try #require(calibration.status == 0, "stderr: \(calibration.stderr)")
        var center = max(5.0, calibration.elapsed.seconds * 1000 * 0.9)
        var generator = SystemRandomNumberGenerator()
        var delays: [Int] = []
        var midWrite = 0
        var leftBehind: [String] = []

        for round in 1...40 {
            let hostsDir = temp.sub("round-\(round)")
            let delayMs = max(1.0, center * Double.random(in: 0.6...1.4, using: &generator))
            delays.append(Int(delayMs))
            let agent = try ChildProcess(agentExecutable, ["apply", "--config", config, "--hosts-dir", hostsDir])
            try await Task.sleep(for: .microseconds(Int64(delayMs * 1000)))
            agent.signal(SIGKILL)
            let (status, timedOut) = await agent.waitForExit(timeout: .seconds(10))
            #expect(!timedOut && (status == 0 || status == 128 + SIGKILL), "round \(round): apply exited \(status)")

            let before = snapshot(hostsDir)
            let complete = Self.upstreams.filter { before["\($0)/hosts.toml"] != nil }.count
            if before.isEmpty {
                center = min(center * 1.3, 5000)  // killed before it made anything: later next time
            } else if complete == Self.upstreams.count {
                center = max(center * 0.8, 2)  // everything was written: earlier next time
            } else {
                midWrite += 1
            }

            let remove = try await runAgent(["remove", "--hosts-dir", hostsDir], timeout: .seconds(10))
            #expect(remove.status == 0, "round \(round): remove exited \(remove.status); stderr: \(remove.stderr)")
            let after = snapshot(hostsDir)
            #expect(
                after.isEmpty,
                "round \(round): after remove the hosts dir still holds \(after.keys.sorted()) (before remove: \(before.keys.sorted()))")
            if !after.isEmpty { leftBehind.append("round \(round): \(after.keys.sorted())") }
        }
        #expect(midWrite >= 5, "only \(midWrite) of 40 kills struck while directories were being created; kill delays (ms): \(delays)")
        print("mkdir crash test: \(midWrite)/40 kills mid-write; a full run took \(calibration.elapsed); delays (ms): \(delays); left behind: \(leftBehind)")
    }

    /// What an apply killed between creating its first temporary directory and renaming it leaves:
    /// `.configure-containerd-registries.new.<pid>.<n>` holding the record, and no upstream directory.
    @Test("remove deletes a stale temporary directory left by an apply killed while creating its first upstream directory")
    func removeSweepsAStaleTemporaryDirectory() async throws {
        let temp = try TempDir("ccr-stale-new")
        let hostsDir = temp.sub("certs.d")
        let stale = "\(hostsDir)/.configure-containerd-registries.new.99999.12345"
        try makeDirectory(stale)
        try writeText(
            "\(stale)/.configure-containerd-registries",
            "# written by configure-containerd-registries; do not edit\ncreated_directory = true\nmade_backup = false\n")
        try writeText("\(stale)/.configure-containerd-registries.99999.777.tmp", "# written by configure-containerd-registries; do")

        let run = try await runAgent(["remove", "--hosts-dir", hostsDir], timeout: .seconds(10))
        #expect(run.status == 0, "stderr: \(run.stderr)")
        #expect(snapshot(hostsDir).isEmpty, "left under the hosts dir: \(snapshot(hostsDir).keys.sorted())")
    }

    @Test("ENOSPC after the directory is made (a tmpfs with inodes for it but not for the record): apply exits 73 and leaves no directory")
    func noSpaceForTheRecord() async throws {
        guard getuid() == 0 else { try Test.cancel("mounting a tmpfs needs root") }
        let temp = try TempDir("ccr-enospc")
        let hostsDir = temp.sub("certs.d")
        try makeDirectory(hostsDir)
        // Three inodes: the tmpfs root takes one, the agent's lock file (while held) one, an upstream
        // (or temporary) directory the third, and the ownership record inside it gets ENOSPC.
        let mounted = "size=64k,nr_inodes=3,mode=755".withCString { mount("tmpfs", hostsDir, "tmpfs", 0, $0) }
        guard mounted == 0 else { try Test.cancel("cannot mount a tmpfs: \(String(cString: strerror(errno)))") }
        defer {
            if umount(hostsDir) != 0 { umount2(hostsDir, Int32(MNT_DETACH)) }
            withExtendedLifetime(temp) {}
        }

        // The budget must give exactly that failure, or the test proves nothing.
        let lockLike = "\(hostsDir)/lock"
        let probe = "\(hostsDir)/probe"
        let lockFD = open(lockLike, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard lockFD >= 0, mkdir(probe, 0o755) == 0 else { try Test.cancel("this tmpfs has no inodes for a lock file and a directory: \(String(cString: strerror(errno)))") }
        let fd = open("\(probe)/file", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        let probeErrno = errno
        if fd >= 0 { close(fd); unlink("\(probe)/file") }
        rmdir(probe)
        close(lockFD)
        unlink(lockLike)
        guard fd < 0 && probeErrno == ENOSPC else {
            try Test.cancel("nr_inodes=3 does not make a file inside a new directory fail with ENOSPC here")
        }
        try #require(snapshot(hostsDir).isEmpty)

        let config = temp.sub("config.toml")
        try writeText(config, writeAtOnceConfig(["docker.io"]))
        let run = try await runAgent(["apply", "--config", config, "--hosts-dir", hostsDir], timeout: .seconds(15))
        #expect(run.status == 73, "stderr: \(run.stderr)")
        #expect(run.stderr.contains("No space left on device"), "stderr: \(run.stderr)")
        #expect(snapshot(hostsDir).isEmpty, "left under the hosts dir: \(snapshot(hostsDir).keys.sorted())")
    }
}
