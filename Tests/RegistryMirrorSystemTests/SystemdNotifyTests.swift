import Foundation
import Glibc
@testable import RegistryMirrorSystem
import Synchronization
import Testing

// sd_notify as systemd sees it: a datagram socket bound here stands in for the service manager, the
// built executable runs with NOTIFY_SOCKET pointing at it, and the tests read back every message.
// Loopback only.

/// An AF_UNIX datagram socket standing in for systemd's notification socket. Closed on deinit.
final class NotifySocket: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let dir: TempDir
    /// Every datagram received so far, in order (one datagram may hold several newline-separated
    /// assignments: they are split).
    private(set) var messages: [String] = []

    init() throws {
        dir = try TempDir("ccr-notify")
        path = dir.sub("notify.sock")
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw TestFailure("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw TestFailure("bind \(path): \(String(cString: strerror(errno)))") }
    }

    /// Reads whatever has arrived, without blocking.
    func drain() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { return }
            let text = String(decoding: buffer[0..<n], as: UTF8.self)
            messages.append(contentsOf: text.split(separator: "\n").map(String.init))
        }
    }

    /// Polls until `condition` holds on the messages or `timeout` passes; returns whether it held.
    func wait(within timeout: Duration, for condition: ([String]) -> Bool) async -> Bool {
        let end = ContinuousClock.now + timeout
        while ContinuousClock.now < end {
            drain()
            if condition(messages) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        drain()
        return condition(messages)
    }

    var statuses: [String] { messages.filter { $0.hasPrefix("STATUS=") }.map { String($0.dropFirst(7)) } }

    deinit { close(fd) }
}

/// A loopback HTTP listener answering 200 to everything. The port is bound at once, so until
/// `listen()` is called connections are refused (a mirror that is not up yet); `stop()` closes it
/// (connections refused again).
final class LateMirror: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    private let stopped = Atomic<Bool>(false)
    private let finished = Atomic<Bool>(false)

    init() throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        port = try bindLoopback(fd)
    }

    var url: String { "http://127.0.0.1:\(port)" }

    /// Starts listening and answering on a thread of its own.
    func listen() throws {
        guard Glibc.listen(fd, 16) == 0 else { throw TestFailure("listen: \(String(cString: strerror(errno)))") }
        let fd = self.fd
        let thread = Thread { [self] in
            let response = Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".utf8)
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !stopped.load(ordering: .acquiring) {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, 50) > 0 else { continue }
                let client = accept(fd, nil, nil)
                guard client >= 0 else { continue }
                var timeout = timeval(tv_sec: 1, tv_usec: 0)
                setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                // Read the request head (it fits one read for a GET), then answer.
                _ = recv(client, &buffer, buffer.count, 0)
                _ = response.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(client)
            }
            close(fd)
            finished.store(true, ordering: .releasing)
        }
        thread.start()
    }

    /// Stops answering and closes the socket: connections are refused from now on.
    func stop() async {
        stopped.store(true, ordering: .releasing)
        _ = await eventually(within: .seconds(2)) { finished.load(ordering: .acquiring) }
    }
}

/// The built executable with NOTIFY_SOCKET (and more) in its environment; killed on deinit.
final class NotifiedAgent: @unchecked Sendable {
    let process = Process()
    let logs: TempDir

