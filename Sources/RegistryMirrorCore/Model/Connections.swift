/// Connection-level signals of a mirror, cheap enough for every round (docs/design.md §6.3): nothing
/// the cache's HTTP server sees or logs. The HTTP probe (`MirrorProber`) stays the judge of whether a
/// mirror serves; these only bring bad news sooner.
public protocol ConnectionChecker: Sendable {
    /// A TCP connection to the host opened and reset at once, without a request (on Linux half-open:
    /// the cache's process never sees it): what a path that new flows can no longer take (a Service
    /// rule gone, packets dropped, nothing listening) shows.
    /// Down with the reason when it fails, up when it connects; nil when the host cannot be checked
    /// so (its URL names a host by DNS name, which only the HTTP probe resolves).
    func connect(_ host: MirrorHost, timeout: Duration) async -> ProbeResult?

    /// An idle connection to the host, kept open with TCP keepalive: `lost` is called once (from
    /// another thread) when the mirror closes or resets it or keepalive gives up, which is how a
    /// killed cache is seen at once. Nil when the host cannot be held so.
    func hold(_ host: MirrorHost, lost: @escaping @Sendable (String) -> Void) -> (any HeldConnection)?
}

/// A connection `ConnectionChecker.hold` keeps open.
public protocol HeldConnection: Sendable {
    /// Closes it; `lost` is not called afterwards.
    func close()
}
