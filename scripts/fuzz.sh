#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a bounded time: FUZZ_SECONDS each
# (default 60). Needs the nightly toolchain; installs cargo-fuzz if it is missing.
# A crash fails the script, and libFuzzer leaves the input in fuzz/artifacts/<target>/
# (reproduce with `cargo +nightly fuzz run <target> <file>`).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${FUZZ_SECONDS:-60}"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
for target in $(cargo +nightly fuzz list); do
    echo "== fuzz $target (${secs}s)"
    mkdir -p "corpus/$target"
    # The checked-in seeds (valid inputs) are read as a second corpus, never written.
    seeds=()
    [ -d "seeds/$target" ] && seeds=("seeds/$target")
    cargo +nightly fuzz run "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1
done
