import Foundation

/// results.json and results.md.
struct Report: Codable {
    var results: [BackendResult]
    var seed: UInt64
    var profile: Profile
    var totalSeconds: Double
    var command: String

    func write(to directory: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: URL(fileURLWithPath: directory + "/results.json"))
        try markdown().write(toFile: directory + "/results.md", atomically: true, encoding: .utf8)
    }

    func markdown() -> String {
        func num(_ value: Double?) -> String {
            guard let value else { return "–" }
            return value >= 100 ? String(Int(value.rounded())) : String(format: "%.1f", value)
        }
        var out = "## lease-chaos: profile \(profile.rawValue), seed \(seed), \(String(format: "%.0f", totalSeconds)) s\n\n"
        out += "| Backend | Fault | Injected | Failovers | Safety violations | Max leaderless gap (ms) | p50 (ms) | p99 (ms) |\n"
        out += "|---|---|---:|---:|---:|---:|---:|---:|\n"
        for result in results {
            for fault in result.faults {
                out += "| \(result.backend) | \(fault.fault) | \(fault.injected) | \(fault.failovers) | \(fault.violations) | \(num(fault.maxGapMillis)) | \(num(fault.p50GapMillis)) | \(num(fault.p99GapMillis)) |"
                if fault.unrecovered > 0 { out += " \(fault.unrecovered) without recovery" }
                out += "\n"
            }
            let injected = result.faults.reduce(0) { $0 + $1.injected }
            out += "| **\(result.backend)** | **all** | **\(injected)** | **\(result.inducedFailovers)** | **\(result.violations.count)** | | | |\n"
        }
        out += "\n| Backend | Lease / renew / retry | Run (s) | Fenced actions | Terms | Failovers (induced + spontaneous) | Refused by check() | Landed late | Final record | Violations |\n"
        out += "|---|---|---:|---:|---:|---:|---:|---:|---|---:|\n"
        for r in results {
            let final = r.finalRecord.decoded
                ? "decodes; holder \(r.finalRecord.holder.map { $0.isEmpty ? "none (released)" : $0 } ?? "?"), leaseTransitions \(r.finalRecord.leaseTransitions.map(String.init) ?? "?")"
                : "UNREADABLE: \(r.finalRecord.error ?? "?")"
            out += "| \(r.backend) | \(r.timing.leaseMillis) / \(r.timing.renewMillis) / \(r.timing.retryMillis) ms | \(String(format: "%.0f", r.durationSeconds)) | \(r.actions) | \(r.terms) | \(r.failovers) (\(r.inducedFailovers) + \(r.spontaneousFailovers)) | \(r.refusedActions) | \(r.lateLandedActions) | \(final) | \(r.violations.count) |\n"
        }
        let notes = results.flatMap { r in r.notes.map { "- \(r.backend): \($0)" } }
        if !notes.isEmpty { out += "\nNotes:\n" + notes.joined(separator: "\n") + "\n" }
        return out
    }

    static func summary(_ r: BackendResult) -> String {
        let injected = r.faults.reduce(0) { $0 + $1.injected }
        return "[\(r.backend)] \(r.passed ? "SAFE" : "VIOLATIONS: \(r.violations.count)"): \(injected) faults, \(r.failovers) failovers (\(r.inducedFailovers) induced), \(r.actions) fenced actions, \(r.refusedActions) refused by check(), \(r.lateLandedActions) landed late, \(String(format: "%.0f", r.durationSeconds)) s\n"
    }
}