    init(_ arguments: [String], environment extra: [String: String]) throws {
        logs = try TempDir("ccr-notify-agent")
        process.executableURL = URL(fileURLWithPath: agentExecutable)
        process.arguments = arguments
        process.environment = childEnvironment.merging(extra) { $1 }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: logs.sub("stderr"), contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logs.sub("stderr")))
        try process.run()
    }

    var stderr: String { readText(logs.sub("stderr")) ?? "" }

    /// The exit status, or nil when it did not exit within `timeout` (then it is killed).
    func waitForExit(timeout: Duration) async -> Int32? {
        let ok = await eventually(within: timeout) { !process.isRunning }
        guard ok else {
            kill()
            return nil
        }
        return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    func kill() {
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit { kill() }
}

@Suite("sd_notify messages of the built executable")
struct SystemdNotifyTests {
    init() throws {
        try #require(
            FileManager.default.isExecutableFile(atPath: agentExecutable),
            "the built executable is missing at \(agentExecutable); run swift build first")
    }

    @Test("apply: STATUS says what it waits for and why, then 1/1 registries configured")
    func applyStatusSequence() async throws {
        let work = try TempDir("ccr-notify-apply")
        let hostsDir = work.sub("certs.d")
        try writeText(work.sub("empty.toml"), "")
        let notify = try NotifySocket()
        let mirror = try LateMirror()
        defer { Task { await mirror.stop() } }

        let agent = try NotifiedAgent(
            ["apply", "--config", work.sub("empty.toml"), "--hosts-dir", hostsDir, "--log-format", "text",
             "--deadline", "30s", "docker.io,\(mirror.url)"],
            environment: ["NOTIFY_SOCKET": notify.path])
        // The mirror comes up a second later: until then every probe is refused.
        let sawRefusal = await notify.wait(within: .seconds(10)) { messages in
            messages.contains { $0.contains("waiting for docker.io (\(mirror.url): ") && $0.contains("attempt") }
        }
        try await Task.sleep(for: .seconds(1))
        try mirror.listen()
        let status = await agent.waitForExit(timeout: .seconds(20))
        notify.drain()

        #expect(status == 0, "stderr: \(agent.stderr)")
        #expect(sawRefusal, "no STATUS naming the refused mirror; got \(notify.messages)")
        let statuses = notify.statuses
        try #require(statuses.count >= 2, "STATUS messages: \(statuses)")
        // First: nothing configured yet, waiting for docker.io.
        #expect(statuses.first!.hasPrefix("0/1 registries configured; waiting for docker.io"), "\(statuses)")
        // Every message but the last is a waiting one; the last says it is done.
        for text in statuses.dropLast() {
            #expect(text.hasPrefix("0/1 registries configured; waiting for docker.io"), "\(statuses)")
        }
        #expect(statuses.last!.hasPrefix("1/1 registries configured"), "\(statuses)")
        #expect(!statuses.last!.contains("waiting"), "\(statuses)")
        // The reason is carried, with an attempt count that grows.
        let attempts = statuses.compactMap { text -> Int? in
            guard let range = text.range(of: "attempt ") else { return nil }
            return Int(text[range.upperBound...].prefix { $0.isNumber })
        }
        #expect(attempts.count >= 2 && attempts == attempts.sorted() && attempts.last! > attempts.first!, "\(statuses)")
        #expect(statuses.contains { $0.contains("connection refused") || $0.contains("refused") }, "\(statuses)")
        // apply is Type=oneshot: no READY=1, no STOPPING=1.
        #expect(!notify.messages.contains("READY=1"), "\(notify.messages)")
        #expect(exists("\(hostsDir)/docker.io/hosts.toml"))
    }

    @Test("apply without NOTIFY_SOCKET: sd_notify is a no-op and apply still succeeds")
    func applyWithoutNotifySocket() async throws {
        let work = try TempDir("ccr-notify-none")
        let hostsDir = work.sub("certs.d")
        try writeText(work.sub("empty.toml"), "")
        let mirror = try LateMirror()
        try mirror.listen()
        defer { Task { await mirror.stop() } }
        let agent = try NotifiedAgent(
            ["apply", "--config", work.sub("empty.toml"), "--hosts-dir", hostsDir, "--deadline", "10s",
             "docker.io,\(mirror.url)"],
            environment: [:])
        let status = await agent.waitForExit(timeout: .seconds(15))
        #expect(status == 0, "stderr: \(agent.stderr)")
    }

    @Test("watch: READY=1 after the first pass, STATUS on change, WATCHDOG=1, STOPPING=1 on SIGTERM")
    func watchLifecycle() async throws {
        let work = try TempDir("ccr-notify-watch")
        let hostsDir = work.sub("certs.d")
        let config = work.sub("config.toml")
        try writeText(
            config,
            """
            [probe]
            initial_interval = "100ms"
            max_interval = "200ms"
            watch_interval = "300ms"
            failure_threshold = 2
            success_threshold = 1
            """)
        let notify = try NotifySocket()
        let mirror = try LateMirror()
        try mirror.listen()
        let agent = try NotifiedAgent(
            ["watch", "--config", config, "--hosts-dir", hostsDir, "--log-format", "text", "docker.io,\(mirror.url)"],
            environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"])

        let ready = await notify.wait(within: .seconds(10)) { $0.contains("READY=1") }
        #expect(ready, "no READY=1; got \(notify.messages); stderr: \(agent.stderr)")
        let readyIndex = notify.messages.firstIndex(of: "READY=1") ?? 0
        let firstStatus = notify.messages[readyIndex...].first { $0.hasPrefix("STATUS=") } ?? ""
        #expect(firstStatus.contains("1/1 registries have a mirror in hosts.toml"), "\(notify.messages)")
        #expect(exists("\(hostsDir)/docker.io/hosts.toml"))

        // The mirror goes away: after failure_threshold failed probes the status changes.
        await mirror.stop()
        let changed = await notify.wait(within: .seconds(10)) { messages in
            messages[readyIndex...].contains { $0.hasPrefix("STATUS=0/1 registries") && $0.contains("out: docker.io") }
        }
        #expect(changed, "no STATUS after the mirror went down; got \(notify.messages); stderr: \(agent.stderr)")

        // WATCHDOG_USEC=1s: keep-alives every half second.
        let watchdogs = await notify.wait(within: .seconds(5)) { $0.filter { $0 == "WATCHDOG=1" }.count >= 3 }
        #expect(watchdogs, "WATCHDOG=1 count: \(notify.messages.filter { $0 == "WATCHDOG=1" }.count)")

        kill(agent.process.processIdentifier, SIGTERM)
        let status = await agent.waitForExit(timeout: .seconds(10))
        notify.drain()
        #expect(status == 0, "stderr: \(agent.stderr)")
        #expect(notify.messages.contains("STOPPING=1"), "\(notify.messages)")
        // Nothing but keep-alives after STOPPING=1.
        if let stopping = notify.messages.firstIndex(of: "STOPPING=1") {
            #expect(notify.messages[(stopping + 1)...].allSatisfy { $0 == "WATCHDOG=1" }, "\(notify.messages)")
        }
        // READY=1 exactly once, before any change.
        #expect(notify.messages.filter { $0 == "READY=1" }.count == 1)
    }
}

@Suite("journald plumbing: field names and JOURNAL_STREAM detection")
struct JournalPlumbingTests {
    @Test("metadata keys become valid journal field names", arguments: [
        ("registry_upstream", "REGISTRY_UPSTREAM"), ("hosts_file", "HOSTS_FILE"), ("a-b.c", "A_B_C"),
        ("_private", "PRIVATE"), ("9lives", "LIVES"), ("über", "BER"), ("", "FIELD"),
    ])
    func fieldNames(key: String, expected: String) {
        let name = JournalLogHandler.fieldName(key)
        #expect(name == expected)
        #expect(name.allSatisfy { $0.isASCII && ($0.isUppercase || $0.isNumber || $0 == "_") })
        #expect(name.first != "_" && name.first?.isNumber != true)
    }

    @Test("auto picks the journal only when JOURNAL_STREAM names stderr's device and inode")
    func journalStreamDetection() {
        var info = stat()
        #expect(fstat(STDERR_FILENO, &info) == 0)
        let matching = "\(info.st_dev):\(info.st_ino)"
        #expect(LogFormat.stderrIsJournal(matching))
        #expect(LogFormat.auto.resolved(environment: ["JOURNAL_STREAM": matching]) == .journal)
        #expect(!LogFormat.stderrIsJournal("\(info.st_dev):\(info.st_ino &+ 1)"))
        #expect(!LogFormat.stderrIsJournal(nil))
        #expect(!LogFormat.stderrIsJournal("garbage"))
        #expect(LogFormat.auto.resolved(environment: [:]) == .text)
        #expect(LogFormat.json.resolved(environment: ["JOURNAL_STREAM": matching]) == .json)
    }
}
