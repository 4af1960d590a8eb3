import CCAres
import CLinux
import Glibc
import RegistryMirrorCore
import Synchronization

/// Looks Service names up with c-ares 1.18: the A and AAAA records of the exact name, asked of
/// `discovery.servers` and of nothing else.
///
/// - Nothing from the node: every setting `ares_init_options` would otherwise take from
///   /etc/resolv.conf (and nsswitch.conf, host.conf), LOCALDOMAIN or RES_OPTIONS is given explicitly
///   (no servers, no search domains, no sortlist, lookups "b" (DNS only), ndots, tries, timeout), so
///   c-ares 1.18 does not open those files at all; the one server of a channel is then set with
///   `ares_set_servers_ports`. Queries go out with `ares_query`, which sends the name as given:
///   unlike `ares_getaddrinfo` it knows no search list, /etc/hosts, HOSTALIASES or "localhost".
/// - Order and bound: each attempt asks one server for A and AAAA at once and waits at most
///   `discovery.timeout` for both. The servers are asked in order, `attempts` rounds. The first
///   server that answers for the name decides (addresses, NXDOMAIN, or a name without addresses);
///   a timeout, a refusal, any other answer code or a malformed answer moves on to the next. A lookup
///   therefore ends within timeout × servers × attempts (2 s for one server and the defaults), plus
///   the time to hand it to the DNS thread (and, for the first lookup, to start that thread).
/// - Why one server per attempt instead of c-ares's own failover: with its failover, c-ares 1.18
///   doubles the timeout every round and reports a SERVFAIL or REFUSED answer as ECONNREFUSED.
///   One server per attempt, with tries 1 and ARES_FLAG_NOCHECKRESP (the answer's code reaches us),
///   keeps the bound exact and lets the reason say what each server did.
/// - Answer codes: the resolver reads the RCODE from the answer's header itself. c-ares 1.18's
///   `ares_query` turns only NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP and REFUSED into statuses;
///   any other code (YXDOMAIN, NOTAUTH, ..., 15) comes back as ARES_SUCCESS, and with no record in
///   it would read as a name without addresses. Only NOERROR (its addresses, or none) and NXDOMAIN
///   say anything about the name; every other code is that server failing (`answerCode`).
/// - Threads: every lookup of the process is run by one thread ("ccr-dns", started by the first
///   lookup), which drives them all with poll(2) on their channels' sockets and a wake-up pipe and
///   resumes each caller's continuation; the calling task only waits on it, so no thread of the
///   cooperative pool ever blocks. With no lookup running the thread sleeps in poll without a
///   timeout. A c-ares 1.18 channel is not thread-safe: only that thread touches channels, and the
///   only other process-wide state is `ares_library_init`, run once.
/// - Channels: a channel has one server and one timeout, set when it is made, and serves one attempt
///   at a time, which ends with `ares_cancel`: the channel is then without queries and (no
///   ARES_FLAG_STAYOPEN) without sockets, and c-ares keeps nothing about the server in it (a
///   refusal only closes its sockets). Idle channels are kept for the next attempt at the same
///   (server, timeout), at most 16 each (`ChannelPool.idlePerServer`); those of a server or timeout
///   that the newest lookup does not use are destroyed, so a changed config gets new ones. A lookup
///   thus costs no thread and no channel set-up, only its socket and datagrams (watch looks every
///   name up every round: a thread and a channel per lookup cost 3 s of CPU an hour for 10 names,
///   scripts/bench/dns_idle.py). Not one
///   channel shared by the lookups in flight: c-ares 1.18 cannot cancel one query (`ares_cancel`
///   ends every query of the channel), and an error on a server's connection ends every query to
///   that server: one name's truncated answer retried over a TCP port that refuses would fail the
///   other names' pending UDP queries with ECONNREFUSED.
/// - Cancelling the task wakes the thread, which cancels that lookup's queries (its channel is its
///   own: no other lookup is touched), and the lookup returns `.unreachable("lookup cancelled")`
///   within milliseconds.
public struct CAresResolver: ServiceResolver {
    /// How many rounds over the servers a lookup makes before it gives up.
    public var attempts: Int

