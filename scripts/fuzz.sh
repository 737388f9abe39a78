#!/usr/bin/env bash
# Runs every fuzz target of esl-bridge and/or engine for a while, one after another. For
# engineers, not CI (it needs nightly and burns CPU).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [extra libFuzzer args...]
#   scripts/fuzz.sh 600 -max_len=8192
#   CRATE=engine scripts/fuzz.sh 120                    # only the engine targets
#   CRATE=esl-bridge TARGETS="decoder url_decode" scripts/fuzz.sh 120
#
# CRATE is esl-bridge, engine or all (the default: esl-bridge first). TARGETS picks
# targets by name and needs a single CRATE. New corpus entries go to
# <crate>/fuzz/corpus/<target>/ (git-ignored); the committed seeds in
# <crate>/fuzz/seeds/<target>/ are read but never written. Crashes land in
# <crate>/fuzz/artifacts/<target>/; the script stops at the first failing target.
# A *.dict in <crate>/fuzz/ (esl-bridge has esl.dict), when present, is passed as
# -dict. SANITIZER (default address) goes to cargo fuzz as -s; `SANITIZER=none` keeps
# libFuzzer's coverage feedback but drops AddressSanitizer.
set -euo pipefail

secs="${1:-60}"
shift || true
if ! [[ "$secs" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET] [libFuzzer args...]" >&2
    exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
crate="${CRATE:-all}"
case "$crate" in
    all) crates=(esl-bridge engine) ;;
    esl-bridge | engine) crates=("$crate") ;;
    *)
        echo "CRATE must be esl-bridge, engine or all, not $crate" >&2
        exit 2
        ;;
esac
if [ -n "${TARGETS:-}" ] && [ "${#crates[@]}" -ne 1 ]; then
    echo "TARGETS needs CRATE=esl-bridge or CRATE=engine" >&2
    exit 2
fi

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "cargo fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

for crate in "${crates[@]}"; do
    cd "$repo/$crate/fuzz"
    dict=()
    for d in *.dict; do
        [ -f "$d" ] && dict=(-dict="$d")
    done
    targets="${TARGETS:-$(cargo fuzz list)}"
    for target in $targets; do
        mkdir -p "corpus/$target"
        corpora=("corpus/$target")
        [ -d "seeds/$target" ] && corpora+=("seeds/$target")
        echo "=== $crate $target: ${secs}s" >&2
        # One worker: the target machines are small and shared. Without -jobs libFuzzer
        # prints its progress and final stats here rather than in fuzz-<n>.log.
        cargo +nightly fuzz run -s "${SANITIZER:-address}" "$target" "${corpora[@]}" -- \
            -max_total_time="$secs" "${dict[@]}" -print_final_stats=1 "$@"
    done
done
