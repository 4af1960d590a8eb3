import RegistryMirrorCore
import Synchronization
import Testing

extension Tag {
    /// The test waits on the wall clock (real deadlines, real-time polling of a run on the real
    /// clock). Such suites are named `...WallClockTests` and run one at a time with the system tests
    /// (scripts/test.sh): beside the parallel core tests on 2 cores, their bounds were noise.
    @Tag static var wallClock: Self
}

/// Small builders for config snippets, so each table row only states what it is about.
enum Snippet {
    static let goodURL = "http://10.0.0.1:5000"

    /// One docker.io registry with one host; `hostLines` go into the host table.
    static func host(_ hostLines: String = "", url: String? = goodURL) -> String {
        var text = "[[registry]]\nupstream = \"docker.io\"\n\n[[registry.host]]\n"
        if let url { text += "url = \"\(url)\"\n" }
        return text + hostLines + "\n"
    }

    /// One registry with one good host; `registryLines` go into the registry table.
    static func registry(upstream: String? = "docker.io", _ registryLines: String = "") -> String {
        var text = "[[registry]]\n"
        if let upstream { text += "upstream = \"\(upstream)\"\n" }
        text += registryLines + "\n[[registry.host]]\nurl = \"\(goodURL)\"\n"
        return text
    }

    /// A `[probe]` table followed by a valid registry.
    static func probe(_ probeLines: String) -> String {
        "[probe]\n" + probeLines + "\n\n" + registry()
    }
}

/// Loads and returns the error, recording a test failure when loading succeeds.
func loadError(
    toml: String?, path: String = "/etc/test/config.toml", mirrors: [String] = [],
    sourceLocation: SourceLocation = #_sourceLocation
) -> ConfigError? {
    do {
        let config = try ConfigLoader.load(toml: toml, path: path, mirrors: mirrors)
        Issue.record("expected a ConfigError, got a config with \(config.registries.count) registries", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

extension RandomSource {
    /// Repeatable jitter: `values` in order, the last one repeated.
    static func scripted(_ values: [Double]) -> RandomSource {
        let index = Mutex(0)
        return RandomSource {
            index.withLock { i in
                defer { i += 1 }
                return values[min(i, values.count - 1)]
            }
        }
    }
}
