#!/usr/bin/env bash
# Runs the end-to-end benchmarks: builds the release agent, collector and harness,
# then `monitoring-bench` with the arguments given (scenario names or prefixes,
# --scale, --list, --keep; all scenarios when none). The table it prints is what
# BENCHMARKS.md records. The criterion micro-benchmarks are separate:
# `cargo bench -p monitoring-benches`.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bins
exec target/release/monitoring-bench "$@"
