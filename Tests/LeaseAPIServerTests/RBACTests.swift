import Foundation
import Kubernetes
import Testing

/// ServiceAccounts, TokenRequest, Roles and RoleBindings: a ServiceAccount token gets exactly what its
/// namespace's RoleBindings grant, with RBAC's 403, and stops working once its ServiceAccount is gone (after
/// kube's 10 s authentication cache, on the fixture's manual clock).
@Suite(.timeLimit(.minutes(2))) struct RBACTests {
    private func leases(_ namespace: String) -> String { "/apis/coordination.k8s.io/v1/namespaces/\(namespace)/leases" }
    private func rbac(_ namespace: String, _ resource: String) -> String {
        "/apis/rbac.authorization.k8s.io/v1/namespaces/\(namespace)/\(resource)"
    }

    /// Creates ServiceAccount `name` in `namespace` and returns a token for it.
    private func serviceAccountToken(_ fixture: ServerFixture, _ namespace: String, _ name: String) async throws -> String {
        let created = try await fixture.request("POST", "/api/v1/namespaces/\(namespace)/serviceaccounts",
                                                body: #"{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"\#(name)"}}"#)
        try #require(created.status == 201, "\(created)")
        let response = try await fixture.request(
            "POST", "/api/v1/namespaces/\(namespace)/serviceaccounts/\(name)/token",
            body: #"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":3600}}"#)
        try #require(response.status == 201, "\(response)")
        let status = try #require(response.json["status"] as? [String: Any])
        return try #require(status["token"] as? String)
    }

    private func bind(_ fixture: ServerFixture, _ namespace: String, role: String, rules: String, subjects: String) async throws {
        let created = try await fixture.request("POST", rbac(namespace, "roles"),
                                                body: #"{"metadata":{"name":"\#(role)"},"rules":\#(rules)}"#)
        try #require(created.status == 201, "\(created)")
        let bound = try await fixture.request(
            "POST", rbac(namespace, "rolebindings"),
            body: #"{"metadata":{"name":"\#(role)-binding"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"\#(role)"},"subjects":\#(subjects)}"#)
        try #require(bound.status == 201, "\(bound)")
    }

    private func lease(_ name: String) -> String {
        #"{"metadata":{"name":"\#(name)"},"spec":{"holderIdentity":"a","leaseDurationSeconds":15}}"#
    }

    @Test func aServiceAccountGetsExactlyWhatItsRoleBindingsGrant() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let other = try await fixture.namespace("other")
            let token = try await serviceAccountToken(fixture, namespace, "elector")
            #expect(try await fixture.request("POST", leases(namespace), body: lease("x")).status == 201)

            let denied = try await fixture.get(leases(namespace) + "/x", token: token)
            #expect(denied.status == 403)
            #expect(try denied.decode(Status.self) == Status(
                status: "Failure",
                message: #"leases.coordination.k8s.io "x" is forbidden: User "system:serviceaccount:\#(namespace):elector" cannot get resource "leases" in API group "coordination.k8s.io" in the namespace "\#(namespace)""#,
                reason: "Forbidden", details: .init(name: "x", group: "coordination.k8s.io", kind: "leases"), code: 403))

            try await bind(fixture, namespace, role: "leases",
                           rules: #"[{"apiGroups":["coordination.k8s.io"],"resources":["leases"],"verbs":["get","update"],"resourceNames":["x"]}]"#,
                           subjects: #"[{"kind":"ServiceAccount","name":"elector"}]"#)
            #expect(try await fixture.get(leases(namespace) + "/x", token: token).status == 200)
            // resourceNames limit the rule to that name; list, create and delete are not granted.
            #expect(try await fixture.get(leases(namespace) + "/y", token: token).status == 403)
            #expect(try await fixture.get(leases(namespace), token: token).status == 403)
            #expect(try await fixture.request("POST", leases(namespace), body: lease("y"), token: token).status == 403)
            #expect(try await fixture.request("DELETE", leases(namespace) + "/x", token: token).status == 403)
            // A binding grants in its own namespace only.
            #expect(try await fixture.get(leases(other) + "/x", token: token).status == 403)
            // Discovery is open to every authenticated user; namespaces are not.
            #expect(try await fixture.get("/apis/coordination.k8s.io/v1", token: token).status == 200)
            let namespaces = try await fixture.get("/api/v1/namespaces", token: token)
            #expect(namespaces.status == 403)
            #expect(try namespaces.decode(Status.self).message
                == #"namespaces is forbidden: User "system:serviceaccount:\#(namespace):elector" cannot list resource "namespaces" in API group "" at the cluster scope"#)
        }
    }

    @Test func wildcardsAndGroupSubjectsGrant() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let token = try await serviceAccountToken(fixture, namespace, "sa")
            try await bind(fixture, namespace, role: "all",
                           rules: #"[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]"#,
                           subjects: #"[{"kind":"Group","apiGroup":"rbac.authorization.k8s.io","name":"system:serviceaccounts:\#(namespace)"}]"#)
            #expect(try await fixture.request("POST", leases(namespace), body: lease("x"), token: token).status == 201)
            #expect(try await fixture.get(leases(namespace), token: token).status == 200)
            #expect(try await fixture.request("DELETE", leases(namespace) + "/x", token: token).status == 200)
            // Writing Roles and RoleBindings needs escalate / bind too, which `*` grants.
            let role = try await fixture.request("POST", rbac(namespace, "roles"), body: #"{"metadata":{"name":"r"},"rules":[]}"#, token: token)
            #expect(role.status == 201, "\(role)")
        }
    }

    @Test func aListOrWatchSelectingOneNameMatchesResourceNames() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let token = try await serviceAccountToken(fixture, namespace, "sa")
            try await bind(fixture, namespace, role: "one",
                           rules: #"[{"apiGroups":["coordination.k8s.io"],"resources":["leases"],"verbs":["list","watch"],"resourceNames":["x"]}]"#,
                           subjects: #"[{"kind":"ServiceAccount","name":"sa"}]"#)
            #expect(try await fixture.get(leases(namespace) + "?fieldSelector=metadata.name%3Dx", token: token).status == 200)
            let other = try await fixture.get(leases(namespace) + "?fieldSelector=metadata.name%3Dy", token: token)
            #expect(other.status == 403)
            #expect(try other.decode(Status.self).message
                == #"leases.coordination.k8s.io "y" is forbidden: User "system:serviceaccount:\#(namespace):sa" cannot list resource "leases" in API group "coordination.k8s.io" in the namespace "\#(namespace)""#)
            #expect(try await fixture.get(leases(namespace), token: token).status == 403)
        }
    }

    @Test func creatingRolesNeedsEscalate() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let token = try await serviceAccountToken(fixture, namespace, "sa")
            try await bind(fixture, namespace, role: "roles",
                           rules: #"[{"apiGroups":["rbac.authorization.k8s.io"],"resources":["roles"],"verbs":["create"]}]"#,
                           subjects: #"[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"system:serviceaccount:\#(namespace):sa"}]"#)
            let response = try await fixture.request(
                "POST", rbac(namespace, "roles"),
                body: #"{"metadata":{"name":"everything"},"rules":[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]}"#, token: token)
            #expect(response.status == 403, "\(response)")
        }
    }

    @Test func aDeletedServiceAccountsTokenWorksUntilTheCacheLetsGo() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let token = try await serviceAccountToken(fixture, namespace, "sa")
            try await bind(fixture, namespace, role: "get",
                           rules: #"[{"apiGroups":["coordination.k8s.io"],"resources":["leases"],"verbs":["get"]}]"#,
                           subjects: #"[{"kind":"ServiceAccount","name":"sa","namespace":"\#(namespace)"}]"#)
            #expect(try await fixture.request("POST", leases(namespace), body: lease("x")).status == 201)
            #expect(try await fixture.get(leases(namespace) + "/x", token: token).status == 200)
            let deleted = try await fixture.request("DELETE", "/api/v1/namespaces/\(namespace)/serviceaccounts/sa")
            #expect(deleted.status == 200 && deleted.json["kind"] as? String == "ServiceAccount", "\(deleted)")
            // Cached for 10 s, as kube does.
            fixture.clock.advance(by: .seconds(9))
            #expect(try await fixture.get(leases(namespace) + "/x", token: token).status == 200)
            fixture.clock.advance(by: .seconds(2))
            let rejected = try await fixture.get(leases(namespace) + "/x", token: token)
            #expect(rejected.status == 401)
            // A new ServiceAccount of the same name (another uid) does not revive the token.
            let recreated = try await fixture.request("POST", "/api/v1/namespaces/\(namespace)/serviceaccounts", body: #"{"metadata":{"name":"sa"}}"#)
            #expect(recreated.status == 201)
            #expect(try await fixture.get(leases(namespace) + "/x", token: token).status == 401)
        }
    }

    @Test func tokenRequestValidatesAndNeedsTheServiceAccount() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let missing = try await fixture.request("POST", "/api/v1/namespaces/\(namespace)/serviceaccounts/nobody/token", body: #"{"spec":{}}"#)
            #expect(missing.status == 404)
            #expect(try missing.decode(Status.self).message == #"serviceaccounts "nobody" not found"#)
            _ = try await serviceAccountToken(fixture, namespace, "sa")
            let short = try await fixture.request("POST", "/api/v1/namespaces/\(namespace)/serviceaccounts/sa/token",
                                                  body: #"{"spec":{"expirationSeconds":60}}"#)
            #expect(short.status == 422)
            #expect(try short.decode(Status.self).message
                == #"TokenRequest.authentication.k8s.io "sa" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"#)
            // A forged token of the right shape is 401.
            let forged = String(repeating: "a", count: 32) + "." + String(repeating: "b", count: 64)
            #expect(try await fixture.get(leases(namespace), token: forged).status == 401)
        }
    }

    @Test func deletingANamespaceDeletesItsServiceAccountsAndRoles() async throws {
        try await ServerFixture.with { fixture in
            let namespace = try await fixture.namespace()
            let token = try await serviceAccountToken(fixture, namespace, "sa")
            try await bind(fixture, namespace, role: "r", rules: #"[{"apiGroups":[""],"resources":["events"],"verbs":["create"]}]"#,
                           subjects: #"[{"kind":"ServiceAccount","name":"sa"}]"#)
            #expect(try await fixture.request("DELETE", "/api/v1/namespaces/\(namespace)").status == 200)
            #expect(try await fixture.etcdValue("/serviceaccounts/\(namespace)/sa") == nil)
            #expect(try await fixture.etcdValue("/roles/\(namespace)/r") == nil)
            #expect(try await fixture.etcdValue("/rolebindings/\(namespace)/r-binding") == nil)
            fixture.clock.advance(by: .seconds(11))
            #expect(try await fixture.get(leases(namespace), token: token).status == 401)
        }
    }
}
