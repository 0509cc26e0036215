import Foundation
import Testing

/// Replays the recorded answers of a real kube-apiserver v1.26.1 (`../shared/kube-apiserver-golden/v1.26.1/`,
/// beside the repository) against a fresh LeaseAPIServer and fails on every difference that is not a named
/// exception below — and on every exception that no longer applies, so the list stays honest.
///
/// Run: `.build/debug/swift-leader-electionPackageTests.xctest --testing-library swift-testing --filter FidelityTests`.
@Suite struct FidelityTests {
    /// The recordings, beside the repository root (never copied into it).
    static let folder: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("../shared/kube-apiserver-golden/v1.26.1").standardizedFileURL

    static let scenarios = [
        "01-create-get-list", "02-create-conflicts", "03-noop-put", "04-update-and-conflict", "05-unknown-and-gated-fields",
        "06-time-formats", "07-release-like-client-go", "08-delete", "09-validation", "10-auth", "11-watch-sequence",
        "12-watch-expired", "13-events", "14-http-details",
    ]

    static var recordingsPresent: Bool { FileManager.default.fileExists(atPath: folder.path) }
    static var inCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    @Test(.enabled(if: recordingsPresent || inCI, "the kube-apiserver recordings are not beside the repository"),
          .timeLimit(.minutes(2)), arguments: scenarios)
    func replay(_ scenario: String) async throws {
        let file = Self.folder.appendingPathComponent(scenario + ".json")
        guard let data = FileManager.default.contents(atPath: file.path) else {
            Issue.record("the kube-apiserver recording \(file.path) is missing: the fidelity test needs ../shared/kube-apiserver-golden/v1.26.1/ beside the repository")
            return
        }
        let recording = try OrderedJSON.parse(Array(data))
        let number = Int(scenario.prefix(2)) ?? 0
        // An etcd of its own, so that kube's default prefix (which error messages show) is free to use, and
        // scenario 12's compaction touches nobody else.
        let differences = try await ServerFixture.with(ownEtcd: true, etcdPrefix: "/registry") { fixture in
            let namespace = "golden-\(scenario.prefix(2))-\(UUID().uuidString.prefix(8).lowercased())"
            let created = try await fixture.request("POST", "/api/v1/namespaces", body: #"{"metadata":{"name":"\#(namespace)"}}"#)
            guard created.status == 201 else { throw FixtureError("cannot create namespace \(namespace): \(created)") }
            let replay = GoldenReplay(scenario: scenario, recording: recording, fixture: fixture, namespace: namespace)
            try await replay.run()
            return replay.differences
        }
        let exceptions = FidelityException.all.filter { $0.scenario == number }
        var used = Set<String>()
        var unexplained: [FidelityDifference] = []
        for difference in differences {
            if let exception = exceptions.first(where: { $0.covers(difference) }) {
                used.insert("\(exception.key) \(difference.step)")
            } else {
                unexplained.append(difference)
            }
        }
        for difference in unexplained {
            Issue.record("kube-apiserver v1.26.1 answered differently: \(difference)")
        }
        for exception in exceptions {
            for step in exception.steps where !used.contains("\(exception.key) \(step)") {
                Issue.record("exception no longer applies (remove it from FidelityException.all and the Deviations doc): scenario \(number) step \(step) \(exception.aspects.map(\.rawValue)) — \(exception.reason)")
            }
        }
    }
}

/// A difference from kube-apiserver that is known and named: which scenario, steps and aspects, and why.
/// Listed also under "Deviations from kube-apiserver" in ``LeaseAPIServer``'s documentation.
struct FidelityException: Sendable {
    var scenario: Int
    var steps: [Int]
    var aspects: [FidelityAspect]
    var reason: String

    var key: String { "\(scenario) \(steps) \(aspects.map(\.rawValue))" }

    func covers(_ difference: FidelityDifference) -> Bool {
        Int(difference.scenario.prefix(2)) == scenario && steps.contains(difference.step) && aspects.contains(difference.aspect)
    }

    static let all: [FidelityException] = [
        FidelityException(
            scenario: 14, steps: [2, 3], aspects: [.status, .contentType, .body],
            reason: "no protobuf: an Accept of only protobuf gets 406, protobuf-or-JSON gets JSON"),
    ]
}
