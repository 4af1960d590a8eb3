import CCurl
import Glibc
import RegistryMirrorCore
import Synchronization

/// Probes mirrors with libcurl's multi interface, all transfers driven by one dedicated thread, so a
/// dead or hanging mirror never holds a thread of Swift's cooperative pool or delays another probe.
public final class CurlProber: SilenceReportingProber, Sendable {
    /// One loop per process is enough: it multiplexes any number of transfers. The only instance:
    /// each would start a thread that runs for the life of the process.
    public static let shared = CurlProber()

    private struct Pending: Sendable {
        var adds: [Transfer] = []
        var cancels: [UInt64] = []
    }

    /// The multi handle. Invariant: only the loop thread calls libcurl with it, except
    /// `curl_multi_wakeup`, which libcurl documents as callable from any thread.
    nonisolated(unsafe) private let multi: UnsafeMutableRawPointer
    private let pending = Mutex(Pending())
    private let nextID = Atomic<UInt64>(1)

    private init() {
        _ = CurlGlobal.ready
        guard let m = curl_multi_init() else { fatalError("curl_multi_init failed: out of memory") }
        multi = m
        let rc = startDetachedThread(named: "ccr-probes") { [self] in runLoop() }
        precondition(rc == 0, "cannot start the probe thread: \(String(cString: strerror(rc)))")
    }


    public func probe(_ host: MirrorHost, settings: ProbeSettings) async -> ProbeResult {
        await run(host, settings: settings, silence: nil)
    }

    public func probe(
        _ host: MirrorHost, settings: ProbeSettings, silentAfter: Duration, silent: @escaping @Sendable () -> Void
    ) async -> ProbeResult {
        await run(host, settings: settings, silence: Silence(deadline: .now + silentAfter, call: silent))
    }

    private func run(_ host: MirrorHost, settings: ProbeSettings, silence: Silence?) async -> ProbeResult {
        // TLS files are read here, never on the loop thread, and without blocking: a CA file that is a
        // FIFO, or unreadable, marks only this host down and delays no other probe.
        let material: TLSMaterial
        switch TLSMaterial.load(host) {
        case .success(let loaded): material = loaded
        case .failure(let failure): return ProbeResult(state: .down, reason: failure.reason)
        }
        let id = nextID.add(1, ordering: .relaxed).oldValue
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ProbeResult, Never>) in
                var transfer = Transfer(id: id, host: host, settings: settings, tls: material, continuation: continuation)
                transfer.silence = silence
                pending.withLock { $0.adds.append(transfer) }
                curl_multi_wakeup(multi)
            }
        } onCancel: {
            pending.withLock { $0.cancels.append(id) }
            curl_multi_wakeup(multi)
        }
    }

    /// The loop: add queued transfers, drive them, hand back finished ones, sleep in poll until a
    /// socket is ready, a timeout expires or `probe` wakes it.
    private func runLoop() {
        var active: [UInt64: Transfer] = [:]
        var byHandle: [UnsafeMutableRawPointer: UInt64] = [:]
        var cancelledEarly = Set<UInt64>()
        while true {
            let work = pending.withLock { p -> Pending in
                defer { p = Pending() }
                return p
            }
            for var transfer in work.adds {
                if cancelledEarly.remove(transfer.id) != nil {
                    transfer.finish(ProbeResult(state: .down, reason: "cancelled"))
                    continue
                }
                if let failure = transfer.prepare() {
                    transfer.finish(failure)
                    continue
                }
                curl_multi_add_handle(multi, transfer.easy)
                active[transfer.id] = transfer
                byHandle[transfer.easy!] = transfer.id
            }
            for id in work.cancels {
                guard var transfer = active.removeValue(forKey: id) else {
                    // The cancel can overtake the add in the queue; remember it for when the add arrives.
                    cancelledEarly.insert(id)
                    continue
                }
                byHandle[transfer.easy!] = nil
                curl_multi_remove_handle(multi, transfer.easy)
                transfer.finish(ProbeResult(state: .down, reason: "cancelled"))
            }

            var running: Int32 = 0
            curl_multi_perform(multi, &running)
            var queued: Int32 = 0
            while let message = curl_multi_info_read(multi, &queued) {
                var code = CURLE_OK
                guard let easy = ccr_multi_done_handle(message, &code), let id = byHandle.removeValue(forKey: easy),
                    var transfer = active.removeValue(forKey: id)
                else { continue }
                curl_multi_remove_handle(multi, easy)
                transfer.finish(transfer.result(code))
            }
            // Cancellations ids only matter while their add may still be queued: keep the set small.
            if cancelledEarly.count > 10_000 { cancelledEarly.removeAll() }
            // libcurl shortens the wait to its own timers while transfers run; with none running,
            // only `probe` (curl_multi_wakeup) has anything for this thread, so an idle watcher does
            // not wake every second for nothing. A transfer's silence deadline shortens it too.
            var wait: Duration = active.isEmpty ? .seconds(60) : .seconds(1)
            let now = ContinuousClock.now
            for (id, transfer) in active {
                guard let silence = transfer.silence else { continue }
                if silence.deadline <= now {
                    silence.call()
                    active[id]?.silence = nil
                } else {
                    wait = min(wait, now.duration(to: silence.deadline))
                }
            }
            curl_multi_poll(multi, nil, 0, Int32(wait.millisecondsRoundedUp), nil)
        }
    }
}

