import RegistryMirrorCore
import Testing

@Suite("Names and URLs")
struct NamesTests {
    @Test(
        "valid upstreams",
        arguments: [
            "docker.io", "my-registry.io:5000", "[fd00::1]:5000", "[::1]", "127.0.0.1:5000", "_default", "localhost",
            "registry.k8s.io", "quay.io:443", "[2001:db8::10]", "[::ffff:10.0.0.1]:5000", "10.0.0.1", "a",
        ])
    func validUpstream(_ upstream: String) {
        #expect(Names.upstreamProblem(upstream) == nil)
    }

    @Test(
        "invalid upstreams",
        arguments: [
            "docker.io,quay.io", "docker.io quay.io", "", "https://docker.io", "docker.io/library", "../etc", "..", "/",
            "[::1", "[::1]x", "[fd00::1::2]", "[12345::1]", "fd00::1", "docker.io:", "docker.io:0", "docker.io:65536",
            "docker.io:99999", "docker.io:50a", "-bad.io", "bad-.io", "a..b", "docker.io.", "_default.io", "ex ample",
            "docker.io\t", "300.1.1.1", "1.2.3", "x@docker.io",
        ])
    func invalidUpstream(_ upstream: String) throws {
        let problem = try #require(Names.upstreamProblem(upstream))
        #expect(!problem.isEmpty)
    }

    @Test("a 64-character DNS label is refused, 63 is fine") func labelLength() {
        #expect(Names.upstreamProblem(String(repeating: "a", count: 63) + ".io") == nil)
        #expect(Names.upstreamProblem(String(repeating: "a", count: 64) + ".io") != nil)
    }

    @Test(
        "probe URL",
        arguments: [
            ("http://h:5000", "http://h:5000/v2/"),
            ("http://h:5000/", "http://h:5000/v2/"),
            ("http://h/path", "http://h/path/v2/"),
            ("http://h/path/", "http://h/path/v2/"),
            ("http://h/v2", "http://h/v2/"),
            ("http://h/v2/", "http://h/v2/"),
            ("https://[fd00::1]:5000", "https://[fd00::1]:5000/v2/"),
        ])
    func probeURL(url: String, expected: String) {
        #expect(MirrorHost(url: url).probeURL == expected)
        #expect(MirrorHost(url: url, overridePath: false).probeURL == expected)
    }

    @Test("override_path probes the URL itself", arguments: ["http://h:5000/custom/v2/", "http://h:5000", "https://h/x"])
    func probeURLOverride(url: String) {
        #expect(MirrorHost(url: url, overridePath: true).probeURL == url)
    }

    @Test("HostURL splits scheme, authority and path") func hostURLParts() throws {
        let u = try #require(HostURL(parsing: "https://[fd00::1]:5000/a/b"))
        #expect(u.scheme == "https")
        #expect(u.authority == "[fd00::1]:5000")
        #expect(u.path == "/a/b")
        let bare = try #require(HostURL(parsing: "http://10.0.0.1"))
        #expect(bare.path == "")
    }

    @Test(
        "HostURL problems",
        arguments: [
            "10.0.0.1:5000", "ftp://x", "http://", "http://user@h", "http://h:0", "http://h/a/../b", "http://h?x=1",
            "http://h#f", "http://h x", "http://[::1", "http://h_1",
        ])
    func hostURLProblems(text: String) {
        #expect(HostURL.problem(text) != nil)
        #expect(HostURL(parsing: text) == nil)
    }

    @Test("HostURL accepts", arguments: ["http://h", "https://h:443/", "http://[fd00::1]:5000", "http://10.0.0.1:5000/mirror/"])
    func hostURLAccepts(text: String) {
        #expect(HostURL.problem(text) == nil)
        #expect(HostURL(parsing: text) != nil)
    }
}
