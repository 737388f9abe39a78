#!/usr/bin/env bash
# Installs the system packages and toolchain components the project needs.
# Idempotent: installs only what is missing, and runs `apt-get update` only then.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

# build-essential/pkg-config: C code of -sys crates. cmake/clang/libclang-dev:
# whisper.cpp (whisper-rs-sys), llama.cpp (llama-cpp-sys-2) and bindgen. espeak-ng:
# speech for the endpointing and STT tests (and phonemes for the Piper voice).
# redis-server: engine/tests/redis_replay.rs runs a real one on loopback (the shared
# jti replay store of /v1/stream, REDIS_URL). The operators' kit: prometheus (promtool:
# config, rules and rule tests), libxml2-utils (xmllint on freeswitch-conf/), yamllint
# and python3-venv (infra/check-deploy.sh), curl (the live /metrics cross-check).
APT_PACKAGES=(build-essential pkg-config cmake clang libclang-dev espeak-ng libespeak-ng-dev redis-server
    prometheus libxml2-utils yamllint python3-venv curl)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    step "installing system packages: ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
    echo "bootstrap: cargo not found; install the Rust toolchain (rustup) first" >&2
    exit 1
fi
for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
        step "adding rustup component $component"
        rustup component add "$component"
    fi
done