/// curl_global_init, once per process, before any handle (it is not thread-safe to race).
enum CurlGlobal {
    static let ready: Void = { _ = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()
}

/// When to tell the caller that a probe is still unanswered, and how.
private struct Silence: Sendable {
    let deadline: ContinuousClock.Instant
    let call: @Sendable () -> Void
}

/// One probe in flight: the easy handle, the C memory it points into, and the waiting task.
/// Unchecked because of the C pointers. Invariant: a Transfer is made by `probe`, handed to the loop
/// thread through the `pending` mutex, and from then on touched by that thread only, which frees it.
private struct Transfer: @unchecked Sendable {
    let id: UInt64
    let host: MirrorHost
    let settings: ProbeSettings
    let tls: TLSMaterial
    let continuation: CheckedContinuation<ProbeResult, Never>
    var silence: Silence?
    var easy: UnsafeMutableRawPointer?
    var headers: UnsafeMutablePointer<curl_slist>?
    var errorBuffer: UnsafeMutablePointer<CChar>?

    init(
        id: UInt64, host: MirrorHost, settings: ProbeSettings, tls: TLSMaterial,
        continuation: CheckedContinuation<ProbeResult, Never>
    ) {
        self.id = id
        self.host = host
        self.settings = settings
        self.tls = tls
        self.continuation = continuation
    }

