#!/usr/bin/env bash
# Failover drill against provider-sim, automated (docs/TEST_WINDOW.md, step 5).
#
# Starts provider-sim (with an API key) and `tom serve` with ALLOW_EGRESS=true pointed at
# it, with a drill config that shortens the waits; checks that new calls are answered by
# the provider; makes every provider response fail (`{"error_rate":1.0}`) until the fleet
# trips to local; checks that calls are still answered (by local); heals the sim and waits
# for the cooldown and the healthy probes to bring the fleet back; checks a call is
# answered by the provider again; then drains the engine (SIGTERM with a live call) and
# restarts it with ALLOW_EGRESS=false (the roll-back), which must serve on local without
# contacting the provider.
#
#   scripts/failover-drill.sh
#
# Exits 0 when every step passed, 1 when one did (the message says which; the logs are
# kept), 2 on a setup problem (binary missing, port busy, engine not ready).
#
# Environment (all optional):
#   TOM_BIN, PROVIDER_SIM_BIN, REALTIME_PROBE_BIN   the binaries; default
#                             $CARGO_TARGET_DIR/release/{tom,provider-sim,realtime-probe}
#                             (CARGO_TARGET_DIR defaults to ~/.cache/tom/target)
#   DRILL_HTTP_PORT, DRILL_ESL_PORT, DRILL_SIM_PORT, DRILL_ADMIN_PORT
#                             loopback ports; default: free ones picked by the kernel
#   DRILL_COOLDOWN_S          [failover] cooldown_s of the drill config (default 30)
#   DRILL_PROBE_INTERVAL_MS   [failover] probe_interval_ms (default 2000)
#   DRILL_TRIP_DEADLINE_S     how long faulty calls may take to trip the fleet (default 90)
#   DRILL_KEEP=1              keep the scratch directory (logs, config) even on success
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/env.sh
. "$here/env.sh"
release="$CARGO_TARGET_DIR/release"
tom="${TOM_BIN:-$release/tom}"
sim_bin="${PROVIDER_SIM_BIN:-$release/provider-sim}"
probe="${REALTIME_PROBE_BIN:-$release/realtime-probe}"
cooldown_s="${DRILL_COOLDOWN_S:-30}"
probe_interval_ms="${DRILL_PROBE_INTERVAL_MS:-2000}"
trip_deadline_s="${DRILL_TRIP_DEADLINE_S:-90}"
probes_to_recover=3

started=$SECONDS
say() { printf '[%4ds] %s\n' "$((SECONDS - started))" "$*"; }
fail() {
    say "DRILL FAILED: $*"
    failed=1
    exit 1
}
setup_fail() {
    say "DRILL SETUP FAILED: $*"
    failed=1
    exit 2
}

for bin in "$tom" "$sim_bin" "$probe"; do
    [ -x "$bin" ] || setup_fail "$bin is not an executable: cd $(dirname "$here") && . scripts/env.sh && cargo build --release --locked -p engine -p probes"
done
for tool in curl python3; do
    command -v "$tool" >/dev/null || setup_fail "$tool is needed"
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port="${DRILL_HTTP_PORT:-$(free_port)}"
esl_port="${DRILL_ESL_PORT:-$(free_port)}"
sim_port="${DRILL_SIM_PORT:-$(free_port)}"
admin_port="${DRILL_ADMIN_PORT:-$(free_port)}"
http="127.0.0.1:$http_port"
metrics_url="http://$http/metrics"
admin="http://127.0.0.1:$admin_port"

