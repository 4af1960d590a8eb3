import CCurl
import CLinux
import Glibc
import RegistryMirrorCore

/// What the agent learns from the containerd on this node (docs/design.md §5.1): its version, asked
/// of the running daemon (gRPC `Version` over its socket, spoken by libcurl as HTTP/2 without TLS) or,
/// failing that, of the binary (`containerd --version`); and when the daemon started.
public enum ContainerdDaemon {
    /// How long one question to containerd may take at most (the socket, or `containerd --version`).
    public static let questionTimeout: Duration = .seconds(2)

    /// The containerd the files are for: `containerd_version` when the config sets one, else the
    /// daemon's answer, else the binary's, else unknown (files as for the newest known version).
    /// All questions together take at most `within` (apply passes what is left of its deadline).
    public static func target(for config: AgentConfig, within: Duration = questionTimeout) -> ContainerdTarget {
        if let fixed = config.containerdVersion {
            return ContainerdTarget(version: fixed, source: "containerd_version in the config")
        }
        guard within >= .milliseconds(1) else {
            return ContainerdTarget(version: nil, source: "not asked: apply's deadline left no time for the question")
        }
        let end = ContinuousClock.now + within
        var reasons: [String] = []
        for address in addresses(for: config) {
            let left = ContinuousClock.now.duration(to: end)
            guard left >= .milliseconds(1) else { break }
            switch version(address: address, timeout: left) {
            case .success(let v):
                return ContainerdTarget(version: v, source: "the daemon at \(address)", address: address)
            case .failure(let failure):
                reasons.append(failure.reason)
            }
        }
        let left = ContinuousClock.now.duration(to: end)
        if left >= .milliseconds(1), case .success(let v) = binaryVersion(timeout: left) {
            return ContainerdTarget(version: v, source: "containerd --version; the daemon did not answer")
        }
        return ContainerdTarget(version: nil, source: "\(reasons.joined(separator: "; ")); no containerd binary answered either")
    }

    /// The sockets to ask, in order: `containerd_address` when set, else those containerd's own
    /// config names (`ContainerdSettings.sockets`: version 4 serves on its grpc plugin's address, not
    /// on `[grpc]`), else the default.
    public static func addresses(for config: AgentConfig) -> [String] {
        if let address = config.containerdAddress { return [address] }
        guard let text = try? ConfigFile.readContainerdConfig(config.containerdConfig),
            let root = try? ContainerdConfigText.parse(text)
        else { return [AgentConfig.defaultContainerdAddress] }
        return ContainerdSettings(root).sockets
    }

