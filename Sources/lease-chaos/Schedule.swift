import Foundation

/// The faults the harness injects.
enum FaultKind: String, CaseIterable, Codable, Sendable {
    /// SIGKILL the leader (FileLock sees the crash at once; etcd and Kubernetes wait for the lease).
    case sigkillLeader = "sigkill-leader"
    /// SIGTERM the leader: it stops its work, releases the lease and exits; a follower takes over at once.
    case sigtermHandoff = "sigterm-handoff"
    /// SIGUSR1 the leader: it cancels its election (releasing the lease) and campaigns again later.
    case resignHandoff = "resign-handoff"
    /// SIGSTOP the leader for longer than leaseDuration, then SIGCONT (a GC pause).
    case sigstopLeader = "sigstop-leader"
    /// Restart a follower with its wall clock offset ±1 h or jumping ±1 h mid-run, and make it lead.
    case wallClockSkew = "wall-clock-skew"
    /// etcd: SIGKILL etcd and restart it; Kubernetes: SIGKILL the API server and restart it.
    case backendKill = "backend-kill"
    /// SIGSTOP etcd (or the API server), then SIGCONT.
    case backendPause = "backend-sigstop"
    /// Kubernetes: SIGKILL the etcd under the API server and restart it.
    case storeKill = "store-etcd-kill"
    /// Kubernetes: SIGSTOP the etcd under the API server, then SIGCONT.
    case storePause = "store-etcd-sigstop"
    /// Delay every byte between the leader (sometimes every candidate) and the server.
    case proxyLatency = "proxy-latency"
    /// Forward nothing for longer than renewDeadline (connections stay open), then deliver late.
    case proxyStall = "proxy-stall"
    /// Black-hole the leader's open connections for good, without closing them.
    case proxyHalfOpen = "proxy-half-open"
    /// 3-member etcd: SIGKILL the raft leader, restart it.
    case killRaftLeader = "kill-raft-leader"
    /// 3-member etcd: SIGKILL the member the leader's client is connected to, restart it.
    case killClientMember = "kill-client-member"
    /// 3-member etcd: SIGSTOP the raft leader, then SIGCONT.
    case pauseRaftLeader = "sigstop-raft-leader"

    /// Faults that induce a failover by design, cheap enough to make up the bulk of a run.
    static let cheap: [FaultKind] = [.sigkillLeader, .sigtermHandoff, .resignHandoff]

    static func special(for backend: BackendKind) -> [FaultKind] {
        switch backend {
        case .file: [.sigstopLeader, .wallClockSkew]
        case .etcd: [.sigstopLeader, .wallClockSkew, .backendKill, .backendPause, .proxyLatency, .proxyStall, .proxyHalfOpen]
        case .etcdCluster: [.sigstopLeader, .wallClockSkew, .killRaftLeader, .killClientMember, .pauseRaftLeader, .proxyLatency, .proxyStall, .proxyHalfOpen]
        case .kubernetes: [.sigstopLeader, .wallClockSkew, .backendKill, .backendPause, .storeKill, .storePause, .proxyLatency, .proxyStall, .proxyHalfOpen]
        }
    }
}

/// Election timing of a backend's candidates.
struct Timing: Codable, Sendable {
    var leaseMillis: Int
    var renewMillis: Int
    var retryMillis: Int
    var actionMillis: Int

    var lease: Duration { .milliseconds(leaseMillis) }
    var renew: Duration { .milliseconds(renewMillis) }
    var retry: Duration { .milliseconds(retryMillis) }
    var action: Duration { .milliseconds(actionMillis) }

    /// Short leases where the store allows them; a Lease holds whole seconds, at least 1 s.
    static func forBackend(_ backend: BackendKind) -> Timing {
        switch backend {
        case .file: Timing(leaseMillis: 800, renewMillis: 500, retryMillis: 150, actionMillis: 10)
        case .etcd, .etcdCluster: Timing(leaseMillis: 800, renewMillis: 500, retryMillis: 150, actionMillis: 10)
        case .kubernetes: Timing(leaseMillis: 1000, renewMillis: 700, retryMillis: 200, actionMillis: 10)
        }
    }
}

