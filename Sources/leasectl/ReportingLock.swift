import LeaderElection
import Synchronization

/// A lock of a network backend, for `leasectl elect`, that tells the operator when its store starts
/// failing (unreachable, authentication, timeouts) and when it works again. The elector retries such
/// errors on its own and logs them only at `info` level; without these notes a candidate that cannot
/// reach etcd would campaign in silence.
///
/// Only transitions are reported (the first failure, a different kind of failure, the recovery), not
/// every retry. Compare-and-swap conflicts, missing and corrupt records are part of the protocol and
/// pass through unreported.
struct ReportingLock: ResourceLock {
    let base: any ResourceLock
    /// Prints a note (on standard error).
    let report: @Sendable (String) -> Void
    /// Describes an error for the operator, with the backend's hints.
    let describe: @Sendable (any Error) -> String
    private let failing = Failing()

    private final class Failing: Sendable {
        /// The code of the failure last reported, `nil` while the store works.
        let code = Mutex<LeaderElectionError.Code?>(nil)
    }

    init(_ base: any ResourceLock, report: @escaping @Sendable (String) -> Void, describe: @escaping @Sendable (any Error) -> String) {
        self.base = base
        self.report = report
        self.describe = describe
    }

    var identity: String { base.identity }
    var description: String { base.description }

    func get() async throws -> VersionedRecord? { try await observing { try await base.get() } }

    func create(_ record: LeaderElectionRecord) async throws -> LockVersion {
        try await observing { try await base.create(record) }
    }

    func update(_ record: LeaderElectionRecord, expecting version: LockVersion) async throws -> LockVersion {
        try await observing { try await base.update(record, expecting: version) }
    }

    func recordEvent(_ event: LockEvent) async { await base.recordEvent(event) }

    func changes() -> AsyncStream<Void>? { base.changes() }

    func recordChanges() -> AsyncStream<LockChange>? { base.recordChanges() }

    private func observing<T>(_ body: () async throws -> T) async throws -> T {
        do {
            let result = try await body()
            recovered()
            return result
        } catch let error as LeaderElectionError {
            noteFailure(error)
            throw error
        }
    }

    /// Reports `error` (from this lock's store) if it is a failure of a kind not reported yet.
    func noteFailure(_ error: LeaderElectionError) {
        switch error.code {
        case .unavailable, .unauthorized, .timeout, .invalidConfiguration:
            let isNew = failing.code.withLock { code in
                defer { code = error.code }
                return code != error.code
            }
            if isNew { report("\(identity): \(describe(error)); retrying") }
        default:
            recovered()   // the store answered
        }
    }

    private func recovered() {
        if failing.code.withLock({ code in defer { code = nil }; return code != nil }) {
            report("\(identity): \(base) works again")
        }
    }
}
