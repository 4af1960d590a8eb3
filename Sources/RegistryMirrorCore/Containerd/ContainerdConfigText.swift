import TOMLKit

/// containerd's config.toml read as containerd reads it, for the keys the agent looks up in it
/// (`version`, the CRI registry's `config_path`; any key at most `TOMLGuard.shallowDepth` deep).
///
/// containerd reads the file with go-toml: v1 in 1.6 and 1.7 (`toml.LoadFile`), v2 in 2.x. Neither
/// bounds the file's size or how deep arrays and inline tables nest (go-toml v2 bounds them at 10,000
/// levels only from pelletier/go-toml#1092, newer than the containerd releases this agent knows), and
/// go-toml v1 skips a comment whatever it holds, a NUL byte included. toml++ under TOMLKit stops at 256 nested values and
/// reads C strings: such a file reached it as unreadable, or cut at the NUL (a NUL in a comment before
/// `config_path` made check say containerd sets none). So toml++ is given a copy with the same meaning
/// for those keys: comments blanked, anything nested deeper blanked (`TOMLGuard.Reading.shallowKeys`).
/// go-toml v2 refuses a control character in a comment, so containerd 2 does not start with a file that
/// has one; this reading does not tell.
public enum ContainerdConfigText {
    /// The largest containerd config read, in bytes: 16 MiB. containerd's own default config is about
    /// 10 KiB and a large node's some tens; a bigger file is not a config someone wrote (a log,
    /// a binary). The bound keeps what check spends on it (the bytes, the text, toml++'s copy and its
    /// document) bounded on every node: 16 MiB of tables took 1.3 s and 160 MB (release build).
    public static let maximumFileSize = 16 << 20

    /// The parsed table, or the first problem: malformed TOML, a NUL character outside a comment.
    public static func parse(_ text: String) throws(TOMLGuard.Problem) -> TOMLTable {
        try TOMLGuard.parse(text, reading: .shallowKeys)
    }
}
