import Foundation
import Glibc
import RegistryMirrorCore
import RegistryMirrorSystem
import Synchronization
import Testing

/// Probe settings with short budgets, so failing probes end quickly.
func probeSettings(connect: Int64 = 1000, timeout: Int64 = 1000) -> ProbeSettings {
    var settings = ProbeSettings()
    settings.connectTimeout = .milliseconds(connect)
    settings.timeout = .milliseconds(timeout)
    return settings
}

/// The first probe of a test process pays for libcurl's and OpenSSL's set-up, which under a loaded
/// test run can take a while; timed tests start after it.
func warmUpProber() async {
    guard let port = try? RefusingPort() else { return }
    _ = await CurlProber.shared.probe(MirrorHost(url: port.url), settings: probeSettings())
}

struct StatusCase: Sendable, CustomTestStringConvertible {
    var status: Int
    var up: Bool
    var testDescription: String { "HTTP \(status) is \(up ? "up" : "down")" }
}

struct PathCase: Sendable, CustomTestStringConvertible {
    /// Appended to the server's base URL in the host's `url`.
    var urlPath: String
    var overridePath: Bool?
    /// The path the server must see.
    var expected: String
    var testDescription: String { "url path \"\(urlPath)\", override_path \(overridePath.map(String.init) ?? "unset") -> \(expected)" }
}

/// docs/design.md §4: `GET <url>/v2/` (or the URL itself with override_path), up on 200 or 401, down
/// otherwise with a reason, within connect_timeout and timeout, with the host's TLS material.
@Suite("Probing with libcurl against loopback servers")
struct ProbeTests {
    let prober = CurlProber.shared

    @Test(arguments: [
        StatusCase(status: 200, up: true), StatusCase(status: 401, up: true), StatusCase(status: 404, up: false),
        StatusCase(status: 500, up: false), StatusCase(status: 503, up: false), StatusCase(status: 403, up: false),
        StatusCase(status: 301, up: false),
    ])
    func httpStatus(_ c: StatusCase) async throws {
        let server = try await TestServer(.status(c.status))
        defer { server.stop() }
        let result = await prober.probe(MirrorHost(url: server.url), settings: probeSettings())
        #expect(result.state == (c.up ? .up : .down), "\(result)")
        #expect(result.reason == "HTTP \(c.status)")
        #expect(server.requestPaths == ["/v2/"], "exactly one GET /v2/ (no redirect followed)")
    }

    @Test("connection refused: down, reason says refused, without waiting for a timeout")
    func refused() async throws {
        let port = try RefusingPort()
        let result = await prober.probe(MirrorHost(url: port.url), settings: probeSettings(connect: 5000, timeout: 5000))
        #expect(result.state == .down)
        #expect(result.reason.contains("refused"), "\(result.reason)")
        // curl's own clock: the refusal is seen at once, not after connect_timeout (5s).
        #expect(result.latency < .milliseconds(500), "took \(result.latency)")
    }

    @Test("a server that accepts and never answers: down with 'timed out' within timeout + 1s")
    func hang() async throws {
        let server = try await TestServer(.hang)
        defer { server.stop() }
        await warmUpProber()
        let started = ContinuousClock.now
        let result = await prober.probe(MirrorHost(url: server.url), settings: probeSettings(timeout: 1000))
        let elapsed = ContinuousClock.now - started
        #expect(result.state == .down)
        #expect(result.reason.contains("timed out"), "\(result.reason)")
        #expect(elapsed >= .milliseconds(900), "gave up before the timeout: \(elapsed)")
        #expect(result.latency < .milliseconds(1500), "curl took \(result.latency) with a 1s timeout")
        // Wall clock, with some slack for a loaded test machine.
        #expect(elapsed < .milliseconds(2500), "took \(elapsed) with a 1s timeout")
    }

