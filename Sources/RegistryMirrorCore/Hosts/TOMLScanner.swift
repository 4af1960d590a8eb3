import TOMLKit

/// The walk `TOMLGuard` makes of a text before toml++ sees it: containers and keys, their depth, and
/// (`.shallowKeys`) the parts to blank. Its lexing is in TOMLScanner+Lexing.swift.
extension TOMLGuard {
    struct Scanner {
        let s: [UInt8]
        let reading: Reading
        var i = 0
        var line = 1
        var lineStart = 0
        /// The depth of the table the last header opened (0: the root table).
        var tableDepth = 0
        /// The arrays and inline tables open around `i`, outside blanked parts.
        var open: [Open] = []
        /// Those opened inside a blanked part: only their kind matters (1 byte each, at any depth).
        var blankedOpen: [Container] = []
        var blanking = Blanking.none
        /// Byte ranges toml++ is given as blanks (`.shallowKeys`), in the order of the text.
        var blanked: [Range<Int>] = []
        /// The place a toml++ error points at, to find the key it quotes: the header on that line, or
        /// else the last key on that line starting before it, once passed, is `quoted`.
        let quoting: Mark?
        var quoted: (range: Range<Int>, isHeader: Bool)?

        init(_ s: [UInt8], reading: Reading, quoting: Mark? = nil) {
            self.s = s
            self.reading = reading
            self.quoting = quoting
        }

        /// The place toml++'s `line` and `column` (counted in Unicode scalars) name.
        static func mark(line: Int, column: Int, in s: [UInt8]) -> Mark {
            var mark = Mark(index: 0, line: 1, lineStart: 0)
            while mark.line < line, let newline = s[mark.index...].firstIndex(of: A.newline) {
                mark = Mark(index: newline + 1, line: mark.line + 1, lineStart: newline + 1)
            }
            var scalars = 1
            while mark.index < s.count && s[mark.index] != A.newline {
                if s[mark.index] & 0xC0 != 0x80 {
                    if scalars == column { break }
                    scalars += 1
                }
                mark.index += 1
            }
            return mark
        }

        var current: UInt8? { i < s.count ? s[i] : nil }
        var mark: Mark { Mark(index: i, line: line, lineStart: lineStart) }
        var isBlanking: Bool { if case .none = blanking { false } else { true } }
        var top: Container? { blankedOpen.last ?? open.last?.kind }

        func problem(_ message: String, at mark: Mark? = nil) -> Problem {
            let mark = mark ?? self.mark
            // Columns count Unicode scalars, as toml++ counts them.
            let column = s[mark.lineStart..<mark.index].reduce(1) { $1 & 0xC0 == 0x80 ? $0 : $0 + 1 }
            return Problem(line: mark.line, column: column, message: message)
        }

        /// The character at `i`, whole, for a message.
        func character() -> String {
            var end = i + 1
            while end < s.count && s[end] & 0xC0 == 0x80 { end += 1 }
            return String(decoding: s[i..<end], as: UTF8.self)
        }

        static func isBareKey(_ c: UInt8) -> Bool {
            (c >= A.upperA && c <= A.upperZ) || (c >= A.lowerA && c <= A.lowerZ) || A.isDigit(c) || c == A.underscore
                || c == A.dash
        }
        static func startsKey(_ c: UInt8) -> Bool { isBareKey(c) || c == A.quote || c == A.apostrophe }
        static func startsValue(_ c: UInt8) -> Bool {
            c == A.quote || c == A.apostrophe || c == A.openBracket || c == A.openBrace || c == A.plus || c == A.dash
                || c == A.dot || A.isDigit(c) || c == A.lowerT || c == A.lowerF || c == A.lowerI || c == A.lowerN
        }

        /// Whether `depth`, reached by the key or bracket at `start`, may be handed to toml++ as written.
        /// `.asWritten` refuses it when it is not; `.shallowKeys` starts `blank` instead.
        mutating func reach(_ depth: Int, at start: Mark, blank: Blanking) -> Outcome? {
            guard !isBlanking else { return nil }
            switch reading {
            case .asWritten:
                guard depth > TOMLGuard.maximumDepth else { return nil }
                return .problem(
                    problem(
                        "nested \(depth) levels deep (tables, arrays and inline tables); at most \(TOMLGuard.maximumDepth)",
                        at: start))
            case .shallowKeys:
                if depth > TOMLGuard.shallowDepth { blanking = blank }
                return nil
            }
        }

        mutating func run() -> Problem? {
            let outcome = statements()
            // A part still being blanked ends where the walk did (at the end of the text, a table).
            switch blanking {
            case .inside(_, let from), .statement(let from), .pair(_, let from, _), .table(let from): blanked.append(from..<i)
            case .none: break
            }
            // A NUL the walk came to first: it may have stopped at it.
            if let problem = nulProblem() { return problem }
            switch outcome {
            case .problem(let problem): return problem
            // toml++ is given none of the text around it, so it cannot report it: say it here.
            case .stop(let reason) where isBlanking: return problem(reason)
            default: return nil
            }
        }

