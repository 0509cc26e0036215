import LeaderElection
import NIOHTTP1

extension KubernetesClient {
    // MARK: - Events

    /// Creates a core `v1` Event.
    ///
    /// - Parameters:
    ///   - event: The event; `metadata.name` must be unique in the namespace.
    ///   - namespace: The namespace, normally the involved object's.
    /// - Returns: The stored event.
    /// - Throws: ``KubernetesError``.
    @discardableResult
    public func createEvent(_ event: CoreEvent, namespace: String) async throws -> CoreEvent {
        var event = event
        if event.apiVersion?.isEmpty ?? true { event.apiVersion = "v1" }
        if event.kind?.isEmpty ?? true { event.kind = "Event" }
        let body = try Self.encodeBody(event)
        return try await send(.POST, Self.eventsPath(namespace: namespace), body: body, as: CoreEvent.self)
    }

    /// Lists core `v1` Events.
    ///
    /// - Parameters:
    ///   - namespace: The namespace.
    ///   - fieldSelector: A field selector such as `involvedObject.name=my-lease,reason=LeaderElection`.
    /// - Returns: The events.
    /// - Throws: ``KubernetesError``.
    public func listEvents(namespace: String, fieldSelector: String? = nil) async throws -> EventList {
        let query = fieldSelector.map { [("fieldSelector", $0)] } ?? []
        return try await send(.GET, Self.eventsPath(namespace: namespace), query: query, as: EventList.self)
    }

    /// Records a leader-election event about a Lease in the shape client-go's event recorder writes:
    /// type `Normal`, reason `LeaderElection`, the Lease as `involvedObject`, name `<lease>.<random hex>`,
    /// `firstTimestamp` = `lastTimestamp` = now (RFC 3339, whole seconds, UTC), `count` 1, `source.component`
    /// and `reportingComponent` = `component`, `reportingInstance` = `instance`.
    ///
    /// - Parameters:
    ///   - lease: The Lease the event is about (its namespace, name, uid and resourceVersion are referenced).
    ///   - message: Such as `"<identity> became leader"` or `"<identity> stopped leading"`.
    ///   - component: The reporting component, such as `leasectl`.
    ///   - instance: The reporting instance, normally the candidate identity.
    /// - Returns: The stored event.
    /// - Throws: ``KubernetesError``.
    @discardableResult
    public func recordLeaderElectionEvent(lease: Lease, message: String, component: String, instance: String) async throws -> CoreEvent {
        let event = Self.leaderElectionEvent(
            lease: lease, message: message, component: component, instance: instance,
            defaultNamespace: configuration.namespace, now: MicroTime.now()
        )
        return try await createEvent(event, namespace: event.metadata.namespace ?? configuration.namespace)
    }

    /// Queues the Event ``recordLeaderElectionEvent(lease:message:component:instance:)`` creates on ``events``,
    /// the background sender, and returns at once: a slow or hung events endpoint never delays the caller.
    ///
    /// - Returns: `false` when the Event was dropped (the queue is full, or the client is shut down).
    @discardableResult
    public func enqueueLeaderElectionEvent(lease: Lease, message: String, component: String, instance: String) -> Bool {
        let event = Self.leaderElectionEvent(
            lease: lease, message: message, component: component, instance: instance,
            defaultNamespace: configuration.namespace, now: MicroTime.now()
        )
        return events.record(event, namespace: event.metadata.namespace ?? configuration.namespace)
    }

    /// The event ``recordLeaderElectionEvent(lease:message:component:instance:)`` creates.
    static func leaderElectionEvent(
        lease: Lease, message: String, component: String, instance: String, defaultNamespace: String, now: MicroTime
    ) -> CoreEvent {
        let namespace = lease.metadata.namespace ?? defaultNamespace
        let leaseName = lease.metadata.name ?? "lease"
        let suffix = String(UInt64.random(in: 1...UInt64.max), radix: 16)
        let timestamp = String(now.rfc3339.prefix(19)) + "Z"
        return CoreEvent(
            metadata: ObjectMeta(name: "\(leaseName).\(suffix)", namespace: namespace),
            involvedObject: ObjectReference(
                apiVersion: Lease.apiVersion,
                kind: Lease.kind,
                namespace: namespace,
                name: lease.metadata.name,
                uid: lease.metadata.uid,
                resourceVersion: lease.metadata.resourceVersion
            ),
            reason: "LeaderElection",
            message: message,
            type: "Normal",
            source: EventSource(component: component),
            firstTimestamp: timestamp,
            lastTimestamp: timestamp,
            count: 1,
            reportingComponent: component,
            reportingInstance: instance
        )
    }

    // MARK: - Namespaces

    /// Creates a namespace (used by tests against a real cluster).
    ///
    /// - Parameter name: The namespace name.
    /// - Returns: The stored namespace.
    /// - Throws: ``KubernetesError``; ``KubernetesError/Code/alreadyExists`` when it exists.
    @discardableResult
    public func createNamespace(_ name: String) async throws -> Namespace {
        let body = try Self.encodeBody(Namespace(name: name))
        return try await send(.POST, Self.namespacesPath(), body: body, as: Namespace.self)
    }

    /// Deletes a namespace and, asynchronously, everything in it.
    ///
    /// - Parameter name: The namespace name.
    /// - Throws: ``KubernetesError``; ``KubernetesError/Code/notFound`` when it does not exist.
    public func deleteNamespace(_ name: String) async throws {
        let path = Self.namespacesPath(name: name)
        let response = try await perform(.DELETE, path)
        try Self.checkSuccess(response, context: "DELETE \(path)")
    }
}
