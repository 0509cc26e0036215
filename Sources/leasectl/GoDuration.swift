import ArgumentParser
import LeaderElection

/// A command-line duration in Go's notation (`15s`, `1m30s`, `500ms`), parsed with `parseDuration`.
struct GoDuration: ExpressibleByArgument, Sendable, CustomStringConvertible {
    /// The parsed duration.
    var duration: Duration

    init(_ duration: Duration) { self.duration = duration }

    init?(argument: String) {
        guard let duration = parseDuration(argument) else { return nil }
        self.duration = duration
    }

    var description: String { formatDuration(duration) }
    var defaultValueDescription: String { formatDuration(duration) }
}
