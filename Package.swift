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
        .executable(name: "leasectl", targets: ["leasectl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
    ],
    targets: [
        // The core: elector, ResourceLock contract, reference in-memory lock. Light dependencies only.
        .target(
            name: "LeaderElection",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
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
                "FileLock",
                "Etcd",
                "EtcdLock",
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
        // `make bench`: starts the backends itself and measures them (release build).
        .executableTarget(
            name: "lease-bench",
            dependencies: ["Etcd", "EtcdLock", "EtcdTesting", "LeaderElection", "FileLock"],
            path: "Sources/lease-bench",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LeasectlTests",
            dependencies: ["EtcdTesting", "leasectl", "FileLock", "LeaderElection"],
            swiftSettings: swiftSettings
        ),
    ]
)
