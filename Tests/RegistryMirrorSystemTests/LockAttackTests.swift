import Foundation
import Glibc
import RegistryMirrorCore
import Testing

// The lock as an unprivileged local user, or a stopped instance of the agent, would meet it
// (docs/design.md §5.2). Before, the lock was flock on the hosts directory itself: any user who could
// open the directory could take it, and with `nobody` holding it apply ran past its deadline and
// ignored SIGTERM, remove hung and watch kept a dead mirror in its file.

/// A process of `nobody` (uid 65534) that takes flock on the hosts directory (the old lock) and tries
/// to open and lock the agent's lock file, then holds what it got until stopped. Its first line says
/// what it could do.
final class NobodyHoldingLocks: @unchecked Sendable {
    let child: ChildProcess
    let report: String

    init(_ hostsDir: String, temp: TempDir) async throws {
        let script = """
            import errno, fcntl, os, sys, time
            d = sys.argv[1]
            out = []
            fd = os.open(d, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            out.append("directory locked")
            try:
                lf = os.open(d + "/.configure-containerd-registries.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
                fcntl.flock(lf, fcntl.LOCK_EX | fcntl.LOCK_NB)
                out.append("lock file locked")
            except OSError as e:
                out.append("lock file: " + errno.errorcode[e.errno])
            print("; ".join(out), flush=True)
            time.sleep(120)
            """
        try writeText(temp.sub("nobody.py"), script)
        chmod(temp.sub("nobody.py"), 0o644)
        let out = Pipe()
        child = try ChildProcess(
            "/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", python, temp.sub("nobody.py"), hostsDir],
            stdout: out, stderrPath: temp.sub("nobody.stderr"))
        do {
            report = try await readLine(from: out, timeout: .seconds(10))
        } catch {
            throw TestFailure("the nobody process did not start: \(error); stderr: \(child.stderrText)")
        }
    }

    deinit { child.stop() }
}

