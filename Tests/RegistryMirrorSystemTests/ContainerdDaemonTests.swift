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
        #expect(ContainerdDaemon.target(for: config) == ContainerdTarget(version: expected, source: "the daemon at \(sock)"))
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
