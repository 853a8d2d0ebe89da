# Vidar: the two commands a newcomer runs are `make demo` and `make test`.
SHELL := /bin/bash
export ORT_DYLIB_PATH := $(CURDIR)/.cache/libonnxruntime.so
export VIDAR_MODEL_DIR := $(CURDIR)/.cache/models
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
PY := $(CURDIR)/.cache/venv/bin/python

.PHONY: setup models build build-release demo test check check-deploy attacks soak testbed lint bench bench-ingest eval-tracker sim clean

## Install system packages, the Python venv and the ONNX Runtime library (idempotent).
setup:
	@deploy/setup.sh

## Produce (or verify from the shared cache) the model files listed in models/manifest.toml.
models: setup
	@if [ -x models/scripts/fetch_models.sh ]; then models/scripts/fetch_models.sh; fi

build: setup
	$(CARGO) build --workspace --all-targets

build-release: setup
	$(CARGO) build --release --workspace --bins

## Run the system on an embedded default: test camera over RTSP + edge node with live stats.
demo: setup models build-release
	@deploy/demo.sh

## Every test: Rust unit + integration tests (real GStreamer, RTSP, ONNX Runtime), evaluation checks.
test: setup models
	# Every binary first: multi-process tests start binaries of other packages.
	$(CARGO) build --workspace --bins
	deploy/check.sh
	$(CARGO) test --workspace --no-fail-fast
	# A site in network namespaces (root; said and skipped otherwise): a node
	# cut off twice, the master SIGKILLed once, failover and nothing lost.
	$(PY) deploy/testbed/testbed.py --smoke --bin target/debug --out .cache/testbed-smoke

## The inner loop: module structure and every crate's unit tests (no processes, cameras or browser).
check: setup
	tools/check-modules
	$(CARGO) test --workspace --lib

## The attack suite of docs/security.md on its own (part of `make test`):
## hostile peers on the cluster link, forged sync and records, hostile
## payloads, the UI's authentication and throttling, operators' corrections,
## enrolment and revocation while the master runs.
attacks: setup models
	$(CARGO) build --workspace --bins
	$(CARGO) test --no-fail-fast -p vidar-link --test secure
	$(CARGO) test --no-fail-fast -p vidar-protocol --test wire
	$(CARGO) test --no-fail-fast -p vidar-store --test hostile
	$(CARGO) test --no-fail-fast -p vidar-master --test cluster --test roster --test ui_api --test corrections
	$(CARGO) test --no-fail-fast -p vidar-edge-node --test cluster

## A site under faults, mutual TLS on: master, 2 nodes, 8 cameras for an hour; a
## camera and a node SIGKILLed every 10 minutes. RSS, p99 per window, records
## lost or duplicated (a benchmark, not in CI; docs/benchmarks.md). Shorter:
## make soak SOAK_ARGS="--minutes 12 --event-every 120".
soak: setup models build-release
	$(PY) tools/soak.py $(SOAK_ARGS)

## A site on a real network, as root: one network namespace per process, links
## rate-limited with tc; measured link rates against the tc rates, a node cut
## off for 2 minutes twice (the second time with the master SIGKILLed),
## records lost or duplicated (a benchmark, not in CI; docs/benchmarks.md).
## make testbed TESTBED_ARGS="--rates 30,10,5 --partition-s 120".
testbed: setup models build-release
	$(PY) deploy/testbed/testbed.py $(TESTBED_ARGS)

## Deployment files: systemd units, configs, compose, Kubernetes manifests (deploy/check.sh).
check-deploy: setup
	deploy/check.sh

lint:
	tools/check-modules
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Benchmarks that print tables (see docs/benchmarks.md).
bench: setup models build-release
	target/release/vidar-edge bench ingest
	target/release/vidar-edge bench pipeline --threads 1
	target/release/vidar-edge bench pipeline --threads 0
	target/release/vidar-edge bench cameras
	target/release/vidar-edge bench cameras --cameras 10 --offset 7 --threads 1 --workers 2 --max-batch 1 --reference-threads 1 --intervals 1,2 --seconds 45
	target/release/vidar-cluster-bench
	target/release/vidar-edge bench detect
	target/release/vidar-edge bench reid --models osnet-x0-25-msmt17-combineall,osnet-x0-25-msmt17,osnet-x0-25-market1501,mobilenetv2-deepsort --batches 1,8,32 --threads 1
	# Labelled data (research use only) is read in place from ../shared/data when present.
	if [ -d ../shared/data/reid/cuhk01 ]; then \
	  target/release/vidar-edge eval reid --data ../shared/data/reid/cuhk01 --ids 1-200 --query-camera 0 && \
	  target/release/vidar-edge eval reid --data ../shared/data/reid/cuhk01 --query-camera 0 && \
	  target/release/vidar-edge bench trajectories --people ../shared/data/reid/cuhk01; \
	else echo "skipped re-ID accuracy and trajectories: ../shared/data/reid/cuhk01 absent"; fi
	$(CARGO) bench -p vidar-tracker
	$(CARGO) bench -p vidar-store
	$(CARGO) bench -p vidar-scheduler

bench-ingest: setup build-release
	target/release/vidar-edge bench ingest

## Tracker evaluation on motmetrics' TUD ground truth, ours vs peer Python trackers.
eval-tracker: setup
	tracker/eval/run.sh

## Scheduler experiments: regenerates scheduler/RESULTS.md and its figures.
sim: setup
	$(CARGO) run --release -p vidar-scheduler --bin vidar-sim -- all --out scheduler/results

clean:
	$(CARGO) clean
