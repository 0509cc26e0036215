import EtcdTesting
import Foundation
import Kubernetes
import NIOHTTP1
import Testing

@Suite("Error mapping", .timeLimit(.minutes(1)))
struct ErrorMappingTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var status: Int
        var body: String
        var expected: KubernetesError.Code
        var retryable: Bool
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "404 NotFound", status: 404,
             body: statusJSON(code: 404, reason: "NotFound", message: #"leases.coordination.k8s.io \"x\" not found"#,
                              details: #"{"name":"x","group":"coordination.k8s.io","kind":"leases"}"#),
             expected: .notFound, retryable: false),
        Case(name: "409 AlreadyExists", status: 409,
             body: statusJSON(code: 409, reason: "AlreadyExists", message: #"leases.coordination.k8s.io \"x\" already exists"#),
             expected: .alreadyExists, retryable: false),
        Case(name: "409 Conflict", status: 409,
             body: statusJSON(code: 409, reason: "Conflict", message: #"Operation cannot be fulfilled on leases.coordination.k8s.io \"x\": the object has been modified; please apply your changes to the latest version and try again"#),
             expected: .conflict, retryable: false),
        Case(name: "409 with an unknown reason", status: 409,
             body: statusJSON(code: 409, reason: "SomethingNew", message: "a future conflict"),
             expected: .conflict, retryable: false),
        Case(name: "409 without a reason", status: 409,
             body: statusJSON(code: 409, reason: nil, message: "no reason"),
             expected: .conflict, retryable: false),
        Case(name: "400 BadRequest", status: 400,
             body: statusJSON(code: 400, reason: "BadRequest", message: "the name of the object (other) does not match the name on the URL (x)"),
             expected: .badRequest, retryable: false),
        Case(name: "401 Unauthorized", status: 401,
             body: statusJSON(code: 401, reason: "Unauthorized", message: "Unauthorized"),
             expected: .unauthorized, retryable: false),
        Case(name: "403 Forbidden", status: 403,
             body: statusJSON(code: 403, reason: "Forbidden", message: #"leases.coordination.k8s.io \"x\" is forbidden: User \"system:anonymous\" cannot get resource \"leases\""#),
             expected: .forbidden, retryable: false),
        Case(name: "410 Gone", status: 410,
             body: statusJSON(code: 410, reason: "Expired", message: "too old resource version: 1 (100)"),
             expected: .gone, retryable: false),
        Case(name: "500 InternalError", status: 500,
             body: statusJSON(code: 500, reason: "InternalError", message: "Internal error occurred: etcdserver: request timed out"),
             expected: .serverError, retryable: true),
        Case(name: "503 with a non-Status body", status: 503,
             body: "<html><body>upstream connect error</body></html>",
             expected: .serverError, retryable: true),
        Case(name: "403 with a non-Status body", status: 403,
             body: "forbidden by proxy",
             expected: .forbidden, retryable: false),
    ]

    @Test(arguments: cases)
    func statusIsMapped(_ testCase: Case) async throws {
        try await withServerAndClient(handler: { _, writer in
            try await writer.respond(HTTPResponseStatus(statusCode: testCase.status), json: testCase.body)
        }) { _, client in
            let error = await kubernetesError { _ = try await client.getLease(namespace: "default", name: "x") }
            #expect(error?.code == testCase.expected)
            #expect(error?.httpStatus == testCase.status)
            #expect(error?.serverAnswered == true && error?.connection == nil, "an answer is not a connection failure")
            #expect(error?.isRetryable == testCase.retryable)
            if testCase.body.hasPrefix("{") {
                #expect(error?.status?.code == testCase.status)
            } else {
                #expect(error?.status == nil)
                #expect(error?.message.contains(String(testCase.body.prefix(20))) == true, "the message carries a body excerpt")
            }
        }
    }

    @Test func invalidKeepsItsCauses() async throws {
        let body = statusJSON(
            code: 422, reason: "Invalid",
            message: #"Lease.coordination.k8s.io \"x\" is invalid: [spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0, spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0]"#,
            details: #"{"name":"x","group":"coordination.k8s.io","kind":"Lease","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: 0: must be greater than 0","field":"spec.leaseDurationSeconds"},{"reason":"FieldValueInvalid","message":"Invalid value: -1: must be greater than or equal to 0","field":"spec.leaseTransitions"}]}"#
        )
        try await withServerAndClient(handler: { _, writer in
            try await writer.respond(.unprocessableEntity, json: body)
        }) { _, client in
            let lease = Lease(metadata: ObjectMeta(name: "x"), spec: LeaseSpec(leaseDurationSeconds: 0, leaseTransitions: -1))
            let error = await kubernetesError { _ = try await client.createLease(lease, namespace: "default") }
            #expect(error?.code == .invalid)
            #expect(error?.causes.map(\.field) == ["spec.leaseDurationSeconds", "spec.leaseTransitions"])
            #expect(error?.causes.first?.reason == "FieldValueInvalid")
            #expect(error?.message.contains("must be greater than 0") == true)
        }
    }

    @Test func tooManyRequestsCarriesRetryAfter() async throws {
        try await withServerAndClient(handler: { _, writer in
            try await writer.respond(
                .tooManyRequests,
                json: statusJSON(code: 429, reason: "TooManyRequests", message: "too many requests, please try again later",
                                 details: #"{"retryAfterSeconds":1}"#),
                headers: [("Retry-After", "3")]
            )
        }) { _, client in
            let error = await kubernetesError { _ = try await client.listLeases(namespace: "default") }
            #expect(error?.code == .tooManyRequests)
            #expect(error?.retryAfter == .seconds(3), "the header wins over details.retryAfterSeconds")
            #expect(error?.isRetryable == true)
        }
        try await withServerAndClient(handler: { _, writer in
            try await writer.respond(
                .tooManyRequests,
                json: statusJSON(code: 429, reason: "TooManyRequests", message: "slow down", details: #"{"retryAfterSeconds":2}"#)
            )
        }) { _, client in
            let error = await kubernetesError { _ = try await client.listLeases(namespace: "default") }
            #expect(error?.retryAfter == .seconds(2))
        }
    }

    @Test func garbageSuccessBodyIsInvalidResponse() async throws {
        try await withServerAndClient(handler: { _, writer in
            try await writer.respond(.ok, json: "this is not json")
        }) { _, client in
            let error = await kubernetesError { _ = try await client.getLease(namespace: "default", name: "x") }
            #expect(error?.code == .invalidResponse)
            #expect(error?.message.contains("this is not json") == true)
        }
    }

    @Test func leaseWithWrongTypesIsInvalidResponse() async throws {
        try await withServerAndClient(handler: { _, writer in
            try await writer.respond(.ok, json: #"{"metadata":{"name":"x"},"spec":{"leaseDurationSeconds":"15"}}"#)
        }) { _, client in
            let error = await kubernetesError { _ = try await client.getLease(namespace: "default", name: "x") }
            #expect(error?.code == .invalidResponse)
            #expect(error?.message.contains("spec.leaseDurationSeconds") == true)
        }
    }

    @Test func connectionClosedMidResponseIsUnavailable() async throws {
        try await withServerAndClient(handler: { _, writer in
            try await writer.head(.ok, headers: [("Content-Type", "application/json")], contentLength: 1000)
            try await writer.body(#"{"metadata":{"na"#)
            await writer.close()
        }) { _, client in
            let error = await kubernetesError { _ = try await client.getLease(namespace: "default", name: "x") }
            #expect(error?.code == .unavailable)
            #expect(error?.isRetryable == true)
            #expect(error?.connection == .incompleteResponse, "the server answered, then broke off")
            #expect(error?.serverAnswered == false)
        }
    }

    @Test func serverThatClosesBeforeAnsweringIsUnreachable() async throws {
        try await withServerAndClient(handler: { _, writer in
            await writer.close()
        }) { _, client in
            let error = await kubernetesError { _ = try await client.getLease(namespace: "default", name: "x") }
            #expect(error?.code == .unavailable)
            #expect(error?.connection == .unreachable, "nothing answered: \(String(describing: error))")
        }
    }

    @Test func serverThatNeverAnswersTimesOut() async throws {
        try await withServerAndClient(requestTimeout: .milliseconds(1500), handler: { _, writer in
            await writer.waitForClose()
        }) { _, client in
            let error = await kubernetesError { _ = try await client.getLease(namespace: "default", name: "x") }
            #expect(error?.code == .timeout)
            #expect(error?.isRetryable == true)
            #expect(error?.connection == .noResponseInTime)
        }
    }

    @Test func serverThatStallsMidBodyTimesOut() async throws {
        try await withServerAndClient(requestTimeout: .milliseconds(1500), handler: { _, writer in
            try await writer.head(.ok, headers: [("Content-Type", "application/json")])
            try await writer.body(#"{"metadata":"#)
            await writer.waitForClose()
        }) { _, client in
            let error = await kubernetesError { _ = try await client.getLease(namespace: "default", name: "x") }
            #expect(error?.code == .timeout)
        }
    }

    @Test func refusedConnectionIsUnavailable() async throws {
        // A port bound but never listened on refuses connections, and stays ours for the whole test (a port freed by
        // a stopped server could be taken by another test running in parallel, which might accept).
        let (fd, port) = try bindLoopbackSocket(listenBacklog: nil)
        defer { close(fd) }
        let url = "https://127.0.0.1:\(port)"
        try await withClient(KubernetesConfiguration(server: url, requestTimeout: .seconds(2))) { client in
            let error = await kubernetesError { _ = try await client.getLease(namespace: "default", name: "x") }
            #expect(error?.code == .unavailable)
            #expect(error?.connection == .unreachable)
            #expect(error?.message.contains("cannot reach") == true, "\(String(describing: error))")
        }
    }

    @Test func cancellationCancelsTheRequest() async throws {
        let arrived = Signal<Void>()
        try await withServerAndClient(requestTimeout: .seconds(30), handler: { _, writer in
            arrived.send(())
            await writer.waitForClose()
        }) { _, client in
            let task = Task { try await client.getLease(namespace: "default", name: "x") }
            // Wait until the request reached the server, then cancel.
            var requests = arrived.stream.makeAsyncIterator()
            _ = await requests.next()
            task.cancel()
            let result = await task.result
            #expect(throws: CancellationError.self) { try result.get() }
        }
    }

    @Test func warningHeadersAreParsed() {
        let first = #"299 - "unknown field \"spec.preferredHolder\"""#
        let combined = #"299 - "unknown field \"spec.strategy\"", 299 - "a, comma""#
        let warnings = APIWarning.parse(headerValues: [first, combined, "not a warning"])
        #expect(warnings.map(\.text) == [#"unknown field "spec.preferredHolder""#, #"unknown field "spec.strategy""#, "a, comma"])
        #expect(warnings.map(\.unknownField) == ["spec.preferredHolder", "spec.strategy", nil])
        #expect(warnings.first?.code == 299 && warnings.first?.agent == "-")
    }

    @Test func statusClassificationWithoutHTTP() {
        #expect(KubernetesError(status: Status(status: "Failure", reason: "Expired", code: 410)).code == .gone)
        #expect(KubernetesError(status: Status(status: "Failure", reason: "Gone", code: 0)).code == .gone)
        #expect(KubernetesError(status: Status(status: "Failure", reason: "AlreadyExists", code: 409)).code == .alreadyExists)
        #expect(KubernetesError(status: Status(status: "Failure", reason: "InternalError", code: 500)).isRetryable)
        let error = KubernetesError(status: Status(status: "Failure", message: "m", reason: "NotFound", code: 404))
        #expect(error.httpStatus == nil)
        #expect(error.description == "KubernetesError(notFound): m")
    }
}
