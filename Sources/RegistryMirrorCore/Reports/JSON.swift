/// JSON string encoding for log lines and `check --output json`.
public enum JSON {
    /// A JSON string literal. TOML basic strings and JSON strings escape alike (`\"`, `\\`, `\n`, `\t`,
    /// `\r`, `\b`, `\f`, `\uXXXX` for other control characters), so both use one encoder.
    public static func string(_ s: String) -> String { HostsFile.quote(s) }
}
