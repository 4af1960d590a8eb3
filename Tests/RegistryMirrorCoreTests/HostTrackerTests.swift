import Testing

@testable import RegistryMirrorCore

@Suite("Watch hysteresis")
struct HostTrackerTests {
    static let up = ProbeResult(state: .up, reason: "HTTP 200")
    static let down = ProbeResult(state: .down, reason: "connection refused", connected: false)

    /// Feeds results and returns inFile after each.
    func run(_ results: [ProbeResult], failure: Int = 3, success: Int = 2) -> [Bool?] {
        var settings = ProbeSettings()
        settings.failureThreshold = failure
        settings.successThreshold = success
        var tracker = HostTracker()
        return results.map { _ = tracker.record($0, settings: settings); return tracker.inFile }
    }

    @Test("the first result decides at once, as apply does")
    func firstResult() {
        #expect(run([Self.up]) == [true])
        #expect(run([Self.down]) == [false])
    }

    @Test("out only after failure_threshold consecutive failures")
    func failureThreshold() {
        #expect(run([Self.up, Self.down, Self.down, Self.down]) == [true, true, true, false])
        // A success in between resets the count.
        #expect(run([Self.up, Self.down, Self.down, Self.up, Self.down, Self.down]) == [true, true, true, true, true, true])
        #expect(run([Self.up, Self.down], failure: 1) == [true, false])
    }

    @Test("back only after success_threshold consecutive successes")
    func successThreshold() {
        #expect(run([Self.down, Self.up, Self.up]) == [false, false, true])
        #expect(run([Self.down, Self.up, Self.down, Self.up]) == [false, false, false, false])
        #expect(run([Self.down, Self.up], success: 1) == [false, true])
    }

    @Test("a host flapping every probe never leaves or rejoins the file")
    func flapping() {
        let flaps = (0..<40).map { $0 % 2 == 0 ? Self.up : Self.down }
        #expect(run(flaps).allSatisfy { $0 == true })
        let downFirst = (0..<40).map { $0 % 2 == 0 ? Self.down : Self.up }
        #expect(run(downFirst).allSatisfy { $0 == false })
    }

    @Test("transitions count moves after the first result only; record reports changes")
    func transitions() {
        var settings = ProbeSettings()
        settings.failureThreshold = 2
        settings.successThreshold = 1
        var tracker = HostTracker()
        var changes: [Bool] = []
        for r in [Self.up, Self.down, Self.down, Self.up, Self.up] { changes.append(tracker.record(r, settings: settings)) }
        #expect(changes == [true, false, true, true, false])
        #expect(tracker.transitions == 2)
        #expect(tracker.probes == 5)
        #expect(tracker.consecutiveSuccesses == 2)
        #expect(tracker.consecutiveFailures == 0)
    }

    /// Equal within a microsecond: the jitter is computed in floating point.
    func close(_ a: Duration, _ b: Duration) -> Bool { a - b < .microseconds(1) && b - a < .microseconds(1) }

    @Test("when the next probe goes out: round, silence, confirmation, backoff, and the in-flight cap")
    func timing() {
        let settings = ProbeSettings()  // 200ms..1s backoff, timeout 2s, thresholds 3/2
        let timing = ProbeTiming(settings)
        let round = Duration.seconds(50)
        func next(_ t: HostTracker, _ inFlight: [Duration], last: Duration?, unit: Double = 1) -> Duration? {
            timing.next(t, inFlight: inFlight, lastLaunch: last, unit: unit, round: { round })
        }
        var tracker = HostTracker()
        #expect(next(tracker, [], last: nil) == .zero, "the first probe goes out at once")
        _ = tracker.record(Self.up, settings: settings)
        #expect(!tracker.isSuspect)
        #expect(next(tracker, [], last: .seconds(40)) == round, "steady: the next round")
        #expect(timing.silence == .milliseconds(500))
        #expect(next(tracker, [.seconds(40)], last: .seconds(40)) == .seconds(40) + .milliseconds(500), "unanswered: company after the silence")
        #expect(next(tracker, [.seconds(40), .milliseconds(40_500)], last: .milliseconds(40_500)) == .milliseconds(40_700))
        #expect(next(tracker, [.seconds(40), .milliseconds(40_500), .milliseconds(40_700)], last: .milliseconds(40_700)) == nil, "three in flight: wait")
        _ = tracker.record(Self.down, settings: settings)
        #expect(tracker.isSuspect)
        #expect(next(tracker, [.seconds(41)], last: .seconds(41)) == .milliseconds(41_200), "failing: every initial_interval, in flight or not")
        _ = tracker.record(Self.down, settings: settings)
        _ = tracker.record(Self.down, settings: settings)
        #expect(tracker.inFile == false)
        // Out, nothing connected: the backoff, not waiting for a probe still connecting.
        #expect(next(tracker, [.seconds(42)], last: .seconds(42)) == .seconds(42) + .milliseconds(800))
        _ = tracker.record(Self.down, settings: settings)
        #expect(next(tracker, [.seconds(42)], last: .seconds(42), unit: 0) == .seconds(42) + .milliseconds(500))
        // Out, but something answered (an HTTP error): one probe at a time.
        _ = tracker.record(ProbeResult(state: .down, reason: "HTTP 503"), settings: settings)
        #expect(next(tracker, [.seconds(43)], last: .seconds(43)) == nil)
        #expect(next(tracker, [], last: .seconds(43)) == .seconds(44))
        // A success while out: confirm after initial_interval.
        _ = tracker.record(Self.up, settings: settings)
        #expect(tracker.isSuspect)
        #expect(next(tracker, [], last: .seconds(45)) == .milliseconds(45_200))
    }

