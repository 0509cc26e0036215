import LeaderElection

/// What `leasectl get` read from one lock, and how it is shown: a table row, JSON or YAML.
struct LeaseSnapshot: Sendable {
    /// What the read found.
    enum State: Sendable {
        case record(VersionedRecord)
        /// No record is stored.
        case missing
        /// The stored data does not decode.
        case corrupt(message: String, version: LockVersion?)
        /// The read failed.
        case failed(String)

        /// One `get()` of `lock`; a corrupt record and a failed read become states, described by `describe`.
        static func read(_ lock: any ResourceLock, describe: (any Error) -> String) async -> State {
            do {
                if let fetched = try await lock.get() { return .record(fetched) }
                return .missing
            } catch let error as LeaderElectionError where error.code == .corruptRecord {
                return .corrupt(message: error.message, version: error.version)
            } catch {
                return .failed(describe(error))
            }
        }
    }

    /// The lock's URL.
    var url: LockURL
    /// The lock's name (the last path component).
    var name: String
    var state: State
    /// When it was read (wall clock), the reference for AGE and EXPIRES IN.
    var readAt: MicroTime
    /// The Kubernetes namespace of a Lease; `nil` for backends without namespaces.
    var namespace: String? = nil
    /// When the object holding the lock was created (a Lease's `creationTimestamp`), if the backend knows:
    /// AGE falls back to it when the record has no `acquireTime` (kubelet's node heartbeat leases have none).
    var created: MicroTime? = nil

    /// Reads `lock` now.
    ///
    /// - Parameters:
    ///   - name: the name to show (default: the last component of `url`).
    ///   - describe: the message for a failed read.
    static func read(
        _ lock: any ResourceLock, url: LockURL, name: String? = nil,
        describe: (any Error) -> String = { LockRegistry.describe($0) }
    ) async -> LeaseSnapshot {
        let state = await State.read(lock, describe: describe)
        return LeaseSnapshot(url: url, name: name ?? url.lastPathComponent, state: state, readAt: .now())
    }

    /// Identifies what was read, to tell whether a lock changed between two reads.
    var fingerprint: String {
        switch state {
        case .record(let fetched): "record:\(fetched.version):\(fetched.holderIsKnownGone)"
        case .missing: "missing"
        case .corrupt(_, let version): "corrupt:\(version?.description ?? "?")"
        case .failed(let message): "failed:\(message)"
        }
    }

    // MARK: Table

    /// The table's column titles, as `kubectl get leases` has them.
    static let columns = ["NAME", "HOLDER", "AGE", "TRANSITIONS", "EXPIRES IN"]

    /// The column titles, with kubectl's NAMESPACE column first when `showingNamespace` (`get -A`).
    static func columns(showingNamespace: Bool) -> [String] {
        showingNamespace ? ["NAMESPACE"] + columns : columns
    }

    /// The table cells of this lock, with its namespace first when `showingNamespace` (`<none>` for a
    /// backend without namespaces).
    func cells(showingNamespace: Bool) -> [String] {
        showingNamespace ? [namespace ?? "<none>"] + cells : cells
    }

    /// The table cells of this lock. AGE counts from the holder's `acquireTime`, else from the object's
    /// creation (``created``), else it is `<unknown>`.
    var cells: [String] {
        switch state {
        case .record(let fetched):
            let record = fetched.record
            let holder = record.holderIdentity.isEmpty ? "<none>" : record.holderIdentity
            let since = record.acquireTime ?? created
            let age = since.map { Self.shortHumanDuration(readAt.duration(since: $0)) } ?? "<unknown>"
            return [name, holder, age, String(record.leaseTransitions), expiresIn(fetched)]
        case .missing:
            return [name, "<missing>", "<unknown>", "<unknown>", "<none>"]
        case .corrupt:
            return [name, "<corrupt>", "<unknown>", "<unknown>", "<unknown>"]
        case .failed:
            return [name, "<error>", "<unknown>", "<unknown>", "<unknown>"]
        }
    }

