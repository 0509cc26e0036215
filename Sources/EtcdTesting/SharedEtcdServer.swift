import Synchronization

/// One real etcd shared by the tests of a process that run at the same time and do not disturb it (no
/// pause, kill or auth): started on first use, stopped (killed by pid, directory removed) when the last
/// concurrent user is done.
///
/// ```swift
/// try await SharedEtcdServer.withServer { server in … server.endpoint … }
/// ```
public enum SharedEtcdServer {
    private struct State {
        var users = 0
        var server: Task<EtcdServer, any Error>?
    }
    private static let state = Mutex(State())

    /// Runs `body` with the shared server, starting it when nobody uses it yet.
    public static func withServer<R>(name: String = "shared", _ body: (EtcdServer) async throws -> R) async throws -> R {
        let task = state.withLock { state -> Task<EtcdServer, any Error> in
            state.users += 1
            if let server = state.server { return server }
            let server = Task { try await EtcdServer.start(name: name) }
            state.server = server
            return server
        }
        let server: EtcdServer
        do {
            server = try await task.value
        } catch {
            await release()
            throw error
        }
        do {
            let result = try await body(server)
            await release()
            return result
        } catch {
            await release()
            throw error
        }
    }

    private static func release() async {
        let last = state.withLock { state -> Task<EtcdServer, any Error>? in
            state.users -= 1
            guard state.users == 0 else { return nil }
            defer { state.server = nil }
            return state.server
        }
        if let last, let server = try? await last.value { await server.stop() }
    }
}
