import Testing

@testable import RegistryMirrorCore

@Suite("containerd's log: requests that went past a mirror")
struct ContainerdLogTests {
    // Logged by containerd 1.6.20 (Debian 12) during a CRI pull whose first host refused connections.
    static let refused = #"time="2026-11-26T05:05:15.795350778Z" level=info msg="trying next host" error="failed to do request: Head \"http://127.0.0.1:56727/v2/library/x/manifests/latest?ns=fallback.test\": dial tcp 127.0.0.1:56727: connect: connection refused" host="127.0.0.1:56727""#

    @Test("a refused host: its authority and containerd's error, quotes unescaped")
    func refusedLine() throws {
        let b = try #require(ContainerdLog.bypass(in: Self.refused))
        #expect(b.authority == "127.0.0.1:56727")
        #expect(b.reason == #"failed to do request: Head "http://127.0.0.1:56727/v2/library/x/manifests/latest?ns=fallback.test": dial tcp 127.0.0.1:56727: connect: connection refused"#)
    }

    @Test("a host that answered 404: the reason is the rest of the message")
    func notFound() throws {
        let line = #"time="2026-11-26T05:20:01.1Z" level=info msg="trying next host - response was http.StatusNotFound" host="10.96.0.20:5000""#
        let b = try #require(ContainerdLog.bypass(in: line))
        #expect(b.authority == "10.96.0.20:5000")
        #expect(b.reason == "response was http.StatusNotFound")
    }

    @Test("the JSON log format gives the same")
    func json() throws {
        let line = #"{"error":"failed to do request: Head \"http://[fd00::1]:5000/v2/x/manifests/1?ns=docker.io\": dial tcp [fd00::1]:5000: i/o timeout","host":"[fd00::1]:5000","level":"info","msg":"trying next host","n":3,"nested":{"a":[1,"}"]},"time":"2026-11-26T05:20:01Z"}"#
        let b = try #require(ContainerdLog.bypass(in: line))
        #expect(b.authority == "[fd00::1]:5000")
        #expect(b.reason.hasSuffix("i/o timeout"))
    }

    @Test("other lines, and the marker anywhere but msg, are not bypasses", arguments: [
        #"time="x" level=info msg="PullImage \"docker.io/library/x:1\"""#,
        #"time="x" level=info msg="fetch failed" error="trying next host" host="a:1""#,
        #"time="x" level=info msg="trying next host""#,
        #"time="x" level=info msg="trying next host" host="""#,
        #"{"msg":"trying next host"}"#,
        "trying next host",
        "",
        #"msg="trying next host" host="unterminated"#,
    ])
    func notBypass(_ line: String) {
        if line.hasSuffix("unterminated") {
            // An unterminated value still yields what was there; never a crash.
            #expect(ContainerdLog.bypass(in: line)?.authority == "unterminated")
        } else {
            #expect(ContainerdLog.bypass(in: line) == nil)
        }
    }