    public init(attempts: Int = 2) {
        self.attempts = max(1, attempts)
    }

    public func resolve(_ name: String, using discovery: Discovery) async -> Resolution {
        let queryName: String
        switch Self.queryName(name) {
        case .success(let checked): queryName = checked
        case .failure(let problem): return .notFound("not a valid DNS name: \(problem.message)")
        }
        guard !discovery.servers.isEmpty else { return .unreachable("no DNS server to ask") }
        guard CAresLibrary.status == ARES_SUCCESS else {
            return .unreachable("c-ares cannot start: \(String(cString: ares_strerror(CAresLibrary.status)))")
        }
        if Task.isCancelled { return .unreachable(Lookup.cancelled) }
        let thread = DNSThread.shared
        if let problem = thread.start() { return .unreachable(problem) }
        let request = LookupRequest(name: queryName, discovery: discovery, attempts: attempts)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Resolution, Never>) in
                thread.submit(request, continuation)
            }
        } onCancel: {
            request.cancel()
            thread.wake()
        }
    }

    /// How many channels this process has made, for the tests: a config that does not change reuses them.
    static var channelsMade: Int { ChannelPool.made.load(ordering: .relaxed) }

    struct NameProblem: Error {
        var message: String
    }

    /// The name as it goes into the query (one trailing dot dropped), or why it cannot be a DNS host
    /// name: c-ares would refuse some of these, and would read a backslash as an escape.
    static func queryName(_ name: String) -> Result<String, NameProblem> {
        var text = Substring(name)
        if text.hasSuffix(".") { text = text.dropLast() }
        guard !text.isEmpty else { return .failure(NameProblem(message: "the name is empty")) }
        guard text.utf8.count <= 253 else {
            return .failure(NameProblem(message: "longer than 253 characters (\(text.utf8.count))"))
        }
        for label in text.split(separator: ".", omittingEmptySubsequences: false) {
            guard !label.isEmpty else {
                return .failure(NameProblem(message: "has an empty label (\"..\" or a leading dot)"))
            }
            guard label.utf8.count <= 63 else {
                return .failure(NameProblem(message: "has a label longer than 63 characters (\(label.utf8.count))"))
            }
            let allowed = label.utf8.allSatisfy { byte in
                (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
                    || byte == 0x2D || byte == 0x5F
            }
            guard allowed else {
                return .failure(NameProblem(message: "has a character other than letters, digits, \"-\" and \"_\""))
            }
        }
        return .success(String(text))
    }
}

/// `ares_library_init`, once per process before the first channel (it must not race itself; Swift
/// runs a global's initialiser exactly once). Never cleaned up: lookups may run until exit.
enum CAresLibrary {
    static let status: Int32 = ares_library_init(ARES_LIB_INIT_ALL)
}

/// DNS constants (RFC 1035, RFC 3596), spelled here rather than taken from <arpa/nameser.h>.
enum DNSConstant {
    static let classIN: Int32 = 1
    static let typeA: Int32 = 1
    static let typeAAAA: Int32 = 28
    static let noError: UInt8 = 0
    static let nxDomain: UInt8 = 3

    /// An answer code other than NOERROR and NXDOMAIN as a reason (RFC 1035, 2136, 8490; 12-15 are
    /// unassigned): the server failed to answer for the name.
    static func answerCode(_ rcode: UInt8, from server: Discovery.Server) -> String {
        switch rcode {
        case 1: return "query rejected as malformed (FORMERR from \(server))"
        case 2: return "server failure (SERVFAIL from \(server))"
        case 4: return "query not implemented (NOTIMP from \(server))"
        case 5: return "query refused (REFUSED from \(server))"
        default:
            let names: [UInt8: String] = [6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 11: "DSOTYPENI"]
            return "unexpected answer code \(rcode) (\(names[rcode] ?? "unassigned"), from \(server))"
        }
    }
}
