import Foundation
import Glibc
import RegistryMirrorCore
import RegistryMirrorSystem
import Testing

/// The containerd on this machine (Debian's package, installed by scripts/test.sh), run as a daemon
/// of the test's own (root, state and socket in a temp dir, no CRI, no network), asked for its version
/// the way apply and check ask it: gRPC over its socket.
@Suite("containerd's version, from the daemon and from the binary")
struct ContainerdDaemonTests {
    static let binary = "/usr/bin/containerd"

    /// `containerd --version`'s third field, as the test reads it itself.
    static func printedVersion() throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["--version"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        p.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return String(text.split(separator: " ")[2])
    }

    @Test("the running daemon answers its version over gRPC; the binary prints the same; the start time is its process's")
    func daemon() async throws {
        try #require(access(Self.binary, X_OK) == 0, "containerd is not installed")
        let dir = try TempDir()
        let sock = dir.sub("c.sock")
        try writeText(
            dir.sub("config.toml"),
            """
            version = 2
            root = "\(dir.sub("root"))"
            state = "\(dir.sub("state"))"
            disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt", "io.containerd.internal.v1.tracing",
              "io.containerd.tracing.processor.v1.otlp", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
              "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
            [grpc]
              address = "\(sock)"
            [ttrpc]
              address = "\(sock).ttrpc"
            [metrics]
              address = ""

            """)
        let before = Date().timeIntervalSince1970
        let daemon = try ChildProcess(Self.binary, ["--config", dir.sub("config.toml")], stderrPath: dir.sub("containerd.log"))
        defer { daemon.stop() }
        #expect(await eventually(within: .seconds(20)) { if case .success = ContainerdDaemon.version(address: sock) { true } else { false } },
                "the daemon did not answer: \(daemon.stderrText.suffix(300))")
        let expected = try #require(ContainerdVersion(parsing: try Self.printedVersion()))
        let asked = ContainerdDaemon.version(address: sock)
        #expect((try? asked.get()) == expected, "\(asked)")
        #expect((try? ContainerdDaemon.binaryVersion().get()) == expected)

        var config = AgentConfig()
        config.containerdAddress = sock
        #expect(ContainerdDaemon.target(for: config) == ContainerdTarget(version: expected, source: "the daemon at \(sock)", address: sock))
        config.containerdVersion = ContainerdVersion(2, 1, 9)
        #expect(ContainerdDaemon.target(for: config).version == ContainerdVersion(2, 1, 9), "containerd_version wins")

        let started = try #require(ContainerdDaemon.startTime(address: sock))
        #expect(started >= before - 2 && started <= Date().timeIntervalSince1970 + 1, "start \(started), test began \(before)")
    }

    @Test("no daemon: the binary's version, and the reason; a socket path that is a plain file is no daemon")
    func noDaemon() throws {
        try #require(access(Self.binary, X_OK) == 0, "containerd is not installed")
        let dir = try TempDir()
        var config = AgentConfig()
        config.containerdAddress = dir.sub("missing.sock")
        let target = ContainerdDaemon.target(for: config)
        #expect(target.version == ContainerdVersion(parsing: try Self.printedVersion()))
        #expect(target.source.hasPrefix("containerd --version"))
        try writeText(dir.sub("file.sock"), "not a socket")
        guard case .failure(let failure) = ContainerdDaemon.version(address: dir.sub("file.sock")) else {
            Issue.record("a plain file answered")
            return
        }
        #expect(failure.reason.contains("is not a socket"))
        #expect(ContainerdDaemon.startTime(address: dir.sub("missing.sock")) == nil)
    }
}

/// A unix socket whose listener never accepts: with its backlog full (`fill`), a blocking connect to
/// it waits forever; otherwise connects succeed and no answer ever comes (what a wedged containerd
/// looks like from outside). Kept open until deinit.
final class FullBacklogSocket: @unchecked Sendable {
    let path: String
    private var fds: [Int32] = []

    init(in dir: TempDir, fill: Bool = true) throws {
        path = dir.sub("wedged.sock")
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(listener, fill ? 0 : 64) == 0 else { throw TestFailure("bind/listen \(path): \(String(cString: strerror(errno)))") }
        fds.append(listener)
        guard fill else { return }
        // Non-blocking clients until the kernel refuses another: the backlog is full.
        for _ in 0..<64 {
            let client = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            _ = fcntl(client, F_SETFL, O_NONBLOCK)
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if rc != 0 {
                close(client)
                guard errno == EAGAIN else { throw TestFailure("connect: \(String(cString: strerror(errno)))") }
                return
            }
            fds.append(client)
        }
        throw TestFailure("the backlog of \(path) never filled")
    }

    deinit { for fd in fds { close(fd) } }
}

@Suite("A containerd socket that never accepts: every question bounded", .serialized)
struct WedgedContainerdSocketTests {
    @Test("the start time gives up within its timeout instead of blocking in connect")
    func startTimeIsBounded() throws {
        let dir = try TempDir()
        let wedged = try FullBacklogSocket(in: dir)
        let started = ContinuousClock.now
        #expect(ContainerdDaemon.startTime(address: wedged.path) == nil)
        #expect(ContinuousClock.now - started < .seconds(2), "startTime took \(ContinuousClock.now - started)")
    }

    func config(_ dir: TempDir, socket: String) throws -> String {
        let refusing = try RefusingPort()
        try writeText(dir.sub("containerd.toml"), "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"\(dir.sub("certs.d"))\"\n")
        let path = dir.sub("config.toml")
        try writeText(
            path,
            """
            containerd_address = "\(socket)"
            containerd_config = "\(dir.sub("containerd.toml"))"
            containerd_unit = ""
            [[registry]]
            upstream = "docker.io"
              [[registry.host]]
              url = "http://127.0.0.1:\(refusing.port)"
            """)
        return path
    }

    @Test("check answers within 5 s (it blocked forever in connect)")
    func checkIsBounded() async throws {
        let dir = try TempDir()
        let wedged = try FullBacklogSocket(in: dir)
        let config = try config(dir, socket: wedged.path)
        let run = try await runAgent(["check", "--config", config, "--hosts-dir", dir.sub("certs.d")], timeout: .seconds(30))
        #expect(!run.timedOut && run.elapsed < .seconds(5), "check took \(run.elapsed) (timed out: \(run.timedOut)); stderr: \(run.stderr)")
        #expect(run.status == 1, "check exited \(run.status)")
    }

    @Test("apply --deadline 1s ends within 1.5 s when containerd's socket never answers: the deadline counts from the process start")
    func applyDeadlineCountsFromStart() async throws {
        let dir = try TempDir()
        let wedged = try FullBacklogSocket(in: dir, fill: false)
        let config = try config(dir, socket: wedged.path)
        let run = try await runAgent(["apply", "--deadline", "1s", "--config", config, "--hosts-dir", dir.sub("certs.d")], timeout: .seconds(30))
        #expect(run.status == 69, "apply exited \(run.status); stderr: \(run.stderr)")
        #expect(run.elapsed < .milliseconds(1500), "apply --deadline 1s took \(run.elapsed)")
    }
}
