#!/usr/bin/env bash
# Sets up everything the tests need, then runs formatting, lint and every test.
# Idempotent; works on a fresh Debian machine with the Rust toolchain, python3 and apt.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

scripts/bootstrap.sh

fixtures="${TOM_FIXTURES:-$(cd .. && pwd)/shared/fixtures/freeswitch}"
if [ ! -f "$fixtures/README.md" ]; then
    echo "test: FreeSWITCH fixtures not found at $fixtures (set TOM_FIXTURES)" >&2
    exit 1
fi
export TOM_FIXTURES="$fixtures"

step "model tools: converter and fetcher tests (python, numpy in \$TOM_CACHE/venv)"
scripts/fetch-models.sh --venv-only
PYTHONDONTWRITEBYTECODE=1 "$TOM_CACHE/venv/bin/python" -m unittest discover -s tools/models

step "models for the local-pipeline tests (cached in \$TOM_CACHE, verified by sha256)"
scripts/fetch-models.sh

step "SmolLM2 for the tom-llm tests (llm-server; not in the default set)"
scripts/fetch-models.sh --only smollm2

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit, integration, fixture replay, doc tests)"
cargo test --workspace --locked

step "operators' kit: FreeSWITCH config (xmllint + checks against the recorded config)"
bash freeswitch-conf/check.sh

step "operators' kit: deployment files (compose, kubernetes, systemd)"
TOM_BIN="$CARGO_TARGET_DIR/debug/tom" bash infra/check-deploy.sh

step "operators' kit: monitoring (promtool, Grafana) against a live tom serve's /metrics"
PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s infra/tests
scripts/live-metrics.sh "$CARGO_TARGET_DIR/debug/tom" bash infra/check-monitoring.sh --metrics-url
