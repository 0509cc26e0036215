import Etcd
import Kubernetes

/// A failed request, as the `meta/v1 Status` kube-apiserver would send (apimachinery `api/errors`).
struct APIError: Error, Sendable {
    var status: Status

    var code: Int { status.code ?? 500 }

    init(code: Int, reason: String?, message: String, details: Status.Details? = nil) {
        status = Status(status: "Failure", message: message, reason: reason, details: details, code: code)
    }

    /// `NewNotFound`: `leases.coordination.k8s.io "x" not found`.
    static func notFound(_ resource: ResourceInfo, _ name: String) -> APIError {
        APIError(code: 404, reason: "NotFound", message: "\(resource.qualifiedResource) \(goQuote(name)) not found",
                 details: resource.details(name: name))
    }

    /// `NewAlreadyExists`: `leases.coordination.k8s.io "x" already exists`.
    static func alreadyExists(_ resource: ResourceInfo, _ name: String) -> APIError {
        APIError(code: 409, reason: "AlreadyExists", message: "\(resource.qualifiedResource) \(goQuote(name)) already exists",
                 details: resource.details(name: name))
    }

    /// The optimistic-lock failure (`NewConflict` with `OptimisticLockErrorMsg`).
    static func conflict(_ resource: ResourceInfo, _ name: String,
                         _ reason: String = "the object has been modified; please apply your changes to the latest version and try again") -> APIError {
        APIError(code: 409, reason: "Conflict",
                 message: "Operation cannot be fulfilled on \(resource.qualifiedResource) \(goQuote(name)): \(reason)",
                 details: resource.details(name: name))
    }

    /// `NewInvalid` for the qualified kind `kind.group` (or, as the registry store does for a missing
    /// resourceVersion, the qualified resource): one cause per field error; the message lists them, in
    /// brackets when there are several.
    static func invalid(kind: String, group: String, name: String, _ errors: [FieldError]) -> APIError {
        let qualified = group.isEmpty ? kind : "\(kind).\(group)"
        var seen = Set<String>()
        let unique = errors.map(\.description).filter { seen.insert($0).inserted }
        let message: String
        switch unique.count {
        case 0: message = "\(qualified) \(goQuote(name)) is invalid"
        case 1: message = "\(qualified) \(goQuote(name)) is invalid: \(unique[0])"
        default: message = "\(qualified) \(goQuote(name)) is invalid: [\(unique.joined(separator: ", "))]"
        }
        let causes = errors.map { Status.Cause(reason: $0.type.rawValue, message: $0.body, field: $0.field) }
        return APIError(code: 422, reason: "Invalid", message: message,
                        details: Status.Details(name: name.isEmpty ? nil : name, group: group.isEmpty ? nil : group, kind: kind, causes: causes))
    }

    /// `NewBadRequest`.
    static func badRequest(_ message: String) -> APIError {
        APIError(code: 400, reason: "BadRequest", message: message)
    }

    /// `NewUnauthorized("Unauthorized")`, as the authentication filter sends it.
    static let unauthorized = APIError(code: 401, reason: "Unauthorized", message: "Unauthorized")

    /// `NewForbidden`.
    static func forbidden(_ resource: ResourceInfo, _ name: String, _ reason: String) -> APIError {
        APIError(code: 403, reason: "Forbidden", message: "\(resource.qualifiedResource) \(goQuote(name)) is forbidden: \(reason)",
                 details: resource.details(name: name))
    }

    /// `NewInternalError`: the message prefixed, and repeated as the only cause.
    static func internalError(_ message: String) -> APIError {
        APIError(code: 500, reason: "InternalError", message: "Internal error occurred: \(message)",
                 details: Status.Details(causes: [Status.Cause(message: message)]))
    }

    /// `NewServiceUnavailable`.
    static func serviceUnavailable(_ message: String) -> APIError {
        APIError(code: 503, reason: "ServiceUnavailable", message: message)
    }

    /// `NewResourceExpired`: 410 `Expired`.
    static func expired(_ message: String) -> APIError {
        APIError(code: 410, reason: "Expired", message: message)
    }

    /// The generic 404 for a path that names no resource.
    static let pathNotFound = APIError(code: 404, reason: "NotFound", message: "the server could not find the requested resource",
                                       details: Status.Details())

