import Foundation
import Glibc
import Logging
import RegistryMirrorCore
import RegistryMirrorSystem
import Testing

// Shared helpers of the system tests: temp directories, loopback servers started as subprocesses,
// TLS material made with the openssl CLI, and running the built executable. Everything listens on
// 127.0.0.1 only.

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A logger that drops everything: the tests look at files and results, not at log lines.
let quietLogger = Logger(label: "system-tests", factory: { _ in SwiftLogNoOpLogHandler() })

// MARK: - Temporary directories

/// A fresh directory under /tmp, removed (with everything in it, symlinks not followed) on deinit.
final class TempDir: @unchecked Sendable {
    let path: String

    init(_ label: String = "ccr") throws {
        var template = Array("/tmp/\(label).XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TestFailure("mkdtemp: \(String(cString: strerror(errno)))")
        }
        path = String(cString: made)
    }

    func sub(_ name: String) -> String { "\(path)/\(name)" }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

// MARK: - File system inspection

struct FileStat: Equatable {
    var inode: UInt
    var mtimeSec: Int
    var mtimeNsec: Int
    var mode: UInt32
    var isSymlink: Bool
    var isDirectory: Bool
    var isRegular: Bool
}

/// lstat: never follows a symlink. nil when the path does not exist.
func lstatInfo(_ path: String) -> FileStat? {
    var info = stat()
    guard lstat(path, &info) == 0 else { return nil }
    return FileStat(
        inode: UInt(info.st_ino), mtimeSec: Int(info.st_mtim.tv_sec), mtimeNsec: Int(info.st_mtim.tv_nsec),
        mode: UInt32(info.st_mode) & 0o7777,
        isSymlink: info.st_mode & S_IFMT == S_IFLNK, isDirectory: info.st_mode & S_IFMT == S_IFDIR,
        isRegular: info.st_mode & S_IFMT == S_IFREG)
}

func exists(_ path: String) -> Bool { lstatInfo(path) != nil }

func readText(_ path: String) -> String? {
    guard let data = FileManager.default.contents(atPath: path) else { return nil }
    return String(decoding: data, as: UTF8.self)
}

func writeText(_ path: String, _ text: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

func makeDirectory(_ path: String) throws {
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
}

func symlink(_ target: String, at path: String) throws {
    guard Glibc.symlink(target, path) == 0 else { throw TestFailure("symlink \(path): \(String(cString: strerror(errno)))") }
}

/// Everything below `root` (not following symlinks): relative path to what it is and what it holds.
/// Two equal snapshots mean the tree is the same, byte for byte. The agent's lock file is left out
/// while a run holds it (it exists only then); one nobody holds is a leftover, and is shown.
func snapshot(_ root: String) -> [String: String] {
    var out: [String: String] = [:]
    func walk(_ relative: String) {
        let full = relative.isEmpty ? root : "\(root)/\(relative)"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: full) else { return }
        for name in names {
            let rel = relative.isEmpty ? name : "\(relative)/\(name)"
            let path = "\(root)/\(rel)"
            if relative.isEmpty && name == ".configure-containerd-registries.lock" && isLockedNow(path) { continue }
            guard let info = lstatInfo(path) else { continue }
            if info.isSymlink {
                out[rel] = "symlink -> " + ((try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "?")
            } else if info.isDirectory {
                out[rel] = "directory \(String(info.mode, radix: 8))"
                walk(rel)
            } else {
                let bytes = FileManager.default.contents(atPath: path) ?? Data()
                out[rel] = "file \(String(info.mode, radix: 8)) " + bytes.base64EncodedString()
            }
        }
    }
    walk("")
    return out
}

/// Some process holds flock on `path` at this moment.
func isLockedNow(_ path: String) -> Bool {
    let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    guard flock(fd, LOCK_SH | LOCK_NB) == 0 else { return errno == EWOULDBLOCK }
    flock(fd, LOCK_UN)
    return false
}

/// Polls `condition` every 5 ms until it holds or `timeout` passes; returns whether it held.
func eventually(within timeout: Duration, _ condition: () -> Bool) async -> Bool {
    let end = ContinuousClock.now + timeout
    while ContinuousClock.now < end {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

// MARK: - Processes

/// The test bundle's directory, where SwiftPM also puts the built executable.
let buildDirectory: String = {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return (exe as NSString).deletingLastPathComponent
}()

/// The built `configure-containerd-registries` (tests run after `swift build`). `CCR_AGENT_BIN` points
/// the binary-level tests at another build, e.g. the previous commit's, to see a new test fail there.
let agentExecutable = ProcessInfo.processInfo.environment["CCR_AGENT_BIN"] ?? "\(buildDirectory)/configure-containerd-registries"

/// The environment for child processes: ours minus anything that would make the agent talk to
/// systemd or go through a proxy.
let childEnvironment: [String: String] = {
    var env = ProcessInfo.processInfo.environment
    for key in ["NOTIFY_SOCKET", "JOURNAL_STREAM", "WATCHDOG_USEC", "http_proxy", "https_proxy", "HTTP_PROXY",
                "HTTPS_PROXY", "ALL_PROXY", "all_proxy"] {
        env[key] = nil
    }
    return env
}()

/// A child process killed (SIGKILL) and reaped when stopped or deinitialised, so a failing test
/// leaves nothing running.
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    let stderrPath: String?
    private let stdinPipe = Pipe()

    /// - Parameter stderrPath: where the child's stderr goes (nil: /dev/null).
    init(_ executable: String, _ arguments: [String], stdout: Pipe? = nil, stderrPath: String? = nil, stdoutPath: String? = nil) throws {
        self.stderrPath = stderrPath
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = childEnvironment
        // The write end stays with us: when this test process dies, the child sees end of file.
        process.standardInput = stdinPipe
        if let stdoutPath {
            _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
            process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: stdoutPath))
        } else {
            process.standardOutput = stdout ?? FileHandle.nullDevice
        }
        if let stderrPath {
            _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        } else {
            process.standardError = FileHandle.nullDevice
        }
        try process.run()
    }

    var pid: pid_t { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    func signal(_ number: Int32) {
        if process.isRunning { kill(process.processIdentifier, number) }
    }

    var stderrText: String { stderrPath.flatMap(readText) ?? "" }

    /// Waits for the exit; SIGKILLs the child when `timeout` passes first. Returns the exit status,
    /// or 128 + signal number when a signal ended it, and whether the timeout struck.
    func waitForExit(timeout: Duration) async -> (status: Int32, timedOut: Bool) {
        let end = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < end {
            try? await Task.sleep(for: .milliseconds(2))
        }
        let timedOut = process.isRunning
        if timedOut { stop() }
        return (exitStatus, timedOut)
    }

    private var exitStatus: Int32 {
        process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    /// SIGKILL and reap. Blocks the calling thread for the few milliseconds the kernel takes.
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

/// Reads one line from a pipe, waiting at most `timeout`, without blocking a thread of the
/// cooperative pool (many tests start servers at once; blocking here would starve the probes).
func readLine(from pipe: Pipe, timeout: Duration) async throws -> String {
    let fd = pipe.fileHandleForReading.fileDescriptor
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    var line: [UInt8] = []
    let end = ContinuousClock.now + timeout
    while true {
        var byte: UInt8 = 0
        let n = read(fd, &byte, 1)
        if n == 1 {
            if byte == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
            continue
        }
        if n == 0 { throw TestFailure("end of output before a full line: \(String(decoding: line, as: UTF8.self))") }
        guard errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR else {
            throw TestFailure("read: \(String(cString: strerror(errno)))")
        }
        guard ContinuousClock.now < end else {
            throw TestFailure("no line within \(timeout); got \(String(decoding: line, as: UTF8.self))")
        }
        try await Task.sleep(for: .milliseconds(5))
    }
}

// MARK: - Loopback test servers

/// Fixtures/testserver.py in the test bundle's resources.
let serverScript: String = {
    if let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) {
        return url.appendingPathComponent("testserver.py").path
    }
    return "\(buildDirectory)/configure-containerd-registries_RegistryMirrorSystemTests.resources/Fixtures/testserver.py"
}()

let python: String = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") ? "/usr/bin/python3" : "python3"

/// A loopback server from Fixtures/testserver.py: `status N`, `hang`, `delay SECONDS`, `tls CERT KEY`.
/// It records the path of every request. Killed when stopped or deinitialised.
final class TestServer: @unchecked Sendable {
    enum Mode: Sendable {
        case status(Int)
        case hang
        case delay(Double)
        case tls(cert: String, key: String)

        var arguments: [String] {
            switch self {
            case .status(let n): ["status", "\(n)"]
            case .hang: ["hang"]
            case .delay(let s): ["delay", "\(s)"]
            case .tls(let cert, let key): ["tls", cert, key]
            }
        }
    }

    let port: Int
    let scheme: String
    private let child: ChildProcess
    private let dir: TempDir

    init(_ mode: Mode) async throws {
        dir = try TempDir("ccr-server")
        let out = Pipe()
        let executable = python.hasPrefix("/") ? python : "/usr/bin/env"
        let prefix = python.hasPrefix("/") ? [] : [python]
        child = try ChildProcess(
            executable, prefix + [serverScript, "--log", dir.sub("requests.log")] + mode.arguments, stdout: out,
            stderrPath: dir.sub("stderr.log"))
        let line: String
        do {
            line = try await readLine(from: out, timeout: .seconds(10))
        } catch {
            child.stop()
            throw TestFailure("test server \(mode) did not start: \(error); stderr: \(child.stderrText)")
        }
        guard let port = Int(line.trimmingCharacters(in: .whitespaces)) else {
            child.stop()
            throw TestFailure("test server printed \(line) instead of a port")
        }
        self.port = port
        if case .tls = mode { scheme = "https" } else { scheme = "http" }
    }

    var url: String { "\(scheme)://127.0.0.1:\(port)" }

    /// Paths of the requests received so far, in order.
    var requestPaths: [String] {
        (readText(dir.sub("requests.log")) ?? "").split(separator: "\n").map(String.init)
    }

    func stop() { child.stop() }

    /// The server's process (SIGSTOP it to make a cache that accepts and never answers).
    var pid: pid_t { child.pid }

    deinit { child.stop() }
}

/// A loopback TCP port with nothing listening: the socket is bound (so no one else gets the port)
/// but never listens, so connections are refused. Closed on deinit.
final class RefusingPort: @unchecked Sendable {
    let port: Int
    private let fd: Int32

    init() throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        port = try bindLoopback(fd)
    }

    var url: String { "http://127.0.0.1:\(port)" }

    deinit { close(fd) }
}

/// Binds `fd` to 127.0.0.1 port 0 and returns the port the kernel chose.
func bindLoopback(_ fd: Int32) throws -> Int {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw TestFailure("bind: \(String(cString: strerror(errno)))") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw TestFailure("getsockname: \(String(cString: strerror(errno)))") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A port that was free a moment ago (bound to port 0, then released), for servers that want a port
/// number on their command line.
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    return try bindLoopback(fd)
}

/// True once something accepts TCP connections on 127.0.0.1:`port`.
func isListening(_ port: Int, address ip: String = "127.0.0.1") -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr(ip)
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    } == 0
}

