#!/usr/bin/env bash
# Sets up and runs the engine on its embedded defaults (loopback listeners).
# Extra arguments go to `tom serve` (see `tom serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

scripts/bootstrap.sh
step "models for the local pipeline (cached in \$TOM_CACHE, verified by sha256)"
scripts/fetch-models.sh
# tom-llm (the local LLM server the engine supervises) is its own binary: llama.cpp and
# whisper.cpp cannot be linked together (docs/decisions/0006-local-llm-process.md).
step "building tom and tom-llm (release)"
cargo build --release --locked -p engine -p llm-server
step "starting tom serve (Ctrl-C to stop)"
exec "$CARGO_TARGET_DIR/release/tom" serve "$@"
