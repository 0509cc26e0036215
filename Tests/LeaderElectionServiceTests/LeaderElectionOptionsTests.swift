import ArgumentParser
import LeaderElection
@testable import LeaderElectionService
import Testing

/// The message ArgumentParser prints for `arguments`, or `nil` when they parse and validate.
private func failure(_ arguments: [String]) -> String? {
    do {
        _ = try LeaderElectionOptions.parse(arguments)
        return nil
    } catch {
        return LeaderElectionOptions.message(for: error)
    }
}

@Suite("LeaderElectionOptions")
struct LeaderElectionOptionsTests {
    @Test("defaults are kube's")
    func defaults() throws {
        let options = try LeaderElectionOptions.parse(["--leader-elect-resource-name", "ctrl"])
        #expect(options.leaderElect)
        #expect(options.leaseDuration.duration == .seconds(15))
        #expect(options.renewDeadline.duration == .seconds(10))
        #expect(options.retryPeriod.duration == .seconds(2))
        #expect(options.resourceLock == .leases)
        #expect(options.resourceName == "ctrl")
        #expect(options.resourceNamespace == "kube-system")
        #expect(options.lockURL == nil)
        let help = LeaderElectionOptions.helpMessage().split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for flag in ["--leader-elect ", "--leader-elect-lease-duration", "--leader-elect-renew-deadline", "--leader-elect-retry-period",
                     "--leader-elect-resource-lock", "--leader-elect-resource-name", "--leader-elect-resource-namespace", "--leader-elect-lock-url"] {
            #expect(help.contains(flag), "help lacks \(flag)")
        }
        #expect(help.contains("default: 15s") && help.contains("default: 10s") && help.contains("default: 2s"), "\(help)")
    }

    @Test("every flag is parsed")
    func everyFlag() throws {
        let options = try LeaderElectionOptions.parse([
            "--leader-elect=true",
            "--leader-elect-lease-duration", "1m",
            "--leader-elect-renew-deadline=40s",
            "--leader-elect-retry-period", "500ms",
            "--leader-elect-resource-lock", "etcd",
            "--leader-elect-resource-name", "scheduler",
            "--leader-elect-resource-namespace", "prod",
        ])
        #expect(options.leaderElect)
        #expect(options.leaseDuration.duration == .seconds(60))
        #expect(options.renewDeadline.duration == .seconds(40))
        #expect(options.retryPeriod.duration == .milliseconds(500))
        #expect(options.resourceLock == .etcd)
        #expect(options.resourceName == "scheduler")
        #expect(options.resourceNamespace == "prod")

        let configuration = options.serviceConfiguration
        #expect(configuration.enabled && configuration.id == "scheduler" && configuration.namespace == "prod")
        #expect(configuration.resourceLock == .etcd && configuration.lockURL == nil)
        #expect(configuration.leaseDuration == .seconds(60) && configuration.renewDeadline == .seconds(40))
        #expect(configuration.retryPeriod == .milliseconds(500))
        let election = options.electionConfiguration
        #expect(election.name == "scheduler" && election.leaseDuration == .seconds(60))
        #expect(election.renewDeadline == .seconds(40) && election.retryPeriod == .milliseconds(500))
        try election.validate(identity: "me")
    }

    @Test("--leader-elect takes kube's forms", arguments: [
        (["--leader-elect"], true),
        (["--leader-elect=true"], true),
        (["--leader-elect=false"], false),
        (["--leader-elect=0"], false),
        (["--leader-elect", "false"], false),
        (["--leader-elect", "--leader-elect-resource-name", "x"], true),
        (["--leader-elect-resource-name", "x", "--leader-elect"], true),
    ])
    func leaderElectForms(arguments: [String], expected: Bool) throws {
        var arguments = arguments
        if !arguments.contains("--leader-elect-resource-name") { arguments += ["--leader-elect-resource-name", "x"] }
        let options = try LeaderElectionOptions.parse(arguments)
        #expect(options.leaderElect == expected)
        #expect(options.serviceConfiguration.enabled == expected)
    }

