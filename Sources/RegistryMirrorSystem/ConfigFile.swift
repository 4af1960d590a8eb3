import Glibc
import RegistryMirrorCore

/// Reading the config file from disk; parsing and validation are `ConfigLoader`'s.
public enum ConfigFile {
    public enum ReadError: Error, CustomStringConvertible {
        case missing(String)
        case unreadable(String, String)

        public var description: String {
            switch self {
            case .missing(let path): "\(path): no such file"
            case .unreadable(let path, let reason): "\(path): cannot read: \(reason)"
            }
        }
    }

    /// The file's text; `.missing` when it does not exist.
    public static func read(_ path: String) throws(ReadError) -> String {
        guard let bytes = readWholeFile(path, limit: 4 << 20) else {
            if errno == ENOENT { throw .missing(path) }
            throw .unreadable(path, String(cString: strerror(errno)))
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    public static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }
}
