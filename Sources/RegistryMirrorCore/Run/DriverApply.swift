import Logging

/// Which registries apply is done with, counted so that "all done?" costs nothing per probe result.
/// A registry is settled when its directory refused a write, or when its file is in place and every
/// host has answered once, so the file lists every host that is up, not only the quickest. Hosts
/// still down then are not waited for: watch adds them later.
struct Progress {
    private var settled: Set<String> = []
    let registries: Int

    init(registries: Int) { self.registries = registries }

    var allSettled: Bool { settled.count == registries }

    func isSettled(_ upstream: String) -> Bool { settled.contains(upstream) }

    mutating func refresh(_ upstream: String, in state: MirrorState) {
        let now = state.failed[upstream] != nil || (state.fileInPlace(upstream) && state.everyHostAnswered(upstream))
        if now { settled.insert(upstream) } else { settled.remove(upstream) }
    }
}

// apply's own parts: its status while it waits, and its end.
extension Driver {
    /// The status names what is still waiting; with a thousand registries building it on every probe
    /// result would cost more than the probing, so it is rebuilt at most four times a second.
    func reportStatus(_ run: inout RunState) {
        guard status.isListening, clock.now >= run.statusDue else { return }
        status.status(StatusText.render(run.state, .applying))
        run.statusDue = clock.now + .milliseconds(250)
    }

    func finishApply(_ run: RunState) -> ApplyReport {
        var report = run.report
        let state = run.state
        // A stop that came while the loop waited for the lock (or before anything was probed), or a
        // cancellation from outside (the task, not a signal): stopped before done, like an interrupt.
        if stopFlag.isRaised || (Task.isCancelled && !report.deadlineReached && !run.progress.allSettled) { report.interrupted = true }
        for registry in config.registries {
            if state.fileInPlace(registry.upstream) {
                report.configured.append(registry.upstream)
            } else if let failure = state.failed[registry.upstream] {
                report.failed[registry.upstream] = failure
            } else {
                report.waiting.append(registry.upstream)
                for (url, tracker, lookup) in state.reportedHosts(registry.upstream) {
                    let reason = lookup?.description ?? tracker?.last?.reason ?? "not probed yet"
                    logger.warning(
                        "mirror still down after \(RunLog.attempts(tracker?.probes ?? 0)): \(reason)",
                        metadata: [
                            LogKey.upstream: "\(registry.upstream)", LogKey.host: "\(url)", LogKey.result: "down",
                            LogKey.attempts: "\(tracker?.probes ?? 0)", LogKey.reason: "\(reason)",
                        ])
                }
            }
        }
        let summary = "\(report.configured.count)/\(config.registries.count) registries configured in \((clock.now - started).millisecondsText)"
        switch report.exitStatus {
        case .ok: logger.notice("apply done: \(summary)")
        default: logger.warning("apply ended (exit \(report.exitStatus.rawValue)): \(summary)")
        }
        status.status(summary)
        return report
    }
}
