// lease-bench: `make bench`. Starts its own single-member etcd, measures the Swift etcd client and EtcdLock,
// then KubernetesLock and the elector against a LeaseAPIServer over that etcd; prints a Markdown table on
// stdout (progress goes to stderr) and writes bench/results.json.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Synchronization

// gRPC core reads GRPC_VERBOSITY when it initialises (with the first client): quiet unless the caller asks.
setenv("GRPC_VERBOSITY", "NONE", 0)

// The benchmark runs in a detached task while the main thread waits on a semaphore, instead of a top-level
// `await`: that would park the main thread in dispatch_main(), whose sigsuspend() on a read-only mask crashes
// valgrind 3.19 (Debian 12's), and `valgrind --tool=callgrind` must be able to profile this binary.
final class ExitCode: Sendable { let value = Atomic<Int32>(1) }
let exitCode = ExitCode()
let finished = DispatchSemaphore(value: 0)
let arguments = Array(CommandLine.arguments.dropFirst())
Task.detached {
    exitCode.value.store(await LeaseBench.run(arguments), ordering: .sequentiallyConsistent)
    finished.signal()
}
finished.wait()
exit(exitCode.value.load(ordering: .sequentiallyConsistent))
