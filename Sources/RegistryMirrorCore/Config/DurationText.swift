extension Duration {
    /// The duration in fractional seconds (metrics, JSON latencies).
    var fractionalSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }

    /// `3.0ms`, `1134ms`: how log lines and `plan` show a latency.
    public var millisecondsText: String {
        let ms = fractionalSeconds * 1000
        return ms < 10 ? "\((ms * 10).rounded() / 10)ms" : "\(Int(ms.rounded()))ms"
    }
}
