import Foundation
import Glibc
import Testing

// SIGTERM, SIGINT and SIGHUP that reach the agent while it is still starting up. The agent catches them
// with C handlers installed by a constructor before main, unblocks them there, and hands a signal that
// came before the command subscribed to it once it does. Expected: apply ends with 75 for each of the
// three; watch ends with 0 for SIGTERM and SIGINT and reloads on SIGHUP.

// MARK: - posix_spawn

/// A child started with posix_spawn(3), which (unlike Foundation's Process) can set the signal mask the
/// child starts with across exec. SIGTERM, SIGINT and SIGHUP are reset to their default action in the
/// child, so a test run from a shell that ignores SIGINT (a background job) behaves like any other.
/// Killed (SIGKILL) and reaped on deinit if still running, so a failing test leaves nothing behind.
final class SpawnedChild: @unchecked Sendable {
    let pid: pid_t
    let stderrPath: String
    private var finalStatus: Int32?

    /// - Parameters:
    ///   - blocking: signals blocked in the child from its first instruction on (inherited across exec).
    ///   - stderrPath: the child's stderr; stdin and stdout are /dev/null.
    init(_ executable: String, _ arguments: [String], blocking: [Int32] = [], stderrPath: String) throws {
        self.stderrPath = stderrPath
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var mask = sigset_t()
        sigemptyset(&mask)
        for number in blocking { sigaddset(&mask, number) }
        posix_spawnattr_setsigmask(&attributes, &mask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for number in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&defaults, number) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = childEnvironment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw TestFailure("posix_spawn \(executable): \(String(cString: strerror(rc)))") }
        pid = child
    }

    /// The exit status once the child has ended (reaping it), else nil. 128 + N when signal N ended it.
    func poll() -> Int32? {
        if let finalStatus { return finalStatus }
        var raw: Int32 = 0
        let rc = waitpid(pid, &raw, WNOHANG)
        guard rc == pid else {
            if rc < 0 && errno == ECHILD { finalStatus = -1 }  // reaped by someone else: should not happen
            return finalStatus
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift does not import.
        let signal = raw & 0x7f
        finalStatus = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
        return finalStatus
    }

    var isRunning: Bool { poll() == nil }

    func signal(_ number: Int32) {
        if isRunning { kill(pid, number) }
    }

    var stderrText: String { readText(stderrPath) ?? "" }

    /// Waits for the exit; SIGKILLs the child when `timeout` passes first.
    func waitForExit(timeout: Duration) async -> (status: Int32, timedOut: Bool) {
        let end = ContinuousClock.now + timeout
        while ContinuousClock.now < end {
            if let status = poll() { return (status, false) }
            try? await Task.sleep(for: .milliseconds(2))
        }
        if let status = poll() { return (status, false) }
        stop()
        return (poll() ?? -1, true)
    }

    /// SIGKILL and reap.
    func stop() {
        guard finalStatus == nil else { return }
        kill(pid, SIGKILL)
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        if finalStatus == nil { finalStatus = 128 + SIGKILL }
    }

    deinit { stop() }
}

func signalName(_ number: Int32) -> String {
    switch number {
    case SIGTERM: "SIGTERM"
    case SIGINT: "SIGINT"
    case SIGHUP: "SIGHUP"
    default: "signal \(number)"
    }
}

/// Relative paths of the agent's temporary files and directories anywhere under `root`: temp files of
/// hosts.toml (`.hosts.toml.<pid>.<n>.tmp`) and of the ownership record
/// (`..configure-containerd-registries.<pid>.<n>.tmp`), and temporary upstream directories
/// (`.configure-containerd-registries.new.<pid>.<n>`); the record itself has no dot after its name.
func agentTemporaries(under root: String) -> [String] {
    snapshot(root).keys.filter { path in
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return name.hasPrefix(".hosts.toml.") || name.contains(".configure-containerd-registries.")
    }.sorted()
}

