import LeaderElection
import Logging

/// One `leasectl elect` run: the elector, its event printer and the campaign loop.
struct ElectionSession: Sendable {
    let lock: any ResourceLock
    let configuration: LeaderElectionConfiguration
    let logger: Logger
    let output: EventOutput
    /// What to run while leading; `nil` holds leadership until cancelled.
    let command: LeaderCommand?
    let exitWithCommand: Bool

    /// Campaigns until cancelled (exit status 0), or until COMMAND exits under `exitWithCommand` (its
    /// status). Returns once every event has been printed.
    func run() async -> Int32 {
        let (code, printer) = await campaign()
        // The elector is gone, so its event stream has finished: let the printer drain it (bounded, and
        // in a task of its own so that our cancellation does not cut the wait short).
        await Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await printer.value }
                group.addTask { try? await Task.sleep(for: .seconds(2)) }
                await group.next()
                group.cancelAll()
            }
        }.value
        return code
    }

    private func campaign() async -> (Int32, Task<Void, Never>) {
        let elector: LeaderElector<ContinuousClock>
        do {
            elector = try LeaderElector(lock: lock, configuration: configuration, logger: logger)
        } catch {
            output.note("Error: \(error)")
            return (2, Task {})
        }
        // Subscribe before running so that no event is missed.
        let events = elector.events()
        let output = self.output
        let printer = Task {
            for await event in events { output.emit(event) }
        }
        return (await campaignLoop(elector), printer)
    }

    private func campaignLoop(_ elector: LeaderElector<ContinuousClock>) async -> Int32 {
        let command = self.command
        let workStops = output.workStops
        let output = self.output
        while true {
            let status: ProcessExitStatus?
            do {
                status = try await elector.run { term in
                    defer { workStops.record(term.fencingToken) }
                    if let command {
                        let status = try await command.run(for: term)
                        if !Task.isCancelled { output.note("\(term.identity): command exited (\(status))") }
                        return status
                    }
                    try await Self.holdUntilCancelled()
                    throw CancellationError()
                }
            } catch is CancellationError {
                return 0
            } catch let error as LeaseCtlError {
                output.note("Error: \(error.message)")
                return error.exitCode
            } catch {
                output.note("Error: \(error)")
                return 1
            }
            guard let status else { return 0 }   // cancelled: the lease was released (or left to expire)
            if exitWithCommand {
                output.note("\(elector.identity): exiting with the command's status \(status.code)")
                return status.code
            }
            output.note("\(elector.identity): campaigning again")
            // Give the followers woken by our release a chance before we campaign again.
            do { try await Task.sleep(for: configuration.retryPeriod) } catch { return 0 }
        }
    }

    private static func holdUntilCancelled() async throws {
        while true { try await Task.sleep(for: .seconds(3600)) }
    }
}
