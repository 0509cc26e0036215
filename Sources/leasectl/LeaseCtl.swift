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
            in /dir; a plain path is a file URL.

            etcd://HOST:PORT[,HOST:PORT...]/path/to/key is the lock stored at the etcd key /path/to/key \
            (for example etcd://127.0.0.1:2379/leader-election/default/cron; the port defaults to 2379, \
            several endpoints are one cluster); etcd://HOST:PORT/path/to/ (trailing slash) stands for every \
            key under that prefix. elect, get and release connect with --etcd-cacert, --etcd-cert and \
            --etcd-key (TLS, mutual TLS) and --etcd-user, whose password comes from $ETCD_PASSWORD or \
            --etcd-password-file. Without TLS, only loopback endpoints are used unless --etcd-plaintext is \
            given (with a warning). No option takes a password or token as its value.

            kubernetes://NAMESPACE/NAME is the coordination.k8s.io/v1 Lease NAME in NAMESPACE (client-go's \
            LeaseLock record, so leasectl contends with Go controllers on one Lease); \
            kubernetes://NAMESPACE/ (trailing slash) stands for every Lease in NAMESPACE, and \
            kubernetes://*/ for every Lease in every namespace (get -A). Without a namespace \
            (kubernetes:///NAME, kubernetes://) the namespace is -n NAMESPACE, else the kubeconfig \
            context's. The API server and credentials come from --kubeconfig PATH (else, in a pod, its \
            service account; else $KUBECONFIG; else ~/.kube/config) and --context NAME, as with kubectl.

            Examples:
              leasectl elect --lock kubernetes://default/cron -- ./run-jobs.sh
              leasectl get -A
              leasectl get -n kube-node-lease kubernetes://
              leasectl release --force kubernetes://default/cron
              leasectl handoff --wait kubernetes://default/cron --to worker-2
              leasectl heartbeat kubernetes://kube-node-lease/node-a --identity node-a
              leasectl doctor kubernetes://default/cron
            """,
        subcommands: [
            ElectCommand.self,
            GetCommand.self,
            ReleaseCommand.self,
            HandoffCommand.self,
            HeartbeatCommand.self,
            DoctorCommand.self,
            DemoCommand.self,
            TortureWriteCommand.self,
        ]
    )
}
