# swift-leader-election — the two commands of the README's quick start are `make demo` and `make test`.
SWIFT ?= swift
export PATH := $(PATH):/opt/swift/usr/bin
# gRPC core logs to stderr; tests that provoke TLS and connection failures on purpose would flood it.
export GRPC_VERBOSITY ?= NONE

.PHONY: all bootstrap build test compose-check docs demo bench chaos fuzz fuzz-lsan clean

all: build

bootstrap:
	@scripts/bootstrap

build: bootstrap
	$(SWIFT) build

# Validates docker-compose.yml first, builds everything (including the leasectl binary the multi-process tests
# spawn), runs every test target, then the C shim's smoke program under valgrind (fails on any leak or error), the
# fuzz corpus replay, the seeded chaos subset and the DocC catalog check.
test: bootstrap compose-check
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	scripts/valgrind-shim
	scripts/fuzz --smoke
	scripts/chaos --smoke
	scripts/docs

# Builds the DocC catalog (Sources/LeaderElection/LeaderElection.docc) into .build-docs; fails on any DocC warning.
docs:
	scripts/docs

# Validates docker-compose.yml (the 3-member etcd cluster for manual use); needs no Docker engine.
compose-check: bootstrap
	docker-compose -f docker-compose.yml config -q

# Three `leasectl elect` processes on a temporary flock directory: election, graceful hand-off, SIGKILL takeover.
demo: bootstrap
	$(SWIFT) build --product leasectl
	$$($(SWIFT) build --show-bin-path)/leasectl demo

# Release-builds lease-bench and leasectl (its *.handoff.leasectl scenarios run it) in their own scratch path, so it
# never fights the debug build, and runs lease-bench: it starts its own etcd, prints a Markdown table and writes
# bench/results.json (docs/performance.md). Extra flags: BENCH_ARGS="--rounds 7".
# It also builds bench/go-clientv3 (Go's etcd client, from Debian's golang-etcd-server-dev, GOPATH mode, no
# network) and passes it as --go-reference: the etcd latency rounds alternate with rounds of Go's client.
BENCH_SCRATCH ?= .build-release
bench:
	BOOTSTRAP_BENCH=1 scripts/bootstrap
	GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$(CURDIR)/$(BENCH_SCRATCH)/go-cache GOFLAGS=-trimpath \
		go build -o $(BENCH_SCRATCH)/go-clientv3 ./bench/go-clientv3
	$(SWIFT) build -c release --scratch-path $(BENCH_SCRATCH) --product lease-bench
	$(SWIFT) build -c release --scratch-path $(BENCH_SCRATCH) --product leasectl
	GRPC_VERBOSITY=NONE $$($(SWIFT) build -c release --scratch-path $(BENCH_SCRATCH) --show-bin-path)/lease-bench --output bench/results.json \
		--go-reference $(BENCH_SCRATCH)/go-clientv3 $(BENCH_ARGS)

# The chaos harness (docs/reliability.md): release-builds lease-chaos and lease-apiserver in .build-chaos, then runs
# the full seeded fault schedule on every backend (>= 1,000 induced failovers each, ~20 min) and writes
# chaos/results.json and chaos/results.md. Extra flags: CHAOS_ARGS="--backend etcd --seed 7 --keep-logs".
chaos: bootstrap
	scripts/chaos $(CHAOS_ARGS)

# libFuzzer over every decoder of third-party data (release build with -sanitize=fuzzer in .build-fuzz), each
# target for FUZZ_SECONDS (default 60); findings go to fuzz/regressions/. `make test` replays the corpora.
fuzz: bootstrap
	scripts/fuzz $(FUZZ_TARGETS)

# Malformed-server and fuzz-regression tests under ASan + LeakSanitizer (.build-asan; ~10 min cold build).
fuzz-lsan: bootstrap
	scripts/fuzz --lsan

clean:
	rm -rf .build $(BENCH_SCRATCH) .build-chaos .build-fuzz .build-asan .build-docs chaos
