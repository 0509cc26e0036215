/// What ``KubernetesClient/informLeases(namespace:name:labelSelector:)`` reports: the complete state after
/// each (re)list, then every change.
///
/// A consumer that keeps a cache replaces it on ``snapshot(_:resourceVersion:)`` — objects missing from the
/// snapshot were deleted while the watch was down — and applies each ``event(_:)`` to it.
public enum LeaseNotification: Hashable, Sendable {
    /// The Leases that exist, as listed at `resourceVersion`. Sent first, and again after every relist
    /// (when the watch's resourceVersion expired).
    case snapshot([Lease], resourceVersion: String)
    /// A change seen by the watch: ``WatchEvent/added(_:)``, ``WatchEvent/modified(_:)`` or
    /// ``WatchEvent/deleted(_:)``. Bookmarks and errors are handled by the informer and not reported.
    case event(WatchEvent<Lease>)
}
