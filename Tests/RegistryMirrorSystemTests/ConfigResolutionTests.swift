import Glibc
import RegistryMirrorCore
import RegistryMirrorSystem
import Testing

/// The command line's rules for where a run's config comes from, in-process (docs/design.md
/// §3.1); `read` stands in for the file system.
@Suite("Config resolution")
struct ConfigResolutionTests {
    static let registry = "[[registry]]\nupstream = \"docker.io\"\n[[registry.host]]\nurl = \"http://10.0.0.1:5000\"\n"

    func files(_ files: [String: String]) -> (String) throws(SystemError) -> [UInt8] {
        { path throws(SystemError) in
            guard let text = files[path] else { throw SystemError(operation: "read", path: path, errno: ENOENT, reason: "no such file") }
            return Array(text.utf8)
        }
    }

    @Test("no file at the default path: mirrors alone are a whole config; without them, nothing to configure (usage)")
    func defaultPathMissing() throws {
        let config = try ConfigResolution.resolve(
            configPath: nil, hostsDir: nil, mirrors: ["ghcr.io,http://10.0.0.2:5000"], requireRegistries: true, read: files([:]))
        #expect(config.registries.map(\.upstream) == ["ghcr.io"])
        #expect(config.hostsDir == AgentConfig.defaultHostsDir)
        #expect(throws: ConfigResolution.Failure.self) {
            try ConfigResolution.resolve(configPath: nil, hostsDir: nil, mirrors: [], requireRegistries: true, read: files([:]))
        }
        // remove needs only hosts_dir: no file and no mirrors is fine.
        #expect(try ConfigResolution.resolve(configPath: nil, hostsDir: nil, mirrors: [], requireRegistries: false, read: files([:])).registries.isEmpty)
    }

    @Test("a --config that does not exist is an invalid config (78), not a usage error")
    func explicitMissing() {
        do {
            _ = try ConfigResolution.resolve(configPath: "/x.toml", hostsDir: nil, mirrors: ["docker.io,http://10.0.0.1:5000"], requireRegistries: true, read: files([:]))
            Issue.record("accepted")
        } catch {
            guard case .invalid(let lines) = error else { Issue.record("\(error)"); return }
            #expect(lines.first?.contains("/x.toml") == true)
        }
    }

    @Test("a file naming no registry is nothing to configure (64) for apply, plan, check and watch; remove reads it")
    func noRegistry() throws {
        let read = files([AgentConfig.defaultPath: "hosts_dir = \"/srv/certs.d\"\n"])
        do {
            _ = try ConfigResolution.resolve(configPath: nil, hostsDir: nil, mirrors: [], requireRegistries: true, read: read)
            Issue.record("accepted")
        } catch {
            guard case .usage(let message) = error else { Issue.record("\(error)"); return }
            #expect(message.contains("nothing to configure"))
        }
        #expect(try ConfigResolution.resolve(configPath: nil, hostsDir: nil, mirrors: [], requireRegistries: false, read: read).hostsDir == "/srv/certs.d")
    }

    @Test("--hosts-dir overrides the file's hosts_dir; mirrors are merged into the file's registries")
    func overrides() throws {
        let read = files(["/c.toml": "hosts_dir = \"/srv/certs.d\"\n" + Self.registry])
        let config = try ConfigResolution.resolve(
            configPath: "/c.toml", hostsDir: "/tmp/h", mirrors: ["docker.io,http://10.0.0.9:5000", "quay.io,http://10.0.0.3:5000"],
            requireRegistries: true, read: read)
        #expect(config.hostsDir == "/tmp/h")
        #expect(config.registries.map(\.upstream) == ["docker.io", "quay.io"])
        #expect(config.registries[0].hosts.map(\.url) == ["http://10.0.0.1:5000", "http://10.0.0.9:5000"])
    }

    @Test("a bad positional mirror is a usage error; a bad file is invalid")
    func usageVersusInvalid() {
        let read = files(["/c.toml": Self.registry, "/bad.toml": "[[registry]]\nupstream = 5\n"])
        #expect(throws: ConfigResolution.Failure.usage("config: command line: argument 1 (\"nope\"): expected UPSTREAM,ENDPOINT[,SERVER]; write e.g. docker.io,http://10.4.246.205:5000,https://registry-1.docker.io")) {
            try ConfigResolution.resolve(configPath: "/c.toml", hostsDir: nil, mirrors: ["nope"], requireRegistries: true, read: read)
        }
        do {
            _ = try ConfigResolution.resolve(configPath: "/bad.toml", hostsDir: nil, mirrors: [], requireRegistries: true, read: read)
            Issue.record("accepted")
        } catch {
            guard case .invalid(let lines) = error else { Issue.record("\(error)"); return }
            #expect(lines.contains { $0.contains("registry[0].upstream") })
        }
    }
}
