import TOMLKit

/// Parsing TOML without letting malformed text abort the process. The toml++ parser inside TOMLKit
/// 0.6.0 checks some of its expectations with assertions, which stay on in release builds: a table
/// header whose `[` is not followed by a key (`[{a}]`, `[=`, `[` at the end of a line) or a value
/// position holding a terminator (`x = [}]`) called abort(), killing check with 134 and a watch on
/// SIGHUP. `TOMLGuard` walks the text's structure first (strings, comments, arrays, inline tables,
/// keys) and refuses those shapes with a line and column; only text that passes reaches toml++.
/// It refuses only what is invalid TOML anyway. Every TOML text the agent reads goes through `parse`.
public enum TOMLGuard {
    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public var line: Int
        public var column: Int
        public var message: String
        public var description: String { "line \(line), column \(column): \(message)" }
    }

    /// The parsed table; a `Problem` from the structural check, or toml++'s own parse error.
    public static func parse(_ text: String) throws -> TOMLTable {
        if let problem = problem(text) { throw problem }
        return try TOMLTable(string: text)
    }

    /// The first shape toml++ would not survive, or nil. Stops quietly at anything else that is wrong:
    /// toml++ reports that itself, at the same place, before reading further.
    public static func problem(_ text: String) -> Problem? {
        var scanner = Scanner(Array(text.unicodeScalars))
        return scanner.run()
    }

    private enum Container { case array, inlineTable }

    private struct Scanner {
        let s: [Unicode.Scalar]
        var i = 0
        var line = 1
        var lineStart = 0
        var stack: [Container] = []

        init(_ s: [Unicode.Scalar]) { self.s = s }

        var current: Unicode.Scalar? { i < s.count ? s[i] : nil }

        func problem(_ message: String) -> Problem { Problem(line: line, column: i - lineStart + 1, message: message) }

        static func isBareKey(_ c: Unicode.Scalar) -> Bool {
            (c >= "A" && c <= "Z") || (c >= "a" && c <= "z") || (c >= "0" && c <= "9") || c == "_" || c == "-"
        }
        static func startsKey(_ c: Unicode.Scalar) -> Bool { isBareKey(c) || c == "\"" || c == "'" }
        static func startsValue(_ c: Unicode.Scalar) -> Bool {
            c == "\"" || c == "'" || c == "[" || c == "{" || c == "+" || c == "-" || c == "." || (c >= "0" && c <= "9")
                || c == "t" || c == "f" || c == "i" || c == "n"
        }

        mutating func advance() {
            if current == "\n" {
                line += 1
                lineStart = i + 1
            }
            i += 1
        }

        mutating func skipBlanks() { while current == " " || current == "\t" { advance() } }

        /// Blanks, line breaks and comments (between array elements).
        mutating func skipSpace() {
            while let c = current {
                if c == " " || c == "\t" || c == "\n" || c == "\r" {
                    advance()
                } else if c == "#" {
                    skipComment()
                } else {
                    return
                }
            }
        }

        mutating func skipComment() { while let c = current, c != "\n" { _ = c; advance() } }

        /// A string at `i` (any of the four kinds). False when it does not end properly.
        mutating func skipString() -> Bool {
            let quote = current!
            let triple = i + 2 < s.count && s[i + 1] == quote && s[i + 2] == quote
            if triple {
                for _ in 0..<3 { advance() }
                while let c = current {
                    if quote == "\"" && c == "\\" {
                        advance()
                        advance()
                        continue
                    }
                    if c == quote && i + 2 < s.count && s[i + 1] == quote && s[i + 2] == quote {
                        for _ in 0..<3 { advance() }
                        // Up to two more quotes belong to the content ("""a"""").
                        var extra = 0
                        while extra < 2 && current == quote {
                            advance()
                            extra += 1
                        }
                        return true
                    }
                    advance()
                }
                return false
            }
            advance()
            while let c = current, c != "\n" {
                if quote == "\"" && c == "\\" {
                    advance()
                    advance()
                    continue
                }
                advance()
                if c == quote { return true }
            }
            return false
        }

        /// A dotted key at `i`. Nil when it ended well; `.stop` at a malformation toml++ reports itself.
        mutating func skipKey() -> Outcome? {
            while true {
                guard let c = current, Scanner.startsKey(c) else { return .problem(problem("expected a key")) }
                if c == "\"" || c == "'" {
                    if !skipString() { return .stop }
                } else {
                    while let c = current, Scanner.isBareKey(c) { advance() }
                }
                skipBlanks()
                guard current == "." else { return nil }
                advance()
                skipBlanks()
            }
        }

        mutating func run() -> Problem? {
            if current == "\u{FEFF}" { advance() }
            while current != nil {
                // A statement: blank, comment, table header or key = value.
                skipBlanks()
                guard let c = current else { return nil }
                switch c {
                case "\n", "\r":
                    advance()
                case "#":
                    skipComment()
                case "[":
                    advance()
                    if current == "[" { advance() }
                    skipBlanks()
                    guard let k = current, Scanner.startsKey(k) else {
                        return problem("a table header must start with a key, e.g. [registry] or [[registry.host]]")
                    }
                    if let outcome = skipKey() { return outcome.problem }
                    // The rest of the header line (`]`, `]]`, a comment) is toml++'s to judge.
                    skipComment()
                case _ where Scanner.startsKey(c):
                    if let outcome = skipKey() { return outcome.problem }
                    guard current == "=" else { return nil }
                    advance()
                    if let outcome = value() { return outcome.problem }
                default:
                    return problem("expected a key, a [table] or a comment")
                }
            }
            return nil
        }

        /// How a part of the text ended when it did not end well.
        enum Outcome {
            /// A shape toml++ would abort on.
            case problem(Problem)
            /// Something else that is wrong: toml++ reports it, at the same place, before reading further.
            case stop
            var problem: Problem? { if case .problem(let p) = self { p } else { nil } }
        }

        /// One value at a value position and, for arrays and inline tables, all they hold. Nil when
        /// it ended well; `.stop` at a malformation toml++ reports itself.
        mutating func value() -> Outcome? {
            skipBlanks()
            guard let c = current, c != "\n", c != "\r", c != "#" else { return .stop }
            guard Scanner.startsValue(c) else { return .problem(problem("expected a value, found \"\(c)\"")) }
            switch c {
            case "\"", "'":
                return skipString() ? nil : .stop
            case "[":
                advance()
                while true {
                    skipSpace()
                    guard let e = current else { return .stop }
                    if e == "]" {
                        advance()
                        return nil
                    }
                    guard Scanner.startsValue(e) else { return .problem(problem("expected a value or ], found \"\(e)\"")) }
                    if let outcome = value() { return outcome }
                    skipSpace()
                    if current == "," {
                        advance()
                    } else if current == "]" {
                        advance()
                        return nil
                    } else {
                        return .stop
                    }
                }
            case "{":
                advance()
                skipBlanks()
                if current == "}" {
                    advance()
                    return nil
                }
                while true {
                    skipBlanks()
                    guard let k = current, Scanner.startsKey(k) else {
                        return .problem(problem("expected a key in the inline table"))
                    }
                    if let outcome = skipKey() { return outcome }
                    guard current == "=" else { return .stop }
                    advance()
                    if let outcome = value() { return outcome }
                    skipBlanks()
                    if current == "," {
                        advance()
                    } else if current == "}" {
                        advance()
                        return nil
                    } else {
                        return .stop
                    }
                }
            default:
                // A number, date, boolean, inf or nan: up to the next terminator. A date and a time
                // may be separated by a space (1979-05-27 07:32:00).
                func isTerminator(_ t: Unicode.Scalar) -> Bool {
                    t == " " || t == "\t" || t == "\n" || t == "\r" || t == "," || t == "]" || t == "}" || t == "#"
                }
                let start = i
                while let t = current, !isTerminator(t) { advance() }
                let token = String(String.UnicodeScalarView(s[start..<i]))
                if token.count == 10, token.filter({ $0 == "-" }).count == 2, current == " ", i + 1 < s.count,
                    s[i + 1] >= "0" && s[i + 1] <= "9"
                {
                    advance()
                    while let t = current, !isTerminator(t) { advance() }
                }
                return nil
            }
        }
    }
}