/// A real docker-registry (Debian's distribution, what the caches run) listening on `address:port`;
/// with `tls`, serving https with its server certificate, and with `logLevel` "info", logging every
/// request as the caches do (`log` is what it wrote).
final class RegistryCache: @unchecked Sendable {
    static let binary = "/usr/bin/docker-registry"
    let address: String
    let port: Int
    private let dir: TempDir
    private var child: ChildProcess?

    init(address: String, port: Int, tls: TLSMaterial? = nil, logLevel: String = "error") async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            throw TestFailure("\(Self.binary) is missing (apt-get install docker-registry; scripts/test.sh does)")
        }
        self.address = address
        self.port = port
        dir = try TempDir("ccr-cache")
        try makeDirectory(dir.sub("data"))
        try writeText(
            dir.sub("config.yml"),
            """
            version: 0.1
            log:
              level: \(logLevel)
            storage:
              filesystem:
                rootdirectory: \(dir.sub("data"))
            http:
              addr: \(address):\(port)

            """ + (tls.map { "  tls:\n    certificate: \($0.serverCert)\n    key: \($0.serverKey)\n" } ?? ""))
        try await start()
    }

    func start() async throws {
        let child = try ChildProcess(Self.binary, ["serve", dir.sub("config.yml")], stderrPath: dir.sub("stderr"), stdoutPath: dir.sub("stdout"))
        self.child = child
        let up = await eventually(within: .seconds(10)) { isListening(port, address: address) || !child.isRunning }
        guard up && child.isRunning else { throw TestFailure("docker-registry on \(address):\(port) did not start: \(child.stderrText)") }
    }

    /// Dies as a cache whose Pod went away: nothing listens (connection refused).
    func stop() { child?.stop() }

    /// What the registry wrote so far: its own log and Go's server errors (stderr), then its access log (stdout).
    var log: String { (readText(dir.sub("stderr")) ?? "") + (readText(dir.sub("stdout")) ?? "") }

    deinit { child?.stop() }
}

