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

            --keep-running: once everything is removed, stay until SIGTERM or SIGINT (then exit 0), so that a \
            DaemonSet's pod shows its node cleaned (deploy/uninstall); a failure still exits with its code.

            Examples:
              configure-containerd-registries remove
              configure-containerd-registries remove --hosts-dir /tmp/certs.d
              configure-containerd-registries remove --keep-running
            """
    )

    @OptionGroup var common: CommonOptions

    @Flag(
        name: .customLong("keep-running"),
        help: "After a successful remove, stay until SIGTERM/SIGINT, then exit 0 (for a DaemonSet that cleans every node).")
    var keepRunning = false

    func run() async throws {
        // --keep-running subscribes before anything else, so a SIGTERM during the remove is not lost: it
        // ends a wait for the lock (exit 73) or the stay after it (exit 0).
        let stopFlag = StopFlag()
        let stop = keepRunning ? Signals.stream(raising: stopFlag) : nil
        if stop == nil {
            Signals.exitOnTermination()  // nothing to finish: a signal ends it as it would any tool
        }
        let logger = common.makeLogger()
        // The config only tells where hosts_dir is. A config that was asked for (--config) or exists at
        // the default path must be valid: cleaning the wrong directory would be worse than stopping.
        var hostsDir = common.hostsDir ?? AgentConfig.defaultHostsDir
        if common.hostsDir == nil, common.config != nil || ConfigFile.exists(AgentConfig.defaultPath) {
            hostsDir = try common.loadConfig(mirrors: [], logger: logger, requireRegistries: false).hostsDir
        }
        let reconciler = HostsReconciler(
            store: FileHostsStore(root: hostsDir), logger: logger,
            lockWait: LockWait { stopFlag.isRaised ? "interrupted" : nil })
        guard reconciler.removeEverything().isEmpty else { throw Exit.status(.cannotWrite) }
        if let stop {
            logger.notice("nothing of ours left under \(hostsDir); staying until SIGTERM (--keep-running)")
            for await _ in stop { break }
        }
    }
}
