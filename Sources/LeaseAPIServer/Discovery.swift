/// `/version` and the legacy discovery documents (enough for `kubectl` to find the resources served).
enum Discovery {
    /// `/version` of the generation answered as.
    static func version(_ generation: LeaseAPIServer.Generation) -> String {
        let (minor, git) = generation == .v1_26 ? ("26", "v1.26.1") : ("31", "v1.31.0")
        return """
            {"major":"1","minor":"\(minor)","gitVersion":"\(git)+lease-apiserver","gitCommit":"","gitTreeState":"clean",\
            "buildDate":"","goVersion":"","compiler":"swift","platform":"linux/amd64"}
            """
    }

    private static let coordinationVersion = #"{"groupVersion":"coordination.k8s.io/v1","version":"v1"}"#
    private static let coordinationGroup = """
        {"name":"coordination.k8s.io","versions":[\(coordinationVersion)],"preferredVersion":\(coordinationVersion)}
        """

    private static let eventsVersion = #"{"groupVersion":"events.k8s.io/v1","version":"v1"}"#
    private static let eventsGroup = """
        {"name":"events.k8s.io","versions":[\(eventsVersion)],"preferredVersion":\(eventsVersion)}
        """
    private static let rbacVersion = #"{"groupVersion":"rbac.authorization.k8s.io/v1","version":"v1"}"#
    private static let rbacGroup = """
        {"name":"rbac.authorization.k8s.io","versions":[\(rbacVersion)],"preferredVersion":\(rbacVersion)}
        """
    private static let allVerbs = #"["create","delete","deletecollection","get","list","patch","update","watch"]"#

    /// The document served at `segments`, or `nil` when it is not a discovery path.
    static func document(for segments: [String]) -> String? {
        switch segments {
        case ["api"]:
            return #"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[]}"#
        case ["apis"]:
            return #"{"kind":"APIGroupList","apiVersion":"v1","groups":["# + [rbacGroup, coordinationGroup, eventsGroup].joined(separator: ",") + "]}"
        case ["apis", "events.k8s.io"]:
            return #"{"kind":"APIGroup","apiVersion":"v1","# + eventsGroup.dropFirst()
        case ["apis", "events.k8s.io", "v1"]:
            return """
                {"kind":"APIResourceList","apiVersion":"v1","groupVersion":"events.k8s.io/v1","resources":[\
                {"name":"events","singularName":"","namespaced":true,"kind":"Event","verbs":\(allVerbs),"shortNames":["ev"]}]}
                """
        case ["apis", "rbac.authorization.k8s.io"]:
            return #"{"kind":"APIGroup","apiVersion":"v1","# + rbacGroup.dropFirst()
        case ["apis", "rbac.authorization.k8s.io", "v1"]:
            return """
                {"kind":"APIResourceList","apiVersion":"v1","groupVersion":"rbac.authorization.k8s.io/v1","resources":[\
                {"name":"rolebindings","singularName":"","namespaced":true,"kind":"RoleBinding","verbs":\(allVerbs)},\
                {"name":"roles","singularName":"","namespaced":true,"kind":"Role","verbs":\(allVerbs)}]}
                """
        case ["apis", "coordination.k8s.io"]:
            return #"{"kind":"APIGroup","apiVersion":"v1","# + coordinationGroup.dropFirst()
        case ["apis", "coordination.k8s.io", "v1"]:
            return """
                {"kind":"APIResourceList","apiVersion":"v1","groupVersion":"coordination.k8s.io/v1","resources":[\
                {"name":"leases","singularName":"","namespaced":true,"kind":"Lease",\
                "verbs":["create","delete","deletecollection","get","list","patch","update","watch"],\
                "storageVersionHash":"gqkMMb/YqFM="}]}
                """
        case ["api", "v1"]:
            return """
                {"kind":"APIResourceList","groupVersion":"v1","resources":[\
                {"name":"events","singularName":"","namespaced":true,"kind":"Event",\
                "verbs":["create","delete","deletecollection","get","list","patch","update","watch"],"shortNames":["ev"]},\
                {"name":"namespaces","singularName":"","namespaced":false,"kind":"Namespace",\
                "verbs":["create","delete","get","list","watch"],"shortNames":["ns"]},\
                {"name":"serviceaccounts","singularName":"","namespaced":true,"kind":"ServiceAccount",\
                "verbs":\(allVerbs),"shortNames":["sa"]},\
                {"name":"serviceaccounts/token","singularName":"","namespaced":true,"group":"authentication.k8s.io",\
                "version":"v1","kind":"TokenRequest","verbs":["create"]}]}
                """
        default:
            return nil
        }
    }
}
