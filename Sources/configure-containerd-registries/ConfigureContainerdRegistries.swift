import ArgumentParser
import Logging
import RegistryMirrorCore
import RegistryMirrorSystem

/// The entry point: the signal gate is read from the first line on (its handlers were installed
/// before main by the CSignalGateEarly constructor), then the command line is parsed and run.
@main
enum Main {
    /// The process start as near as Swift sees it (first read on main's first line): apply's
    /// deadline counts from here.
    static let started = ContinuousClock.now

    static func main() async {
        _ = started
        Signals.start()
        await ConfigureContainerdRegistries.main()
    }
}

struct ConfigureContainerdRegistries: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "configure-containerd-registries",
        abstract: "Point containerd at in-cluster registry caches, but only once they answer.",
        discussion: """
            Probes every configured mirror (GET <url>/v2/) concurrently until it answers like a registry \
            (HTTP 200 or 401), then writes /etc/containerd/certs.d/<upstream>/hosts.toml naming the mirrors \
            that are up, with the upstream as fallback. Files are replaced atomically; a hosts.toml this \
            program did not write is moved to hosts.toml.orig once and never changed otherwise.

            Without a subcommand, runs `apply`.

            Exit codes: 0 done; 1 internal error; 64 usage error; 69 deadline reached with registries still \
            waiting; 73 cannot write under the hosts directory; 75 interrupted; 78 invalid config file.
            """,
        version: AgentVersion.current,
        subcommands: [Apply.self, Plan.self, Check.self, Watch.self, Remove.self],
        defaultSubcommand: Apply.self
    )
}
