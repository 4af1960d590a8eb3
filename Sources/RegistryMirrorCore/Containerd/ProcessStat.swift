/// /proc/PID/stat as the agent reads it (containerd's start time, docs/design.md §6).
public enum ProcessStat {
    /// Field 22, the start time in clock ticks since boot. The command name (field 2) may hold
    /// spaces and parentheses: the fields that follow start after the last ')'.
    public static func startTicks(_ text: String) -> Double? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After ')': field 3 (state) is index 0, so field 22 is index 19.
        guard fields.count > 19 else { return nil }
        return Double(fields[19])
    }
}
