import ArgumentParser
import Glibc
import Logging
import RegistryMirrorCore
import RegistryMirrorSystem

struct Remove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete every hosts.toml this program wrote and put backed-up files back.",
        discussion: """
            Deletes every managed hosts.toml under the hosts directory, restores each hosts.toml.orig, and \
            removes directories this program created when they are empty. Files it did not write are left \
            alone, byte for byte. The config file is not needed. Idempotent.

            Examples:
              configure-containerd-registries remove
              configure-containerd-registries remove --hosts-dir /tmp/certs.d
            """
    )

    @OptionGroup var common: CommonOptions

    func run() async throws {
        Signals.exitOnTermination()  // nothing to finish: a signal ends it as it would any tool
        let logger = common.makeLogger()
        // The config only tells where hosts_dir is. A config that was asked for (--config) or exists at
        // the default path must be valid: cleaning the wrong directory would be worse than stopping.
        var hostsDir = common.hostsDir ?? AgentConfig.defaultHostsDir
        if common.hostsDir == nil, common.config != nil || ConfigFile.exists(AgentConfig.defaultPath) {
            hostsDir = try common.loadConfig(mirrors: [], logger: logger, requireRegistries: false).hostsDir
        }
        let reconciler = HostsReconciler(store: FileHostsStore(root: hostsDir), logger: logger)
        try Exit.with(reconciler.removeEverything().isEmpty ? .ok : .cannotWrite)
    }
}
