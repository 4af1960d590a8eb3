/// The checks a config file's raw bytes must pass before they are parsed. The TOML parser underneath
/// is C++ and reads C strings: a NUL byte would silently end the file there, and a `\u0000` escape
/// would silently end the string it is in (`"docker\u0000.io"` became `docker`). Either could make a
/// config that lost its registries look valid, and apply would then remove files. So both are refused.
public enum ConfigBytes {
    /// Why `bytes` cannot be a config file, or nil.
    public static func problem(_ bytes: some Collection<UInt8>, path: String) -> ConfigProblem? {
        if bytes.count > ConfigLoader.maximumFileSize {
            return ConfigProblem(
                source: path, field: "", message: "is larger than \(ConfigLoader.maximumFileSize / 1024) KiB",
                fix: "a config file is a few KiB; check that this is the right file")
        }
        var line = 1
        for byte in bytes {
            if byte == 0 {
                return ConfigProblem(
                    source: path, field: "", message: "contains a NUL byte (a binary or corrupted file)",
                    fix: "write the config as plain UTF-8 text", line: line)
            }
            if byte == 0x0A { line += 1 }
        }
        if String(validating: bytes, as: UTF8.self) == nil {
            return ConfigProblem(
                source: path, field: "", message: "is not valid UTF-8", fix: "save the file as UTF-8 text",
                line: invalidUTF8Line(bytes))
        }
        return nil
    }

    /// A `\u0000` or `\U00000000` escape (with an odd run of backslashes before the `u`, so `\\u0000`
    /// is not one), anywhere in the text: the TOML parser would cut the string holding it.
    static func nulEscapeProblem(_ text: String, path: String) -> ConfigProblem? {
        let scalars = Array(text.unicodeScalars)
        var line = 1
        var i = 0
        while i < scalars.count {
            let c = scalars[i]
            if c == "\n" { line += 1 }
            if c == "\\" {
                var run = 0
                while i < scalars.count, scalars[i] == "\\" {
                    run += 1
                    i += 1
                }
                guard i < scalars.count, run % 2 == 1, scalars[i] == "u" || scalars[i] == "U" else { continue }
                let width = scalars[i] == "u" ? 4 : 8
                let digits = scalars[(i + 1)...].prefix(width)
                if digits.count == width, digits.allSatisfy({ $0 == "0" }) {
                    return ConfigProblem(
                        source: path, field: "", message: "a string contains a NUL character escape (\\u0000)",
                        fix: "remove it: no setting can hold a NUL character", line: line)
                }
                continue
            }
            i += 1
        }
        return nil
    }

    private static func invalidUTF8Line(_ bytes: some Collection<UInt8>) -> Int {
        var line = 1
        var start = bytes.startIndex
        for index in bytes.indices where bytes[index] == 0x0A {
            if String(validating: bytes[start...index], as: UTF8.self) == nil { return line }
            line += 1
            start = bytes.index(after: index)
        }
        return line
    }
}
