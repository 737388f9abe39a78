#!/usr/bin/env bash
# Fetch, verify and convert TOM's models into $TOM_CACHE (default ~/.cache/tom).
#
#   scripts/fetch-models.sh              local pipeline: whisper tiny.en ggml, piper joe, silero, onnxruntime
#   scripts/fetch-models.sh --all        + whisper base (multilingual) ggml and SmolLM2
#   scripts/fetch-models.sh --only ID..  just these (ids in models/models.toml)
#   scripts/fetch-models.sh --verify     re-hash what is cached, fetch nothing
#   scripts/fetch-models.sh --list       show ids and cache state
#   scripts/fetch-models.sh --venv-only  only prepare $TOM_CACHE/venv (numpy), e.g. for tests
#
# Idempotent: a second run only verifies. Resumable: re-run after any failure.
# Needs python3 >= 3.11 with venv (installed with apt-get when missing) and access to PyPI.
# Writes nothing into the checkout.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TOM_CACHE:-$HOME/.cache/tom}"
export TOM_CACHE="$CACHE"
VENV="$CACHE/venv"
NUMPY_VERSION="2.2.6"
export PYTHONDONTWRITEBYTECODE=1

log() { printf '[fetch-models] %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else log "need root to run: $*"; exit 1
  fi
}

ensure_python() {
  if command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    return
  fi
  log "installing python3, python3-venv and python3-pip with apt-get"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip
}

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import pip' >/dev/null 2>&1; then
    log "creating $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
  local have
  have="$("$VENV/bin/python" -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)"
  if [ "$have" != "$NUMPY_VERSION" ]; then
    log "installing numpy==$NUMPY_VERSION into $VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q "numpy==$NUMPY_VERSION"
  fi
}

ensure_python
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  log "python3 >= 3.11 is required (tomllib); found $(python3 --version 2>&1)"
  exit 1
fi

# --verify and --list only read the cache: do not install anything for them.
for arg in "$@"; do
  case "$arg" in
    --verify|--list)
      py=python3
      [ -x "$VENV/bin/python" ] && py="$VENV/bin/python"
      exec "$py" "$REPO/tools/models/fetch.py" "$@"
      ;;
  esac
done

ensure_venv
if [ "${1:-}" = "--venv-only" ]; then
  exit 0
fi
exec "$VENV/bin/python" "$REPO/tools/models/fetch.py" "$@"
