import CCAres
import CLinux
import Glibc
import RegistryMirrorCore
import Synchronization

/// One query's outcome, written by c-ares's callback on the DNS thread.
final class Answer {
    let family: Int32
    /// nil while the query is in flight; then an ARES_* status.
    var status: Int32?
    /// The RCODE of the answer's header when an answer came (c-ares hands the message over for every
    /// code), read here rather than taken from `status`; nil when the query ended without one.
    var rcode: UInt8?
    var addresses: [String] = []
    /// When a NOERROR answer came but could not be read: c-ares's reason.
    var unreadable: Int32?

    init(family: Int32) { self.family = family }

    /// NOERROR with no address in it (no record, or only a CNAME): the name has no address of this family.
    var isEmpty: Bool { rcode == DNSConstant.noError && unreadable == nil && addresses.isEmpty }

    func finish(_ status: Int32, _ abuf: UnsafeMutablePointer<UInt8>?, _ alen: Int32) {
        self.status = status
        // c-ares drops answers shorter than the 12-byte header before they get here.
        guard let abuf, alen >= 12 else { return }
        rcode = abuf[3] & 0x0F
        // Only a NOERROR answer's records are read: c-ares 1.18 reports codes it has no status for as
        // ARES_SUCCESS, and their records say nothing.
        guard rcode == DNSConstant.noError else { return }
        // Every A record takes at least 16 bytes of the answer and every AAAA 28: this many slots
        // hold them all, however many addresses a headless Service has.
        let rc: Int32
        if family == AF_INET {
            var slots = [ares_addrttl](repeating: ares_addrttl(), count: Int(alen) / 16 + 1)
            var count = Int32(slots.count)
            rc = ares_parse_a_reply(abuf, alen, nil, &slots, &count)
            if rc == ARES_SUCCESS { addresses = slots.prefix(Int(count)).map { Self.text(AF_INET, of: $0.ipaddr) } }
        } else {
            var slots = [ares_addr6ttl](repeating: ares_addr6ttl(), count: Int(alen) / 28 + 1)
            var count = Int32(slots.count)
            rc = ares_parse_aaaa_reply(abuf, alen, nil, &slots, &count)
            if rc == ARES_SUCCESS { addresses = slots.prefix(Int(count)).map { Self.text(AF_INET6, of: $0.ip6addr) } }
        }
        if rc != ARES_SUCCESS && rc != ARES_ENODATA { unreadable = rc }
    }

    /// `10.0.0.5`, `fd00::5`.
    private static func text<Address>(_ family: Int32, of address: Address) -> String {
        var address = address
        return withUnsafePointer(to: &address) { pointer in
            withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(INET6_ADDRSTRLEN)) { buffer in
                guard let text = inet_ntop(family, pointer, buffer.baseAddress, socklen_t(buffer.count)) else { return "" }
                return String(cString: text)
            }
        }
    }
}

/// c-ares calls this on the DNS thread (from `ares_query`, `ares_process_fd` or `ares_cancel`); `arg` is
/// the query's `Answer`, which its `Attempt` keeps alive until both of its queries have ended.
let answerCallback: ares_callback = { arg, status, _, abuf, alen in
    Unmanaged<Answer>.fromOpaque(arg!).takeUnretainedValue().finish(status, abuf, alen)
}


/// What one server said about the name.
enum Verdict {
    case addresses([String])
    case noSuchName
    case noAddress
    case failed(String)
}

/// One server asked for A and AAAA at once, on a channel of this attempt's own, until both answers
/// are in or `discovery.timeout` has passed.
final class Attempt {
    let address: ServerAddress
    /// The server's place in `discovery.servers`.
    let index: Int
    let channel: Channel
    let timeout: GoDuration
    let deadline: ContinuousClock.Instant
    let a = Answer(family: AF_INET)
    let aaaa = Answer(family: AF_INET6)

    init(address: ServerAddress, index: Int, channel: Channel, timeout: GoDuration) {
        self.address = address
        self.index = index
        self.channel = channel
        self.timeout = timeout
        deadline = ContinuousClock.now + timeout.duration
        channel.startAttempt()
    }

    /// Sends both queries. c-ares may call back at once (a socket that cannot be opened); the other
    /// callbacks come from `ares_process_fd`, or from `ares_cancel` in `end`, all while this attempt
    /// holds its answers.
    func send(_ name: String) {
        for (type, answer) in [(DNSConstant.typeA, a), (DNSConstant.typeAAAA, aaaa)] {
            ares_query(
                channel.handle, name, DNSConstant.classIN, type, answerCallback, Unmanaged.passUnretained(answer).toOpaque())
        }
    }

    /// Both answers are in, or one is a refusal, which ends the attempt: c-ares 1.18 sends A and AAAA
    /// on one socket, and the second send can take the ICMP error the first one caused, leaving the
    /// other query to time out.
    var isOver: Bool {
        (a.status != nil && aaaa.status != nil) || a.status == ARES_ECONNREFUSED || aaaa.status == ARES_ECONNREFUSED
    }

    /// Whatever is still in flight ends here (its callback runs now: ARES_ECANCELLED, read as a
    /// timeout): the channel is idle for the next attempt, and no callback outlives its answer.
    func end() {
        ares_cancel(channel.handle)
    }

    /// A and AAAA together: any address (of a NOERROR answer) wins; NXDOMAIN for either means no
    /// such name; both NOERROR and empty means a name without addresses; anything else (another
    /// answer code, no answer, a refusal, a malformed answer) is this server's failure, with its reason.
    func verdict() -> Verdict {
        let addresses = a.addresses + aaaa.addresses
        if !addresses.isEmpty { return .addresses(addresses) }
        let answers = [a, aaaa]
        if answers.contains(where: { $0.rcode == DNSConstant.nxDomain }) { return .noSuchName }
        if answers.allSatisfy(\.isEmpty) { return .noAddress }
        // What the server did (an answer code, a refusal) says more than the silence of the other query.
        let failed = answers.filter { !$0.isEmpty }
        let telling = failed.first { $0.rcode != nil || ![ARES_ETIMEOUT, ARES_ECANCELLED, nil].contains($0.status) }
        return .failed(reason(telling ?? failed[0]))
    }

    private func reason(_ answer: Answer) -> String {
        let server = address.server
        if let unreadable = answer.unreadable {
            return "malformed answer from \(server) (\(String(cString: ares_strerror(unreadable))))"
        }
        if let rcode = answer.rcode { return DNSConstant.answerCode(rcode, from: server) }
        // c-ares asked again over TCP: the UDP answer was truncated, and what went wrong is the retry's.
        let truncated = "truncated answer over UDP from \(server)"
        switch answer.status ?? ARES_ETIMEOUT {
        case ARES_ETIMEOUT, ARES_ECANCELLED:
            if channel.stream != nil { return "\(truncated), and no answer over TCP within \(timeout)" }
            return "no answer from \(server) within \(timeout)"
        case ARES_ECONNREFUSED:
            guard channel.stream != nil else { return address.refusalReason() }
            if channel.streamConnected { return "\(truncated), and its TCP retry's connection closed without an answer" }
            return "\(truncated), and its TCP retry was refused"
        case ARES_EBADRESP: return "malformed answer from \(server)"
        case let status: return "\(String(cString: ares_strerror(status))) (asking \(server))"
        }
    }
}
