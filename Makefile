# xrouter — build, test and demo. Every target that needs system packages
# installs the missing ones itself (Debian, as root).

GO        ?= go
BIN       := bin/xrouter
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
# Packages the tests and the demo use; clang-14/llvm-14 only for `make generate`.
DEB_PKGS  := iproute2 iputils-ping clang llvm libbpf-dev linux-libc-dev procps bird2 frr gobgpd
TEST_TIMEOUT ?= 60m

# GoBGP v3.37.0's decoder panics on some malformed FlowSpec NLRI, and a panic
# in a session goroutine ends the daemon: any established neighbour could
# stop the router with one UPDATE. tools/gobgppatch writes a copy of the
# module with the missing bounds checks into build/ and a go.work that uses
# it; every go command below builds through that workspace.
WORKFILE := $(CURDIR)/build/go.work
export GOWORK := $(WORKFILE)

.PHONY: all build install difftest-long deps generate check-generate vet test test-unit demo bench bench-compare bench-fib bench-failover clean

all: build

$(WORKFILE): go.mod go.sum tools/gobgppatch/main.go
	GOWORK=off $(GO) run ./tools/gobgppatch -dir build

build: $(WORKFILE)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/xrouter

# Installs the binary, the hardened systemd unit, the docs and (unless one
# is there) the example config. PREFIX and DESTDIR as usual.
PREFIX  ?= /usr/local
DESTDIR ?=
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/xrouter
	install -d -m 0755 $(DESTDIR)/etc/systemd/system $(DESTDIR)/etc/xrouter $(DESTDIR)$(PREFIX)/share/doc/xrouter
	sed 's#/usr/local/#$(PREFIX)/#g' contrib/systemd/xrouter.service > $(DESTDIR)/etc/systemd/system/xrouter.service
	test -e $(DESTDIR)/etc/xrouter/xrouter.yaml || install -m 0640 contrib/xrouter.yaml $(DESTDIR)/etc/xrouter/xrouter.yaml
	install -m 0644 docs/*.md $(DESTDIR)$(PREFIX)/share/doc/xrouter/

# Installs what a fresh Debian machine lacks (apt-get update runs once,
# before the first install). A no-op when everything is there.
deps:
	@scripts/install-deps.sh $(DEB_PKGS)

# Regenerates the committed BPF objects with the pinned clang and CFLAGS in
# internal/dataplane/gen.go.
generate: $(WORKFILE)
	$(GO) generate ./internal/dataplane ./internal/loadgen

# Fails when the committed objects differ from a fresh `make generate`.
check-generate: generate
	git diff --exit-code -- 'internal/dataplane/*_bpfel.go' 'internal/dataplane/*_bpfel.o' \
		'internal/loadgen/*_bpfel.go' 'internal/loadgen/*_bpfel.o'

vet: $(WORKFILE)
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# Every test: unit, BPF (BPF_PROG_RUN) and netns integration tests. Tests that
# need root skip with a reason when not root; CI runs as root.
test: deps build vet check-generate
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -p 1 ./...

# The differential test (kernel forwarding vs xrouter) with a long stream.
difftest-long: build
	XR_DIFF_FRAMES=5000 $(GO) test -count=1 -timeout 30m -run TestDifferentialPrivileged -v ./netns-tests/

test-unit: $(WORKFILE)
	$(GO) test -race -count=1 ./internal/config/ ./internal/fib/

# The forwarding benchmark (netns-tests/bench): source ⇄ router ⇄ sink in
# network namespaces, every router mode interleaved round by round on one
# CPU; results and plots into docs/benchmarks.md and docs/img/. With it the
# FlowSpec scenarios (issue 12): a spoofed-source flood dropped by xrouter's
# XDP classifier against nftables in the forward hook under 1, 100 and
# 10,000 rules, and forwarding with 100 rules the traffic does not match.
# About 7–8 minutes on 2 cores. BENCH_FLAGS adds flags, e.g. -rounds 3 -dev;
# -flowspec-only runs only the FlowSpec scenarios (about 2 minutes) and
# writes only their section; -flowspec 1,100,10000 and -flowspec-fwd 100
# set their rule counts ("" and 0: none).
BENCH_FLAGS ?=
bench: deps build
	$(GO) test -c -o bin/bench.test ./netns-tests/bench/
	bin/bench.test -test.run '^TestBenchPrivileged$$' -test.v -test.timeout 15m \
		-full -xrouter $(BIN) -docs docs/benchmarks.md -command 'make bench$(if $(BENCH_FLAGS), BENCH_FLAGS="$(BENCH_FLAGS)")' $(BENCH_FLAGS)

# Before and after: the same benchmark with one more mode, xrouter built
# from BASE (any git revision) in a temporary git worktree (removed
# afterwards), run with the xrouter mode's config and interleaved with the
# other modes round by round. Writes only the comparison section of
# docs/benchmarks.md (ns per packet and ratios, xrouter against BASE); the
# forwarding section stays that of the last `make bench`. About 6 minutes on
# 2 cores; BENCH_FLAGS as for bench.
BASE ?= 86f9f41
ifeq ($(BASE),86f9f41)
COMPARE_TITLE ?= Before and after the fidelity fixes (issue 9)
else
COMPARE_TITLE ?= Against an earlier build ($(BASE))
endif
bench-compare: deps build
	@set -e; \
	base=$$(git rev-parse --verify --short=7 '$(BASE)^{commit}'); \
	wt=$$(mktemp -d /tmp/xrouter-base.XXXXXX); \
	trap 'git worktree remove --force "$$wt" 2>/dev/null || rm -rf "$$wt"; git worktree prune' EXIT; \
	trap 'exit 130' INT TERM; \
	echo "building xrouter at $$base in $$wt"; \
	git worktree add --quiet --detach "$$wt" "$$base"; \
	(cd "$$wt" && GOWORK=off $(GO) build -ldflags "-X main.version=$$base" -o "$$wt/xrouter-base" ./cmd/xrouter); \
	$(GO) test -c -o bin/bench.test ./netns-tests/bench/; \
	dirty=$$(git diff --quiet HEAD -- . ':!docs' || echo ' with uncommitted changes'); \
	set -x; \
	bin/bench.test -test.run '^TestBenchPrivileged$$' -test.v -test.timeout 20m \
		-full -xrouter $(BIN) -docs docs/benchmarks.md \
		-baseline "$$wt/xrouter-base" -baseline-name "xrouter at $$base" \
		-baseline-rev "$$(git log -1 --format='%h (%s)' $$base)" \
		-head-rev "$$(git log -1 --format='%h (%s)' HEAD)$$dirty" \
		-compare-title '$(COMPARE_TITLE)' \
		-command 'make bench-compare BASE=$(BASE)$(if $(BENCH_FLAGS), BENCH_FLAGS="$(BENCH_FLAGS)")' $(BENCH_FLAGS)

# Control-plane benchmark: a BIRD feeder sends BENCH_PREFIXES IPv4 prefixes
# to xrouter, BIRD and FRR in turn; time to all-in-kernel, peak RSS, CPU and
# removal time go into docs/benchmarks.md; xrouter's profiles (CPU during
# load and removal, heap after the load) go to bin/fibbench-*.pprof
# (`go tool pprof -top bin/xrouter bin/fibbench-xrouter-load.pprof`).
# `make test` runs the same test with 10,000 prefixes as a smoke test.
BENCH_PREFIXES ?= 1000000
bench-fib: deps build
	XROUTER_FIBBENCH_PREFIXES=$(BENCH_PREFIXES) \
	XROUTER_FIBBENCH_DOC=$(CURDIR)/docs/benchmarks.md \
	XROUTER_FIBBENCH_PROFILE=$(CURDIR)/bin/fibbench \
	$(GO) test -count=1 -timeout 30m -run 'TestFIBBenchPrivileged' -v ./netns-tests/

# Failover benchmark: two upstreams (feeders in netns-tests/bgpfeed_test.go)
# send the same FAILBENCH_PREFIXES IPv4 and FAILBENCH_PREFIXES6 IPv6
# prefixes, A preferred; xrouter, BIRD and FRR receive in turn, with the
# diverse (about one attribute set per 3 prefixes) and the packed feed. It
# measures the load of both tables (time, peak RSS, CPU) and, with probes
# to 1000 sampled prefixes, failover after kill -9 of A's speaker and after
# a cut of A's link (hold timer), and the returns; results and plots into
# docs/benchmarks.md and docs/img/. `make test` runs a 10,000-prefix
# correctness smoke test of it (TestFailoverSmokePrivileged).
FAILBENCH_PREFIXES  ?= 1000000
FAILBENCH_PREFIXES6 ?= 200000
bench-failover: deps build
	XROUTER_FAILBENCH_PREFIXES=$(FAILBENCH_PREFIXES) \
	XROUTER_FAILBENCH_PREFIXES6=$(FAILBENCH_PREFIXES6) \
	XROUTER_FAILBENCH_DOC=$(CURDIR)/docs/benchmarks.md \
	$(GO) test -count=1 -timeout 300m -run 'TestFailoverBenchPrivileged' -v ./netns-tests/

demo: deps build
	XR=./$(BIN) scripts/demo.sh

clean:
	rm -rf bin build
