#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization

/// An error from the etcd test fixture: a missing binary, a server that would not start, a failed command.
public struct EtcdTestingError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, with what to do about it where we know.
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}

/// The executables the fixture runs.
public struct EtcdBinaries: Sendable, Hashable {
    /// The server, `etcd`.
    public var etcd: String
    /// The command-line client, `etcdctl` (health checks, leader discovery, and your tests' own checks).
    public var etcdctl: String
}

/// `true` when running in CI (`CI=true`, as `.ci/run` and most CI services set it).
public var isRunningInCI: Bool {
    let value = ProcessInfo.processInfo.environment["CI"]?.lowercased() ?? ""
    return value == "true" || value == "1" || value == "yes"
}

/// The install instructions every "missing binary" message ends with.
let etcdInstallHint = "install it with `sudo apt-get install etcd-server etcd-client` (or `make bootstrap`, which installs every system package the project needs)"

/// Finds `etcd` and `etcdctl`, or throws an error that says how to install them.
///
/// Looks at `ETCDTESTING_ETCD` / `ETCDTESTING_ETCDCTL` (paths) first, then `PATH`, then `/usr/bin`, `/usr/local/bin`
/// and `/opt/homebrew/bin`. Every ``EtcdServer/start(name:tls:extraArguments:startTimeout:)`` and
/// ``EtcdCluster/start(members:name:tls:heartbeatInterval:electionTimeout:extraArguments:startTimeout:)`` calls this first, so a
/// machine without etcd fails each etcd test with the same clear message — in CI (`CI=true`) worded as a CI
/// failure, since CI must install etcd rather than skip the tests. Call it from module-qualified code as
/// `EtcdTesting.requireEtcd()`.
@discardableResult
public func requireEtcd() throws(EtcdTestingError) -> EtcdBinaries {
    let etcd = findExecutable("etcd", override: "ETCDTESTING_ETCD")
    let etcdctl = findExecutable("etcdctl", override: "ETCDTESTING_ETCDCTL")
    if let etcd, let etcdctl { return EtcdBinaries(etcd: etcd, etcdctl: etcdctl) }
    throw missingEtcdError(etcdMissing: etcd == nil, etcdctlMissing: etcdctl == nil, inCI: isRunningInCI)
}

/// The error ``requireEtcd()`` throws when a binary is missing.
func missingEtcdError(etcdMissing: Bool, etcdctlMissing: Bool, inCI: Bool) -> EtcdTestingError {
    var missing: [String] = []
    if etcdMissing { missing.append("`etcd` (Debian package etcd-server)") }
    if etcdctlMissing { missing.append("`etcdctl` (Debian package etcd-client)") }
    let what = missing.joined(separator: " and ")
    if inCI {
        return EtcdTestingError(
            "CI failure: \(what) not found, but the etcd tests run against a real etcd and are never skipped in CI "
                + "(CI=true). The CI image must provide it: \(etcdInstallHint).")
    }
    return EtcdTestingError(
        "\(what) not found: the etcd tests start a real etcd server (3.4 or later) on free loopback ports. To run them, "
            + "\(etcdInstallHint). Searched PATH, /usr/bin, /usr/local/bin, /opt/homebrew/bin "
            + "(or point ETCDTESTING_ETCD / ETCDTESTING_ETCDCTL at the binaries).")
}

/// `openssl`, for ``EtcdTLS/generate(in:clientCertAuth:)``, or an error that says how to install it.
func requireOpenSSL() throws(EtcdTestingError) -> String {
    if let openssl = findExecutable("openssl", override: "ETCDTESTING_OPENSSL") { return openssl }
    let install = "install it with `sudo apt-get install openssl` (or `make bootstrap`)"
    if isRunningInCI {
        throw EtcdTestingError("CI failure: `openssl` not found; the TLS tests generate their certificates with it. The CI image must provide it: \(install).")
    }
    throw EtcdTestingError("`openssl` not found: the etcd TLS tests generate their certificates with it; \(install).")
}

/// The first executable file among the override, `PATH` and the usual directories.
func findExecutable(_ name: String, override: String) -> String? {
    let environment = ProcessInfo.processInfo.environment
    if let path = environment[override], !path.isEmpty {
        return access(path, X_OK) == 0 ? path : nil
    }
    let directories = (environment["PATH"] ?? "").split(separator: ":").map(String.init)
        + ["/usr/bin", "/usr/local/bin", "/opt/homebrew/bin", "/bin", "/usr/sbin"]
    for directory in directories where !directory.isEmpty {
        let candidate = directory + "/" + name
        var info = stat()
        if stat(candidate, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, access(candidate, X_OK) == 0 {
            return candidate
        }
    }
    return nil
}

/// The path of `setpriv` when it can give a child a parent-death signal (util-linux ≥ 2.33), checked once;
/// `nil` elsewhere.
///
/// Start a child as `setpriv --pdeathsig KILL -- EXECUTABLE ARGS…` from ``SpawnerThread`` and it is killed
/// when this process dies, however it dies.
public let pdeathsigLauncher: String? = {
    #if os(Linux)
    guard let setpriv = findExecutable("setpriv", override: "ETCDTESTING_SETPRIV"),
          let result = try? runCommandBlocking(setpriv, ["--pdeathsig", "KILL", "--", "/bin/sh", "-c", "exit 0"], timeout: .seconds(10)),
          result.succeeded
    else { return nil }
    return setpriv
    #else
    return nil
    #endif
}()