/// Whether process `pid` has set a disposition of its own for `signal` (a handler, or SIG_IGN), from
/// the SigCgt and SigIgn masks of /proc/<pid>/status. False while it still has the default action,
/// and when the process is gone.
func handlesSignal(_ pid: pid_t, _ signal: Int32) -> Bool {
    let fd = open("/proc/\(pid)/status", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    let bit = UInt64(1) << UInt64(signal - 1)
    for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n")
    where line.hasPrefix("SigCgt:") || line.hasPrefix("SigIgn:") {
        let hex = line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        if let mask = UInt64(hex, radix: 16), mask & bit != 0 { return true }
    }
    return false
}

// MARK: - Tests

/// A signal as a test argument, shown by name.
struct SignalArgument: Sendable, CustomTestStringConvertible {
    var number: Int32
    var testDescription: String { signalName(number) }
}

struct StartupSignalCase: Sendable, CustomTestStringConvertible {
    var command: String
    var signal: Int32
    var expected: Int32
    var testDescription: String { "\(command): \(signalName(signal)) → exit \(expected)" }
}

/// One agent run in its own temp dir: an empty config file and a mirror that refuses connections, so
/// apply would wait for ever and watch keeps probing; only a signal can end either.
struct SignalSandbox {
    let temp: TempDir
    let config: String
    let hostsDir: String
    let refusing: RefusingPort

    init() throws {
        temp = try TempDir("ccr-signal")
        config = temp.sub("config.toml")
        hostsDir = temp.sub("certs.d")
        try writeText(config, "")
        refusing = try RefusingPort()
    }

    func arguments(_ command: String) -> [String] {
        [command, "--config", config, "--hosts-dir", hostsDir, "docker.io,\(refusing.url)"]
    }

    func spawn(_ command: String, blocking: [Int32] = []) throws -> SpawnedChild {
        try SpawnedChild(agentExecutable, arguments(command), blocking: blocking, stderrPath: temp.sub("stderr"))
    }
}

@Suite("Signals at start-up: a SIGTERM, SIGINT or SIGHUP sent before the agent is ready is not lost", .serialized)
struct StartupSignalTests {
    static let startupSignals = [SIGTERM, SIGINT, SIGHUP]

    init() throws {
        try #require(
            FileManager.default.isExecutableFile(atPath: agentExecutable),
            "the built executable is missing at \(agentExecutable); run swift build first")
    }

    @Test(
        "A signal sent at once to an agent spawned with SIGTERM, SIGINT and SIGHUP blocked is delivered once the agent unblocks them",
        arguments: [
            StartupSignalCase(command: "apply", signal: SIGTERM, expected: 75),
            StartupSignalCase(command: "apply", signal: SIGINT, expected: 75),
            StartupSignalCase(command: "apply", signal: SIGHUP, expected: 75),
            StartupSignalCase(command: "watch", signal: SIGTERM, expected: 0),
            StartupSignalCase(command: "watch", signal: SIGINT, expected: 0),
        ])
    func blockedAcrossExec(_ c: StartupSignalCase) async throws {
        let box = try SignalSandbox()
        let started = ContinuousClock.now
        let agent = try box.spawn(c.command, blocking: Self.startupSignals)
        // posix_spawn returns once the child has exec'd: the agent has not run a line of its own yet,
        // and the signal stays pending until the agent unblocks it.
        kill(agent.pid, c.signal)
        let (status, timedOut) = await agent.waitForExit(timeout: .seconds(5))
        let elapsed = ContinuousClock.now - started
        #expect(!timedOut, "\(c.command) did not end within 5 s of \(signalName(c.signal)): the signal stayed blocked or was lost; stderr: \(agent.stderrText)")
        #expect(status == c.expected, "\(c.command) exited \(status) after \(signalName(c.signal)); stderr: \(agent.stderrText)")
        #expect(agentTemporaries(under: box.hostsDir).isEmpty, "temporary files left: \(agentTemporaries(under: box.hostsDir))")
        print("startup signal: \(c.testDescription): exit \(status) after \(elapsed)")
    }

    @Test("watch spawned with the signals blocked reloads on a SIGHUP sent at once, keeps running, then ends with 0 on SIGTERM")
    func watchHangupBlockedAcrossExec() async throws {
        let box = try SignalSandbox()
        let agent = try box.spawn("watch", blocking: Self.startupSignals)
        kill(agent.pid, SIGHUP)
        let reloaded = await eventually(within: .seconds(5)) { agent.stderrText.contains("config reloaded") }
        #expect(reloaded, "no \"config reloaded\" within 5 s of SIGHUP; stderr: \(agent.stderrText)")
        try await Task.sleep(for: .milliseconds(300))
        #expect(agent.isRunning, "watch ended on SIGHUP (exit \(agent.poll() ?? -1)); stderr: \(agent.stderrText)")

        agent.signal(SIGTERM)
        let (status, timedOut) = await agent.waitForExit(timeout: .seconds(5))
        #expect(!timedOut, "watch did not end within 5 s of SIGTERM; stderr: \(agent.stderrText)")
        #expect(status == 0, "watch exited \(status) on SIGTERM; stderr: \(agent.stderrText)")
        #expect(agentTemporaries(under: box.hostsDir).isEmpty, "temporary files left: \(agentTemporaries(under: box.hostsDir))")
    }

    /// The old defect's window: a signal 20-60 ms after the start, once the C handlers existed but
    /// before apply subscribed, was swallowed (written to a pipe nobody read) and apply then waited
    /// for ever instead of ending with 75.
    ///
    /// Before the executable's constructor has run (the dynamic loader mapping ~50 shared libraries and
    /// running their initialisers: 10-20 ms here, up to ~40 ms when the machine is busy) nothing can
    /// catch a signal, and the default action is the only possible outcome. A run whose random moment
    /// falls there waits until /proc/<pid>/status shows the signal caught (or ignored) and sends it
    /// then, so every run tests the window the agent can and must cover.
    @Test(
        "10 applies each get SIGTERM, and 10 SIGHUP, 20-60 ms after start once the agent has a handler (no mask): every one exits 75 and leaves no temporary file",
        arguments: [SignalArgument(number: SIGTERM), SignalArgument(number: SIGHUP)])
    func randomDelayDuringStartup(_ argument: SignalArgument) async throws {
        let signal = argument.number
        var generator = SystemRandomNumberGenerator()
        var outcomes: [String] = []
        var failures = 0
        var postponed = 0
        for run in 1...10 {
            let box = try SignalSandbox()
            let delay = Int.random(in: 20...60, using: &generator)
            let agent = try box.spawn("apply")
            let started = ContinuousClock.now
            try await Task.sleep(until: started + .milliseconds(delay))
            if !handlesSignal(agent.pid, signal) {
                postponed += 1
                let end = ContinuousClock.now + .seconds(3)
                while !handlesSignal(agent.pid, signal) && agent.isRunning && ContinuousClock.now < end {
                    try await Task.sleep(for: .microseconds(200))
                }
            }
            let sentAfter = ContinuousClock.now - started
            agent.signal(signal)
            let (status, timedOut) = await agent.waitForExit(timeout: .seconds(5))
            outcomes.append("\(Int(sentAfter.seconds * 1000))ms→\(timedOut ? "hung" : "\(status)")")
            #expect(!timedOut, "run \(run): apply did not end within 5 s of \(signalName(signal)) sent after \(sentAfter); stderr: \(agent.stderrText)")
            #expect(status == 75, "run \(run): apply exited \(status) on \(signalName(signal)) sent after \(sentAfter); stderr: \(agent.stderrText)")
            #expect(agentTemporaries(under: box.hostsDir).isEmpty, "run \(run): temporary files left: \(agentTemporaries(under: box.hostsDir))")
            if timedOut || status != 75 { failures += 1 }
            if failures >= 3 { break }  // enough to show the defect; keeps a run against a broken build short
        }
        print("startup signal \(signalName(signal)) at 20-60 ms (\(postponed) postponed until a handler existed): \(outcomes.joined(separator: " "))")
    }
}
