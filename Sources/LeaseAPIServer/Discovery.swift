/// `/version` and the legacy discovery documents (enough for `kubectl` to find the three resources).
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

    /// The document served at `segments`, or `nil` when it is not a discovery path.
    static func document(for segments: [String]) -> String? {
        switch segments {
        case ["api"]:
            return #"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[]}"#
        case ["apis"]:
            return #"{"kind":"APIGroupList","apiVersion":"v1","groups":["# + coordinationGroup + "]}"
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
                "verbs":["create","delete","get","list","watch"],"shortNames":["ns"]}]}
                """
        default:
            return nil
        }
    }
}