@Suite("The lock: only the agent's user can take it, and waiting for it ends at the deadline and on SIGTERM", .serialized)
struct LockAttackTests {
    init() throws {
        try #require(getuid() == 0, "these tests run processes as nobody: run them as root")
        try #require(
            FileManager.default.isExecutableFile(atPath: agentExecutable),
            "the built executable is missing at \(agentExecutable); run swift build first")
    }

    /// A temp dir `nobody` can walk into, with a root-owned hosts dir (0755) in it.
    func world(_ label: String) throws -> (temp: TempDir, hostsDir: String, config: String) {
        let temp = try TempDir(label)
        chmod(temp.path, 0o755)
        let hostsDir = temp.sub("certs.d")
        try makeDirectory(hostsDir)
        chmod(hostsDir, 0o755)
        let config = temp.sub("config.toml")
        try writeText(config, writeAtOnceConfig(["locked.example"]))
        return (temp, hostsDir, config)
    }

    @Test("nobody holding flock on the hosts directory and trying the lock file stalls neither apply (its deadline kept) nor remove")
    func nobodyCannotStallApplyOrRemove() async throws {
        let (temp, hostsDir, config) = try world("ccr-lock-nobody")
        let nobody = try await NobodyHoldingLocks(hostsDir, temp: temp)
        #expect(nobody.report == "directory locked; lock file: EACCES", "nobody could do: \(nobody.report)")

        let applied = try await runAgent(["apply", "--deadline", "2s", "--config", config, "--hosts-dir", hostsDir], timeout: .seconds(20))
        #expect(applied.status == 0 && applied.elapsed < .seconds(2), "apply exited \(applied.status) after \(applied.elapsed); stderr: \(applied.stderr)")
        #expect(exists("\(hostsDir)/locked.example/hosts.toml"))

        let removed = try await runAgent(["remove", "--hosts-dir", hostsDir], timeout: .seconds(20))
        #expect(removed.status == 0 && removed.elapsed < .seconds(2), "remove exited \(removed.status) after \(removed.elapsed); stderr: \(removed.stderr)")
        #expect(snapshot(hostsDir).isEmpty, "left under the hosts dir: \(snapshot(hostsDir).keys.sorted())")
    }

    @Test("while an instance holds the lock, nobody cannot open the lock file, so cannot hold it past that instance")
    func nobodyCannotOpenAHeldLock() async throws {
        let (temp, hostsDir, _) = try world("ccr-lock-held")
        let held = try HeldAgentLock(hostsDir)
        let nobody = try await NobodyHoldingLocks(hostsDir, temp: temp)
        #expect(nobody.report == "directory locked; lock file: EACCES", "nobody could do: \(nobody.report)")
        held.release()
    }

    @Test("watch with nobody holding flock on the hosts directory takes a dead mirror out in seconds and stops at once on SIGTERM")
    func nobodyCannotStallWatch() async throws {
        let (temp, hostsDir, _) = try world("ccr-lock-watch")
        let mirror = try await TestServer(.status(200))
        let config = temp.sub("watch.toml")
        try writeText(
            config,
            """
            containerd_version = "\(ContainerdVersion.newestKnown)"
            containerd_unit = ""
            [probe]
            watch_interval = "300ms"
            [[registry]]
            upstream = "locked.example"
              [[registry.host]]
              url = "\(mirror.url)"
            """)
        let file = "\(hostsDir)/locked.example/hosts.toml"
        let nobody = try await NobodyHoldingLocks(hostsDir, temp: temp)
        try #require(nobody.report.hasPrefix("directory locked"), "nobody could do: \(nobody.report)")
        let watch = try ChildProcess(agentExecutable, ["watch", "--config", config, "--hosts-dir", hostsDir], stderrPath: temp.sub("watch.stderr"))
        #expect(await eventually(within: .seconds(5)) { exists(file) }, "watch wrote no file; stderr: \(watch.stderrText)")
        mirror.stop()
        let killed = ContinuousClock.now
        #expect(await eventually(within: .seconds(5)) { !exists(file) }, "the dead mirror's file is still there after 5 s; stderr: \(watch.stderrText)")
        print("watch with nobody's lock: file removed \(ContinuousClock.now - killed) after the mirror died")
        watch.signal(SIGTERM)
        let (status, timedOut) = await watch.waitForExit(timeout: .seconds(1))
        #expect(!timedOut && status == 0, "watch exited \(status) (timed out: \(timedOut)); stderr: \(watch.stderrText)")
    }

    @Test("a lock file that another user owns (a hosts dir anyone may write) is refused with the fix, at once")
    func foreignLockFileIsRefused() async throws {
        let (temp, hostsDir, config) = try world("ccr-lock-foreign")
        chmod(hostsDir, 0o777)
        let nobody = try await NobodyHoldingLocks(hostsDir, temp: temp)
        try #require(nobody.report == "directory locked; lock file locked", "nobody could do: \(nobody.report)")
        let applied = try await runAgent(["apply", "--deadline", "5s", "--config", config, "--hosts-dir", hostsDir], timeout: .seconds(20))
        #expect(applied.status == 73, "apply exited \(applied.status); stderr: \(applied.stderr)")
        #expect(applied.elapsed < .seconds(2), "apply took \(applied.elapsed)")
        #expect(applied.stderr.contains("belongs to uid 65534"), "stderr: \(applied.stderr)")
        #expect(!exists("\(hostsDir)/locked.example"))
    }

    @Test("another instance holding the lock (stopped, say): apply ends at its deadline with 69, and at once on SIGTERM with 75")
    func applyWaitEndsAtDeadlineAndOnSignal() async throws {
        let (temp, hostsDir, config) = try world("ccr-lock-wait")
        let held = try HeldAgentLock(hostsDir)
        let timed = try await runAgent(["apply", "--deadline", "2s", "--config", config, "--hosts-dir", hostsDir], timeout: .seconds(20))
        #expect(timed.status == 69, "apply exited \(timed.status); stderr: \(timed.stderr)")
        #expect(timed.elapsed < .milliseconds(2600), "apply took \(timed.elapsed) with a 2 s deadline")
        #expect(timed.stderr.contains("deadline reached while another instance of the agent held the lock"), "stderr: \(timed.stderr)")

        let apply = try ChildProcess(agentExecutable, ["apply", "--config", config, "--hosts-dir", hostsDir], stderrPath: temp.sub("apply.stderr"))
        try await Task.sleep(for: .milliseconds(500))
        #expect(apply.isRunning, "apply did not wait for the lock; stderr: \(apply.stderrText)")
        apply.signal(SIGTERM)
        let (status, timedOut) = await apply.waitForExit(timeout: .seconds(1))
        #expect(!timedOut && status == 75, "apply exited \(status) (timed out: \(timedOut)); stderr: \(apply.stderrText)")
        #expect(!exists("\(hostsDir)/locked.example"))
        held.release()
    }

    @Test("another instance holding the lock: watch still stops at once on SIGTERM with 0")
    func watchWaitEndsOnSignal() async throws {
        let (temp, hostsDir, config) = try world("ccr-lock-watch-wait")
        let held = try HeldAgentLock(hostsDir)
        let watch = try ChildProcess(agentExecutable, ["watch", "--config", config, "--hosts-dir", hostsDir], stderrPath: temp.sub("watch.stderr"))
        try await Task.sleep(for: .milliseconds(500))
        #expect(watch.isRunning)
        watch.signal(SIGTERM)
        let (status, timedOut) = await watch.waitForExit(timeout: .seconds(1))
        #expect(!timedOut && status == 0, "watch exited \(status) (timed out: \(timedOut)); stderr: \(watch.stderrText)")
        held.release()
    }
}