/// How much to inject.
enum Profile: String, Codable, Sendable, CaseIterable {
    /// A short seeded subset for CI: every fault type at least once, a few failovers, bounded time.
    case smoke
    /// `make chaos`: ≥ 1,000 induced failovers per backend, each special fault many times.
    case full

    func failoverTarget(_ backend: BackendKind) -> Int {
        switch self {
        case .smoke: 6
        case .full: 1000
        }
    }

    func specialCount(_ backend: BackendKind) -> Int {
        switch self {
        case .smoke: 1
        case .full: 10
        }
    }

    /// The hard time limit of one backend's fault loop.
    func timeLimit(_ backend: BackendKind) -> Duration {
        switch (self, backend) {
        case (.smoke, .file): .seconds(25)
        case (.smoke, _): .seconds(55)
        case (.full, .file): .seconds(300)
        case (.full, _): .seconds(540)
        }
    }

    /// Weights of the cheap faults (sigkill, sigterm, resign). SIGKILL costs a lease wait except on FileLock.
    func cheapWeights(_ backend: BackendKind) -> [Double] {
        backend == .file ? [40, 30, 30] : [15, 40, 45]
    }
}

/// The seeded sequence of faults: cheap failover faults, with the special faults spread evenly among them.
struct Schedule {
    private var rng: SeededRandom
    private var specials: [FaultKind]
    private let spacing: Int
    private var cheapSinceSpecial = 0
    private let weights: [Double]
    let plannedSpecials: [FaultKind: Int]

    init(seed: UInt64, backend: BackendKind, profile: Profile, only: Set<FaultKind>? = nil) {
        rng = SeededRandom(seed: seed ^ UInt64(BackendKind.allCases.firstIndex(of: backend)! + 1) &* 0x1000_0000_01B3)
        var list: [FaultKind] = []
        var planned: [FaultKind: Int] = [:]
        for kind in FaultKind.special(for: backend) where only?.contains(kind) ?? true {
            for _ in 0..<profile.specialCount(backend) { list.append(kind) }
            planned[kind] = profile.specialCount(backend)
        }
        if profile == .smoke {
            // The CI subset runs every fault type, the cheap ones included.
            for kind in FaultKind.cheap where only?.contains(kind) ?? true {
                list.append(kind)
                planned[kind] = 1
            }
        }
        list.shuffle(using: &rng)
        specials = list
        plannedSpecials = planned
        spacing = max(1, profile.failoverTarget(backend) / max(1, list.count + 1))
        weights = zip(FaultKind.cheap, profile.cheapWeights(backend)).map { only?.contains($0.0) ?? true ? $0.1 : 0 }
    }

    var specialsLeft: Int { specials.count }

    /// The next fault; once `failoverTargetReached`, only the remaining special faults (then `nil`).
    mutating func next(failoverTargetReached: Bool) -> FaultKind? {
        if !specials.isEmpty && (cheapSinceSpecial >= spacing || failoverTargetReached) {
            cheapSinceSpecial = 0
            return specials.removeFirst()
        }
        if failoverTargetReached || weights.allSatisfy({ $0 == 0 }) { return specials.isEmpty ? nil : specials.removeFirst() }
        cheapSinceSpecial += 1
        let total = weights.reduce(0, +)
        var pick = rng.unit() * total
        for (index, weight) in weights.enumerated() {
            if pick < weight { return FaultKind.cheap[index] }
            pick -= weight
        }
        return FaultKind.cheap.last
    }

    mutating func between(_ a: Double, _ b: Double) -> Double { rng.between(a, b) }
    mutating func chance(_ p: Double) -> Bool { rng.unit() < p }
    mutating func pick<T>(_ items: [T]) -> T { items[Int(rng.next() % UInt64(items.count))] }
}