    /// Creates and configures the easy handle; returns a result instead when the probe cannot start
    /// (for example an unreadable CA file).
    mutating func prepare() -> ProbeResult? {
        guard let easy = curl_easy_init() else { return ProbeResult(state: .down, reason: "curl_easy_init failed") }
        self.easy = easy
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE))
        errorBuffer!.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
        ccr_easy_setopt_pointer(easy, CURLOPT_ERRORBUFFER, errorBuffer)
        ccr_easy_setopt_string(easy, CURLOPT_URL, host.probeURL)
        ccr_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        ccr_easy_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 0)
        // Probes go straight to the mirror, as containerd does for a cluster IP: never through a proxy.
        ccr_easy_setopt_string(easy, CURLOPT_PROXY, "")
        ccr_easy_setopt_string(easy, CURLOPT_NOPROXY, "*")
        ccr_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, Int(settings.connectTimeout.milliseconds))
        ccr_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, Int(settings.timeout.milliseconds))
        ccr_easy_setopt_long(easy, CURLOPT_FORBID_REUSE, 1)
        ccr_easy_setopt_string(easy, CURLOPT_USERAGENT, "configure-containerd-registries/\(AgentVersion.current)")
        ccr_easy_discard_body(easy)

        // The bytes were read by `probe`; libcurl copies each blob, so no file is opened on this thread.
        func blob(_ option: CURLoption, _ bytes: [UInt8]) {
            var bytes = bytes
            bytes.withUnsafeMutableBytes { raw in _ = ccr_easy_setopt_blob(easy, option, raw.baseAddress, raw.count) }
        }
        if let ca = tls.caBundle { blob(CURLOPT_CAINFO_BLOB, ca) }
        if let certificate = tls.clientCertificate {
            blob(CURLOPT_SSLCERT_BLOB, certificate)
            ccr_easy_setopt_string(easy, CURLOPT_SSLCERTTYPE, "PEM")
        }
        if let key = tls.clientKey {
            blob(CURLOPT_SSLKEY_BLOB, key)
            ccr_easy_setopt_string(easy, CURLOPT_SSLKEYTYPE, "PEM")
        }
        if host.skipVerify == true {
            ccr_easy_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, 0)
            ccr_easy_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, 0)
        }
        for (name, values) in host.headers {
            for value in values { headers = curl_slist_append(headers, "\(name): \(value)") }
        }
        if let headers { ccr_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, headers) }
        return nil
    }

    /// Turns a finished transfer into up/down with a reason an operator can act on.
    func result(_ code: CURLcode) -> ProbeResult {
        var totalMicros: curl_off_t = 0
        ccr_easy_getinfo_off_t(easy, CURLINFO_TOTAL_TIME_T, &totalMicros)
        let latency = Duration.microseconds(totalMicros)
        if code == CURLE_OK {
            var status = 0
            ccr_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
            return ProbeResult.classify(httpStatus: status, latency: latency)
        }
        var osErrno = 0
        ccr_easy_getinfo_long(easy, CURLINFO_OS_ERRNO, &osErrno)
        var connectMicros: curl_off_t = 0
        ccr_easy_getinfo_off_t(easy, CURLINFO_CONNECT_TIME_T, &connectMicros)
        let detail = errorBuffer.map { String(cString: $0) } ?? ""
        let reason: String
        switch code {
        case CURLE_COULDNT_CONNECT:
            switch Int32(osErrno) {
            case ECONNREFUSED: reason = "connection refused"
            case EHOSTUNREACH: reason = "no route to host"
            case ENETUNREACH: reason = "network unreachable"
            case 0: reason = "cannot connect: \(detail)"
            default: reason = "cannot connect: \(String(cString: strerror(Int32(osErrno))))"
            }
        case CURLE_OPERATION_TIMEDOUT:
            reason =
                connectMicros == 0
                ? "connection timed out after \(settings.connectTimeout)"
                : "timed out after \(settings.timeout) (connected, no answer)"
        case CURLE_COULDNT_RESOLVE_HOST:
            reason = "cannot resolve host: \(detail)"
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
            CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS,
            CURLE_SSL_CRL_BADFILE, CURLE_SSL_SHUTDOWN_FAILED, CURLE_SSL_ENGINE_INITFAILED, CURLE_USE_SSL_FAILED:
            reason = "TLS: \(detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail)"
        case CURLE_GOT_NOTHING:
            reason = "connection closed without an answer"
        case CURLE_RECV_ERROR, CURLE_SEND_ERROR:
            reason = "connection reset: \(detail)"
        default:
            reason = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
        }
        let connected =
            !(code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST
            || (code == CURLE_OPERATION_TIMEDOUT && connectMicros == 0))
        return ProbeResult(state: .down, reason: reason, latency: latency, connected: connected)
    }

    /// Resumes the waiting task and frees the C memory.
    mutating func finish(_ result: ProbeResult) {
        if let easy { curl_easy_cleanup(easy) }
        if let headers { curl_slist_free_all(headers) }
        errorBuffer?.deallocate()
        easy = nil
        headers = nil
        errorBuffer = nil
        continuation.resume(returning: result)
    }
}

/// A host's CA bundle and client certificate and key, read from their files before the probe starts.
struct TLSMaterial: Sendable {
    var caBundle: [UInt8]?
    var clientCertificate: [UInt8]?
    var clientKey: [UInt8]?


    /// Larger than any real CA bundle; a bigger file is refused rather than read for ever.
    static let limit = 16 << 20

    static func load(_ host: MirrorHost) -> Result<TLSMaterial, SystemError> {
        func read(_ path: String, _ what: String) throws(SystemError) -> [UInt8] {
            let bytes: [UInt8]
            do {
                bytes = try RegularFile.read(path, limit: limit)
            } catch {
                throw SystemError(operation: "read TLS material", reason: "TLS: cannot read \(what) \(path): \(error.reason)")
            }
            guard bytes.count <= limit else { throw SystemError(operation: "read TLS material", reason: "TLS: \(what) \(path) is larger than 16 MiB") }
            return bytes
        }
        do throws(SystemError) {
            var material = TLSMaterial()
            if !host.ca.isEmpty {
                var bundle: [UInt8] = []
                for path in host.ca {
                    bundle += try read(path, "CA file")
                    bundle.append(0x0A)
                }
                material.caBundle = bundle
            }
            // The prober uses the first pair; a pair of one file is a combined certificate and key.
            if let pair = host.client.first, let certificate = pair.first {
                material.clientCertificate = try read(certificate, "client certificate")
                material.clientKey = pair.count > 1 ? try read(pair[1], "client key") : material.clientCertificate
            }
            return .success(material)
        } catch {
            return .failure(error)
        }
    }
}
