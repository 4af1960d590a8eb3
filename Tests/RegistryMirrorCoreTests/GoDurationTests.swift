import RegistryMirrorCore
import Testing

struct DurationCase: Sendable, CustomTestStringConvertible {
    var text: String
    var nanoseconds: Int64
    var testDescription: String { text }
}

let durationCases: [DurationCase] = [
    DurationCase(text: "200ms", nanoseconds: 200_000_000),
    DurationCase(text: "2s", nanoseconds: 2_000_000_000),
    DurationCase(text: "1m30s", nanoseconds: 90_000_000_000),
    DurationCase(text: "1.5s", nanoseconds: 1_500_000_000),
    DurationCase(text: "1h", nanoseconds: 3_600_000_000_000),
    DurationCase(text: "0", nanoseconds: 0),
    DurationCase(text: "0s", nanoseconds: 0),
    DurationCase(text: "300us", nanoseconds: 300_000),
    DurationCase(text: "1\u{00B5}s", nanoseconds: 1_000),  // micro sign
    DurationCase(text: "1\u{03BC}s", nanoseconds: 1_000),  // Greek mu
    DurationCase(text: "2h45m", nanoseconds: 9_900_000_000_000),
    DurationCase(text: "15ns", nanoseconds: 15),
    DurationCase(text: "1.5h", nanoseconds: 5_400_000_000_000),
    DurationCase(text: "0.25ms", nanoseconds: 250_000),
    DurationCase(text: "+3s", nanoseconds: 3_000_000_000),
    DurationCase(text: "1s500ms", nanoseconds: 1_500_000_000),
]

@Suite("GoDuration")
struct GoDurationTests {
    @Test("parses", arguments: durationCases)
    func parses(_ c: DurationCase) throws {
        let d = try GoDuration(parsing: c.text)
        #expect(d.nanoseconds == c.nanoseconds)
    }

    @Test(
        "rejects",
        arguments: [
            ("", GoDuration.ParseError.empty),
            ("-1s", .negative),
            ("5", .missingUnit("5")),
            ("1x", .unknownUnit("x")),
            ("s", .badNumber("s")),
            ("1..5s", .badNumber("1..5s")),
            ("+", .empty),
            ("1sm", .unknownUnit("sm")),
            ("1 s", .unknownUnit(" s")),
        ])
    func rejects(text: String, error: GoDuration.ParseError) {
        #expect(throws: error) { try GoDuration(parsing: text) }
        #expect(!error.description.isEmpty)
    }

    @Test("rejects other junk", arguments: ["soon", ".s", "1.s.", "1e3s", "ms", "1h-5m"])
    func rejectsJunk(text: String) {
        #expect(throws: GoDuration.ParseError.self) { try GoDuration(parsing: text) }
    }

    @Test("rejects a duration that does not fit in Int64") func overflow() {
        #expect(throws: GoDuration.ParseError.overflow) { try GoDuration(parsing: "3000000h") }
    }

    @Test(
        "formats like Go",
        arguments: [
            ("1m30s", "1m30s"), ("200ms", "200ms"), ("1.5s", "1.5s"), ("0s", "0s"), ("0", "0s"), ("1h", "1h0m0s"),
            ("2h45m", "2h45m0s"), ("90s", "1m30s"), ("1000ms", "1s"), ("300us", "300\u{00B5}s"), ("15ns", "15ns"),
            ("1.25ms", "1.25ms"), ("61m", "1h1m0s"), ("2s", "2s"),
        ])
    func formats(text: String, expected: String) throws {
        #expect(try GoDuration(parsing: text).description == expected)
    }

    @Test("description parses back to the same value", arguments: durationCases)
    func roundTrip(_ c: DurationCase) throws {
        let d = try GoDuration(parsing: c.text)
        let again = try GoDuration(parsing: d.description)
        #expect(again == d)
        #expect(again.description == d.description)
    }

    @Test("round trip of odd values", arguments: [1, 999, 1_000, 1_001, 123_456_789, 59_999_999_999, 3_600_000_000_001] as [Int64])
    func roundTripNanoseconds(ns: Int64) throws {
        let d = GoDuration(nanoseconds: ns)
        #expect(try GoDuration(parsing: d.description) == d)
    }

    @Test("helpers and conversions") func helpers() {
        #expect(GoDuration.milliseconds(1500) == GoDuration.seconds(1) + .milliseconds(500))
        #expect(GoDuration.milliseconds(1500).milliseconds == 1500)
        #expect(GoDuration.milliseconds(1500).seconds == 1.5)
        #expect(GoDuration.seconds(2).duration == .seconds(2))
        #expect(GoDuration.zero.isZero)
        #expect(!GoDuration.milliseconds(1).isZero)
        #expect(GoDuration.milliseconds(200) < .seconds(1))
    }
}

extension GoDuration {
    fileprivate static func + (a: GoDuration, b: GoDuration) -> GoDuration {
        GoDuration(nanoseconds: a.nanoseconds + b.nanoseconds)
    }
}
