import Logging

/// Brings one upstream's directory to the wanted state under the lock and logs what changed.
public struct HostsReconciler: Sendable {
    public let store: any HostsStore
    public let logger: Logger
    public let lockWait: LockWait

    public init(store: any HostsStore, logger: Logger, lockWait: LockWait = .untilFree) {
        self.store = store
        self.logger = logger
        self.lockWait = lockWait
    }

    /// - Returns: the steps carried out (empty when the file was already right).
    /// `sparingForeign`: a hosts.toml that is not ours (nor a regular file) is left as it is, with
    /// nothing done (watch restoring its own files: an administrator's file put there stays).
    @discardableResult
    public func reconcile(upstream: String, desired: String?, configured: Bool, sparingForeign: Bool = false) throws(HostsError)
        -> [FileAction]
    {
        let path = store.filePath(upstream)
        var log = logger
        log[metadataKey: LogKey.upstream] = "\(upstream)"
        log[metadataKey: LogKey.file] = "\(path)"
        let steps: [FileAction]
        do {
            steps = try store.withLock(creatingRoot: desired != nil, wait: lockWait) {
                let observed = try store.observe(upstream)
                if sparingForeign, observed.file == .foreign || observed.file == .notRegular { return [] }
                let steps = try HostsPlan.actions(
                    upstream: upstream, desired: desired, configured: configured, observed: observed)
                try store.perform(steps, upstream: upstream)
                return steps
            }
        } catch let e as SystemError {
            throw .store(e)
        } catch let e as PlanConflict {
            throw .conflict(e)
        } catch {
            throw .store(SystemError(operation: "lock", path: store.root, reason: "\(error)"))
        }
        if desired != nil && !steps.contains(where: { if case .write = $0 { true } else { false } }) {
            log.debug("hosts.toml unchanged")
        }
        for step in steps {
            switch step {
            case .backUpForeign:
                log.notice("backed up foreign hosts.toml to \(HostsFile.backupName)")
            case .write:
                log.notice("wrote hosts.toml")
            case .removeManaged:
                log.notice(configured ? "removed hosts.toml: no mirror is up" : "removed hosts.toml: upstream no longer configured")
            case .restoreBackup:
                log.notice("restored \(HostsFile.backupName) to hosts.toml")
            case .removeDirectory:
                log.info("removed directory \(store.root)/\(upstream) if empty")
            case .createDirectory, .writeRecord, .removeRecord:
                break
            }
        }
        return steps
    }
}

extension HostsReconciler {
    /// Everything of ours for upstreams not in `configured` goes: our file, the ownership record, the
    /// directory if we created it; a backed-up foreign file comes back. `remove` passes an empty set.
    /// - Returns: upstream (or hosts_dir) to error, for what could not be cleaned; empty when all went well.
    @discardableResult
    public func removeUpstreams(notIn configured: Set<String>) -> [String: String] {
        let upstreams: [String]
        do {
            // Every run starts here (apply, watch, remove): the moment to clear a killed run's leftovers.
            // The listing too is made under the lock: another instance may be renaming files meanwhile.
            upstreams = try store.withLock(creatingRoot: false, wait: lockWait) {
                store.removeLeftovers()
                return try store.upstreamsWithOurFiles().filter { !configured.contains($0) }
            }
        } catch {
            logger.error("\(error)")
            return [store.root: "\(error)"]
        }
        var failures: [String: String] = [:]
        for upstream in upstreams {
            do {
                try reconcile(upstream: upstream, desired: nil, configured: false)
            } catch {
                logger.error("\(error)", metadata: [LogKey.upstream: "\(upstream)"])
                failures[upstream] = error.description
            }
        }
        return failures
    }

    /// `remove`: every file of ours goes, backups come back, directories we created go when empty.
    public func removeEverything() -> [String: String] {
        let failures = removeUpstreams(notIn: [])
        logger.notice("remove done\(failures.isEmpty ? "" : " with \(failures.count) failures")")
        return failures
    }
}