    @Test("silence is reported once, about silentAfter into a probe nobody answers, and never for a quick answer")
    func silence() async throws {
        let hanging = try await TestServer(.hang)
        defer { hanging.stop() }
        let quick = try await TestServer(.delay(0))
        defer { quick.stop() }
        await warmUpProber()
        let started = ContinuousClock.now
        let heard = Mutex<[Duration]>([])
        let result = await prober.probe(MirrorHost(url: hanging.url), settings: probeSettings(timeout: 1500), silentAfter: .milliseconds(300)) {
            heard.withLock { $0.append(ContinuousClock.now - started) }
        }
        let times = heard.withLock { $0 }
        #expect(result.state == .down, "\(result)")
        #expect(times.count == 1, "silence reported \(times.count) times")
        if let at = times.first {
            #expect(at >= .milliseconds(300) && at < .milliseconds(1000), "silence reported at \(at)")
        }
        let quiet = Mutex(0)
        let up = await prober.probe(MirrorHost(url: quick.url), settings: probeSettings(timeout: 1500), silentAfter: .milliseconds(300)) {
            quiet.withLock { $0 += 1 }
        }
        try await Task.sleep(for: .milliseconds(500))
        #expect(up.state == .up, "\(up)")
        #expect(quiet.withLock { $0 } == 0, "silence reported for an answered probe")
    }

    @Test("an answer slower than timeout is down; one faster is up")
    func delay() async throws {
        let slow = try await TestServer(.delay(2.5))
        defer { slow.stop() }
        let quick = try await TestServer(.delay(0.3))
        defer { quick.stop() }
        async let slowResult = prober.probe(MirrorHost(url: slow.url), settings: probeSettings(timeout: 1000))
        async let quickResult = prober.probe(MirrorHost(url: quick.url), settings: probeSettings(timeout: 2000))
        let (s, q) = await (slowResult, quickResult)
        #expect(s.state == .down)
        #expect(s.reason.contains("timed out"), "\(s.reason)")
        #expect(q.state == .up, "\(q)")
        #expect(q.reason == "HTTP 200")
        #expect(q.latency >= .milliseconds(250), "latency \(q.latency) shorter than the server's delay")
    }

    @Test("https with the right CA is up; with an unrelated CA it is down (TLS); skip_verify is up")
    func tls() async throws {
        let tls = try TLSMaterial.get()
        let server = try await TestServer(.tls(cert: tls.serverCert, key: tls.serverKey))
        defer { server.stop() }
        #expect(server.url.hasPrefix("https://127.0.0.1:"))

        let right = await prober.probe(MirrorHost(url: server.url, ca: [tls.caCert]), settings: probeSettings())
        #expect(right.state == .up, "\(right)")
        #expect(right.reason == "HTTP 200")

        let wrong = await prober.probe(MirrorHost(url: server.url, ca: [tls.otherCACert]), settings: probeSettings())
        #expect(wrong.state == .down)
        #expect(wrong.reason.hasPrefix("TLS"), "\(wrong.reason)")

        // No CA at all: the system store does not know our test CA either.
        let none = await prober.probe(MirrorHost(url: server.url), settings: probeSettings())
        #expect(none.state == .down)
        #expect(none.reason.hasPrefix("TLS"), "\(none.reason)")

        let skip = await prober.probe(
            MirrorHost(url: server.url, ca: [tls.otherCACert], skipVerify: true), settings: probeSettings())
        #expect(skip.state == .up, "\(skip)")

        // Several CA files are a bundle: the right one among them is enough.
        let bundle = await prober.probe(
            MirrorHost(url: server.url, ca: [tls.otherCACert, tls.caCert]), settings: probeSettings())
        #expect(bundle.state == .up, "\(bundle)")

        let missing = await prober.probe(
            MirrorHost(url: server.url, ca: ["/nonexistent/ca.pem"]), settings: probeSettings())
        #expect(missing.state == .down)
        #expect(missing.reason.hasPrefix("TLS"), "\(missing.reason)")

        #expect(server.requestPaths.allSatisfy { $0 == "/v2/" })
        #expect(server.requestPaths.count == 3, "requests that passed TLS: \(server.requestPaths)")
    }

