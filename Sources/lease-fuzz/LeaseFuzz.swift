// lease-fuzz: libFuzzer entry points for every decoder of data a third party can write (issue 5).
//
// Built normally (`swift build`) it is a replay tool — the CI fuzz smoke:
//   lease-fuzz list
//   lease-fuzz replay TARGET FILE_OR_DIR…     every input must decode to a value or a typed error
// Built with libFuzzer (scripts/fuzz: `-Xswiftc -sanitize=fuzzer,address -Xswiftc -DLEASE_FUZZ_LIBFUZZER`):
//   lease-fuzz fuzz TARGET [libFuzzer flags] [CORPUS_DIR…]
// (or LEASE_FUZZ_TARGET=TARGET lease-fuzz [libFuzzer flags], which is how libFuzzer re-runs the binary).
// A finding (crash, untyped error, broken round trip) aborts the process, so libFuzzer saves the input.
import Foundation

#if LEASE_FUZZ_LIBFUZZER
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

/// The target libFuzzer drives (from `LEASE_FUZZ_TARGET`, read once).
private let fuzzedTarget: FuzzTarget = {
    guard let name = ProcessInfo.processInfo.environment["LEASE_FUZZ_TARGET"], let target = FuzzTarget(rawValue: name) else {
        printError("lease-fuzz: set LEASE_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))\n")
        exit(2)
    }
    return target
}()

/// libFuzzer's entry point (also what its own `main`, linked in but unused, refers to).
@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do {
        _ = try fuzzedTarget.run(bytes)
    } catch {
        printError("lease-fuzz: FINDING in \(fuzzedTarget.rawValue): \(error)\n")
        abort()
    }
    return 0
}

@_silgen_name("LLVMFuzzerMutate")
private func LLVMFuzzerMutate(_ data: UnsafeMutablePointer<UInt8>, _ size: Int, _ maxSize: Int) -> Int

/// For the `etcd` target, half of the mutations are structure-aware (``ProtobufMutator``); every other
/// mutation is libFuzzer's own.
@_cdecl("LLVMFuzzerCustomMutator")
public func LLVMFuzzerCustomMutator(_ data: UnsafeMutablePointer<UInt8>, _ size: Int, _ maxSize: Int, _ seed: UInt32) -> Int {
    if fuzzedTarget == .etcd, seed & 1 == 0,
       let mutated = ProtobufMutator.mutate(Array(UnsafeBufferPointer(start: data, count: size)), seed: seed >> 1),
       mutated.count <= maxSize {
        mutated.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: mutated.count) }
        return mutated.count
    }
    return LLVMFuzzerMutate(data, size, maxSize)
}

private func runLibFuzzer(_ arguments: [String]) -> Never {
    var cStrings: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
    cStrings.append(nil)
    var argc = Int32(arguments.count)
    let rc = cStrings.withUnsafeMutableBufferPointer { buffer -> Int32 in
        var argv = buffer.baseAddress!
        return LLVMFuzzerRunDriver(&argc, &argv) { data, size in LLVMFuzzerTestOneInput(data, size) }
    }
    exit(rc)
}
#endif

/// Writes `text` to standard error, unbuffered.
func printError(_ text: String) {
    FileHandle.standardError.write(Data(text.utf8))
}

@main
enum LeaseFuzz {
    static func main() {
        var arguments = CommandLine.arguments
        let program = arguments.removeFirst()
        switch arguments.first {
        case "list":
            for target in FuzzTarget.allCases { print("\(target.rawValue)\t\(target.summary)") }
        case "replay":
            arguments.removeFirst()
            guard let name = arguments.first, let target = FuzzTarget(rawValue: name), arguments.count >= 2 else { usage() }
            exit(replay(target, paths: Array(arguments.dropFirst()), verbose: ProcessInfo.processInfo.environment["LEASE_FUZZ_VERBOSE"] == "1"))
        case "fuzz":
            arguments.removeFirst()
            guard let name = arguments.first, FuzzTarget(rawValue: name) != nil else { usage() }
            #if LEASE_FUZZ_LIBFUZZER
            setenv("LEASE_FUZZ_TARGET", name, 1)
            runLibFuzzer([program] + arguments.dropFirst())
            #else
            printError("lease-fuzz: this build has no libFuzzer; build it with scripts/fuzz (or use `replay`)\n")
            exit(2)
            #endif
        default:
            #if LEASE_FUZZ_LIBFUZZER
            // libFuzzer re-running the binary (-fork, -minimize_crash, …) with its own flags.
            if ProcessInfo.processInfo.environment["LEASE_FUZZ_TARGET"] != nil { runLibFuzzer([program] + arguments) }
            #endif
            usage()
        }
    }

    static func usage() -> Never {
        printError("""
            usage: lease-fuzz list
                   lease-fuzz replay TARGET FILE_OR_DIRECTORY…
                   lease-fuzz fuzz TARGET [libFuzzer flags] [CORPUS_DIRECTORY…]   (libFuzzer build only)
            targets: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))

            """)
        exit(2)
    }

    /// Runs every file under `paths` through `target`; returns the exit status (a finding aborts instead,
    /// after naming the input).
    static func replay(_ target: FuzzTarget, paths: [String], verbose: Bool) -> Int32 {
        var files: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                printError("lease-fuzz: \(path) does not exist\n")
                return 1
            }
            if isDirectory.boolValue {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
                files += names.filter { !$0.hasPrefix(".") }.sorted().map { (path as NSString).appendingPathComponent($0) }
            } else {
                files.append(path)
            }
        }
        var values = 0
        var rejected = 0
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else {
                printError("lease-fuzz: cannot read \(file)\n")
                return 1
            }
            do {
                switch try target.run(Array(data)) {
                case .value(let text):
                    values += 1
                    if verbose { print("\(file): value: \(text.prefix(200))") }
                case .rejected(let text):
                    rejected += 1
                    if verbose { print("\(file): typed error: \(text.prefix(200))") }
                }
            } catch {
                printError("lease-fuzz: FINDING in \(target.rawValue) on \(file): \(error)\n")
                return 1
            }
        }
        print("lease-fuzz replay \(target.rawValue): \(files.count) inputs, \(values) values, \(rejected) typed errors, no findings")
        return 0
    }
}