    /// A method the resource does not support.
    static func methodNotAllowed(_ method: String, _ resource: ResourceInfo?) -> APIError {
        if let resource {
            return APIError(code: 405, reason: "MethodNotAllowed",
                            message: "\(method) is not supported on resources of kind \(goQuote(resource.qualifiedResource))",
                            details: Status.Details(group: resource.group.isEmpty ? nil : resource.group, kind: resource.resource))
        }
        return APIError(code: 405, reason: "MethodNotAllowed", message: "the server does not allow this method on the requested resource",
                        details: Status.Details())
    }

    /// 415 `UnsupportedMediaType`.
    static func unsupportedMediaType(_ message: String, details: Status.Details? = nil) -> APIError {
        APIError(code: 415, reason: "UnsupportedMediaType", message: message, details: details)
    }

    /// `NewRequestEntityTooLargeError`.
    static func requestEntityTooLarge(limit: Int) -> APIError {
        APIError(code: 413, reason: "RequestEntityTooLarge", message: "Request entity too large: limit is \(limit)")
    }

    /// Maps an etcd client failure: unreachable → 503, anything else → 500.
    static func etcd(_ error: any Error, _ what: String) -> APIError {
        if let error = error as? APIError { return error }
        if let error = error as? EtcdError {
            if error.code == .unavailable || error.code == .deadlineExceeded {
                return serviceUnavailable("etcd is unavailable: \(what) failed: \(error.message)")
            }
            return internalError("etcd: \(what) failed: \(error.message)")
        }
        if error is CancellationError { return serviceUnavailable("the request was cancelled: the server is shutting down") }
        return internalError("\(what) failed: \(error)")
    }
}

/// A field-level validation error (apimachinery `field.Error`).
struct FieldError: Sendable, CustomStringConvertible {
    enum ErrorType: String, Sendable {
        case invalid = "FieldValueInvalid"
        case required = "FieldValueRequired"
        case forbidden = "FieldValueForbidden"
        case notSupported = "FieldValueNotSupported"

        var text: String {
            switch self {
            case .invalid: "Invalid value"
            case .required: "Required value"
            case .forbidden: "Forbidden"
            case .notSupported: "Unsupported value"
            }
        }
    }

    /// The bad value, formatted as Go's `field.Error.ErrorBody` prints it.
    enum Value: Sendable {
        case none
        case int(Int64)
        case string(String)
        /// A Go value printed with `%#v` (such as `uint64(0)` → `0x0`, or a named string type).
        case raw(String)
    }

    var type: ErrorType
    var field: String
    var value: Value
    var detail: String

    static func invalid(_ field: String, _ value: Value, _ detail: String) -> FieldError {
        FieldError(type: .invalid, field: field, value: value, detail: detail)
    }

    static func required(_ field: String, _ detail: String) -> FieldError {
        FieldError(type: .required, field: field, value: .none, detail: detail)
    }

    static func forbidden(_ field: String, _ detail: String) -> FieldError {
        FieldError(type: .forbidden, field: field, value: .none, detail: detail)
    }

    static func notSupported(_ field: String, _ value: Value, supported: [String]) -> FieldError {
        let detail = supported.isEmpty ? "" : "supported values: " + supported.map(goQuote).joined(separator: ", ")
        return FieldError(type: .notSupported, field: field, value: value, detail: detail)
    }

    /// `ErrorBody()`: the message without the field path.
    var body: String {
        var text: String
        switch (type, value) {
        case (.required, _), (.forbidden, _), (_, .none):
            text = type.text
        case (_, .int(let number)):
            text = "\(type.text): \(number)"
        case (_, .string(let string)):
            text = "\(type.text): \(goQuote(string))"
        case (_, .raw(let raw)):
            text = "\(type.text): \(raw)"
        }
        if !detail.isEmpty { text += ": \(detail)" }
        return text
    }

    /// `Error()`: `field: body`.
    var description: String { "\(field): \(body)" }
}

/// Go's `%q` for a string: double quotes, with `"`, `\` and control characters escaped.
func goQuote(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        case "\r": result += "\\r"
        case "\t": result += "\\t"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F {
                result += "\\x" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
    }
    return result + "\""
}
