import ArgumentParser

/// `leasectl`: elect, inspect, release and demonstrate leader-election locks named by URL.
@main
struct LeaseCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leasectl",
        abstract: "Leader election and lease locks from the command line.",
        discussion: """
            Locks are named by URL: file:///dir/name is the lock "name" in directory /dir (flock \
            backend, one host); file:///dir/ (trailing slash) or a directory path stands for every lock \
            in /dir; a plain path is a file URL. etcd:// and kubernetes:// follow in later releases.
            """,
        subcommands: [
            ElectCommand.self,
            GetCommand.self,
            ReleaseCommand.self,
            DemoCommand.self,
            TortureWriteCommand.self,
        ]
    )
}
