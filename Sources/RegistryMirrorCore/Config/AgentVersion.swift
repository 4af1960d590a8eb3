/// The version `--version` prints and probes send in their User-Agent.
public enum AgentVersion {
    public static let current = "0.1.0"
}
