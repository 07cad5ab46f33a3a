# The one task runner: CI calls `make test`, people call the same targets.
# A persistent target dir outside the clone lets CI on the same machine
# reuse earlier builds; a fresh machine builds from scratch (~15 min).
export CARGO_TARGET_DIR ?= $(HOME)/.cache/sessionlake-target
export CARGO_TERM_COLOR ?= never

SESSIONS ?= 500000
SOURCE ?=
LAKE ?= ./data_lake
# The service clock of the demo, like the reference's: the late-2016 data is
# "recent". Set NOW= (empty) to use real time.
NOW ?= 2016-11-07T00:00:00Z
BIN := $(CARGO_TARGET_DIR)/release/sessionlake

.PHONY: demo test lint unit unit-tests soak bench bench-scale bench-anomalies bench-api bench-idle bench-cluster bench-s3 build-release clean-lake check-prereqs-demo check-prereqs-test

## demo: build, start Cassandra, then `sessionlake up`: generate full-size data (or land SOURCE=url|file),
## run every stage, keep following and serve the API on http://127.0.0.1:8000 until Ctrl-C
## (Cassandra keeps running afterwards: scripts/cassandra stop)
## Both demo and test first check the machine's prerequisites (scripts/check-prereqs).
demo: check-prereqs-demo
	$(MAKE) --no-print-directory build-release
	scripts/cassandra start
	@set -e; \
	if [ -n "$(SOURCE)" ]; then input="--source $(SOURCE)"; else input="--generate --generate-sessions $(SESSIONS)"; fi; \
	export SESSIONLAKE_NOW="$(NOW)"; [ -n "$(NOW)" ] || unset SESSIONLAKE_NOW; \
	echo "Cassandra keeps running after sessionlake stops: scripts/cassandra cqlsh; stop it with: scripts/cassandra stop"; \
	$(BIN) --lake $(LAKE) up $$input

## test: every check and every test (what CI runs)
test: check-prereqs-test
	$(MAKE) --no-print-directory lint unit

# One line for each thing missing, before anything long starts.
check-prereqs-demo:
	@scripts/check-prereqs demo

check-prereqs-test:
	@scripts/check-prereqs test

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --workspace --all-targets --features crash-points -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

# The tests run with the test hooks (`--features crash-points`: crash points,
# stop-after budgets), which a release build leaves out.
# Starts the project's Cassandra for the tests (fetched from Maven Central on
# first use) and stops it afterwards, unless it was already running. The S3
# server the S3 tests start themselves is built first (once per machine:
# about 15 minutes on 2 cores, then cached), alongside the Rust build of the
# tests: its module downloads and its niced compiles fill the Rust build's
# idle time on a fresh machine.
unit:
	scripts/s3 build & s3_build=$$!; cargo test --workspace --features crash-points --no-run --quiet && wait $$s3_build
	scripts/cassandra run $(MAKE) --no-print-directory unit-tests
	scripts/torture-report

# The crates' tests, then the binary's suites (tests/it) one after another,
# as when each was a test binary of its own: the cluster's four JVMs and the
# crash loops never share the two cores.
SUITES := cli serve torture cluster
unit-tests:
	cargo test --workspace --features crash-points -- $(foreach suite,$(SUITES),--skip $(suite)::)
	set -e; for suite in $(SUITES); do cargo test --workspace --features crash-points --test it -- $$suite::; done

## soak: the torture suite at length, for people (TORTURE_KILLS=200 kills, TORTURE_API_KILLS=100 API kills under POST load; TORTURE_SEED=n replays a run)
soak:
	TORTURE_KILLS=$${TORTURE_KILLS:-200} TORTURE_API_KILLS=$${TORTURE_API_KILLS:-100} scripts/cassandra run cargo test --workspace --features crash-points --test it -- torture:: --nocapture
	scripts/torture-report

## bench: full-size chain in release mode, seconds per stage, events/s, peak RSS (SCALE=10 or SCALE=30 for 10x or 30x)
bench: build-release
	scripts/bench

## bench-scale: the chain at 1x, 10x and 30x (SCALES="1 10 30"): us/event per stage against 1x, and peak RSS
bench-scale: build-release
	scripts/bench-scale

## bench-anomalies: raw on the full-size file clean and with 0.1% anomalies (stray dates): the ratio (target <= 1.1)
bench-anomalies: build-release
	scripts/bench-anomalies

## bench-api: load test of the API (oha at 2000 req/s and full speed on both GETs; POST /events events/s)
bench-api: build-release
	scripts/bench-api

## bench-idle: CPU of an idle `up` (landing zone and a folder watched) over 60 s, on the full-size lake (target <= 1 % of a core)
bench-idle: build-release
	scripts/bench-idle

## bench-cluster: serve rows/s and the API's p50/p99 at 2000 req/s, one node vs a 3-node RF 3 cluster
bench-cluster: build-release
	scripts/bench-cluster

## bench-s3: the full-size chain on a local lake and on an s3:// lake (SeaweedFS on 127.0.0.51), seconds per stage and the ratio
bench-s3: build-release
	scripts/bench-s3

build-release:
	cargo build --release --quiet

clean-lake:
	rm -rf $(LAKE)