    @Test(arguments: [
        PathCase(urlPath: "", overridePath: nil, expected: "/v2/"),
        PathCase(urlPath: "/", overridePath: false, expected: "/v2/"),
        PathCase(urlPath: "/v2", overridePath: nil, expected: "/v2/"),
        PathCase(urlPath: "/prefix", overridePath: nil, expected: "/prefix/v2/"),
        PathCase(urlPath: "/custom/path", overridePath: true, expected: "/custom/path"),
        PathCase(urlPath: "/v2/library/ok", overridePath: true, expected: "/v2/library/ok"),
    ])
    func requestPath(_ c: PathCase) async throws {
        let server = try await TestServer(.status(200))
        defer { server.stop() }
        let result = await prober.probe(
            MirrorHost(url: server.url + c.urlPath, overridePath: c.overridePath), settings: probeSettings())
        #expect(result.state == .up, "\(result)")
        #expect(server.requestPaths == [c.expected])
    }

    @Test("ten hanging mirrors are probed concurrently: with a 1s timeout all are done in well under 10s")
    func concurrent() async throws {
        let server = try await TestServer(.hang)
        defer { server.stop() }
        await warmUpProber()
        let settings = probeSettings(timeout: 1000)
        let started = ContinuousClock.now
        let results = await withTaskGroup(of: ProbeResult.self) { group in
            for _ in 0..<10 {
                group.addTask { await CurlProber.shared.probe(MirrorHost(url: server.url), settings: settings) }
            }
            var all: [ProbeResult] = []
            for await r in group { all.append(r) }
            return all
        }
        let total = ContinuousClock.now - started
        #expect(results.count == 10)
        #expect(results.allSatisfy { $0.state == .down && $0.reason.contains("timed out") }, "\(results.map(\.reason))")
        #expect(total < .seconds(4), "10 hanging probes with a 1s timeout took \(total)")
    }

    @Test("a live mirror is answered at once while ten others hang")
    func liveNextToHanging() async throws {
        let server = try await TestServer(.hang)
        defer { server.stop() }
        let live = try await TestServer(.status(200))
        defer { live.stop() }
        await warmUpProber()
        let hangers = Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<10 {
                    group.addTask {
                        _ = await CurlProber.shared.probe(MirrorHost(url: server.url), settings: probeSettings(timeout: 20_000))
                    }
                }
            }
        }
        defer { hangers.cancel() }
        try await Task.sleep(for: .milliseconds(200))
        let started = ContinuousClock.now
        let result = await prober.probe(MirrorHost(url: live.url), settings: probeSettings(timeout: 20_000))
        let elapsed = ContinuousClock.now - started
        #expect(result.state == .up)
        #expect(elapsed < .milliseconds(1500), "a live probe took \(elapsed) next to 10 hanging ones")
        hangers.cancel()
        await hangers.value
    }

    @Test("a cancelled probe returns promptly, long before its timeout")
    func cancellation() async throws {
        let server = try await TestServer(.hang)
        defer { server.stop() }
        await warmUpProber()
        let started = ContinuousClock.now
        let task = Task {
            await CurlProber.shared.probe(MirrorHost(url: server.url), settings: probeSettings(timeout: 10_000))
        }
        try await Task.sleep(for: .milliseconds(200))
        task.cancel()
        let result = await task.value
        #expect(result.state == .down)
        #expect(ContinuousClock.now - started < .seconds(2), "cancellation did not stop the transfer")
    }

    @Test(
        "a real docker-registry (Debian's distribution) is up",
        .enabled(
            if: FileManager.default.isExecutableFile(atPath: "/usr/bin/docker-registry"),
            "skipped: /usr/bin/docker-registry is missing (apt-get install docker-registry; scripts/test.sh does)"))
    func realRegistry() async throws {
        let port = try freeLoopbackPort()
        let registry = try await RegistryCache(address: "127.0.0.1", port: port)
        defer { registry.stop() }

        let result = await prober.probe(MirrorHost(url: "http://127.0.0.1:\(port)"), settings: probeSettings())
        #expect(result.state == .up, "\(result)")
        #expect(result.reason == "HTTP 200")
        // The same registry under a path that is not the API root answers 404: down.
        let wrong = await prober.probe(
            MirrorHost(url: "http://127.0.0.1:\(port)/nothing-here", overridePath: true), settings: probeSettings())
        #expect(wrong.state == .down)
        #expect(wrong.reason == "HTTP 404")
    }
}
