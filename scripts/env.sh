# Shared by the scripts: where caches live (outside the checkout, so a fresh clone in CI
# reuses them) and how to run a privileged command.
TOM_CACHE="${TOM_CACHE:-$HOME/.cache/tom}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TOM_CACHE/target}"
mkdir -p "$TOM_CACHE"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

step() { printf '\n==> %s\n' "$*"; }