        /// The statements of the text: nil at its end, or how the walk ended early.
        mutating func statements() -> Outcome? {
            if s.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3 }  // a byte order mark: one column
            while current != nil {
                // A statement: blank, comment, table header or key = value.
                skipBlanks()
                guard let c = current else { return nil }
                switch c {
                case A.newline, A.carriageReturn:
                    advance()
                case A.hash:
                    skipComment()
                case A.openBracket:
                    if case .table(let from) = blanking {
                        blanked.append(from..<i)
                        blanking = .none
                    }
                    let start = mark
                    advance()
                    let arrayOfTables = current == A.openBracket
                    if arrayOfTables { advance() }
                    skipBlanks()
                    guard let k = current, Scanner.startsKey(k) else {
                        return .problem(problem("a table header must start with a key, e.g. [registry] or [[registry.host]]"))
                    }
                    switch skipKey(isHeader: true) {
                    case .failure(let outcome): return outcome
                    case .success(let parts): tableDepth = parts + (arrayOfTables ? 1 : 0)
                    }
                    if let outcome = reach(tableDepth, at: start, blank: .table(from: start.index)) { return outcome }
                    // The rest of the header line (`]`, `]]`, a comment) is toml++'s to judge; only a
                    // comment is blanked.
                    while current == A.closeBracket { advance() }
                    skipBlanks()
                    if current == A.hash {
                        skipComment()
                    } else {
                        skip { $0 != A.newline }
                    }
                case _ where Scanner.startsKey(c):
                    let start = mark
                    let depth: Int
                    switch skipKey(isHeader: false) {
                    case .failure(let outcome): return outcome
                    case .success(let parts): depth = tableDepth + parts
                    }
                    if let outcome = reach(depth, at: start, blank: .statement(from: start.index)) { return outcome }
                    guard current == A.equals else { return .stop("expected = after a key") }
                    advance()
                    if let outcome = value(depth: depth) { return outcome }
                    if case .statement(let from) = blanking {
                        blanked.append(from..<i)
                        blanking = .none
                    }
                default:
                    return .problem(problem("expected a key, a [table] or a comment"))
                }
            }
            return nil
        }

        /// How a part of the text ended when it did not end well.
        enum Outcome: Error {
            /// A shape toml++ would abort on, or read differently.
            case problem(Problem)
            /// Something else that is wrong (what, for a message): toml++ reports it, at the same place,
            /// before reading further.
            case stop(String)
        }

        /// After `=`: a value must start here. Nil when one does.
        mutating func valueStarts() -> Outcome? {
            skipBlanks()
            guard let c = current, c != A.newline, c != A.carriageReturn, c != A.hash else { return .stop("expected a value") }
            guard Scanner.startsValue(c) else { return .problem(problem("expected a value, found \"\(character())\"")) }
            return nil
        }

        /// In the innermost inline table, after `{` or `,`: a key, `=` and the start of its value. Nil
        /// when all are there; `depth` is then the value's.
        mutating func inlineKey(depth: inout Int) -> Outcome? {
            skipBlanks()
            guard let k = current, Scanner.startsKey(k) else {
                return .problem(problem("expected a key in the inline table"))
            }
            let start = mark
            switch skipKey(isHeader: false) {
            case .failure(let outcome): return outcome
            case .success(let parts): depth = (open.last?.depth ?? 0) + parts
            }
            let blank: Blanking =
                if let comma = open.last?.comma {
                    .pair(level: open.count - 1, from: comma, commaAfter: false)
                } else {
                    .pair(level: open.count - 1, from: start.index, commaAfter: true)
                }
            if let outcome = reach(depth, at: start, blank: blank) { return outcome }
            guard current == A.equals else { return .stop("expected = after a key") }
            advance()
            return valueStarts()
        }

