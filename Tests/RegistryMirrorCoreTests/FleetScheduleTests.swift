import Logging
import Synchronization
import Testing

@testable import RegistryMirrorCore

/// Connection signals the test sets: what a check says, and a held connection it can break.
final class FakeConnections: ConnectionChecker, Sendable {
    private struct State {
        var checks = 0
        var answer: ProbeResult? = ProbeResult(state: .up, reason: "connected")
        var lost: (@Sendable (String) -> Void)?
        var holds = 0
        var closes = 0
    }
    private let state = Mutex(State())

    var checks: Int { state.withLock { $0.checks } }
    var holds: Int { state.withLock { $0.holds } }
    var isHeld: Bool { state.withLock { $0.lost != nil } }
    func answer(_ result: ProbeResult?) { state.withLock { $0.answer = result } }

    /// The held connection breaks, as when the cache's process dies.
    func breakHeld(_ reason: String = "connection closed by the mirror") {
        let lost = state.withLock { state in
            defer { state.lost = nil }
            return state.lost
        }
        lost?(reason)
    }

    func connect(_ host: MirrorHost, timeout: Duration) async -> ProbeResult? {
        state.withLock { state in
            state.checks += 1
            return state.answer
        }
    }

    func hold(_ host: MirrorHost, lost: @escaping @Sendable (String) -> Void) -> (any HeldConnection)? {
        let answer = state.withLock { state -> ProbeResult? in
            state.holds += 1
            if state.answer != nil { state.lost = lost }
            return state.answer
        }
        return answer == nil ? nil : Held(owner: self)
    }

    struct Held: HeldConnection {
        let owner: FakeConnections
        func close() { owner.state.withLock { $0.lost = nil; $0.closes += 1 } }
    }
}

/// watch's schedule at fleet scale (docs/design.md §6.3), on a manual clock: rounds every 2.4 s
/// (jitter 1), a connection check each round and the HTTP probe every 15th.
@Suite("watch: connection checks between HTTP probes")
struct FleetScheduleTests {
    static let url = "http://10.0.0.7:5000"

