import ArgumentParser

struct TortureWriteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "_torture-write", abstract: "TODO", shouldDisplay: false)
    func run() async throws { throw ValidationError("not implemented yet") }
}
