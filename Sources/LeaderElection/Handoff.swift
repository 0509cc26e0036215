/// The `strategy` written with a hand-off when the record has none: Kubernetes accepts a `preferredHolder` only
/// together with a strategy, and takes a qualified name with a prefix as a third-party strategy.
public let handoffStrategy = "swift-leader-election/handoff"

/// Asks the current leader to hand leadership over to `candidate` — the mirror of Kubernetes' coordinated
/// election `preferredHolder`.
///
/// Writes `preferredHolder = candidate` (and ``handoffStrategy`` when the record has no `strategy`) by
/// compare-and-swap, re-reading on conflict. The holder's ``LeaderElector`` learns of it as soon as its lock's change
/// feed reports the write (without a feed, at its next renewal, whose cached-version write conflicts so that it
/// reads the record), cancels and drains its work, then releases the lease keeping the name; the other candidates
/// stand back for one lease duration, and `candidate`, woken by the release, takes over. A candidate that acquires
/// the lease clears the name.
///
/// What it does not do: wait for the hand-off, or check that `candidate` is running. If nobody with that
/// identity campaigns, the others take part again one lease duration after the release.
///
/// - Parameters:
///   - lock: any lock on the record (its identity does not matter).
///   - candidate: the identity that should lead next (non-empty).
///   - maxAttempts: compare-and-swap attempts before giving up with ``LeaderElectionError/Code/conflict``.
/// - Returns: the record as written.
/// - Throws: ``LeaderElectionError/Code/notFound`` when there is no record, ``LeaderElectionError/Code/invalidConfiguration``
///   for an empty candidate, and the lock's errors (``LeaderElectionError/Code/corruptRecord``, …).
@discardableResult
public func requestHandoff(on lock: any ResourceLock, to candidate: String, maxAttempts: Int = 8) async throws -> LeaderElectionRecord {
    guard !candidate.isEmpty else { throw LeaderElectionError.invalidConfiguration("the hand-off candidate must not be empty") }
    var lastConflict: (any Error)?
    for _ in 0..<max(1, maxAttempts) {
        guard let current = try await lock.get() else {
            throw LeaderElectionError.notFound("no leader-election record at \(lock) to hand off")
        }
        var record = current.record
        record.preferredHolder = candidate
        if record.strategy?.isEmpty ?? true { record.strategy = handoffStrategy }
        do {
            _ = try await lock.update(record, expecting: current.version)
            return record
        } catch let error as LeaderElectionError where error.code == .conflict {
            lastConflict = error
        }
    }
    throw LeaderElectionError.conflict("could not write the hand-off to \(candidate) at \(lock): the record kept changing (\(lastConflict.map { "\($0)" } ?? ""))")
}
