import ArgumentParser

struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "TODO")
    func run() async throws { throw ValidationError("not implemented yet") }
}
