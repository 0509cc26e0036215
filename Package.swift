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
        .executableTarget(
            name: "leasectl",
            dependencies: [
                "LeaderElection",
                "FileLock",
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
            name: "LeasectlTests",
            dependencies: ["leasectl", "FileLock", "LeaderElection"],
            swiftSettings: swiftSettings
        ),
    ]
)
