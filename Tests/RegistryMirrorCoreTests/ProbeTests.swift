import RegistryMirrorCore
import Testing

@Suite("Backoff and probe results")
struct ProbeTests {
    let backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(1))

    @Test("the ceiling doubles from initial and caps at max") func ceiling() {
        let ceilings = (1...6).map { backoff.ceiling(attempt: $0) }
        #expect(
            ceilings == [.milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1), .seconds(1)])
        #expect(backoff.ceiling(attempt: 0) == .milliseconds(200))
        #expect(backoff.ceiling(attempt: 1000) == .seconds(1))
    }

    @Test("max below initial is raised to initial") func maxBelowInitial() {
        let b = Backoff(initial: .seconds(2), maximum: .seconds(1))
        #expect(b.maximum == .seconds(2))
        #expect(b.ceiling(attempt: 5) == .seconds(2))
    }

    @Test("built from probe settings") func fromSettings() {
        var settings = ProbeSettings()
        settings.initialInterval = .milliseconds(50)
        settings.maxInterval = .milliseconds(300)
        let b = Backoff(settings)
        #expect(b.initial == .milliseconds(50))
        #expect(b.maximum == .milliseconds(300))
        #expect((1...5).map { b.ceiling(attempt: $0) } == [50, 100, 200, 300, 300].map { Duration.milliseconds($0) })
    }

    @Test("the delay lies between half the ceiling and the ceiling", arguments: 1...6)
    func delayBounds(attempt: Int) {
        let ceiling = backoff.ceiling(attempt: attempt)
        let low = backoff.delay(attempt: attempt, unit: 0)
        let high = backoff.delay(attempt: attempt, unit: 1)
        #expect(abs(low - ceiling / 2) < .microseconds(1))
        #expect(abs(high - ceiling) < .microseconds(1))
        let mid = backoff.delay(attempt: attempt, unit: 0.5)
        #expect(mid > low && mid < high)
        #expect(backoff.delay(attempt: attempt, unit: -3) == low)
        #expect(backoff.delay(attempt: attempt, unit: 7) == high)
        var rng = SplitMix(seed: UInt64(attempt))
        for _ in 0..<50 {
            let d = backoff.delay(attempt: attempt, using: &rng)
            #expect(d >= low && d <= high)
        }
    }

    @Test("200 and 401 are up", arguments: [200, 401])
    func up(status: Int) {
        let r = ProbeResult.classify(httpStatus: status, latency: .milliseconds(12))
        #expect(r.state == .up)
        #expect(r.isUp)
        #expect(r.reason == "HTTP \(status)")
        #expect(r.latency == .milliseconds(12))
    }

    @Test("anything else is down", arguments: [404, 500, 503, 204, 301, 403, 0])
    func down(status: Int) {
        let r = ProbeResult.classify(httpStatus: status, latency: .zero)
        #expect(r.state == .down)
        #expect(!r.isUp)
        #expect(r.reason == "HTTP \(status)")
    }

    @Test("the reason of a 503 is HTTP 503") func reason503() {
        #expect(ProbeResult.classify(httpStatus: 503, latency: .zero) == ProbeResult(state: .down, reason: "HTTP 503"))
    }
}

private func abs(_ d: Duration) -> Duration { d < .zero ? .zero - d : d }

/// A tiny deterministic generator so the jitter test does not depend on system randomness.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