    /// Advances the clock round by round (`every`, 2.4 s; to the round's exact instant, which the
    /// jitter's arithmetic puts a hair past `every * n`) and waits for that round's check or probe.
    static func rounds(_ watch: ManualWatch, _ range: ClosedRange<Int>, every: Duration = .milliseconds(2_400), calls: @escaping () -> Int) async {
        for round in range {
            #expect(await eventuallyTrue { watch.clock.nextDeadline.map { abs(($0 - every * round) / .microseconds(10)) < 1 } == true },
                    "asleep for round \(round): \(String(describing: watch.clock.nextDeadline))")
            let before = calls()
            watch.clock.advance(to: watch.clock.nextDeadline ?? every * round)
            _ = await eventuallyTrue { calls() > before }
        }
    }

    @Test("a steady mirror: one HTTP probe per 15 rounds (30 s), a connection check in each of the others, and one held connection")
    func oneRequestPer15Rounds() async throws {
        let prober = SettableProber(up: [Self.url])
        let connections = FakeConnections()
        let watch = ManualWatch(config: .one("quay.io", Self.url), prober: prober, connections: connections)
        #expect(await eventuallyTrue { watch.store.content("quay.io") != nil })
        #expect(prober.count(Self.url) == 1, "the first pass")
        await Self.rounds(watch, 1...30) { prober.count(Self.url) + connections.checks }
        // Phase 0 (unit 1): rounds 1 and 16 are HTTP probes, the other 28 checks.
        #expect(prober.count(Self.url) == 3, "HTTP probes: \(prober.count(Self.url))")
        #expect(connections.checks == 28, "checks: \(connections.checks)")
        #expect(connections.holds == 1 && connections.isHeld, "one connection held all along")
        #expect(await watch.stop() == .ok)
    }

    @Test("each node's HTTP probes fall on a phase of their own (unit 0.5: the 8th round first), so a fleet does not send them together")
    func randomPhase() async throws {
        let prober = SettableProber(up: [Self.url])
        let connections = FakeConnections()
        let watch = ManualWatch(config: .one("quay.io", Self.url), prober: prober, connections: connections, random: .scripted([0.5]))
        #expect(await eventuallyTrue { watch.store.content("quay.io") != nil })
        // Rounds are 2 s * (0.8 + 0.4 * 0.5) = 2 s apart here.
        await Self.rounds(watch, 1...8, every: .seconds(2)) { prober.count(Self.url) + connections.checks }
        #expect(connections.checks == 7 && prober.count(Self.url) == 2, "checks \(connections.checks), HTTP \(prober.count(Self.url))")
        #expect(await watch.stop() == .ok)
    }

    @Test("the connection is held from the answer that puts the mirror in its file, before any round: broken then, the mirror is probed at once (the clock standing still)")
    func heldFromFirstAnswer() async throws {
        let prober = SettableProber(up: [Self.url])
        let connections = FakeConnections()
        let watch = ManualWatch(config: .one("quay.io", Self.url), prober: prober, connections: connections)
        #expect(await eventuallyTrue { watch.store.content("quay.io") != nil })
        #expect(await eventuallyTrue { connections.isHeld }, "held after the first pass, the first round not come")
        #expect(connections.checks == 0 && prober.count(Self.url) == 1)
        prober.set(Self.url, up: false)
        connections.breakHeld()
        #expect(await eventuallyTrue { prober.count(Self.url) == 2 }, "an HTTP probe at once, before the first round")
        #expect(await watch.stop() == .ok)
    }

    @Test("the held connection breaks (the cache killed): HTTP probes at once, and 3 refusals 200 ms apart take it out")
    func lostConnection() async throws {
        let prober = SettableProber(up: [Self.url])
        let connections = FakeConnections()
        let watch = ManualWatch(config: .one("quay.io", Self.url), prober: prober, connections: connections)
        #expect(await eventuallyTrue { watch.store.content("quay.io") != nil })
        await Self.rounds(watch, 1...2) { prober.count(Self.url) + connections.checks }
        #expect(await eventuallyTrue { connections.isHeld })
        let probes = prober.count(Self.url)
        prober.set(Self.url, up: false)
        connections.answer(ProbeResult(state: .down, reason: "connection refused", connected: false))
        watch.clock.advance(to: .milliseconds(5_000))
        connections.breakHeld()
        #expect(await eventuallyTrue { prober.count(Self.url) == probes + 1 }, "an HTTP probe at once, the clock standing still")
        watch.clock.advance(to: .milliseconds(5_200))
        #expect(await eventuallyTrue { prober.count(Self.url) == probes + 2 })
        watch.clock.advance(to: .milliseconds(5_400))
        #expect(await eventuallyTrue { watch.store.content("quay.io") == nil }, "out 400 ms after the connection broke")
        #expect(await watch.stop() == .ok)
    }

    @Test("a failed connection check counts as a failure: the mirror is suspect, and two failed HTTP probes take it out")
    func failedCheck() async throws {
        let prober = SettableProber(up: [Self.url])
        let connections = FakeConnections()
        let watch = ManualWatch(config: .one("quay.io", Self.url), prober: prober, connections: connections)
        #expect(await eventuallyTrue { watch.store.content("quay.io") != nil })
        await Self.rounds(watch, 1...3) { prober.count(Self.url) + connections.checks }
        let probes = prober.count(Self.url)
        prober.set(Self.url, up: false)
        connections.answer(ProbeResult(state: .down, reason: "connect timed out after 1000ms", connected: false))
        await Self.rounds(watch, 4...4) { connections.checks }
        #expect(connections.checks == 3, "rounds 2, 3 and 4 were checks")
        // The fast lane: HTTP probes initial_interval (200 ms) apart from the failed check.
        #expect(await eventuallyTrue { watch.clock.nextDeadline.map { abs(($0 - .milliseconds(9_800)) / .microseconds(10)) < 1 } == true })
        watch.clock.advance(to: watch.clock.nextDeadline!)
        #expect(await eventuallyTrue { prober.count(Self.url) == probes + 1 })
        #expect(await eventuallyTrue { watch.clock.nextDeadline.map { abs(($0 - .milliseconds(10_000)) / .microseconds(10)) < 1 } == true })
        watch.clock.advance(to: watch.clock.nextDeadline!)
        #expect(await eventuallyTrue { watch.store.content("quay.io") == nil }, "out 400 ms after the failed check")
        #expect(await watch.stop() == .ok)
    }

    @Test("a host named by DNS name cannot be checked by connection: it keeps an HTTP probe every round")
    func namedHost() async throws {
        let named = "http://cache.example:5000"
        let prober = SettableProber(up: [named])
        let connections = FakeConnections()
        connections.answer(nil)
        let watch = ManualWatch(config: .one("quay.io", named), prober: prober, connections: connections)
        #expect(await eventuallyTrue { watch.store.content("quay.io") != nil })
        await Self.rounds(watch, 1...6) { prober.count(named) }
        #expect(prober.count(named) >= 6, "HTTP probes: \(prober.count(named))")
        #expect(await watch.stop() == .ok)
    }
}
