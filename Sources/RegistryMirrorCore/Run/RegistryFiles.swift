import Logging

/// Carries out file decisions for apply and watch: a registry's file is rewritten or removed only
/// when its decision changed. apply leaves a directory that refused a write alone from then on (it
/// ends with 73); watch tries again at the next change.
public struct RegistryFiles: Sendable {
    public let reconciler: HostsReconciler
    let logger: Logger
    let retryFailures: Bool

    /// Files of upstreams that left the config go first: they may name dead mirrors, and apply may
    /// wait a long time. Returns the upstreams that could not be cleaned, with the reason.
    func removeUnconfigured(_ config: AgentConfig) -> [String: String] {
        let failures = reconciler.removeUpstreams(notIn: Set(config.registries.map(\.upstream)))
        // Given up waiting for the lock (the deadline, a stop): the run ends for that reason instead.
        return reconciler.lockWait.giveUp() == nil ? failures : [:]
    }

    /// Brings the registry's file in line with its decision, if that changed since last time.
    func carryOut(_ upstream: String, in state: inout MirrorState) {
        guard state.failed[upstream] == nil, let decision = state.decision(upstream), decision != .wait,
            decision != state.applied[upstream]
        else { return }
        do {
            try reconciler.reconcile(upstream: upstream, desired: desired(upstream, decision, state), configured: true)
            state.applied[upstream] = decision
        } catch {
            // Given up waiting for the lock (the deadline, a stop): the run ends for that reason, not
            // for a directory that refused the write.
            if !retryFailures && reconciler.lockWait.giveUp() == nil { state.failed[upstream] = error.description }
            log(upstream).error("\(error)")
        }
    }

    /// What `verify` found.
    enum Verified: Equatable {
        /// Nothing to restore (or nothing decided yet).
        case intact
        /// The file (or its directory) had been changed or deleted behind the agent's back: restored.
        case restored
        /// A hosts.toml that is not ours stands where ours was: left alone.
        case foreign
        /// The directory refused the repair.
        case failed(String)
    }

    /// watch: the file the agent carried out last is checked against the disk and restored when it
    /// was changed or deleted behind its back ("manual changes are overwritten"); a foreign file put
    /// in its place is left alone.
    func verify(_ upstream: String, in state: MirrorState) -> Verified {
        guard state.failed[upstream] == nil, let decision = state.applied[upstream], decision == state.decision(upstream) else {
            return .intact
        }
        do throws(HostsError) {
            let steps = try reconciler.reconcile(
                upstream: upstream, desired: desired(upstream, decision, state), configured: true, sparingForeign: true)
            if !steps.isEmpty { return .restored }
        } catch {
            return .failed(error.description)
        }
        return (try? reconciler.store.observe(upstream).file) == .foreign ? .foreign : .intact
    }

    private func desired(_ upstream: String, _ decision: FileDecision, _ state: MirrorState) -> String? {
        guard case .write(let hosts) = decision, let ri = state.registryIndex[upstream] else { return nil }
        return HostsFile.render(state.config.registries[ri], hosts: hosts, for: state.config.target)
    }

    func log(_ upstream: String) -> Logger {
        var log = logger
        log[metadataKey: LogKey.upstream] = "\(upstream)"
        log[metadataKey: LogKey.file] = "\(reconciler.store.filePath(upstream))"
        return log
    }
}
