import CoreMetrics

/// The elector's metrics, named as client-go / controller-runtime name theirs, plus ours.
///
/// - `leader_election_master_status{name}` gauge: 1 while leading, 0 otherwise.
/// - `leader_election_slowpath_total{name}` counter: renewals whose optimistic write conflicted and fell
///   back to read-then-write.
/// - `leader_election_transitions_total{name}` counter: terms this process began.
/// - `leader_election_renew_duration_seconds{name}` timer: latency of successful renewals.
/// - `leader_election_lease_remaining_seconds{name}` gauge: guaranteed leadership left after each renew.
/// - `leader_election_corrupt_record_total{name}` counter: undecodable records seen.
struct LeaderElectionMetrics: Sendable {
    let masterStatus: Gauge
    let slowpath: Counter
    let transitions: Counter
    let renewDuration: Timer
    let leaseRemaining: Gauge
    let corruptRecords: Counter

    init(name: String, factory: any MetricsFactory) {
        let dims = [("name", name)]
        masterStatus = Gauge(label: "leader_election_master_status", dimensions: dims, factory: factory)
        slowpath = Counter(label: "leader_election_slowpath_total", dimensions: dims, factory: factory)
        transitions = Counter(label: "leader_election_transitions_total", dimensions: dims, factory: factory)
        renewDuration = Timer(label: "leader_election_renew_duration_seconds", dimensions: dims, factory: factory)
        leaseRemaining = Gauge(label: "leader_election_lease_remaining_seconds", dimensions: dims, factory: factory)
        corruptRecords = Counter(label: "leader_election_corrupt_record_total", dimensions: dims, factory: factory)
        masterStatus.record(0)
    }
}