        /// One value at a value position, `depth` deep, and for an array or inline table all it holds,
        /// in a loop with a stack of its own. Nil when it ended well.
        mutating func value(depth: Int) -> Outcome? {
            if let outcome = valueStarts() { return outcome }
            var depth = depth  // of the value at `i`
            while true {
                // At the start of a value.
                let c = current!
                if c == A.quote || c == A.apostrophe {
                    if !skipString() { return .stop("a string does not end") }
                } else if c == A.openBracket || c == A.openBrace {
                    let kind = c == A.openBracket ? Container.array : .inlineTable
                    if isBlanking {
                        blankedOpen.append(kind)
                    } else {
                        if let outcome = reach(depth, at: mark, blank: .inside(level: open.count, from: i + 1)) { return outcome }
                        open.append(Open(kind: kind, depth: depth))
                    }
                    advance()
                    if kind == .array {
                        skipSpace()
                        guard let e = current else { return .stop("an array does not end") }
                        if e != A.closeBracket {
                            guard Scanner.startsValue(e) else { return .problem(problem("expected a value or ], found \"\(character())\"")) }
                            depth += 1
                            continue
                        }
                    } else {
                        skipBlanks()
                        if current != A.closeBrace {
                            if let outcome = inlineKey(depth: &depth) { return outcome }
                            continue
                        }
                    }
                    // `[]` or `{}`: closed below.
                } else {
                    scalar()
                }
                // A value has ended: what follows it in the array or inline table around it, which may
                // close that one too, and so on outwards.
                while true {
                    guard let kind = top else { return nil }
                    if kind == .array {
                        skipSpace()
                        if current == A.comma {
                            advance()
                            skipSpace()
                            guard let e = current else { return .stop("an array does not end") }
                            if e != A.closeBracket {
                                guard Scanner.startsValue(e) else {
                                    return .problem(problem("expected a value or ], found \"\(character())\""))
                                }
                                depth = (open.last?.depth ?? 0) + 1
                                break
                            }
                        }
                        guard current == A.closeBracket else { return .stop("expected , or ] after a value in an array") }
                    } else {
                        skipBlanks()
                        var commaBlanked = false
                        if case .pair(let level, let from, let commaAfter) = blanking, blankedOpen.isEmpty, level == open.count - 1 {
                            commaBlanked = commaAfter && current == A.comma
                            blanked.append(from..<(commaBlanked ? i + 1 : i))
                            blanking = .none
                        }
                        if current == A.comma {
                            if !isBlanking { open[open.count - 1].comma = commaBlanked ? nil : i }
                            advance()
                            if let outcome = inlineKey(depth: &depth) { return outcome }
                            break
                        }
                        guard current == A.closeBrace else { return .stop("expected , or } after a value in an inline table") }
                    }
                    close()
                    advance()
                }
            }
        }

        /// At the closing bracket of the innermost array or inline table.
        mutating func close() {
            if !blankedOpen.isEmpty {
                blankedOpen.removeLast()
                return
            }
            if case .inside(let level, let from) = blanking, level == open.count - 1 {
                blanked.append(from..<i)
                blanking = .none
            }
            open.removeLast()
        }

        /// A number, date, boolean, inf or nan: up to the next terminator. A date and a time may be
        /// separated by a space (1979-05-27 07:32:00).
        mutating func scalar() {
            func isTerminator(_ t: UInt8) -> Bool {
                t == A.space || t == A.tab || t == A.newline || t == A.carriageReturn || t == A.comma || t == A.closeBracket
                    || t == A.closeBrace || t == A.hash
            }
            let start = i
            skip { !isTerminator($0) }
            if i - start == 10, s[start..<i].filter({ $0 == A.dash }).count == 2, current == A.space, i + 1 < s.count,
                A.isDigit(s[i + 1])
            {
                i += 1
                skip { !isTerminator($0) }
            }
        }

        /// A NUL character toml++ would be given, up to where the walk ended (there included): it would
        /// stop reading there.
        func nulProblem() -> Problem? {
            let end = min(i + 1, s.count)
            guard s[..<end].contains(0) else { return nil }
            var next = 0  // the first blanked range not yet passed
            var line = 1
            var lineStart = 0
            for index in 0..<end {
                while next < blanked.count && blanked[next].upperBound <= index { next += 1 }
                let byte = s[index]
                if byte == 0 && !(next < blanked.count && blanked[next].lowerBound <= index) {
                    return problem(
                        reading == .asWritten
                            ? "contains a NUL character, where the TOML parser would stop reading"
                            : "contains a NUL character outside a comment",
                        at: Mark(index: index, line: line, lineStart: lineStart))
                }
                if byte == A.newline {
                    line += 1
                    lineStart = index + 1
                }
            }
            return nil
        }

        /// The text for toml++ (`.shallowKeys`): every blanked range a blank of the same lines and
        /// columns (a space per character, line breaks kept).
        func copy() -> [UInt8] {
            var out: [UInt8] = []
            out.reserveCapacity(s.count)
            var from = 0
            for range in blanked where range.upperBound > from {
                let lower = max(range.lowerBound, from)
                out += s[from..<lower]
                for index in lower..<range.upperBound {
                    let byte = s[index]
                    if byte == A.newline || (byte == A.carriageReturn && index + 1 < s.count && s[index + 1] == A.newline) {
                        out.append(byte)
                    } else if byte & 0xC0 != 0x80 {
                        out.append(A.space)
                    }
                }
                from = range.upperBound
            }
            out += s[from...]
            return out
        }
    }
}
