import EtcdTesting
import FileLock
import KubernetesTesting
import Foundation
import LeaderElection
import Testing
@testable import leasectl

extension ProcessTests {
    /// `leasectl doctor`: its checks on synthetic observations (``Checks``), and the command against real
    /// locks, a running `leasectl elect` leader and an unreachable etcd.
    @Suite struct DoctorCommandTests {
        /// The line of `check` in a text report.
        static func line(_ check: String, in output: LeasectlHarness.Output) -> String? {
            output.stdout.split(separator: "\n").map(String.init).first {
                $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.map(String.init) == check
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func aRunningLeaderIsHealthyInTextAndJSON() async throws {
            let directory = try LeasectlHarness.temporaryDirectory()
            defer { LeasectlHarness.cleanUp(directory) }
            let url = "file://\(directory)/leader"
            let group = CandidateGroup(lock: url, directory: directory, arguments: ["--retry-period", "200ms"])
            do {
                try group.start("leader")
                _ = try await group.await("leader to lead") { $0.event == "startedLeading" }

                let text = try await LeasectlHarness.run(["doctor", url, "--retry-period", "200ms", "--observe", "1s"])
                #expect(text.status == .exited(0), "\(text)")
                #expect(text.stdout.hasPrefix("leasectl doctor file://\(directory)/leader (lease 15s, renew deadline 10s, retry period 200ms; 5 samples, observing 1s)\n"), "\(text)")
                let holder = try #require(Self.line("holder", in: text), "\(text)")
                #expect(holder.hasPrefix("OK ") && holder.contains("held by leader"), "\(text)")
                #expect(Self.line("store", in: text)?.hasPrefix("OK ") == true, "\(text)")
                #expect(Self.line("config", in: text)?.hasPrefix("OK ") == true, "\(text)")
                // Same host, same clock: renewals carry this host's time.
                #expect(Self.line("clock", in: text)?.hasPrefix("OK ") == true, "\(text)")
                #expect(text.stdout.hasSuffix("\n5 OK\n"), "\(text)")

                let json = try await LeasectlHarness.run(["doctor", "-o", "json", url, "--retry-period", "200ms", "--observe", "500ms"])
                #expect(json.status == .exited(0), "\(json)")
                let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json)")
                #expect(document["lock"] as? String == "file://\(directory)/leader")
                #expect(["OK", "WARN"].contains(document["status"] as? String), "\(json)")
                let findings = try #require(document["findings"] as? [[String: Any]])
                #expect(findings.map { $0["name"] as? String } == ["store", "holder", "flapping", "clock", "config"], "\(json)")
                let holderFinding = try #require(findings.first { $0["name"] as? String == "holder" })
                #expect(holderFinding["status"] as? String == "OK")
                #expect((holderFinding["evidence"] as? String)?.contains("held by leader") == true)
                #expect(holderFinding["hint"] is NSNull)
                await group.stopAll()
            } catch {
                await group.stopAll()
                throw error
            }
        }

        /// `leader` campaigns on `lock` (with `arguments`), then doctor (with `arguments`) finds it healthy.
        static func expectHealthyLeader(lock: String, arguments: [String]) async throws {
            let directory = try LeasectlHarness.temporaryDirectory()
            defer { LeasectlHarness.cleanUp(directory) }
            let group = CandidateGroup(lock: lock, directory: directory, arguments: arguments + ["--retry-period", "300ms"])
            do {
                try group.start("leader")
                _ = try await group.await("leader to lead") { $0.event == "startedLeading" }
                let result = try await LeasectlHarness.run(["doctor", lock, "--retry-period", "300ms", "--observe", "1s"] + arguments)
                #expect(result.status == .exited(0), "\(result)")
                let holder = try #require(Self.line("holder", in: result), "\(result)")
                #expect(holder.hasPrefix("OK ") && holder.contains("held by leader"), "\(result)")
                #expect(Self.line("store", in: result)?.hasPrefix("OK ") == true, "\(result)")
                #expect(Self.line("config", in: result)?.hasPrefix("OK ") == true, "\(result)")
                await group.stopAll()
            } catch {
                await group.stopAll()
                Issue.record("candidate logs:\n\(group.logs())")
                throw error
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func aRunningLeaderOnEtcdIsHealthy() async throws {
            let etcd = try await EtcdServer.start(name: "leasectl-doctor")
            do {
                try await Self.expectHealthyLeader(lock: "etcd://\(etcd.endpoint)/leader-election/tests/doctor", arguments: [])
            } catch {
                await etcd.stop()
                throw error
            }
            await etcd.stop()
        }

        @Test(.timeLimit(.minutes(1)))
        func aRunningLeaderOnAKubernetesLeaseIsHealthy() async throws {
            try await KubernetesTestEnvironment.with { env in
                try await Self.expectHealthyLeader(
                    lock: "kubernetes://\(env.namespace)/doctor", arguments: ["--kubeconfig", env.kubeconfigPath])
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func aReleasedLockWithNobodyCampaigningHasNoLeader() async throws {
            let directory = try LeasectlHarness.temporaryDirectory()
            defer { LeasectlHarness.cleanUp(directory) }
            let url = "file://\(directory)/leader"
            let group = CandidateGroup(lock: url, directory: directory, arguments: ["--retry-period", "200ms"])
            do {
                try group.start("leader")
                _ = try await group.await("leader to lead") { $0.event == "startedLeading" }
                await group.stopAll()   // SIGTERM: releases, and nobody else campaigns
            } catch {
                await group.stopAll()
                throw error
            }
            let result = try await LeasectlHarness.run(["doctor", url, "--retry-period", "200ms", "--observe", "600ms"])
            #expect(result.status == .exited(1), "\(result)")
            let holder = try #require(Self.line("holder", in: result), "\(result)")
            #expect(holder.hasPrefix("FAIL") && holder.contains("no leader: free (released)"), "\(result)")
            #expect(holder.contains("check that candidates run"), "\(result)")
            #expect(Self.line("store", in: result)?.hasPrefix("OK ") == true, "\(result)")
        }

        @Test(.timeLimit(.minutes(1)))
        func anUnreachableEtcdFailsQuickly() async throws {
            let port = try EtcdServer.freePort()
            let started = ContinuousClock.now
            let result = try await LeasectlHarness.run(
                ["doctor", "etcd://127.0.0.1:\(port)/leader-election/tests/x", "--etcd-dial-timeout", "1s", "--observe", "1s"],
                timeout: .seconds(20))
            #expect(result.status == .exited(1), "\(result)")
            let store = try #require(Self.line("store", in: result), "\(result)")
            #expect(store.hasPrefix("FAIL") && store.contains("unreachable: "), "\(result)")
            #expect(store.contains("cannot reach etcd at 127.0.0.1:\(port)"), "\(result)")
            #expect(Self.line("holder", in: result)?.hasPrefix("SKIP") == true, "\(result)")
            #expect(started.duration(to: .now) < .seconds(10), "one timed-out read, no observation")
        }

        @Test(.timeLimit(.minutes(1)))
        func aRenewDeadlineNotBelowTheLeaseDurationFailsTheConfigCheck() async throws {
            let directory = try LeasectlHarness.temporaryDirectory()
            defer { LeasectlHarness.cleanUp(directory) }
            let writer = try FileLock(directory: directory, name: "leader", identity: "alice")
            let now = MicroTime.now()
            _ = try await writer.create(LeaderElectionRecord(
                holderIdentity: "alice", leaseDuration: .seconds(10), acquireTime: now, renewTime: now, leaseTransitions: 1))
            let result = try await LeasectlHarness.run(
                ["doctor", "file://\(directory)/leader", "--lease-duration", "10s", "--renew-deadline", "10s", "--samples", "2", "--observe", "300ms"])
            #expect(result.status == .exited(1), "\(result)")
            let config = try #require(Self.line("config", in: result), "\(result)")
            #expect(config.hasPrefix("FAIL") && config.contains("leaseDuration must be greater than renewDeadline"), "\(result)")
            withExtendedLifetime(writer) {}
        }

        @Test func badOptionsAreRejected() async throws {
            let samples = try await LeasectlHarness.run(["doctor", "file:///tmp/x", "--samples", "0"])
            #expect(samples.status == .exited(64) && samples.stderr.contains("--samples must be between 1 and 100"), "\(samples)")
            let observe = try await LeasectlHarness.run(["doctor", "file:///tmp/x", "--observe", "11m"])
            #expect(observe.status == .exited(64) && observe.stderr.contains("--observe must be positive"), "\(observe)")
        }

        /// The checks, on synthetic observations: monotonic `at` and this host's wall clock start together.
        @Suite struct Checks {
            static let epoch = MicroTime(microsecondsSinceEpoch: 1_800_000_000_000_000)
            static let timing = Doctor.Timing(leaseDuration: .seconds(15), renewDeadline: .seconds(10), retryPeriod: .seconds(2))

            /// This host's wall clock `ms` milliseconds after the observation began.
            static func wall(_ ms: Int) -> MicroTime { epoch.advanced(by: .milliseconds(ms)) }

            static func record(
                _ holder: String, version: UInt64, renewedAt: Int, acquiredAt: Int? = nil, lease: Duration = .seconds(15),
                transitions: Int = 1, preferred: String? = nil, gone: Bool = false
            ) -> LeaseSnapshot.State {
                .record(VersionedRecord(
                    record: LeaderElectionRecord(
                        holderIdentity: holder, leaseDuration: lease, acquireTime: wall(acquiredAt ?? renewedAt),
                        renewTime: wall(renewedAt), leaseTransitions: transitions, preferredHolder: preferred),
                    version: LockVersion(version), holderIsKnownGone: gone))
            }

            /// A read completing `at` ms into the observation.
            static func read(_ at: Int, _ state: LeaseSnapshot.State, latency: Int = 2) -> Doctor.Read {
                Doctor.Read(at: .milliseconds(at), latency: .milliseconds(latency), wall: wall(at), state: state)
            }

            // MARK: store

            @Test func storeLatencyAgainstTheRenewDeadline() {
                let free = Self.record("", version: 1, renewedAt: 0)
                let fast = [1, 5, 3, 2, 4].map { Self.read(0, free, latency: $0) }
                let ok = Doctor.checkStore(samples: fast, timing: Self.timing)
                #expect(ok.status == .ok)
                #expect(ok.evidence.hasPrefix("5 of 5 reads answered: p50 3ms, max 5ms (renew deadline 10s: WARN above 2.5s, FAIL above 5s)"), "\(ok.evidence)")
                #expect(ok.hint == nil)

                let slow = Doctor.checkStore(samples: [1, 1, 3000, 1, 1].map { Self.read(0, free, latency: $0) }, timing: Self.timing)
                #expect(slow.status == .warn && slow.evidence.contains("max 3s"), "\(slow.evidence)")
                #expect(slow.hint?.contains("load") == true)

                let tooSlow = Doctor.checkStore(samples: [1, 6000].map { Self.read(0, free, latency: $0) }, timing: Self.timing)
                #expect(tooSlow.status == .fail && tooSlow.evidence.contains("max 6s"), "\(tooSlow.evidence)")

                let failedWhileObserving = Doctor.checkStore(
                    samples: fast, observed: [Self.read(100, .failed("timed out")), Self.read(200, free)], timing: Self.timing)
                #expect(failedWhileObserving.status == .warn)
                #expect(failedWhileObserving.evidence.hasSuffix("; 1 of 2 reads failed while observing"), "\(failedWhileObserving.evidence)")
            }

            @Test func anUnreachableStoreFailsWithItsMessage() {
                let finding = Doctor.checkStore(
                    samples: [Self.read(1000, .failed("cannot reach etcd at 127.0.0.1:1 (connection refused)"), latency: 1000)],
                    timing: Self.timing)
                #expect(finding.status == .fail)
                #expect(finding.evidence == "unreachable: cannot reach etcd at 127.0.0.1:1 (connection refused)")
                #expect(finding.hint?.contains("reachable") == true)

                let partly = Doctor.checkStore(
                    samples: [Self.read(0, .missing), Self.read(5, .failed("reset by peer"))], timing: Self.timing)
                #expect(partly.status == .fail && partly.evidence.hasSuffix("; 1 failed: reset by peer"), "\(partly.evidence)")
            }

            // MARK: holder

            @Test func aRenewingHolderIsOK() {
                let reads = [
                    Self.read(0, Self.record("a", version: 1, renewedAt: -100, acquiredAt: -60_000)),
                    Self.read(500, Self.record("a", version: 1, renewedAt: -100, acquiredAt: -60_000)),
                    Self.read(1900, Self.record("a", version: 2, renewedAt: 1890, acquiredAt: -60_000)),
                    Self.read(3900, Self.record("a", version: 3, renewedAt: 3890, acquiredAt: -60_000, preferred: "b")),
                    Self.read(4500, Self.record("a", version: 3, renewedAt: 3890, acquiredAt: -60_000, preferred: "b")),
                ]
                let finding = Doctor.checkHolder(reads: reads, timing: Self.timing)
                #expect(finding.status == .ok, "\(finding)")
                #expect(finding.evidence == "held by a for 1m4s, lease 15s, last change seen 600ms ago, 2 renewals seen in 4.5s; hand-off to b pending (preferredHolder)")
            }

            @Test func noRecordOrAnUndecodableOneMeansNoLeader() {
                let missing = Doctor.checkHolder(reads: [Self.read(0, .missing), Self.read(1000, .missing)], timing: Self.timing)
                #expect(missing.status == .fail && missing.evidence.hasPrefix("no leader: the lock has no record"), "\(missing)")
                let corrupt = Doctor.checkHolder(reads: [Self.read(0, .corrupt(message: "bad JSON", version: nil))], timing: Self.timing)
                #expect(corrupt.status == .fail && corrupt.evidence.contains("bad JSON"))
                #expect(corrupt.hint?.contains("release --force") == true)
                let unread = Doctor.checkHolder(reads: [Self.read(0, .failed("down"))], timing: Self.timing)
                #expect(unread.status == .skip)
            }

            @Test func aFreeLockNobodyTakesFailsOnlyOnceCandidatesHadTheirChance() {
                // Released a minute ago and free for all of the 5 s observed (candidates take it within 4.4 s).
                let released = Self.record("", version: 7, renewedAt: -60_000, lease: .seconds(1), transitions: 4)
                let long = Doctor.checkHolder(reads: [0, 2500, 5000].map { Self.read($0, released) }, timing: Self.timing)
                #expect(long.status == .fail, "\(long)")
                #expect(long.evidence.hasPrefix("no leader: free (released), nobody took it during 5s observed (released 1m5s ago by this host's wall clock)"), "\(long.evidence)")
                #expect(long.hint?.contains("candidates") == true)

                // Released just now, observed for a second: too early to say.
                let justReleased = Self.record("", version: 8, renewedAt: 0, lease: .seconds(1), transitions: 4)
                let brief = Doctor.checkHolder(reads: [0, 1000].map { Self.read($0, justReleased) }, timing: Self.timing)
                #expect(brief.status == .warn, "\(brief)")
                #expect(brief.evidence.contains("campaigning candidates take a free lock within 4.4s"), "\(brief.evidence)")

                // A pending hand-off makes the others stand back for a lease duration more.
                let handingOff = Self.record("", version: 9, renewedAt: 0, lease: .seconds(15), transitions: 4, preferred: "b")
                let waiting = Doctor.checkHolder(reads: [0, 5000].map { Self.read($0, handingOff) }, timing: Self.timing)
                #expect(waiting.status == .warn && waiting.evidence.contains("hand-off to b pending"), "\(waiting)")

                // A holder whose process is gone (flock released) is as good as free.
                let gone = Self.record("a", version: 3, renewedAt: -30_000, gone: true)
                let dead = Doctor.checkHolder(reads: [0, 5000].map { Self.read($0, gone) }, timing: Self.timing)
                #expect(dead.status == .fail && dead.evidence.contains("held by a, whose process is gone"), "\(dead)")

                // Taken during the observation: not "no leader".
                let taken = Doctor.checkHolder(
                    reads: [Self.read(0, justReleased), Self.read(300, Self.record("b", version: 9, renewedAt: 290))],
                    timing: Self.timing)
                #expect(taken.status == .ok, "\(taken)")
            }

            @Test func anExpiredLeaseNobodyTakesIsJudgedOnTheMonotonicClock() {
                // Unchanged for longer than its 2 s lease while observed: expired by client-go's rule, whatever the
                // timestamps say (here renewTime looks fresh: the holder's clock runs ahead).
                let stuck = Self.record("a", version: 5, renewedAt: 2800, lease: .seconds(2))
                let finding = Doctor.checkHolder(reads: [0, 1500, 3000].map { Self.read($0, stuck) }, timing: Self.timing)
                #expect(finding.status == .fail, "\(finding)")
                #expect(finding.evidence.contains("expired by client-go's rule"), "\(finding.evidence)")
            }

            @Test func aHolderThatStoppedRenewingFailsOrWarnsByItsRenewTime() {
                // No renewal in 5 s (2 × retry period is 4 s) and renewTime a minute old: expired, by the wall clock.
                let old = Self.record("a", version: 5, renewedAt: -60_000)
                let failed = Doctor.checkHolder(reads: [0, 2500, 5000].map { Self.read($0, old) }, timing: Self.timing)
                #expect(failed.status == .fail, "\(failed)")
                #expect(failed.evidence.contains("renewTime is 1m5s old by this host's wall clock"), "\(failed.evidence)")
                #expect(failed.evidence.contains("--observe 15s judges on the monotonic clock"), "\(failed.evidence)")

                // No renewal in 5 s, but renewTime a second old: only a warning.
                let recent = Self.record("a", version: 5, renewedAt: -1000)
                let warned = Doctor.checkHolder(reads: [0, 2500, 5000].map { Self.read($0, recent) }, timing: Self.timing)
                #expect(warned.status == .warn, "\(warned)")
                #expect(warned.evidence.contains("expected a renewal every retry period (2s)"), "\(warned.evidence)")

                // Observed for less than 2 × retry period: nothing to hold against it.
                let short = Doctor.checkHolder(reads: [0, 1000].map { Self.read($0, old) }, timing: Self.timing)
                #expect(short.status == .ok, "\(short)")
            }

            // MARK: flapping

            @Test func flappingFromObservedTermsAndTheCurrentTermsAge() {
                let stable = Doctor.checkFlapping(
                    reads: [0, 2000].map { Self.read($0, Self.record("a", version: 1, renewedAt: $0, acquiredAt: -3_598_000, transitions: 40)) },
                    timing: Self.timing)
                #expect(stable.status == .ok, "\(stable)")
                #expect(stable.evidence == "40 transitions in total, no change of holder in 2s observed; the current term began 1h0m0s ago (acquireTime, this host's wall clock)")

                let switching = Doctor.checkFlapping(
                    reads: [
                        Self.read(0, Self.record("a", version: 1, renewedAt: 0, transitions: 3), latency: 0),
                        Self.read(1000, Self.record("", version: 2, renewedAt: 900, transitions: 3)),
                        Self.read(1800, Self.record("b", version: 3, renewedAt: 1700, transitions: 4)),
                    ],
                    timing: Self.timing)
                #expect(switching.status == .warn, "\(switching)")
                #expect(switching.evidence.hasPrefix("1 new term seen in 1.8s observed (about 2000 per hour)"), "\(switching.evidence)")
                #expect(switching.hint?.contains("check the network") == true)

                let young = Doctor.checkFlapping(
                    reads: [Self.read(0, Self.record("a", version: 1, renewedAt: 0, acquiredAt: -30_000, transitions: 12))],
                    timing: Self.timing)
                #expect(young.status == .warn && young.evidence.contains("less than 10 × the lease duration (2m30s)"), "\(young)")

                let youngButRare = Doctor.checkFlapping(
                    reads: [Self.read(0, Self.record("a", version: 1, renewedAt: 0, acquiredAt: -30_000, transitions: 2))],
                    timing: Self.timing)
                #expect(youngButRare.status == .ok, "\(youngButRare)")
                #expect(Doctor.checkFlapping(reads: [Self.read(0, .missing)], timing: Self.timing).status == .skip)
            }

            // MARK: clock

            @Test func clockOffsetIsBoundedByTheReadsAroundEachChange() {
                func reads(holderAhead offset: Int) -> [Doctor.Read] {
                    [
                        Self.read(1000, Self.record("a", version: 1, renewedAt: 0 + offset)),
                        // Written at 1200 on this host's clock, seen by the read completing at 1500.
                        Self.read(1500, Self.record("a", version: 2, renewedAt: 1200 + offset)),
                        Self.read(3000, Self.record("a", version: 2, renewedAt: 1200 + offset)),
                        Self.read(3300, Self.record("a", version: 3, renewedAt: 3201 + offset)),
                    ]
                }
                let inSync = Doctor.checkClock(reads: reads(holderAhead: 0))
                #expect(inSync.status == .ok, "\(inSync)")
                #expect(inSync.evidence.hasPrefix("renewTime of a vs this host's clock: "), "\(inSync.evidence)")
                #expect(inSync.evidence.contains("advisory"))

                let ahead = Doctor.checkClock(reads: reads(holderAhead: 3000))
                #expect(ahead.status == .warn, "\(ahead)")
                // Intersection of [2701ms, 3202ms] and [2902ms, 3203ms].
                #expect(ahead.evidence.contains("+3.05s ± 150ms from 2 changes"), "\(ahead.evidence)")
                #expect(ahead.evidence.contains("at least 2.9s off"), "\(ahead.evidence)")
                #expect(ahead.hint?.contains("chrony/NTP") == true)

                let behind = Doctor.checkClock(reads: reads(holderAhead: -3000))
                #expect(behind.status == .warn && behind.evidence.contains("at least 2.8s off"), "\(behind)")

                let unchanged = Doctor.checkClock(reads: [0, 1000].map { Self.read($0, Self.record("a", version: 1, renewedAt: 0)) })
                #expect(unchanged.status == .skip)
            }

            // MARK: config

            @Test func configurationFollowsClientGosRules() {
                let held = LeaderElectionRecord(holderIdentity: "a", leaseDuration: .seconds(15))
                let ok = Doctor.checkConfiguration(timing: Self.timing, record: held)
                #expect(ok.status == .ok)
                #expect(ok.evidence == "leaseDuration 15s > renewDeadline 10s > 1.2 × retryPeriod 2.4s; the holder writes the same leaseDuration")

                var equal = Self.timing
                equal.renewDeadline = .seconds(15)
                let leaseNotAbove = Doctor.checkConfiguration(timing: equal, record: nil)
                #expect(leaseNotAbove.status == .fail && leaseNotAbove.evidence.contains("leaseDuration must be greater than renewDeadline"), "\(leaseNotAbove)")

                var jittered = Self.timing
                jittered.renewDeadline = .seconds(2)
                let deadlineNotAbove = Doctor.checkConfiguration(timing: jittered, record: nil)
                #expect(deadlineNotAbove.status == .fail && deadlineNotAbove.evidence.contains("renewDeadline must be greater than retryPeriod*JitterFactor"))

                let backend = Doctor.checkConfiguration(timing: Self.timing, backendProblem: "a Lease holds whole seconds", record: nil)
                #expect(backend.status == .fail && backend.evidence.hasSuffix(": a Lease holds whole seconds"))

                let other = Doctor.checkConfiguration(timing: Self.timing, record: LeaderElectionRecord(holderIdentity: "a", leaseDuration: .seconds(30)))
                #expect(other.status == .warn && other.evidence.contains("writes leaseDuration 30s, not 15s"), "\(other)")
                // A released record's 1 s says nothing about the candidates.
                let free = Doctor.checkConfiguration(timing: Self.timing, record: LeaderElectionRecord(holderIdentity: "", leaseDuration: .seconds(1)))
                #expect(free.status == .ok)
            }

            // MARK: probe

            @Test(.timeLimit(.minutes(1)))
            func theProbeSeesARenewalMadeWhileObserving() async throws {
                let store = InMemoryLockStore(name: "doctor")
                let holder = store.lock(identity: "a")
                let now = MicroTime.now()
                let first = try await holder.create(LeaderElectionRecord(
                    holderIdentity: "a", leaseDuration: .seconds(15), acquireTime: now, renewTime: now, leaseTransitions: 1))
                let probe = DoctorProbe(lock: store.lock(identity: "doctor"), describe: { "\($0)" }, pollInterval: .milliseconds(50))
                let sampled = await probe.sample(3)
                #expect(sampled.count == 3 && sampled.allSatisfy { $0.record?.version == first })
                // The renewal lands after the samples, so the observation (whenever it first reads) sees a change.
                let observing = Task { await probe.observe(for: .milliseconds(300)) }
                let renewed = MicroTime.now()
                let second = try await holder.update(LeaderElectionRecord(
                    holderIdentity: "a", leaseDuration: .seconds(15), acquireTime: now, renewTime: renewed, leaseTransitions: 1),
                    expecting: first)
                let observed = await observing.value
                #expect(!observed.isEmpty && observed.count < 50, "bounded by the duration and the poll interval: \(observed.count)")
                #expect(observed.last?.record?.version == second)
                #expect(observed.last!.at - sampled.first!.startedAt >= .milliseconds(300))
                let reads = sampled + observed
                let holderFinding = Doctor.checkHolder(reads: reads, timing: Self.timing)
                #expect(holderFinding.status == .ok && holderFinding.evidence.contains("1 renewal seen"), "\(holderFinding)")
                #expect(Doctor.checkClock(reads: reads).status == .ok)
                #expect(Doctor.checkStore(samples: sampled, observed: observed, timing: Self.timing).status == .ok)
            }

            // MARK: report

            @Test func exitStatusAndTextReport() {
                let ok = Doctor.Finding(name: "store", status: .ok, evidence: "fast")
                let warn = Doctor.Finding(name: "flapping", status: .warn, evidence: "switching", hint: "check the network")
                let fail = Doctor.Finding(name: "holder", status: .fail, evidence: "no leader", hint: "start candidates")
                let skip = Doctor.Finding(name: "clock", status: .skip, evidence: "nothing seen")
                #expect(Doctor.exitStatus([ok, skip], strict: true) == 0)
                #expect(Doctor.exitStatus([ok, warn], strict: false) == 0)
                #expect(Doctor.exitStatus([ok, warn], strict: true) == 2)
                #expect(Doctor.exitStatus([warn, fail], strict: true) == 1)
                #expect(Doctor.textReport([ok, fail, warn, skip], heading: "doctor x") == [
                    "doctor x",
                    "OK    store     fast",
                    "FAIL  holder    no leader → start candidates",
                    "WARN  flapping  switching → check the network",
                    "SKIP  clock     nothing seen",
                    "1 FAIL, 1 WARN, 1 OK, 1 SKIP",
                ])
                #expect(fail.structured.json() == #"{"name":"holder","status":"FAIL","evidence":"no leader","hint":"start candidates"}"#)
                #expect(Doctor.format(.microseconds(420)) == "0.42ms")
                #expect(Doctor.format(.milliseconds(250)) == "250ms")
                #expect(Doctor.format(.milliseconds(2500)) == "2.5s")
                #expect(Doctor.format(.seconds(90)) == "1m30s")
            }
        }
    }
}
