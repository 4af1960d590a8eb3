/// A Service name's addresses as apply and watch hold them (docs/design.md §11): which stand for the
/// name in files (`current`), which the DNS named since and must first prove themselves
/// (`candidates`), and what the last lookup said. Pure; the callers resolve and probe.
///
/// - The first answer with addresses is taken as it is: there is nothing to replace.
/// - Later answers: addresses still named stay; one no longer named goes at once if another current
///   address is still named, else it stays until a candidate has passed `success_threshold` probes
///   (`passed`): a Service recreated with a new IP moves over only to an address that answers.
/// - A failed lookup (not found, DNS unreachable) changes nothing: the last addresses are kept and
///   probed, so a working mirror is never dropped because DNS is down.
public struct ServiceAddresses: Sendable, Equatable {
    /// What one lookup or one passed candidate changed.
    public struct Change: Sendable, Equatable {
        /// Addresses probed from now on (new current addresses and candidates), in stable order.
        public var added: [String] = []
        /// Addresses no longer probed.
        public var dropped: [String] = []
        /// `current` before, when it changed.
        public var previous: [String]?

        public var isEmpty: Bool { added.isEmpty && dropped.isEmpty && previous == nil }
    }

    /// At most this many addresses of one name are used (the first in stable order): containerd tries
    /// hosts one after the other, and a headless Service of a hundred pods must not make a file of a
    /// hundred hosts.
    public static let maximumAddresses = 16

    public let name: String
    /// The addresses that stand for the name, in `ServiceAddress.stableOrder`.
    public private(set) var current: [String] = []
    /// Named by the last answer but not current yet.
    public private(set) var candidates: [String] = []
    /// The last lookup's outcome; nil before the first.
    public private(set) var last: Resolution?
    /// The last answer with addresses.
    private var answer: [String] = []

    public init(name: String) { self.name = name }

    /// Every address probed: current, then candidates.
    public var probed: [String] { current + candidates }

    /// No address is known and no lookup has said "not found": the name may yet resolve, so a file
    /// that would lose its last host waits instead.
    public var isPending: Bool {
        guard current.isEmpty else { return false }
        if case .notFound? = last { return false }
        return true
    }

    /// `atOnce`: the answer replaces the current addresses at once, with no candidates (a registry
    /// with `readiness_probe = false`, whose hosts are never probed, so no candidate could pass).
    public mutating func record(_ resolution: Resolution, atOnce: Bool = false) -> Change {
        last = resolution
        guard case .addresses(let answered) = resolution, !answered.isEmpty else { return Change() }
        // The stable order whatever the resolver did: a file must not change when answers rotate.
        let found = Array(ServiceAddress.stableOrder(answered).prefix(Self.maximumAddresses))
        answer = found
        let before = current
        let probedBefore = probed
        if current.isEmpty || atOnce {
            current = found
        } else {
            let kept = current.filter(found.contains)
            if !kept.isEmpty { current = kept }
        }
        candidates = found.filter { !current.contains($0) }
        let probedAfter = probed
        var change = Change()
        change.added = ServiceAddress.stableOrder(probedAfter.filter { !probedBefore.contains($0) })
        change.dropped = probedBefore.filter { !probedAfter.contains($0) }
        if current != before { change.previous = before }
        return change
    }

    /// A candidate passed `success_threshold` probes: it becomes current, and current addresses the
    /// DNS no longer names go.
    public mutating func passed(_ address: String) -> Change {
        guard candidates.contains(address) else { return Change() }
        let before = current
        current = ServiceAddress.stableOrder(current.filter(answer.contains) + [address])
        candidates.removeAll { $0 == address }
        var change = Change()
        change.dropped = before.filter { !current.contains($0) }
        change.previous = before
        return change
    }
}
