import TOMLKit

/// The scanner's lexing: moving on, skipping blanks, comments, strings and keys.
extension TOMLGuard.Scanner {
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
            guard let c = current, TOMLGuard.Scanner.startsKey(c) else { return .failure(.problem(problem("expected a key"))) }
            if c == A.quote || c == A.apostrophe {
                if !skipString() { return .failure(.stop("a quoted key does not end on its line")) }
            } else {
                skip(while: TOMLGuard.Scanner.isBareKey)
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
}
