#!/usr/bin/env bash
# Runs every test of the workspace: unit, property and integration tests, then the
# end-to-end tests that run the real agent and collector binaries against each other
# (their output, with the lost and duplicate counts, is shown).
set -euo pipefail
cd "$(dirname "$0")/.."

# The C libraries of the optional sources and the real servers the tests use;
# PostgreSQL, ClickHouse and Prometheus are started on loopback (left running; stop
# them with `scripts/services.sh stop`).
scripts/deps.sh
scripts/services.sh start

# The end-to-end tests start the binaries from target/debug: build them first, with
# every feature (the journald and traffic tests need an agent built with them; the
# default build links no C library).
cargo build --workspace --bins --all-features
cargo test --workspace --all-features --exclude monitoring-e2e "$@"
cargo test -p monitoring-e2e --all-features "$@" -- --show-output