    /// renewTime + leaseDuration − now, by this host's wall clock: an estimate, since the elector judges
    /// expiry on each candidate's monotonic clock. `expired` when ≤ 0 or when the backend verified that the
    /// holder is gone; `<none>` when the lock is free.
    private func expiresIn(_ fetched: VersionedRecord) -> String {
        let record = fetched.record
        guard !record.isReleased else { return "<none>" }
        if fetched.holderIsKnownGone { return "expired" }
        guard let renewed = record.renewTime ?? record.acquireTime else { return "<unknown>" }
        let remaining = renewed.advanced(by: record.leaseDuration).duration(since: readAt)
        guard remaining > .zero else { return "expired" }
        if remaining < .seconds(10) {
            // Tenths of a second, rounded up so that a live lease never reads as 0.
            let tenths = (remaining.components.seconds * 10) + (remaining.components.attoseconds + 99_999_999_999_999_999) / 100_000_000_000_000_000
            return "\(tenths / 10).\(tenths % 10)s"
        }
        return Self.shortHumanDuration(remaining)
    }

    /// kubectl's `ShortHumanDuration`: `5s`, `3m`, `2h`, `4d`, `1y`.
    static func shortHumanDuration(_ duration: Duration) -> String {
        let seconds = duration.components.seconds
        if seconds < -1 { return "<invalid>" }
        if seconds < 0 { return "0s" }
        if seconds < 60 { return "\(seconds)s" }
        let minutes = seconds / 60
        if minutes < 60 { return "\(minutes)m" }
        let hours = minutes / 60
        if hours < 24 { return "\(hours)h" }
        if hours < 24 * 365 { return "\(hours / 24)d" }
        return "\(hours / (24 * 365))y"
    }

    // MARK: JSON / YAML

    /// The lock as structured data: its name, namespace (Kubernetes) and URL, its creation time when known,
    /// its version, then the record with client-go's field names.
    var structured: StructuredValue {
        var fields: [(String, StructuredValue)] = [("name", .string(name))]
        if let namespace { fields.append(("namespace", .string(namespace))) }
        fields.append(("lock", .string(url.description)))
        if let created { fields.append(("creationTimestamp", .string(created.rfc3339))) }
        switch state {
        case .record(let fetched):
            let record = fetched.record
            fields.append(("version", .string(fetched.version.rawValue)))
            fields.append(("holderIdentity", .string(record.holderIdentity)))
            fields.append(("leaseDurationSeconds", .number(Self.seconds(record.leaseDuration))))
            if let acquire = record.acquireTime { fields.append(("acquireTime", .string(acquire.rfc3339))) }
            if let renew = record.renewTime { fields.append(("renewTime", .string(renew.rfc3339))) }
            fields.append(("leaderTransitions", .int(record.leaseTransitions)))
            if let strategy = record.strategy { fields.append(("strategy", .string(strategy))) }
            if let preferred = record.preferredHolder { fields.append(("preferredHolder", .string(preferred))) }
            fields.append(("holderIsKnownGone", .bool(fetched.holderIsKnownGone)))
        case .missing:
            fields.append(("error", .string("not found")))
        case .corrupt(let message, let version):
            if let version { fields.append(("version", .string(version.rawValue))) }
            fields.append(("corrupt", .bool(true)))
            fields.append(("error", .string(message)))
        case .failed(let message):
            fields.append(("error", .string(message)))
        }
        return .object(fields)
    }

    /// Whole seconds as an integer, otherwise a decimal with up to six digits (`0.5`).
    private static func seconds(_ duration: Duration) -> String {
        let (secs, atto) = duration.components
        let micros = atto / 1_000_000_000_000
        guard micros != 0 else { return String(secs) }
        var fraction = String(micros)
        fraction = String(repeating: "0", count: 6 - fraction.count) + fraction
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return "\(secs).\(fraction)"
    }
}
