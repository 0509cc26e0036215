// swift-tools-version: 6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "swift-leader-election",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "LeaderElection", targets: ["LeaderElection"]),
        .library(name: "FileLock", targets: ["FileLock"]),
        .library(name: "LockConformance", targets: ["LockConformance"]),
        .library(name: "Etcd", targets: ["Etcd"]),
        .library(name: "EtcdLock", targets: ["EtcdLock"]),
        .library(name: "Kubernetes", targets: ["Kubernetes"]),
        .library(name: "KubernetesLock", targets: ["KubernetesLock"]),
        .library(name: "LeaseAPIServer", targets: ["LeaseAPIServer"]),
        .library(name: "LeaderElectionService", targets: ["LeaderElectionService"]),
        .executable(name: "leasectl", targets: ["leasectl"]),
        .executable(name: "lease-apiserver", targets: ["lease-apiserver"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.1.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
    ],
    targets: [
        // The core: elector, ResourceLock contract, reference in-memory lock. Light dependencies only.
        .target(
            name: "LeaderElection",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        // Single-host backend: flock(2) + atomic rename + inotify.
        .target(
            name: "FileLock",
            dependencies: ["LeaderElection", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // The shared conformance suite, usable by any ResourceLock implementation.
        .target(
            name: "LockConformance",
            dependencies: ["LeaderElection", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // gRPC core + protobuf-c shim for etcd v3 (C). Linked by name: pkgConfig "grpc" breaks SwiftPM.
        .target(
            name: "CEtcdShim",
            path: "Sources/CEtcdShim",
            sources: ["etcd_shim.c", "generated"],
            publicHeadersPath: "include",
            cSettings: [.define("_GNU_SOURCE")],
            linkerSettings: [.linkedLibrary("grpc"), .linkedLibrary("gpr"), .linkedLibrary("protobuf-c")]
        ),
        // Async Swift etcd v3 client over CEtcdShim.
        .target(
            name: "Etcd",
            dependencies: ["CEtcdShim", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // ResourceLock over an etcd key.
        .target(
            name: "EtcdLock",
            dependencies: ["Etcd", "LeaderElection", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // Minimal Kubernetes client: kubeconfig / in-cluster config, Lease REST + watch, Events, typed errors.
        .target(
            name: "Kubernetes",
            dependencies: [
                "LeaderElection",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // ResourceLock over a coordination.k8s.io/v1 Lease, exactly as client-go's LeaseLock.
        .target(
            name: "KubernetesLock",
            dependencies: ["Kubernetes", "LeaderElection", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // The part of kube-apiserver that lease clients use, stored in etcd. For tests and development.
        .target(
            name: "LeaseAPIServer",
            dependencies: [
                "Kubernetes",
                "Etcd",
                "LeaderElection",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "lease-apiserver",
            dependencies: [
                "LeaseAPIServer",
                "Etcd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Test support: etcd + LeaseAPIServer (TLS, bearer token) started on free ports, or a real cluster
        // from LEADER_ELECTION_TEST_KUBECONFIG. Not a product.
        .target(
            name: "KubernetesTesting",
            dependencies: ["Kubernetes", "LeaseAPIServer", "Etcd", "EtcdTesting", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // Ecosystem glue: a swift-service-lifecycle Service that runs work only while leading, and kube's
        // --leader-elect* flags as swift-argument-parser options.
        .target(
            name: "LeaderElectionService",
            dependencies: [
                "LeaderElection",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Examples (built by `make test`): a worker elected with kube's flags, serving its metrics for Prometheus.
        .executableTarget(
            name: "metrics-worker-example",
            dependencies: [
                "LeaderElection",
                "LeaderElectionService",
                "FileLock",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Examples/metrics-worker",
            swiftSettings: swiftSettings
        ),
        // Starts real etcd servers (single member, 3-member cluster, TLS) for tests. Not a product.
        .target(
            name: "EtcdTesting",
            dependencies: [],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "leasectl",
            dependencies: [
                "LeaderElection",
                "LeaderElectionService",
                "FileLock",
                "Etcd",
                "EtcdLock",
                "Kubernetes",
                "KubernetesLock",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LeaderElectionTests",
            dependencies: [
                "LeaderElection",
                "LockConformance",
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "InMemoryLogging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FileLockTests",
            dependencies: ["FileLock", "LeaderElection", "LockConformance", "leasectl"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LockConformanceTests",
            dependencies: ["LockConformance", "LeaderElection"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EtcdTestingTests",
            dependencies: ["EtcdTesting"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CEtcdShimTests",
            dependencies: ["CEtcdShim", "EtcdTesting"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EtcdTests",
            dependencies: ["Etcd", "EtcdTesting"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EtcdLockTests",
            dependencies: ["EtcdLock", "Etcd", "EtcdTesting", "LeaderElection", "LockConformance"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KubernetesTests",
            dependencies: [
                "Kubernetes",
                "KubernetesLock",
                "KubernetesTesting",
                "EtcdTesting",
                "LeaderElection",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KubernetesLockTests",
            dependencies: ["KubernetesLock", "Kubernetes", "KubernetesTesting", "LeaseAPIServer", "EtcdTesting", "LeaderElection", "LockConformance"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LeaseAPIServerTests",
            dependencies: [
                "LeaseAPIServer",
                "Kubernetes",
                "KubernetesTesting",
                "Etcd",
                "EtcdTesting",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // `make bench`: starts the backends itself and measures them (release build).
        .executableTarget(
            name: "lease-bench",
            dependencies: ["Etcd", "EtcdLock", "EtcdTesting", "LeaderElection", "FileLock", "Kubernetes", "KubernetesLock", "KubernetesTesting", "LeaseAPIServer"],
            path: "Sources/lease-bench",
            swiftSettings: swiftSettings
        ),
        // `make chaos`: multi-process fault injection with fenced actions and a safety checker (issue 5).
        .executableTarget(
            name: "lease-chaos",
            dependencies: [
                "LeaderElection", "FileLock", "Etcd", "EtcdLock", "EtcdTesting", "Kubernetes", "KubernetesLock",
                "KubernetesTesting", "LeaseAPIServer",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/lease-chaos",
            swiftSettings: swiftSettings
        ),
        // `make fuzz`: libFuzzer entry points for every decoder of third-party data; without
        // `-sanitize=fuzzer` it replays corpus files (the CI smoke run).
        .executableTarget(
            name: "lease-fuzz",
            dependencies: ["LeaderElection", "FileLock", "Etcd", "EtcdLock", "Kubernetes", "KubernetesLock", "CEtcdShim"],
            path: "Sources/lease-fuzz",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LeaderElectionServiceTests",
            dependencies: [
                "LeaderElectionService",
                "LeaderElection",
                "FileLock",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LeasectlTests",
            dependencies: ["EtcdTesting", "KubernetesTesting", "LeaseAPIServer", "leasectl", "metrics-worker-example", "FileLock", "LeaderElection"],
            swiftSettings: swiftSettings
        ),
    ]
)
