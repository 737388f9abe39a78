#!/usr/bin/env bash
# Starts `tom serve` (embedded defaults, free loopback ports, a scratch cost-log
# directory), waits until /ready, runs the given command with the engine's /metrics URL
# appended, and stops the engine whatever happens.
#
#   scripts/live-metrics.sh TOM_BINARY COMMAND [ARGS…]
set -euo pipefail
tom="${1:?usage: scripts/live-metrics.sh TOM_BINARY COMMAND [ARGS…]}"
shift
[ -x "$tom" ] || { echo "live-metrics: $tom is not an executable (build it first)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port="$(free_port)"
esl_port="$(free_port)"
scratch="$(mktemp -d)"
log="$scratch/tom.log"
TOM_HTTP_ADDR="127.0.0.1:$http_port" TOM_ESL_LISTEN="127.0.0.1:$esl_port" \
    TOM_COST_LOG_DIR="$scratch/costs" "$tom" serve >"$log" 2>&1 &
pid=$!
cleanup() {
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT

# Loading the models takes a few seconds; a dead process or 120 s without /ready fails.
deadline=$((SECONDS + 120))
until curl -fsS "http://127.0.0.1:$http_port/ready" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "live-metrics: tom serve exited before it was ready; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "live-metrics: tom serve not ready after 120 s; its log:" >&2
        tail -n 50 "$log" >&2
        exit 1
    fi
    sleep 0.5
done
"$@" "http://127.0.0.1:$http_port/metrics"
