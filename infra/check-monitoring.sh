#!/usr/bin/env bash
# Checks the operators' monitoring kit without any daemon: Prometheus config, rules and
# rule unit tests (promtool), alert metadata and runbook links, the Grafana files, and,
# given an engine's /metrics, that every metric the rules and panels query exists.
#
#   infra/check-monitoring.sh                                         # static checks
#   infra/check-monitoring.sh --metrics-url http://127.0.0.1:9090/metrics   # + a live tom serve
#   infra/check-monitoring.sh --metrics-file saved-metrics.txt        # + a saved exposition
#   ... --allow-absent tom_backend_errors_total                       # see infra/check_metrics.py
#
# Exit status: 0 everything passed, non-zero at the first failing step. Runs from any
# directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cd "$repo"
# No __pycache__ directories left in the repository by the checks.
export PYTHONDONTWRITEBYTECODE=1

metrics_args=()
allow_args=()
while (($#)); do
    case "$1" in
        --metrics-url) metrics_args=(--url "${2:?--metrics-url needs a URL}"); shift 2 ;;
        --metrics-file) metrics_args=(--file "${2:?--metrics-file needs a file}"); shift 2 ;;
        --allow-absent) allow_args+=(--allow-absent "${2:?--allow-absent needs a metric name}"); shift 2 ;;
        -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "check-monitoring: unknown argument $1 (try --help)" >&2; exit 64 ;;
    esac
done

if ! command -v promtool >/dev/null 2>&1; then
    echo "check-monitoring: promtool not found: install the Debian package prometheus (apt-get install prometheus)" >&2
    exit 1
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "check-monitoring: python3 not found" >&2
    exit 1
fi

step() { printf '\n== %s\n' "$*"; }

step "promtool check config infra/prometheus/prometheus.yml ($(promtool --version 2>&1 | head -n1))"
# promtool only warns about a missing file_sd targets file; here that is an error,
# because Prometheus would then scrape nothing and say nothing.
config_out="$(promtool check config infra/prometheus/prometheus.yml 2>&1)" || { echo "$config_out"; exit 1; }
echo "$config_out"
if grep -q WARNING <<<"$config_out"; then
    echo "check-monitoring: promtool warned about the config (above)" >&2
    exit 1
fi

step "promtool check rules infra/prometheus/rules/*.yml"
promtool check rules infra/prometheus/rules/*.yml

step "promtool test rules infra/prometheus/tests/*.yml"
promtool test rules infra/prometheus/tests/*.yml

step "alerts: severity, annotations, runbook sections, a firing and a quiet test each"
python3 infra/prometheus/check_alert_meta.py

step "grafana: dashboards and provisioning"
python3 infra/grafana/validate.py

step "metric cross-checker's own tests (infra/tests)"
python3 -m unittest discover -s infra/tests

if ((${#metrics_args[@]})); then
    step "metric cross-check: rules and panels against ${metrics_args[*]}"
    python3 infra/check_metrics.py "${metrics_args[@]}" ${allow_args[@]+"${allow_args[@]}"}
else
    step "metric cross-check SKIPPED: give --metrics-url URL (a running tom serve) or --metrics-file FILE"
fi

printf '\ncheck-monitoring: all checks passed\n'