    @Test("--leader-elect=false turns election off and skips validation, as kube does")
    func disabledSkipsValidation() throws {
        let options = try LeaderElectionOptions.parse(["--leader-elect=false", "--leader-elect-lease-duration", "1s"])
        #expect(!options.leaderElect)
        #expect(!options.serviceConfiguration.enabled)
        #expect(failure(["--leader-elect=maybe"])
            == "invalid argument \"maybe\" for \"--leader-elect\" flag: strconv.ParseBool: parsing \"maybe\": invalid syntax (write --leader-elect=true or --leader-elect=false)")
    }

    @Test("Go durations", arguments: [
        ("15s", Duration.seconds(15)), ("1m30s", .seconds(90)), ("500ms", .milliseconds(500)), ("1h", .seconds(3600)),
        ("1.5s", .milliseconds(1500)), ("2h45m", .seconds(9900)), ("300us", .microseconds(300)), ("300µs", .microseconds(300)),
        ("7ns", .nanoseconds(7)), (".5s", .milliseconds(500)), ("1.s", .seconds(1)), ("0", .zero), ("+5s", .seconds(5)),
        ("-1.5h", .zero - .seconds(5400)), ("1.0000000019s", .nanoseconds(1_000_000_001)), ("1h1m1s1ms", .milliseconds(3_661_001)),
    ])
    func goDurations(text: String, expected: Duration) throws {
        #expect(try GoDuration(parsing: text).duration == expected)
        #expect(GoDuration(argument: text)?.duration == expected)
    }

    @Test("malformed durations are rejected, saying why", arguments: [
        ("", "no number"), ("abc", "expected a number"), ("15", "missing unit"), ("15x", "unknown unit \"x\""),
        ("1.5.5s", "missing unit"), ("s", "expected a number"), ("1h30", "missing unit"), (" 15s", "expected a number"),
        ("15 s", "unknown unit \" s\""), ("--1s", "expected a number"), ("9999999999h", "out of range"), (".s", "without digits"),
        ("15S", "unknown unit \"S\""), ("1d", "unknown unit \"d\""),
    ])
    func badDurations(text: String, reason: String) {
        #expect(GoDuration(argument: text) == nil)
        do {
            _ = try GoDuration(parsing: text)
            Issue.record("\"\(text)\" parsed")
        } catch {
            #expect(error.code == .invalidDuration)
            #expect(error.message.contains(reason), "\(error.message)")
            #expect(error.message.contains("in duration \"\(text)\""), "\(error.message)")
        }
    }

    @Test("a malformed duration flag fails parsing with Go's explanation")
    func badDurationFlag() {
        let message = failure(["--leader-elect-resource-name", "x", "--leader-elect-lease-duration", "15x"])
        #expect(message == "The value '15x' is invalid for '--leader-elect-lease-duration <duration>': unknown unit \"x\" in duration \"15x\" (expected a Go duration such as 15s, 1m30s or 500ms)")
    }

    @Test("validation errors read like client-go's", arguments: [
        (["--leader-elect-lease-duration", "10s"], "leaseDuration must be greater than renewDeadline (--leader-elect-lease-duration=10s, --leader-elect-renew-deadline=10s)"),
        (["--leader-elect-retry-period", "9s"], "renewDeadline must be greater than retryPeriod*JitterFactor(1.2) (--leader-elect-renew-deadline=10s, --leader-elect-retry-period=9s)"),
        (["--leader-elect-retry-period", "0"], "retryPeriod must be greater than zero (--leader-elect-retry-period=0s)"),
        (["--leader-elect-lease-duration=-1s", "--leader-elect-renew-deadline=-2s", "--leader-elect-retry-period=-3s"], "leaseDuration must be greater than zero (--leader-elect-lease-duration=-1s)"),
        (["--leader-elect-lease-duration", "900ms", "--leader-elect-renew-deadline", "500ms", "--leader-elect-retry-period", "100ms"], "leaseDuration must be at least 1s: the lease stores whole seconds (--leader-elect-lease-duration=900ms)"),
    ])
    func validationMessages(arguments: [String], message: String) {
        #expect(failure(arguments + ["--leader-elect-resource-name", "x"]) == message)
    }

    @Test("the 8.333s edge of the jitter rule: 10s > 1.2 × 8.3s passes, 1.2 × 8.5s fails")
    func jitterEdge() {
        #expect(failure(["--leader-elect-resource-name", "x", "--leader-elect-retry-period", "8.3s"]) == nil)
        #expect(failure(["--leader-elect-resource-name", "x", "--leader-elect-retry-period", "8.5s"])?.hasPrefix("renewDeadline must be greater than retryPeriod*JitterFactor") == true)
    }

    @Test("resource lock types: supported ones, removed ones and unknown ones")
    func resourceLocks() throws {
        #expect(try LeaderElectionOptions.parse(["--leader-elect-resource-lock", "leases", "--leader-elect-resource-name", "x"]).resourceLock == .leases)
        #expect(try LeaderElectionOptions.parse(["--leader-elect-resource-lock", "etcd", "--leader-elect-resource-name", "x"]).resourceLock == .etcd)
        for removed in ["endpointsleases", "configmapsleases", "endpoints", "configmaps"] {
            #expect(failure(["--leader-elect-resource-lock", removed, "--leader-elect-resource-name", "x"])
                == "--leader-elect-resource-lock=\(removed): \(removed) lock is removed, migrate to leases (Kubernetes removed the \(removed) lock type; supported: leases, etcd, file)")
        }
        #expect(failure(["--leader-elect-resource-lock", "zookeeper", "--leader-elect-resource-name", "x"])
            == "--leader-elect-resource-lock=zookeeper: unknown lock type \"zookeeper\" (supported: leases, etcd, file)")
        #expect(failure(["--leader-elect-resource-lock", "file", "--leader-elect-resource-name", "x"])
            == "--leader-elect-resource-lock=file needs --leader-elect-lock-url file:///DIR/NAME (the directory has no default)")
        #expect(failure([]) == "--leader-elect-resource-name is required when leader election is enabled (or name the lock with --leader-elect-lock-url)")
    }

    @Test("the lock URL names backend, namespace and name", arguments: [
        ("kubernetes://prod/my-lease", LeaderElectionService.LockBackend.leases, "prod", "my-lease"),
        ("kubernetes:///my-lease", .leases, "kube-system", "my-lease"),
        ("etcd://10.0.0.1:2379,10.0.0.2:2379/leader-election/ns1/app", .etcd, "ns1", "app"),
        ("etcd://localhost:2379/app", .etcd, "kube-system", "app"),
        ("file:///var/run/x/lock", .file, "/var/run/x", "lock"),
    ])
    func lockURLs(url: String, backend: LeaderElectionService.LockBackend, namespace: String, name: String) throws {
        let options = try LeaderElectionOptions.parse(["--leader-elect-lock-url", url])
        #expect(options.resourceLock == backend)
        #expect(options.resourceNamespace == namespace)
        #expect(options.resourceName == name)
        let configuration = options.serviceConfiguration
        #expect(configuration.lockURL == url && configuration.id == name && configuration.namespace == namespace)
        #expect(configuration.resourceLock == backend)
    }

    @Test("resource flags must agree with the lock URL; malformed URLs are explained")
    func lockURLConflicts() throws {
        let url = "kubernetes://prod/my-lease"
        // Agreeing flags are fine.
        let agreeing = try LeaderElectionOptions.parse([
            "--leader-elect-lock-url", url, "--leader-elect-resource-lock", "leases",
            "--leader-elect-resource-name", "my-lease", "--leader-elect-resource-namespace", "prod",
        ])
        #expect(agreeing.resourceName == "my-lease")
        #expect(failure(["--leader-elect-lock-url", url, "--leader-elect-resource-lock", "etcd"])
            == "--leader-elect-resource-lock=etcd conflicts with --leader-elect-lock-url \(url), which names a leases lock; omit one of them")
        #expect(failure(["--leader-elect-lock-url", url, "--leader-elect-resource-name", "other"])
            == "--leader-elect-resource-name=other conflicts with --leader-elect-lock-url \(url), which names \"my-lease\"; omit one of them")
        #expect(failure(["--leader-elect-lock-url", url, "--leader-elect-resource-namespace", "dev"])
            == "--leader-elect-resource-namespace=dev conflicts with --leader-elect-lock-url \(url), whose namespace is \"prod\"; omit one of them")
        // A URL without a namespace takes the flag's.
        let namespaced = try LeaderElectionOptions.parse(["--leader-elect-lock-url", "kubernetes:///l", "--leader-elect-resource-namespace", "dev"])
        #expect(namespaced.resourceNamespace == "dev")

        #expect(failure(["--leader-elect-lock-url", "zk://host/x"])?.contains("unsupported scheme \"zk\"") == true)
        #expect(failure(["--leader-elect-lock-url", "/var/run/lock"])?.contains("expected a URL such as") == true)
        #expect(failure(["--leader-elect-lock-url", "kubernetes://prod/a/b"])?.contains("one path component") == true)
        #expect(failure(["--leader-elect-lock-url", "file:///var/run/"])?.contains("the path must name a lock") == true)
        #expect(failure(["--leader-elect-lock-url", "etcd:///x/y"])?.contains("the endpoints are missing") == true)
    }

    @Test("embedded with @OptionGroup in a command")
    func embedded() throws {
        struct Controller: ParsableCommand {
            @OptionGroup(title: "Leader election") var leaderElection: LeaderElectionOptions
            @Argument var target: String
        }
        let command = try Controller.parse(["run-target", "--leader-elect=false"])
        #expect(command.target == "run-target")
        #expect(!command.leaderElection.leaderElect)
        #expect(Controller.helpMessage().contains("LEADER ELECTION"))
        // A bare --leader-elect before a positional would read it as its value: reported, never swallowed.
        #expect(throws: (any Error).self) { try Controller.parse(["--leader-elect", "run-target", "--leader-elect-resource-name", "x"]) }
        let bare = try Controller.parse(["run-target", "--leader-elect-resource-name", "x", "--leader-elect"])
        #expect(bare.leaderElection.leaderElect && bare.target == "run-target")
    }
}
