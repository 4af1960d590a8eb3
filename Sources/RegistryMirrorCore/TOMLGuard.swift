import TOMLKit

/// Parsing TOML without letting malformed or hostile text abort the process, or reach toml++ in a form it
/// reads differently. The toml++ parser inside TOMLKit 0.6.0 (toml++ 3.4.0):
/// - checks some of its expectations with assertions, which stay on in release builds: a table header
///   whose `[` is not followed by a key (`[{a}]`, `[=`, `[` at the end of a line) or a value position
///   holding a terminator (`x = [}]`) called abort(), killing check with 134 and a watch on SIGHUP;
/// - recurses once per level of tables and arrays when it finishes or frees a document, with no bound of
///   its own for tables: a dotted key of 100,000 parts (`a.a.a…`, 200 KB) overflowed the stack (139);
/// - reads C strings: a NUL character silently ends the text it sees.
///
/// `TOMLGuard` walks the text's structure first (strings, comments, arrays, inline tables, keys) and
/// refuses those shapes with a line and column; only text that passes reaches toml++. The walk keeps its
/// own stack of open arrays and inline tables, so no depth of nesting can overflow the thread's (it
/// recursed once, and 70,000 `[` killed every subcommand with 139). It refuses only what is invalid TOML
/// anyway, or what toml++ cannot read as written. Every TOML text the agent reads goes through `parse`.
public enum TOMLGuard {
    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public var line: Int
        public var column: Int
        public var message: String
        public var description: String { "line \(line), column \(column): \(message)" }
    }

    /// How deep tables, arrays and inline tables may nest in a text read `.asWritten`. Each part of a
    /// table header (one more for `[[...]]`), each part of a key and each array or inline table around a
    /// value is a level: in `[a]` `b.c = [[1]]` the inner array is 4 deep. The agent's config and the
    /// hosts.toml files it writes nest 4 levels at most. 1024 keeps toml++'s recursion far from any
    /// thread's stack (a debug build's overflowed between 20,000 and 40,000) and is well above toml++'s
    /// own limit of 256 nested arrays and inline tables (TOML_MAX_NESTED_VALUES), which refuses the
    /// depths between with its own message. Past it the text is refused where it first goes deeper.
    public static let maximumDepth = 1024

    /// How deep a `.shallowKeys` reading hands the text to toml++ as written; anything deeper reaches
    /// it blanked. 64 is far deeper than any key containerd defines (`plugins.<id>.registry.config_path`
    /// is 4) and far below toml++'s limit of 256.
    public static let shallowDepth = 64

    /// What toml++ is given.
    public enum Reading: Sendable {
        /// The text as written: the agent's own config and hosts.toml files. A NUL character, and nesting
        /// deeper than `maximumDepth`, are refused.
        case asWritten
        /// A copy with the same meaning for every key at most `shallowDepth` deep, for a reader that looks
        /// up only such keys in a file others write (containerd's config, `ContainerdConfigText`): nesting
        /// of any depth and any byte in a comment are read, as containerd's parsers read them. Comments
        /// are blanked; so is anything deeper than `shallowDepth`: the inside of an array or inline table
        /// (`[` and `]` stay, an empty one), a `key = value` whose key is, or a table whose header is, up
        /// to the next header. Blanks keep every line and column where it was. The walk still checks the
        /// structure of what it blanks; an error only toml++ would see there (a bad number or escape, a key
        /// defined twice) goes unnoticed. A NUL character outside a comment is refused.
        case shallowKeys
    }

    /// The parsed table, or the first problem: one from the walk, or toml++'s own parse error (a key it
    /// quotes is given as written, see `problem(from:in:)`).
    public static func parse(_ text: String, reading: Reading = .asWritten) throws(Problem) -> TOMLTable {
        var scanner = Scanner(Array(text.utf8), reading: reading)
        if let problem = scanner.run() { throw problem }
        let handed = reading == .asWritten ? text : String(decoding: scanner.copy(), as: UTF8.self)
        do {
            return try TOMLTable(string: handed)
        } catch let error as TOMLParseError {
            throw problem(from: error, in: handed)
        } catch {
            throw Problem(line: 1, column: 1, message: "\(error)")
        }
    }

    /// The first thing in `text` (read `.asWritten`) that toml++ would not survive or would read
    /// differently, or nil. Stops quietly at anything else that is wrong: toml++ reports that itself, at
    /// the same place, before reading further.
    public static func problem(_ text: String) -> Problem? {
        var scanner = Scanner(Array(text.utf8), reading: .asWritten)
        return scanner.run()
    }

    /// toml++'s parse error, with the key it quotes as written in `text`. toml++ quotes the key it
    /// refuses (`cannot redefine existing table '...'`) from a buffer it fills while reading, and a quoted
    /// part came out garbled there: `plugins."ioio.containerd.grpc.v1.cri".registry`, the two characters
    /// after an opening quote twice. The key is the table header on the error's line, or else the last key
    /// on that line that starts before the error's column (toml++ points after the key of a `key = value`).
    static func problem(from error: TOMLParseError, in text: String) -> Problem {
        let line = error.source.begin.line
        let column = error.source.begin.column
        var message = error.description
        if let phrase = message.range(of: "cannot redefine existing ") ?? message.range(of: "cannot insert "),
            let open = message[phrase.upperBound...].firstIndex(of: "'"), let close = message.lastIndex(of: "'"),
            open < close
        {
            let bytes = Array(text.utf8)
            var scanner = Scanner(bytes, reading: .asWritten, quoting: Scanner.mark(line: line, column: column, in: bytes))
            _ = scanner.run()
            if let key = scanner.quoted?.range {
                message.replaceSubrange(message.index(after: open)..<close, with: String(decoding: bytes[key], as: UTF8.self))
            }
        }
        return Problem(line: line, column: column, message: message)
    }

    private enum Container { case array, inlineTable }

    /// An array or inline table the walk is inside, outside blanked parts.
    private struct Open {
        var kind: Container
        var depth: Int
        /// In an inline table: the comma before the current `key = value`, nil for the first.
        var comma: Int?
    }

    /// Which part of the text a `.shallowKeys` walk is blanking, if any.
    private enum Blanking {
        case none
        /// The inside of the array or inline table `open[level]`, from `from` to its closing bracket.
        case inside(level: Int, from: Int)
        /// A `key = value` from its key to the end of the value.
        case statement(from: Int)
        /// A `key = value` in the inline table `open[level]`, with the comma before it (`from` is that
        /// comma), or else the one after it if there is one, so that no comma is left over.
        case pair(level: Int, from: Int, commaAfter: Bool)
        /// A table from its header to the next header.
        case table(from: Int)
    }

    /// A place in the text, with what is needed to say its line and column later.
    private struct Mark {
        var index: Int
        var line: Int
        var lineStart: Int
    }

    private struct Scanner {
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

        mutating func advance() {
            if current == A.newline {
                line += 1
                lineStart = i + 1
            }
            i += 1
        }

        /// Past the bytes from `i` on that `belongs` takes, none of them a line break.
        mutating func skip(while belongs: (UInt8) -> Bool) {
            while i < s.count && belongs(s[i]) { i += 1 }
        }

        mutating func skipBlanks() { skip { $0 == A.space || $0 == A.tab } }

        /// Blanks, line breaks and comments (between array elements).
        mutating func skipSpace() {
            while let c = current {
                if c == A.space || c == A.tab || c == A.newline || c == A.carriageReturn {
                    advance()
                } else if c == A.hash {
                    skipComment()
                } else {
                    return
                }
            }
        }

        mutating func skipComment() {
            let start = i
            i = s[i...].firstIndex(of: A.newline) ?? s.count
            if reading == .shallowKeys && !isBlanking && start < i { blanked.append(start..<i) }
        }

        /// A string at `i` (any of the four kinds). False when it does not end properly.
        mutating func skipString() -> Bool {
            let quote = current!
            let triple = i + 2 < s.count && s[i + 1] == quote && s[i + 2] == quote
            if triple {
                for _ in 0..<3 { advance() }
                while let c = current {
                    if quote == A.quote && c == A.backslash {
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
            while let c = current, c != A.newline {
                if quote == A.quote && c == A.backslash {
                    advance()
                    advance()
                    continue
                }
                advance()
                if c == quote { return true }
            }
            return false
        }

        /// A dotted key at `i`: how many parts it has, or how it ended badly (`.stop`: a malformation
        /// toml++ reports itself).
        mutating func skipKey(isHeader: Bool) -> Result<Int, Outcome> {
            let start = mark
            var end = i
            var parts = 0
            while true {
                guard let c = current, Scanner.startsKey(c) else { return .failure(.problem(problem("expected a key"))) }
                if c == A.quote || c == A.apostrophe {
                    if !skipString() { return .failure(.stop("a quoted key does not end on its line")) }
                } else {
                    skip(while: Scanner.isBareKey)
                }
                end = i
                parts += 1
                skipBlanks()
                guard current == A.dot else { break }
                advance()
                skipBlanks()
            }
            if let quoting, start.line == quoting.line, quoted?.isHeader != true, isHeader || start.index < quoting.index {
                quoted = (start.index..<end, isHeader)
            }
            return .success(parts)
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

/// The ASCII bytes the walk looks at.
private enum A {
    static let tab = UInt8(ascii: "\t")
    static let newline = UInt8(ascii: "\n")
    static let carriageReturn = UInt8(ascii: "\r")
    static let space = UInt8(ascii: " ")
    static let quote = UInt8(ascii: "\"")
    static let apostrophe = UInt8(ascii: "'")
    static let backslash = UInt8(ascii: "\\")
    static let hash = UInt8(ascii: "#")
    static let openBracket = UInt8(ascii: "[")
    static let closeBracket = UInt8(ascii: "]")
    static let openBrace = UInt8(ascii: "{")
    static let closeBrace = UInt8(ascii: "}")
    static let equals = UInt8(ascii: "=")
    static let comma = UInt8(ascii: ",")
    static let dot = UInt8(ascii: ".")
    static let dash = UInt8(ascii: "-")
    static let plus = UInt8(ascii: "+")
    static let underscore = UInt8(ascii: "_")
    static let upperA = UInt8(ascii: "A")
    static let upperZ = UInt8(ascii: "Z")
    static let lowerA = UInt8(ascii: "a")
    static let lowerZ = UInt8(ascii: "z")
    static let lowerT = UInt8(ascii: "t")
    static let lowerF = UInt8(ascii: "f")
    static let lowerI = UInt8(ascii: "i")
    static let lowerN = UInt8(ascii: "n")
    static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
}
