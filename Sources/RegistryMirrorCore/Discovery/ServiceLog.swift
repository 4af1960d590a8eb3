import Logging

/// The log lines of Service names, the same in apply and watch.
enum ServiceLog {
    /// A lookup's outcome, when it differs in kind or text from the one before (a Service looked up
    /// every round would otherwise log every round).
    static func lookup(_ update: MirrorState.ServiceUpdate, before: Resolution?, logger: Logger) {
        guard let resolution = update.resolution, resolution != before else { return }
        var log = logger
        log[metadataKey: LogKey.service] = "\(update.name)"
        log[metadataKey: LogKey.upstream] = "\(update.service.upstream)"
        log[metadataKey: LogKey.host] = "\(update.service.url)"
        switch resolution {
        case .addresses:
            if before == nil || update.change.previous != nil || !update.change.added.isEmpty {
                log.info("service \(update.name): \(resolution)")
            }
        case .notFound, .unreachable:
            log[metadataKey: LogKey.reason] = "\(resolution)"
            let keeping = update.current.isEmpty ? "no address known yet: not ready" : "keeping \(update.current.joined(separator: ", "))"
            log.warning("service \(update.name): \(resolution); \(keeping)")
        }
    }

    /// `service address changed 10.96.5.1 -> 10.96.7.2`, when the addresses standing for a name change.
    static func changed(_ update: MirrorState.ServiceUpdate, logger: Logger) {
        // The first addresses of a name are the lookup's line; this one is for a move.
        guard let previous = update.change.previous, !previous.isEmpty else { return }
        var log = logger
        log[metadataKey: LogKey.service] = "\(update.name)"
        log[metadataKey: LogKey.upstream] = "\(update.service.upstream)"
        log[metadataKey: LogKey.host] = "\(update.service.url)"
        log.notice("service address changed \(previous.joined(separator: ", ")) -> \(update.current.joined(separator: ", ")) (\(update.name))")
    }
}
