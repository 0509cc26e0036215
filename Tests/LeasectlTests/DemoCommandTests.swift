import Foundation
import Testing
@testable import leasectl

extension ProcessTests {
    /// `leasectl demo` end to end.
    @Suite struct DemoCommandTests {
        @Test(.timeLimit(.minutes(1)))
        func demoRunsToCompletion() async throws {
            let output = try await LeasectlHarness.run(["demo", "--candidates", "3"], timeout: .seconds(60))
            #expect(output.status == .exited(0), "\(output)")
            #expect(output.stdout.contains("1. election:"))
            #expect(output.stdout.contains("2. graceful hand-off:"))
            #expect(output.stdout.contains("3. crash:"))
            #expect(output.stdout.contains("leaderships never overlapped"))
            let summary = output.stdout.split(separator: "\n").filter { $0.hasPrefix("crash takeover") }
            #expect(summary.count == 1)
            print("demo: \(summary.first ?? "")")
        }
    }
}
