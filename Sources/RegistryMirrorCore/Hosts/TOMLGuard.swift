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

    enum Container { case array, inlineTable }

    /// An array or inline table the walk is inside, outside blanked parts.
    struct Open {
        var kind: Container
        var depth: Int
        /// In an inline table: the comma before the current `key = value`, nil for the first.
        var comma: Int?
    }

    /// Which part of the text a `.shallowKeys` walk is blanking, if any.
    enum Blanking {
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
    struct Mark {
        var index: Int
        var line: Int
        var lineStart: Int
    }

}

/// The ASCII bytes the walk looks at.
enum A {
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
