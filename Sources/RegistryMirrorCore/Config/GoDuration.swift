/// A duration written the way Go's `time.ParseDuration` (and so containerd) reads it:
/// `200ms`, `2s`, `1m30s`, `1.5h`, `0s`. Units: ns, us (µs), ms, s, m, h.
public struct GoDuration: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    public static func milliseconds(_ ms: Int64) -> GoDuration { GoDuration(nanoseconds: ms * 1_000_000) }
    public static func seconds(_ s: Int64) -> GoDuration { GoDuration(nanoseconds: s * 1_000_000_000) }
    public static let zero = GoDuration(nanoseconds: 0)

    public var isZero: Bool { nanoseconds == 0 }
    public var milliseconds: Int64 { nanoseconds / 1_000_000 }
    public var seconds: Double { Double(nanoseconds) / 1e9 }
    public var duration: Duration { .nanoseconds(nanoseconds) }

    public static func < (a: GoDuration, b: GoDuration) -> Bool { a.nanoseconds < b.nanoseconds }

    public enum ParseError: Error, Equatable, Sendable {
        case empty, negative, missingUnit(String), unknownUnit(String), badNumber(String), overflow
    }

    private static let units: [(String, Double)] = [
        ("ns", 1), ("us", 1e3), ("µs", 1e3), ("μs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9),
    ]

    /// Parses a Go-style duration. Negative durations are refused: no setting here means anything by them.
    public init(parsing text: String) throws(ParseError) {
        var rest = Substring(text)
        guard !rest.isEmpty else { throw .empty }
        if rest.first == "-" { throw .negative }
        if rest.first == "+" { rest = rest.dropFirst() }
        if rest == "0" { self.nanoseconds = 0; return }
        guard !rest.isEmpty else { throw .empty }
        var total = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !number.isEmpty, number != ".", number.filter({ $0 == "." }).count <= 1, let value = Double(number)
            else { throw .badNumber(String(rest)) }
            rest = rest.dropFirst(number.count)
            let unit = rest.prefix { !($0.isASCII && ($0.isNumber || $0 == ".")) }
            guard !unit.isEmpty else { throw .missingUnit(String(number)) }
            guard let scale = Self.units.first(where: { $0.0 == unit })?.1 else { throw .unknownUnit(String(unit)) }
            rest = rest.dropFirst(unit.count)
            total += value * scale
        }
        guard total < 9.2e18 else { throw .overflow }
        self.nanoseconds = Int64(total.rounded())
    }

    /// Formats like Go's `Duration.String()`: `1m30s`, `200ms`, `1.5s`, `0s`.
    public var description: String {
        let ns = nanoseconds
        if ns == 0 { return "0s" }
        if ns < 1_000 { return "\(ns)ns" }
        if ns < 1_000_000 { return Self.fraction(ns, 1_000) + "µs" }
        if ns < 1_000_000_000 { return Self.fraction(ns, 1_000_000) + "ms" }
        var out = ""
        let hours = ns / 3_600_000_000_000
        var rem = ns % 3_600_000_000_000
        let minutes = rem / 60_000_000_000
        rem %= 60_000_000_000
        if hours > 0 { out += "\(hours)h" }
        if hours > 0 || minutes > 0 { out += "\(minutes)m" }
        out += Self.fraction(rem, 1_000_000_000) + "s"
        return out
    }

    private static func fraction(_ value: Int64, _ unit: Int64) -> String {
        let whole = value / unit
        var frac = value % unit
        guard frac != 0 else { return "\(whole)" }
        var digits = String(unit).count - 1
        while frac % 10 == 0 { frac /= 10; digits -= 1 }
        let fracText = String(frac)
        return "\(whole)." + String(repeating: "0", count: digits - fracText.count) + fracText
    }
}

extension GoDuration.ParseError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .empty: "empty duration"
        case .negative: "negative durations are not allowed"
        case .missingUnit(let n): "missing unit after \(n) (use ms, s, m or h)"
        case .unknownUnit(let u): "unknown unit \"\(u)\" (use ns, us, ms, s, m or h)"
        case .badNumber(let t): "not a number at \"\(t)\""
        case .overflow: "duration too large"
        }
    }
}
