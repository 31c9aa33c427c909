#!/usr/bin/env bash
# Runs every test of the workspace: unit, property and integration tests, including
# the end-to-end tests that run the real agent and collector binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

# The end-to-end tests start the binaries from target/debug: build them first.
cargo build --workspace --bins
cargo test --workspace --all-features "$@"
