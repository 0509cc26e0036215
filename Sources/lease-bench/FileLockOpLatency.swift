import FileLock
import Foundation
import LeaderElection

// Issue-6 scenario 7 (op latency) on flock: the etcd and Kubernetes rows time their locks' single calls; this row
// does the same for FileLock, whose "store" is the local file system.

/// `filelock.op.latency`: sequential `FileLock.get()` and `update(expecting:)` calls on one lock, timed one by one.
let fileOpLatencyScenario = Scenario(id: "filelock.op.latency", title: "flock (FileLock) get() and update(expecting:) latency") { context in
    let directory = try makeLockDirectory("lease-bench-flock-op")
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let lock = try FileLock(directory: directory, name: "op-latency", identity: "bench-op")
    var record = sampleRecord(identity: "bench-op")
    var version = try await lock.create(record)
    let options = context.options

    /// One round: `warmup` untimed calls, then `samples` timed ones; percentiles in µs and client CPU per call.
    func round(samples: Int, _ call: () async throws -> Void) async throws -> (Percentiles, Double) {
        for _ in 0..<options.warmupCalls { try await call() }
        var latencies: [Double] = []
        latencies.reserveCapacity(samples)
        let cpu0 = processCPUNanos()
        for _ in 0..<samples {
            let t0 = monotonicNanos()
            try await call()
            latencies.append(Double(monotonicNanos() - t0) / 1000)
        }
        return (Percentiles(samples: latencies), Double(processCPUNanos() - cpu0) / 1000 / Double(samples))
    }

    var gets: [(Percentiles, Double)] = []
    var updates: [(Percentiles, Double)] = []
    for _ in 1...options.rounds {
        gets.append(try await round(samples: options.latencySamples) {
            guard try await lock.get()?.version == version else { throw BenchError("get() returned another version") }
        })
        updates.append(try await round(samples: options.renewalSamples) {
            record.renewTime = MicroTime.now()
            version = try await lock.update(record, expecting: version)
        })
    }

    func metrics(_ name: String, _ rounds: [(Percentiles, Double)], samples: Int) -> [FloorMetric] {
        let p = Percentiles.median(of: rounds.map(\.0))
        let p50s = rounds.map(\.0.p50)
        return [
            FloorMetric(name: "\(name) latency p50 / p90 / p99 / max (median over \(rounds.count) rounds × \(samples) calls)",
                        value: p.p50, unit: "µs",
                        text: "\(formatMicros(p.p50)) / \(formatMicros(p.p90)) / \(formatMicros(p.p99)) / \(formatMicros(p.max))"),
            FloorMetric(name: "\(name) p50 spread over rounds", value: p50s.max()! - p50s.min()!, unit: "µs",
                        text: "\(formatMicros(p50s.min()!))–\(formatMicros(p50s.max()!))"),
            FloorMetric(name: "\(name) CPU of this process per call", value: median(rounds.map(\.1)), unit: "µs"),
        ]
    }
    return ScenarioMeasurement(
        operation: "FileLock.get() (shared flock on the companion file + read + decode + liveness probe) and "
            + "FileLock.update(record with renewTime = now, expecting: the previous version) (exclusive flock + temp file "
            + "+ fsync + rename + directory fsync); sequential, \(options.warmupCalls) warm-up calls per round; data directory on "
            + fileSystemType(of: directory),
        floor: FloorSummary(
            backend: BackendKind.file.label,
            setup: "1 lock, \(options.rounds) rounds",
            metrics: metrics("get()", gets, samples: options.latencySamples)
                + metrics("update(expecting:)", updates, samples: options.renewalSamples),
            details: ["getP50Micros": gets.map(\.0.p50), "updateP50Micros": updates.map(\.0.p50)]))
}