    /// gRPC `containerd.services.version.v1.Version/Version` on the unix socket `address`.
    public static func version(address: String, timeout: Duration = questionTimeout) -> Result<ContainerdVersion, SystemError> {
        var st = stat()
        guard stat(address, &st) == 0 else { return .failure(SystemError(operation: "ask containerd", reason: "\(address): \(String(cString: strerror(errno)))")) }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else { return .failure(SystemError(operation: "ask containerd", reason: "\(address) is not a socket")) }
        _ = CurlGlobal.ready
        guard let easy = curl_easy_init() else { return .failure(SystemError(operation: "ask containerd", reason: "curl_easy_init failed")) }
        defer { curl_easy_cleanup(easy) }
        var headers: UnsafeMutablePointer<curl_slist>?
        headers = curl_slist_append(headers, "content-type: application/grpc")
        headers = curl_slist_append(headers, "te: trailers")
        defer { curl_slist_free_all(headers) }
        // A gRPC message: uncompressed (0), length 0 (google.protobuf.Empty).
        var request: [UInt8] = [0, 0, 0, 0, 0]
        let capacity = 4096
        let storage = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        defer { storage.deallocate() }
        var body = ccr_buffer(data: storage, len: 0, cap: capacity, total: 0)
        let code = request.withUnsafeMutableBytes { raw -> CURLcode in
            ccr_easy_setopt_string(easy, CURLOPT_UNIX_SOCKET_PATH, address)
            ccr_easy_setopt_string(easy, CURLOPT_URL, "http://localhost/containerd.services.version.v1.Version/Version")
            ccr_easy_setopt_long(easy, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE))
            ccr_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
            ccr_easy_setopt_string(easy, CURLOPT_PROXY, "")
            ccr_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, timeout.millisecondsRoundedUp)
            ccr_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, headers)
            ccr_easy_setopt_pointer(easy, CURLOPT_POSTFIELDS, raw.baseAddress)
            ccr_easy_setopt_long(easy, CURLOPT_POSTFIELDSIZE, raw.count)
            ccr_easy_collect_body(easy, &body)
            return curl_easy_perform(easy)
        }
        guard code == CURLE_OK else {
            return .failure(SystemError(operation: "ask containerd", reason: "no answer from \(address): \(String(cString: curl_easy_strerror(code)))"))
        }
        var status = 0
        ccr_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
        let bytes = Array(UnsafeBufferPointer(start: storage, count: body.len))
        guard status == 200, let text = GRPCVersionReply.version(in: bytes) else {
            return .failure(SystemError(operation: "ask containerd", reason: "\(address) gave no version (HTTP \(status), \(bytes.count) bytes)"))
        }
        guard let version = ContainerdVersion(parsing: text) else {
            return .failure(SystemError(operation: "ask containerd", reason: "\(address) reported version \"\(text)\", which is not one"))
        }
        return .success(version)
    }

    /// `containerd --version` of the first containerd among the usual places (PATH is not trusted:
    /// the agent runs as root).
    public static func binaryVersion(timeout: Duration = questionTimeout) -> Result<ContainerdVersion, SystemError> {
        let candidates = ["/usr/bin/containerd", "/usr/local/bin/containerd", "/usr/sbin/containerd", "/usr/local/sbin/containerd"]
        guard let binary = candidates.first(where: { access($0, X_OK) == 0 }) else {
            return .failure(SystemError(operation: "ask containerd", reason: "no containerd binary in /usr/bin, /usr/local/bin, /usr/sbin"))
        }
        guard let output = run(binary, ["--version"], timeout: timeout) else {
            return .failure(SystemError(operation: "ask containerd", reason: "\(binary) --version did not answer"))
        }
        // "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1": the third field
        // (containerd.io packages print "containerd containerd.io 1.7.24 <commit>").
        let fields = output.split(whereSeparator: { $0 == " " || $0 == "\n" })
        for field in fields.dropFirst(2) {
            if let v = ContainerdVersion(parsing: String(field)) { return .success(v) }
        }
        return .failure(SystemError(operation: "ask containerd", reason: "\(binary) --version printed no version: \(output.prefix(120))"))
    }

    /// When the daemon listening at `address` started (seconds since the epoch): its process, found
    /// through the socket's peer credentials, and that process's start time in /proc. Nil when it
    /// cannot be learnt within `timeout`: a socket whose listener accepts nothing (its backlog full, a
    /// daemon stopped) makes a blocking connect wait forever, so the connect does not block.
    public static func startTime(address: String, timeout: Duration = .milliseconds(500)) -> Double? {
        let fd = ccr_stream_socket(AF_UNIX)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0 else { return nil }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(address.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        // A unix socket's non-blocking connect either completes at once or fails with EAGAIN while
        // the listener's backlog is full (poll cannot wait for room): try again until the timeout.
        let end = ContinuousClock.now + timeout
        while true {
            let connected = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            if connected == 0 { break }
            guard errno == EAGAIN || errno == EINTR, ContinuousClock.now < end else { return nil }
            var pause = timespec(tv_sec: 0, tv_nsec: 10_000_000)
            nanosleep(&pause, nil)
        }
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (Glibc's overlay hides it without _GNU_SOURCE)
        var cred: (pid: Int32, uid: UInt32, gid: UInt32) = (0, 0, 0)
        var len = socklen_t(MemoryLayout.size(ofValue: cred))
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0, cred.pid > 0 else { return nil }
        return ProcessStart.seconds(pid: cred.pid)
    }

    /// The modification time of `path` (seconds since the epoch), nil when it cannot be read.
    public static func modified(_ path: String) -> Double? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
    }

    /// Runs `path args` with stdout captured (at most 64 KiB), stdin and stderr on /dev/null; nil
    /// when it cannot start or outlives `timeout` (it is then killed).
    static func run(_ path: String, _ args: [String], timeout: Duration) -> String? {
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else { return nil }
        _ = fcntl(pipeFDs[0], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        let envp: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), strdup("LC_ALL=C"), nil]
        defer { for p in envp { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, envp)
        close(pipeFDs[1])
        guard rc == 0 else {
            close(pipeFDs[0])
            return nil
        }
        defer { close(pipeFDs[0]) }
        var output: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 4096)
        var finished = false
        while ContinuousClock.now < deadline && output.count < 65_536 {
            var pfd = pollfd(fd: pipeFDs[0], events: Int16(POLLIN), revents: 0)
            let left = ContinuousClock.now.duration(to: deadline)
            guard poll(&pfd, 1, Int32(max(1, left.millisecondsRoundedUp))) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { read(pipeFDs[0], $0.baseAddress, $0.count) }
            if n <= 0 {
                finished = n == 0
                break
            }
            output += buffer[0..<n]
        }
        var status: Int32 = 0
        if !finished { kill(pid, SIGKILL) }
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard finished else { return nil }
        return String(decoding: output, as: UTF8.self)
    }
}

/// A process's start time: field 22 of /proc/PID/stat (clock ticks since boot) on the boot time
/// derived from CLOCK_REALTIME minus CLOCK_BOOTTIME (exact, where /proc/stat's `btime` is whole seconds).
enum ProcessStart {
    static func seconds(pid: pid_t) -> Double? {
        guard let stat = try? RegularFile.read("/proc/\(pid)/stat", limit: 4096) else { return nil }
        guard let ticks = ProcessStat.startTicks(String(decoding: stat, as: UTF8.self)) else { return nil }
        var real = timespec()
        var boot = timespec()
        clock_gettime(CLOCK_REALTIME, &real)
        clock_gettime(CLOCK_BOOTTIME, &boot)
        let bootedAt = (Double(real.tv_sec) - Double(boot.tv_sec)) + (Double(real.tv_nsec) - Double(boot.tv_nsec)) / 1e9
        return bootedAt + ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
