import ArgumentParser

struct ElectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "elect", abstract: "TODO")
    func run() async throws { throw ValidationError("not implemented yet") }
}