    @Test("the hosts a bypass names: by authority, without case; ns= picks the registry when a cache serves several")
    func hostsNamed() {
        var config = AgentConfig()
        config.registries = [
            Registry(upstream: "docker.io", hosts: [MirrorHost(url: "http://Cache.local:5000/docker"), MirrorHost(url: "http://10.0.0.2:5000")]),
            Registry(upstream: "ghcr.io", hosts: [MirrorHost(url: "http://cache.local:5000/ghcr")]),
            Registry(upstream: "quay.io", readinessProbe: false, hosts: [MirrorHost(url: "http://cache.local:5000/quay")]),
        ]
        let both = ContainerdLog.hosts(named: .init(authority: "cache.local:5000", reason: "response was http.StatusNotFound"), in: config)
        #expect(both == [HostKey(upstream: "docker.io", url: "http://Cache.local:5000/docker"), HostKey(upstream: "ghcr.io", url: "http://cache.local:5000/ghcr")])
        let ghcr = ContainerdLog.hosts(
            named: .init(authority: "cache.local:5000", reason: #"Head "http://cache.local:5000/ghcr/v2/a/manifests/1?ns=ghcr.io": EOF"#), in: config)
        #expect(ghcr == [HostKey(upstream: "ghcr.io", url: "http://cache.local:5000/ghcr")])
        #expect(ContainerdLog.hosts(named: .init(authority: "10.0.0.2:5000", reason: ""), in: config) == [HostKey(upstream: "docker.io", url: "http://10.0.0.2:5000")])
        #expect(ContainerdLog.hosts(named: .init(authority: "10.0.0.2", reason: ""), in: config).isEmpty)
    }
}

@Suite("check: what containerd's log says")
struct BypassFindingTests {
    typealias K = SurveyKit

    @Test("an up host containerd went past is a WARNING naming the count and the last reason; JSON has bypassed_recently")
    func upHostBypassed() throws {
        let entry = K.entry(results: [K.up(), K.up()], listed: [K.urlA, K.urlB], observed: K.dir(K.managed(K.docker, listing: [K.hostA, K.hostB])))
        let clean = K.evaluate([entry])
        #expect(clean.state == .ok)
        let last = ContainerdLog.Bypass(authority: "10.0.0.1:5000", reason: "response was http.StatusNotFound")
        let tally = [HostKey(upstream: "docker.io", url: K.urlA): ContainerdLog.Tally(count: 7, last: last)]
        let report = HealthReport.evaluate(
            Survey(entries: [entry]), containerd: K.readsHostsDir, hostsDir: K.hostsDir, bypasses: tally, bypassWindow: "15 minutes")
        #expect(report.state == .warning)
        #expect(report.summary.contains("containerd went past http://10.0.0.1:5000 7 times in the last 15 minutes though it answers probes"))
        #expect(report.summary.contains("response was http.StatusNotFound"))
        let json = CheckText.json(report)
        #expect(json.contains(#""url":"http://10.0.0.1:5000","state":"up""#))
        #expect(json.contains(#""bypassed_recently":7"#))
        #expect(json.contains(#""bypassed_recently":0"#), "the other host")
        #expect(CheckText.render(report).contains("containerd went past it 7x recently"))
    }

    @Test("a down host containerd went past adds nothing: it is judged as down already")
    func downHostBypassed() {
        let entry = K.entry(results: [K.down(), K.up()], listed: [K.urlB], observed: K.dir(K.managed(K.docker, listing: [K.hostB])))
        let tally = [HostKey(upstream: "docker.io", url: K.urlA): ContainerdLog.Tally(count: 3, last: .init(authority: "10.0.0.1:5000", reason: "x"))]
        let with = HealthReport.evaluate(Survey(entries: [entry]), containerd: K.readsHostsDir, hostsDir: K.hostsDir, bypasses: tally)
        let without = K.evaluate([entry])
        #expect(with.state == without.state)
        #expect(with.registries[0].findings.map(\.message) == without.registries[0].findings.map(\.message))
    }

    @Test("tally: per configured host, the count and the latest reason; unknown hosts ignored")
    func tally() {
        var config = AgentConfig()
        config.registries = [K.docker]
        let lines = [
            ContainerdLog.Bypass(authority: "10.0.0.1:5000", reason: "first"),
            ContainerdLog.Bypass(authority: "10.9.9.9:5000", reason: "not ours"),
            ContainerdLog.Bypass(authority: "10.0.0.1:5000", reason: "second"),
        ]
        let t = ContainerdLog.tally(lines, in: config)
        #expect(t.count == 1)
        #expect(t[HostKey(upstream: "docker.io", url: K.urlA)] == ContainerdLog.Tally(count: 2, last: lines[2]))
    }
}

@Suite("containerd's log: its start")
struct ContainerdStartTests {
    @Test("'containerd successfully booted' is a start; a bypass stays a bypass; others are nothing")
    func events() {
        // Logged by containerd 1.6.20 (Debian 12) at start.
        #expect(ContainerdLog.event(in: #"time="2026-11-26T05:05:15.470978618Z" level=info msg="containerd successfully booted in 0.020104s""#) == .started)
        #expect(ContainerdLog.event(in: #"{"level":"info","msg":"containerd successfully booted in 0.02s","time":"x"}"#) == .started)
        #expect(ContainerdLog.event(in: ContainerdLogTests.refused) == .bypass(.init(authority: "127.0.0.1:56727", reason: ContainerdLog.bypass(in: ContainerdLogTests.refused)!.reason)))
        #expect(ContainerdLog.event(in: #"time="x" level=info msg="loading plugin" note="containerd successfully booted""#) == nil)
    }
}

/// Lines as containerd 2.2.7 and 2.3.4 logged them here (built from their released sources, a CRI pull
/// through a docker-registry cache answering 404, a refusing mirror, a mirror dropping packets); the
/// time stamps are shortened, the rest is as logged.
@Suite("containerd 2.x bypass lines")
struct Containerd2LogTests {
    static let notFound22 = #"time="2026-12-02T15:32:25.358063094Z" level=info msg="trying next host after status: 404 Not Found" host="127.0.0.10:5000""#
    static let notFound23 =
        #"time="2026-12-02T15:32:28.746752189Z" level=info msg="trying next host after status: 404 Not Found" host="127.0.0.10:5000" method=HEAD url="http://127.0.0.10:5000/v2/test/img/manifests/77?ns=127.0.0.1%3A5001""#
    static let refused23 =
        #"time="2026-12-02T15:35:19.484513186Z" level=info msg="trying next host" error="failed to do request: Head \"http://127.0.0.77:5000/v2/test/img/manifests/70?ns=127.0.0.1%3A5001\": dial tcp 127.0.0.77:5000: connect: connection refused" host="127.0.0.77:5000" method=HEAD url="http://127.0.0.77:5000/v2/test/img/manifests/70?ns=127.0.0.1%3A5001""#
    static let timeout22 =
        #"time="2026-12-02T15:40:02.118Z" level=info msg="trying next host" error="failed to do request: Head \"http://127.0.0.88:5000/v2/test/img/manifests/200?ns=127.0.0.1%3A5001\": dial tcp 127.0.0.88:5000: i/o timeout" host="127.0.0.88:5000""#
    static let json23 =
        #"{"host":"127.0.0.10:5000","level":"info","method":"HEAD","msg":"trying next host after status: 404 Not Found","time":"2026-12-02T15:32:28.746752189Z","url":"http://127.0.0.10:5000/v2/test/img/manifests/77?ns=127.0.0.1%3A5001"}"#

    @Test("2.2's and 2.3's 404 lines: the host, and the status as the reason; 2.3's url names the upstream")
    func notFound() throws {
        let old = try #require(ContainerdLog.bypass(in: Self.notFound22))
        #expect(old == .init(authority: "127.0.0.10:5000", reason: "after status: 404 Not Found"))
        #expect(old.namespace == nil)
        let new = try #require(ContainerdLog.bypass(in: Self.notFound23))
        #expect(new.authority == "127.0.0.10:5000" && new.reason == "after status: 404 Not Found")
        #expect(new.namespace == "127.0.0.1:5001", "ns=127.0.0.1%3A5001 decoded")
        #expect(try #require(ContainerdLog.bypass(in: Self.json23)) == new)
    }

    @Test("errors: the error is the reason, and its quoted URL names the upstream (percent-decoded)")
    func errors() throws {
        let refused = try #require(ContainerdLog.bypass(in: Self.refused23))
        #expect(refused.reason.hasSuffix("connect: connection refused") && refused.namespace == "127.0.0.1:5001")
        let timeout = try #require(ContainerdLog.bypass(in: Self.timeout22))
        #expect(timeout.reason.hasSuffix("i/o timeout") && timeout.namespace == "127.0.0.1:5001")
    }

    @Test("one cache for two upstreams, one of them with a port: the line's ns picks the right one")
    func attributed() throws {
        var config = AgentConfig()
        config.registries = [
            Registry(upstream: "127.0.0.1:5001", hosts: [MirrorHost(url: "http://127.0.0.10:5000")]),
            Registry(upstream: "docker.io", hosts: [MirrorHost(url: "http://127.0.0.10:5000")]),
        ]
        let keys = ContainerdLog.hosts(named: try #require(ContainerdLog.bypass(in: Self.notFound23)), in: config)
        #expect(keys == [HostKey(upstream: "127.0.0.1:5001", url: "http://127.0.0.10:5000")])
        // 2.2 names no URL for a 404: both could be meant, both are suspect.
        #expect(ContainerdLog.hosts(named: try #require(ContainerdLog.bypass(in: Self.notFound22)), in: config).count == 2)
    }
}
