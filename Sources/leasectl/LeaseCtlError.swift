/// A user-facing failure of a `leasectl` command: printed as `Error: <message>`, exit status 1
/// unless stated otherwise.
struct LeaseCtlError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, in a sentence an operator can act on.
    var message: String
    /// The process exit status the command should end with.
    var exitCode: Int32

    init(_ message: String, exitCode: Int32 = 1) {
        self.message = message
        self.exitCode = exitCode
    }

    var description: String { message }
}
