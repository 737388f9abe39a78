#!/usr/bin/env bash
# Runs every esl-bridge fuzz target for a while, one after another. For engineers, not CI
# (it needs nightly and burns CPU).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [extra libFuzzer args...]
#   scripts/fuzz.sh 600 -max_len=8192
#   TARGETS="decoder url_decode" scripts/fuzz.sh 120
#
# New corpus entries go to esl-bridge/fuzz/corpus/<target>/ (git-ignored); the committed
# seeds in esl-bridge/fuzz/seeds/<target>/ are read but never written. Crashes land in
# esl-bridge/fuzz/artifacts/<target>/; the script stops at the first failing target.
set -euo pipefail

secs="${1:-60}"
shift || true
if ! [[ "$secs" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET] [libFuzzer args...]" >&2
    exit 2
fi

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../esl-bridge/fuzz" && pwd)"
cd "$fuzz_dir"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "cargo fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

targets="${TARGETS:-$(cargo fuzz list)}"
for target in $targets; do
    mkdir -p "corpus/$target"
    corpora=("corpus/$target")
    [ -d "seeds/$target" ] && corpora+=("seeds/$target")
    echo "=== $target: ${secs}s" >&2
    # One worker: the target machines are small and shared. Without -jobs libFuzzer
    # prints its progress and final stats here rather than in fuzz-<n>.log.
    cargo +nightly fuzz run "$target" "${corpora[@]}" -- \
        -max_total_time="$secs" -dict=esl.dict -print_final_stats=1 "$@"
done