// MARK: - TLS material

/// A CA, a server certificate for 127.0.0.1 (subjectAltName IP:127.0.0.1) signed by it, and an
/// unrelated second CA; made once per test run with the openssl CLI.
struct TLSMaterial: Sendable {
    let caCert: String
    let serverCert: String
    let serverKey: String
    let otherCACert: String

    static let shared: Result<TLSMaterial, TestFailure> = {
        do { return .success(try make()) } catch let error as TestFailure { return .failure(error) } catch {
            return .failure(TestFailure("\(error)"))
        }
    }()

    static func get() throws -> TLSMaterial { try shared.get() }

    private static func make() throws -> TLSMaterial {
        var template = Array("/tmp/ccr-tls.XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TestFailure("mkdtemp failed")
        }
        let dir = String(cString: made)
        tlsDirectoryToRemove = dir
        atexit { if let dir = tlsDirectoryToRemove { try? FileManager.default.removeItem(atPath: dir) } }
        try writeText("\(dir)/server.ext",
            "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n")
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try openssl(["req", "-x509"] + ec + ["-keyout", "\(dir)/ca.key", "-out", "\(dir)/ca.crt", "-days", "2", "-subj", "/CN=ccr test CA"])
        try openssl(["req"] + ec + ["-keyout", "\(dir)/server.key", "-out", "\(dir)/server.csr", "-subj", "/CN=127.0.0.1"])
        try openssl([
            "x509", "-req", "-in", "\(dir)/server.csr", "-CA", "\(dir)/ca.crt", "-CAkey", "\(dir)/ca.key",
            "-CAcreateserial", "-out", "\(dir)/server.crt", "-days", "2", "-extfile", "\(dir)/server.ext",
        ])
        try openssl(["req", "-x509"] + ec + ["-keyout", "\(dir)/other.key", "-out", "\(dir)/other.crt", "-days", "2", "-subj", "/CN=ccr unrelated CA"])
        return TLSMaterial(
            caCert: "\(dir)/ca.crt", serverCert: "\(dir)/server.crt", serverKey: "\(dir)/server.key",
            otherCACert: "\(dir)/other.crt")
    }

    private static func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TestFailure("openssl \(arguments.joined(separator: " ")) exited \(process.terminationStatus)")
        }
    }
}

nonisolated(unsafe) private var tlsDirectoryToRemove: String?

// MARK: - Running the agent

struct AgentRun: Sendable {
    var status: Int32
    var timedOut: Bool
    var stderr: String
    var elapsed: Duration
    var stdout: String = ""
}

/// Runs the built executable to completion (killed after `timeout`), stderr captured.
func runAgent(_ arguments: [String], timeout: Duration = .seconds(20)) async throws -> AgentRun {
    let logs = try TempDir("ccr-agent-log")
    let started = ContinuousClock.now
    let child = try ChildProcess(agentExecutable, arguments, stderrPath: logs.sub("stderr"), stdoutPath: logs.sub("stdout"))
    let (status, timedOut) = await child.waitForExit(timeout: timeout)
    return AgentRun(
        status: status, timedOut: timedOut, stderr: child.stderrText, elapsed: ContinuousClock.now - started,
        stdout: readText(logs.sub("stdout")) ?? "")
}