scratch="$(mktemp -d "${TMPDIR:-/tmp}/failover-drill.XXXXXX")"
engine_pid=""
engine_log=/dev/null
sim_pid=""
call_pid=""
failed=0
cleanup() {
    local rc=$?
    for pid in $call_pid $engine_pid $sim_pid; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $call_pid $engine_pid $sim_pid; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$failed" -ne 0 ] || [ "$rc" -ne 0 ] || [ "${DRILL_KEEP:-0}" = 1 ]; then
        echo "drill files kept in $scratch (engine logs: $scratch/tom-*.log, sim: $scratch/sim.log)" >&2
    else
        rm -rf "$scratch"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The provider key lives in a file readable by us only, as in production.
key="drill-key-$RANDOM$RANDOM"
(umask 077 && printf '%s' "$key" >"$scratch/provider.key")
# HS256 secret for the probe's per-run tokens on /v1/stream (>= 32 bytes).
jwt_secret="drill-jwt-$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
cat >"$scratch/drill.toml" <<EOF
# Failover drill: shortened waits so the drill fits a test window. Never in production.
[failover]
cooldown_s = $cooldown_s
cooldown_jitter_pct = 0
probe_interval_ms = $probe_interval_ms
ramp_percent = []
EOF

metric() { # the value of one exact series, or "absent"
    curl -fsS "$metrics_url" 2>/dev/null | awk -v s="$1" '$1 == s { print $2; found = 1 } END { if (!found) print "absent" }'
}
show_metrics() { # the series matching an extended regex, indented
    curl -fsS "$metrics_url" | grep -E "$1" | sed 's/^/    /' || true
}
engine_alive() { # fails the drill when the engine is gone (a crash, or a signal from outside)
    if [ -n "$engine_pid" ] && ! kill -0 "$engine_pid" 2>/dev/null; then
        local rc=0
        wait "$engine_pid" 2>/dev/null || rc=$?
        engine_pid=""
        fail "tom serve exited unexpectedly (exit status $rc); the end of its log: $(tail -n 3 "$engine_log")"
    fi
}
wait_metric() { # wait_metric SERIES VALUE DEADLINE_S: polls /metrics until SERIES == VALUE
    local series="$1" want="$2" until=$((SECONDS + $3)) got
    while :; do
        engine_alive
        got="$(metric "$series")"
        [ "$got" = "$want" ] && return 0
        [ "$SECONDS" -ge "$until" ] && return 1
        sleep 0.5
    done
}
wait_ready() { # wait_ready LOG: /ready 200 within 120 s, or the engine's log and exit
    local until=$((SECONDS + 120))
    until curl -fsS "http://$http/ready" >/dev/null 2>&1; do
        kill -0 "$engine_pid" 2>/dev/null || { tail -n 20 "$1" >&2; setup_fail "tom serve exited before it was ready"; }
        [ "$SECONDS" -ge "$until" ] && { tail -n 20 "$1" >&2; setup_fail "tom serve not ready after 120 s"; }
        sleep 0.2
    done
}
start_engine() { # start_engine ALLOW_EGRESS LOG
    engine_log="$2"
    ALLOW_EGRESS="$1" \
        TOM_PROVIDER_URL="ws://127.0.0.1:$sim_port/v1/realtime" \
        TOM_PROVIDER_KEY_FILE="$scratch/provider.key" \
        TOM_HTTP_ADDR="$http" TOM_ESL_LISTEN="127.0.0.1:$esl_port" \
        TOM_JWT_HS256_SECRET="$jwt_secret" \
        TOM_COST_LOG_DIR="$scratch/costs" \
        "$tom" serve --config "$scratch/drill.toml" >"$2" 2>&1 &
    engine_pid=$!
    wait_ready "$2"
}
stop_engine() {
    kill -TERM "$engine_pid" 2>/dev/null || true
    wait "$engine_pid" 2>/dev/null || true
    engine_pid=""
}
# probe_calls RUNS [FLAGS…]: calls over /v1/stream (a fresh JWT per run, the secret from
# the environment so it is not on a command line); prints the probe's summary line and
# sets probe_rc (0/1/2 = answered, the latency verdict; 3 = not measured; 4 = wrong backend).
probe_calls() {
    local runs="$1"
    shift
    probe_rc=0
    engine_alive
    TOM_JWT_HS256_SECRET="$jwt_secret" "$probe" --target "ws://$http/v1/stream" --runs "$runs" -q "$@" \
        >"$scratch/probe.out" 2>"$scratch/probe.err" || probe_rc=$?
    sed 's/^/    /' "$scratch/probe.out"
    grep -E 'error:' "$scratch/probe.err" | sed 's/^/    /' || true
    engine_alive
}
transitions() { # the engine's failover log lines (JSON on stderr), condensed
    python3 - "$1" <<'EOF'
import json, sys
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    f = e.get("fields", {})
    if "transition" in f or f.get("message") == "provider probe":
        keep = {k: v for k, v in f.items() if k != "message"}
        print("    " + e["timestamp"][11:23], json.dumps({"message": f["message"], **keep}))
EOF
}
sim_connections() { # connections the sim has seen
    curl -fsS "$admin/received" | python3 -c 'import json,sys; print(max([m["conn"] for m in json.load(sys.stdin)] or [0]))'
}
backend_lines='^tom_realtime_backend|^tom_provider_failover_total\{reason="(errors|latency|connect|first_audio_deadline|provider_failed_mid_call)"\}|^tom_failback_total'

say "binaries: $tom, $sim_bin, $probe"
say "ports: http $http, esl 127.0.0.1:$esl_port, sim ws 127.0.0.1:$sim_port, admin $admin; scratch $scratch"

say "step 1: provider-sim with an API key"
PROVIDER_SIM_API_KEY="$key" "$sim_bin" --listen "127.0.0.1:$sim_port" --admin "127.0.0.1:$admin_port" \
    --log "$scratch/provider-sim.jsonl" >"$scratch/sim.log" 2>&1 &
sim_pid=$!
until=$((SECONDS + 10))
until curl -fsS "$admin/faults" >/dev/null 2>&1; do
    kill -0 "$sim_pid" 2>/dev/null || { cat "$scratch/sim.log" >&2; setup_fail "provider-sim exited"; }
    [ "$SECONDS" -ge "$until" ] && setup_fail "provider-sim admin API not up after 10 s"
    sleep 0.2
done
say "  faults: $(curl -fsS "$admin/faults")"

say "step 2: tom serve, ALLOW_EGRESS=true, provider = the sim, drill config:"
sed 's/^/    /' "$scratch/drill.toml"
ALLOW_EGRESS=true TOM_PROVIDER_URL="ws://127.0.0.1:$sim_port/v1/realtime" TOM_PROVIDER_KEY_FILE="$scratch/provider.key" \
    "$tom" config check --config "$scratch/drill.toml" >"$scratch/config-check.txt" ||
    setup_fail "tom config check refused the drill settings: $(cat "$scratch/config-check.txt")"
start_engine true "$scratch/tom-egress.log"
say "  ready (pid $engine_pid)"
wait_metric 'tom_realtime_backend{backend="provider"}' 1 10 ||
    fail "the gauge is not on provider with ALLOW_EGRESS=true"
show_metrics "$backend_lines"

say "step 3: 2 calls must be answered by the provider"
probe_calls 2 --expect-backend provider
[ "$probe_rc" -le 2 ] || fail "calls were not answered by the provider (realtime-probe exit $probe_rc)"

say "step 4: fault: every provider response fails (error_rate 1.0); calls until the fleet trips"
say "  faults: $(curl -fsS -X PUT "$admin/faults" -d '{"error_rate":1.0}')"
t_fault=$SECONDS
calls=0
while [ "$(metric 'tom_realtime_backend{backend="local"}')" != 1 ]; do
    [ $((SECONDS - t_fault)) -ge "$trip_deadline_s" ] &&
        fail "the gauge did not flip to local within ${trip_deadline_s} s of the fault ($calls calls)"
    calls=$((calls + 1))
    say "  faulty call $calls (the provider's response fails; the turn is answered by local)"
    probe_calls 1 --answer-timeout-ms 5000
done
trip_s=$((SECONDS - t_fault))
say "  gauge flipped to local ${trip_s} s after the fault, after $calls calls:"
show_metrics "$backend_lines"'|^tom_backend_errors_total\{backend="provider",kind="server"\}'
say "  the engine's transition log line:"
transitions "$scratch/tom-egress.log"
[ "$(metric 'tom_provider_failover_total{reason="errors"}')" = 1 ] ||
    fail "tom_provider_failover_total{reason=\"errors\"} is not 1"

say "step 5: with the fault still on, new calls are answered by local"
probe_calls 1 --expect-backend local
[ "$probe_rc" -le 2 ] || fail "the call during the failover was not answered by local (realtime-probe exit $probe_rc)"

say "step 6: heal the sim; wait for the cooldown (${cooldown_s} s) and $probes_to_recover healthy probes"
say "  faults: $(curl -fsS -X PUT "$admin/faults" -d '{}')"
t_heal=$SECONDS
back_deadline=$((cooldown_s + probes_to_recover * probe_interval_ms / 1000 + 45))
wait_metric 'tom_realtime_backend{backend="provider"}' 1 "$back_deadline" ||
    fail "the gauge did not come back to provider within ${back_deadline} s of healing"
back_s=$((SECONDS - t_heal))
say "  gauge back on provider ${back_s} s after healing:"
show_metrics "$backend_lines"
transitions "$scratch/tom-egress.log" | tail -n +2
[ "$(metric tom_failback_total)" = 1 ] || fail "tom_failback_total is not 1"

say "step 7: calls are answered by the provider again"
probe_calls 2 --expect-backend provider
[ "$probe_rc" -le 2 ] || fail "calls after the failback were not answered by the provider (realtime-probe exit $probe_rc)"

say "step 8: drain: SIGTERM with a live call"
TOM_JWT_HS256_SECRET="$jwt_secret" "$probe" --target "ws://$http/v1/stream" --runs 1 -q >"$scratch/drain-call.out" 2>"$scratch/drain-call.err" &
call_pid=$!
wait_metric tom_calls_active 1 10 || fail "the drain's call did not start"
sleep 1
t_term=$SECONDS
kill -TERM "$engine_pid"
ready="$(curl -s -o "$scratch/ready.body" -w '%{http_code}' "http://$http/ready" || true)"
say "  /ready during the drain: $ready $(cat "$scratch/ready.body" 2>/dev/null)"
[ "$ready" = 503 ] || fail "/ready did not answer 503 during the drain"
call_rc=0
wait "$call_pid" || call_rc=$?
call_pid=""
sed 's/^/    live call: /' "$scratch/drain-call.out"
[ "$call_rc" -le 2 ] || fail "the live call did not finish during the drain (realtime-probe exit $call_rc)"
wait "$engine_pid" 2>/dev/null || true
engine_pid=""
say "  engine exited $((SECONDS - t_term)) s after SIGTERM"

say "step 9: roll back: restart with ALLOW_EGRESS=false"
conns_before="$(sim_connections)"
start_engine false "$scratch/tom-local.log"
wait_metric 'tom_realtime_backend{backend="local"}' 1 10 ||
    fail "the gauge is not on local with ALLOW_EGRESS=false"
show_metrics '^tom_realtime_backend'
probe_calls 1 --expect-backend local
[ "$probe_rc" -le 2 ] || fail "the call after the roll-back was not answered by local (realtime-probe exit $probe_rc)"
conns_after="$(sim_connections)"
say "  provider-sim connections before/after the local engine's call: $conns_before/$conns_after"
[ "$conns_before" = "$conns_after" ] || fail "the engine contacted the provider with ALLOW_EGRESS=false"
stop_engine

say "DRILL PASSED in $((SECONDS - started)) s: tripped to local ${trip_s} s after the fault ($calls faulty calls), back on provider ${back_s} s after healing"
