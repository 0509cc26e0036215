import NIOHTTP1

extension KubernetesClient {
    /// Reads a Lease.
    ///
    /// - Parameters:
    ///   - namespace: The Lease's namespace.
    ///   - name: The Lease's name.
    /// - Returns: The Lease, with its `resourceVersion`.
    /// - Throws: ``KubernetesError``; ``KubernetesError/Code/notFound`` when it does not exist.
    public func getLease(namespace: String, name: String) async throws -> Lease {
        try await send(.GET, Self.leasesPath(namespace: namespace, name: name), as: Lease.self)
    }

    /// Creates a Lease (`POST`).
    ///
    /// - Parameters:
    ///   - lease: The Lease; `metadata.name` is required, `resourceVersion` must be empty.
    ///   - namespace: The namespace to create it in.
    /// - Returns: The created Lease as stored (with `uid`, `resourceVersion`, `creationTimestamp`).
    /// - Throws: ``KubernetesError``; ``KubernetesError/Code/alreadyExists`` when a Lease of that name exists,
    ///   ``KubernetesError/Code/invalid`` when validation fails.
    public func createLease(_ lease: Lease, namespace: String) async throws -> Lease {
        try await createLeaseReportingWarnings(lease, namespace: namespace).object
    }

    /// ``createLease(_:namespace:)``, also returning the response's `Warning` headers: a server that does not
    /// know a field (such as `spec.preferredHolder` before Kubernetes 1.31) drops it and says so there.
    public func createLeaseReportingWarnings(_ lease: Lease, namespace: String) async throws -> KubernetesResponse<Lease> {
        let body = try Self.encodeBody(Self.withTypeMeta(lease))
        return try await sendReportingWarnings(.POST, Self.leasesPath(namespace: namespace), body: body, as: Lease.self)
    }

    /// Replaces a Lease (`PUT` to its `metadata.name`), guarded by its `metadata.resourceVersion`.
    ///
    /// Send the Lease as read (changing only what you mean to change): every field, including those this
    /// client does not model (``ObjectMeta/additionalFields``), is written back.
    ///
    /// - Parameters:
    ///   - lease: The new state, carrying the `resourceVersion` it was read at.
    ///   - namespace: The Lease's namespace.
    /// - Returns: The stored Lease with its new `resourceVersion`.
    /// - Throws: ``KubernetesError``; ``KubernetesError/Code/conflict`` when the Lease changed since it was read,
    ///   ``KubernetesError/Code/invalid`` without a `resourceVersion`.
    public func replaceLease(_ lease: Lease, namespace: String) async throws -> Lease {
        guard let name = lease.metadata.name, !name.isEmpty else {
            throw KubernetesError(code: .invalid, message: "replaceLease: metadata.name is required")
        }
        return try await replaceLeaseReportingWarnings(lease, namespace: namespace).object
    }

    /// ``replaceLease(_:namespace:)``, also returning the response's `Warning` headers: a server that does not
    /// know a field (such as `spec.preferredHolder` before Kubernetes 1.31) drops it and says so there.
    public func replaceLeaseReportingWarnings(_ lease: Lease, namespace: String) async throws -> KubernetesResponse<Lease> {
        guard let name = lease.metadata.name, !name.isEmpty else {
            throw KubernetesError(code: .invalid, message: "replaceLease: metadata.name is required")
        }
        let body = try Self.encodeBody(Self.withTypeMeta(lease))
        return try await sendReportingWarnings(.PUT, Self.leasesPath(namespace: namespace, name: name), body: body, as: Lease.self)
    }

    /// Deletes a Lease.
    ///
    /// - Parameters:
    ///   - namespace: The Lease's namespace.
    ///   - name: The Lease's name.
    /// - Throws: ``KubernetesError``; ``KubernetesError/Code/notFound`` when it does not exist.
    public func deleteLease(namespace: String, name: String) async throws {
        let path = Self.leasesPath(namespace: namespace, name: name)
        let response = try await perform(.DELETE, path)
        try Self.checkSuccess(response, context: "DELETE \(path)")
    }

    /// Lists Leases.
    ///
    /// - Parameters:
    ///   - namespace: The namespace; `nil` lists every namespace (`/apis/coordination.k8s.io/v1/leases`).
    ///   - labelSelector: A label selector such as `app=web,tier!=cache`.
    ///   - fieldSelector: A field selector such as `metadata.name=my-lease`.
    /// - Returns: The Leases and the list's `resourceVersion` (to watch from).
    /// - Throws: ``KubernetesError``.
    public func listLeases(namespace: String?, labelSelector: String? = nil, fieldSelector: String? = nil) async throws -> LeaseList {
        var query: [(String, String)] = []
        if let labelSelector { query.append(("labelSelector", labelSelector)) }
        if let fieldSelector { query.append(("fieldSelector", fieldSelector)) }
        return try await send(.GET, Self.leasesPath(namespace: namespace), query: query, as: LeaseList.self)
    }

    /// The Lease with `apiVersion` and `kind` filled in (list items carry neither).
    static func withTypeMeta(_ lease: Lease) -> Lease {
        var lease = lease
        if lease.apiVersion?.isEmpty ?? true { lease.apiVersion = Lease.apiVersion }
        if lease.kind?.isEmpty ?? true { lease.kind = Lease.kind }
        return lease
    }
}