    @Test("metrics text has every family with HELP and TYPE, escaped labels, and the tracker's numbers")
    func metrics() {
        var settings = ProbeSettings()
        settings.failureThreshold = 1
        var tracker = HostTracker()
        _ = tracker.record(ProbeResult(state: .up, reason: "HTTP 200", latency: .milliseconds(250)), settings: settings)
        _ = tracker.record(Self.down, settings: settings)
        let text = MetricsText.render(
            hosts: [.init(upstream: "docker.io", url: "http://a\"b:5000", tracker: tracker)],
            filesInPlace: [("docker.io", false)], timestamp: 1_700_000_000)
        let p = MetricsText.prefix
        #expect(text.contains("\(p)_mirror_up{upstream=\"docker.io\",host=\"http://a\\\"b:5000\"} 0\n"))
        #expect(text.contains("\(p)_mirror_in_hosts_file{upstream=\"docker.io\",host=\"http://a\\\"b:5000\"} 0\n"))
        #expect(text.contains("\(p)_mirror_consecutive_failures{upstream=\"docker.io\",host=\"http://a\\\"b:5000\"} 1\n"))
        #expect(text.contains("\(p)_mirror_transitions_total{upstream=\"docker.io\",host=\"http://a\\\"b:5000\"} 1\n"))
        #expect(text.contains("\(p)_mirror_probes_total{upstream=\"docker.io\",host=\"http://a\\\"b:5000\"} 2\n"))
        #expect(text.contains("\(p)_registry_file_in_place{upstream=\"docker.io\"} 0\n"))
        #expect(text.contains("\(p)_last_round_timestamp_seconds 1700000000\n"))
        for family in ["mirror_up", "mirror_in_hosts_file", "mirror_probe_latency_seconds", "mirror_transitions_total"] {
            #expect(text.contains("# HELP \(p)_\(family) "))
            #expect(text.contains("# TYPE \(p)_\(family) "))
        }
    }

    @Test("steady hosts share round starts, spaced by the interval ±20%")
    func rounds() {
        // The jitter draws, in order: first round 0.5 (10 s), then 1 (12 s), 0 (8 s), then 0.5s.
        let schedule = RoundSchedule(interval: .seconds(10), random: .scripted([0.5, 1, 0, 0.5]))
        let start = Duration.seconds(100)
        let first = schedule.next(after: start)
        #expect(close(first - start, .seconds(10)))
        // Every host asking before the round starts gets the same instant, and draws nothing.
        #expect(schedule.next(after: start + .seconds(3)) == first)
        #expect(schedule.next(after: start + .seconds(9)) == first)
        // Once it has started, the next round is one jittered interval later.
        let second = schedule.next(after: first + .milliseconds(5))
        #expect(close(second - first, .seconds(12)))
        let third = schedule.next(after: second + .milliseconds(5))
        #expect(close(third - second, .seconds(8)))
        // A host that overslept several rounds lands on the first start still ahead.
        let late = schedule.next(after: third + .seconds(25))
        #expect(late > third + .seconds(25) && late <= third + .seconds(35))
    }
}
