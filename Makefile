# swift-leader-election — the two commands of the README's quick start are `make demo` and `make test`.
SWIFT ?= swift
export PATH := $(PATH):/opt/swift/usr/bin

.PHONY: all bootstrap build test demo bench clean

all: build

bootstrap:
	@scripts/bootstrap

build: bootstrap
	$(SWIFT) build

# Builds everything (including the leasectl binary the multi-process tests spawn), then runs every test target.
test: bootstrap
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# Three `leasectl elect` processes on a temporary flock directory: election, graceful hand-off, SIGKILL takeover.
demo: bootstrap
	$(SWIFT) build --product leasectl
	$$($(SWIFT) build --show-bin-path)/leasectl demo

# Placeholder until the benchmarks issue: fails loudly rather than pretending to measure.
bench:
	@echo "make bench: benchmarks are not implemented yet (tracked in the performance issue)" >&2
	@exit 1

clean:
	rm -rf .build
