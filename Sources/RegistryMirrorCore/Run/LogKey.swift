/// Metadata keys of our log lines; the journald handler turns them into upper-case journal fields.
public enum LogKey {
    public static let upstream = "registry_upstream"
    public static let host = "registry_host"
    public static let result = "probe_result"
    public static let attempts = "probe_attempts"
    public static let reason = "probe_reason"
    public static let file = "hosts_file"
    /// The Service name a host was found under (`[discovery]`).
    public static let service = "registry_service"
}
