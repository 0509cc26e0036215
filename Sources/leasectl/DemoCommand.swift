import ArgumentParser

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo", abstract: "TODO")
    func run() async throws { throw ValidationError("not implemented yet") }
}
