"""Tests of infra/check_metrics.py (standard library only, no engine needed):

    python3 -m unittest discover -s infra/tests -v

The exposition below is built the way engine/src/telemetry/metrics.rs renders it (same
names, types, labels, label values created at zero, latency buckets), for an engine
that has already seen one local backend error and one dropped frame (before those,
the two families have no series: see test_a_family_without_series_fails_with_a_hint).
test_the_fixture_covers_every_metric_of_metrics_rs notices when metrics.rs gains or
loses a metric and this fixture was not updated.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
INFRA = os.path.dirname(HERE)
REPO = os.path.dirname(INFRA)
METRICS_RS = os.path.join(REPO, "engine", "src", "telemetry", "metrics.rs")
RULES = os.path.join(INFRA, "prometheus", "rules")
DASHBOARD = os.path.join(INFRA, "grafana", "dashboards", "tom.json")

spec = importlib.util.spec_from_file_location("check_metrics", os.path.join(INFRA, "check_metrics.py"))
check_metrics = importlib.util.module_from_spec(spec)
sys.modules["check_metrics"] = check_metrics  # dataclasses look their module up
spec.loader.exec_module(check_metrics)

# engine/src/telemetry/metrics.rs and the label values it takes from engine/src/backend.
LATENCY_BUCKETS_MS = [25, 50, 75, 100, 150, 200, 250, 300, 350, 400, 450, 500, 600, 700,
                      800, 900, 1000, 1200, 1500, 2000, 3000, 5000]
BACKENDS = ["provider", "local"]
STAGES = ["endpoint_ms", "stt_ms", "llm_first_token_ms", "tts_first_audio_ms"]
FAILOVER_REASONS = ["latency", "errors", "connect", "auth", "rate_limit",
                    "first_audio_deadline", "slow_turns", "provider_failed_mid_call"]
CALL_OUTCOMES = ["completed", "caller_hangup", "max_turns", "max_duration", "error",
                 "rejected", "busy", "shutdown"]
COST_COMPONENTS = ["stt", "llm", "tts", "provider"]
ESL_CONNECTION_RESULTS = ["accepted", "rejected_peer", "handshake_failed", "dropped"]
BAD_INPUT_SOURCES = ["esl", "media", "config", "provider", "websocket"]
STREAM_REJECT_REASONS = ["missing_token", "malformed", "bad_signature", "wrong_alg",
                         "expired", "not_yet_valid", "bad_audience", "bad_issuer",
                         "missing_exp", "missing_jti", "replayed", "store_unavailable",
                         "store_full", "not_configured", "draining", "busy", "bad_start",
                         "protocol", "rate_limited", "too_big"]


def _labels(pairs):
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}" if pairs else ""


def _family(name, kind, series):
    out = [f"# HELP {name} help", f"# TYPE {name} {kind}"]
    for pairs in series:
        if kind == "histogram":
            for le in [str(b) for b in LATENCY_BUCKETS_MS] + ["+Inf"]:
                out.append(f"{name}_bucket{_labels(pairs + [('le', le)])} 0")
            out.append(f"{name}_sum{_labels(pairs)} 0")
            out.append(f"{name}_count{_labels(pairs)} 0")
        else:
            out.append(f"{name}{_labels(pairs)} 0")
    return out


def synthetic_exposition(with_lazy=True):
    lines = []
    lines += _family("tom_backend_errors_total", "counter",
                     [[("backend", "local"), ("kind", "local")]] if with_lazy else [])
    lines += _family("tom_bad_input_total", "counter", [[("source", s)] for s in BAD_INPUT_SOURCES])
    lines += _family("tom_bargein_ms", "histogram", [[]])
    lines += _family("tom_calls_active", "gauge", [[]])
    lines += _family("tom_calls_total", "counter", [[("outcome", o)] for o in CALL_OUTCOMES])
    lines += _family("tom_cost_eur_total", "counter", [[("component", c)] for c in COST_COMPONENTS])
    lines += _family("tom_esl_connections_total", "counter",
                     [[("result", r)] for r in ESL_CONNECTION_RESULTS])
    lines += _family("tom_esl_events_dropped_total", "counter", [[]])
    lines += _family("tom_failback_total", "counter", [[]])
    lines += _family("tom_media_frames_dropped_total", "counter",
                     [[("reason", "bad_frame")]] if with_lazy else [])
    lines += _family("tom_media_frames_total", "counter", [[("direction", d)] for d in ("in", "out")])
    lines += _family("tom_provider_failover_total", "counter", [[("reason", r)] for r in FAILOVER_REASONS])
    lines += _family("tom_realtime_backend", "gauge", [[("backend", b)] for b in BACKENDS])
    lines += _family("tom_realtime_e2e_ms", "histogram", [[("backend", b)] for b in BACKENDS])
    lines += _family("tom_stage_latency_ms", "histogram",
                     [[("stage", s), ("backend", b)] for b in BACKENDS for s in STAGES])
    lines += _family("tom_stream_rejected_total", "counter", [[("reason", r)] for r in STREAM_REJECT_REASONS])
    # The process collector (Linux).
    for name, kind in [("process_cpu_seconds_total", "counter"), ("process_max_fds", "gauge"),
                       ("process_open_fds", "gauge"), ("process_resident_memory_bytes", "gauge"),
                       ("process_start_time_seconds", "gauge"), ("process_threads", "gauge"),
                       ("process_virtual_memory_bytes", "gauge")]:
        lines += _family(name, kind, [[]])
    return "\n".join(lines) + "\n"


def strip_empty_families(text):
    """What the Rust registry does: a family without series has no HELP/TYPE either."""
    out, block = [], []
    for line in text.splitlines():
        if line.startswith("# HELP"):
            if any(not l.startswith("#") for l in block):
                out += block
            block = [line]
        else:
            block.append(line)
    if any(not l.startswith("#") for l in block):
        out += block
    return "\n".join(out) + "\n"


class CheckerRun:
    """Runs check_metrics.main() on an exposition and some rule/dashboard files."""

    def __init__(self, test, exposition):
        self.dir = tempfile.mkdtemp(prefix="check_metrics_")
        test.addCleanup(shutil.rmtree, self.dir)
        self.exposition = os.path.join(self.dir, "metrics.txt")
        with open(self.exposition, "w") as f:
            f.write(exposition)
        self.rules = os.path.join(self.dir, "rules")
        shutil.copytree(RULES, self.rules)
        self.dashboard = os.path.join(self.dir, "tom.json")
        shutil.copy(DASHBOARD, self.dashboard)

    def edit(self, path, old, new):
        with open(path) as f:
            text = f.read()
        assert old in text, f"{old!r} not in {path}"
        with open(path, "w") as f:
            f.write(text.replace(old, new, 1))

    def run(self, *extra):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = check_metrics.main(["--file", self.exposition,
                                       "--rules", os.path.join(self.rules, "*.yml"),
                                       "--dashboards", self.dashboard, *extra])
        return code, out.getvalue() + err.getvalue()


class RealFiles(unittest.TestCase):
    def test_the_real_rules_and_dashboard_pass(self):
        code, out = CheckerRun(self, synthetic_exposition()).run()
        self.assertEqual(code, 0, out)
        self.assertRegex(out, r"OK: \d+ metric names checked in \d+ expressions")

    def test_every_rule_and_panel_expression_is_read(self):
        exprs, records, problems = [], set(), []
        for name in ("alerts.yml", "recording.yml"):
            es, rs, ps = check_metrics.read_rule_file(os.path.join(RULES, name))
            exprs += es
            records |= set(rs)
            problems += ps
        self.assertEqual(problems, [])
        with open(os.path.join(RULES, "alerts.yml")) as f:
            alerts = len(re.findall(r"^\s*- alert:", f.read(), re.M))
        with open(os.path.join(RULES, "recording.yml")) as f:
            recs = len(re.findall(r"^\s*- record:", f.read(), re.M))
        self.assertEqual(len(exprs), alerts + recs)
        self.assertEqual(len(records), recs)
        self.assertIn("backend:tom_realtime_e2e_ms:p95_5m", records)
        # A multi-line alert expr is read whole.
        failed_over = next(e for e in exprs if e.where == "alert TomProviderFailedOver")
        self.assertIn("tom_provider_failover_total", failed_over.text)
        panels = check_metrics.read_dashboard(DASHBOARD)
        self.assertGreater(len(panels), 20)
        self.assertTrue(any(e.where.startswith("annotation") for e in panels))

    def test_the_fixture_covers_every_metric_of_metrics_rs(self):
        with open(METRICS_RS) as f:
            source = f.read().split("#[cfg(test)]")[0]
        registered = set(re.findall(r'"(tom_[a-z0-9_]+)"', source))
        exp = check_metrics.parse_exposition(synthetic_exposition())
        self.assertEqual(registered, {n for n in exp.types if n.startswith("tom_")})


class Misspellings(unittest.TestCase):
    def test_a_misspelt_metric_in_an_alert_fails(self):
        run = CheckerRun(self, synthetic_exposition())
        run.edit(os.path.join(run.rules, "alerts.yml"), "tom_calls_active) == 0", "tom_call_active) == 0")
        code, out = run.run()
        self.assertEqual(code, 1, out)
        self.assertIn("unknown metric tom_call_active", out)
        self.assertIn("alerts.yml: alert TomNoCallsInBusinessHours", out)

    def test_a_misspelt_recording_rule_in_a_panel_fails(self):
        run = CheckerRun(self, synthetic_exposition())
        run.edit(run.dashboard, '"backend:tom_realtime_e2e_ms:p95_5m"', '"backend:tom_realtime_e2e_ms:p99_5m"')
        code, out = run.run()
        self.assertEqual(code, 1, out)
        self.assertIn("unknown recording rule backend:tom_realtime_e2e_ms:p99_5m", out)
        self.assertIn("tom.json: panel 21 'First audio p50 / p95 per backend' target A", out)

    def test_a_misspelt_recording_rule_in_an_alert_fails(self):
        run = CheckerRun(self, synthetic_exposition())
        run.edit(os.path.join(run.rules, "alerts.yml"), "job:tom_cost_eur_total:increase1h > 25",
                 "job:tom_cost_eur:increase1h > 25")
        code, out = run.run()
        self.assertEqual(code, 1, out)
        self.assertIn("unknown recording rule job:tom_cost_eur:increase1h", out)

    def test_a_histogram_queried_by_its_family_name_fails(self):
        run = CheckerRun(self, synthetic_exposition())
        run.edit(os.path.join(run.rules, "recording.yml"), "rate(tom_bargein_ms_bucket[5m])", "rate(tom_bargein_ms[5m])")
        code, out = run.run()
        self.assertEqual(code, 1, out)
        self.assertIn("unknown metric tom_bargein_ms ", out)

    def test_a_backend_that_does_not_exist_fails(self):
        run = CheckerRun(self, synthetic_exposition())
        run.edit(os.path.join(run.rules, "alerts.yml"), 'tom_realtime_backend{backend="local"} == 1\n          and on (job, instance)\n          sum',
                 'tom_realtime_backend{backend="cloud"} == 1\n          and on (job, instance)\n          sum')
        code, out = run.run()
        self.assertEqual(code, 1, out)
        self.assertIn("'cloud' is not a backend the engine uses (local, provider)", out)

    def test_a_misspelt_failover_reason_in_a_regex_fails(self):
        run = CheckerRun(self, synthetic_exposition())
        run.edit(os.path.join(run.rules, "alerts.yml"), 'reason=~"latency|errors|connect|auth|rate_limit"',
                 'reason=~"latency|error|connect|auth|rate_limit"')
        code, out = run.run()
        self.assertEqual(code, 1, out)
        self.assertIn("'error' is not a reason the engine uses", out)

    def test_a_label_the_metric_does_not_have_fails(self):
        run = CheckerRun(self, synthetic_exposition())
        run.edit(run.dashboard, 'tom_realtime_backend{backend=\\"local\\"}', 'tom_realtime_backend{backnd=\\"local\\"}')
        code, out = run.run()
        self.assertEqual(code, 1, out)
        self.assertIn("tom_realtime_backend has no label 'backnd'", out)

    def test_a_grouping_label_no_series_has_fails(self):
        run = CheckerRun(self, synthetic_exposition())
        run.edit(os.path.join(run.rules, "recording.yml"), "sum by (outcome) (increase(tom_calls_total[5m]))",
                 "sum by (result) (increase(tom_calls_total[5m]))")
        code, out = run.run()
        self.assertEqual(code, 1, out)
        self.assertIn("label 'result' in by/on/without/ignoring", out)

    def test_a_recording_rule_level_must_match_its_labels(self):
        run = CheckerRun(self, synthetic_exposition())
        run.edit(os.path.join(run.rules, "recording.yml"), "- record: outcome:tom_calls_total:increase5m",
                 "- record: result:tom_calls_total:increase5m")
        code, out = run.run()
        self.assertEqual(code, 1, out)
        self.assertIn("record result:tom_calls_total:increase5m: the level names 'result'", out)

    def test_an_unknown_function_fails(self):
        run = CheckerRun(self, synthetic_exposition())
        run.edit(os.path.join(run.rules, "recording.yml"), "histogram_quantile(0.95, sum by (le, backend)",
                 "histogram_quantil(0.95, sum by (le, backend)")
        code, out = run.run()
        self.assertEqual(code, 1, out)
        self.assertIn("unknown function histogram_quantil()", out)


class Exposition(unittest.TestCase):
    def test_a_family_without_series_fails_with_a_hint(self):
        # A fresh engine: no backend error and no dropped frame yet, so the Rust
        # registry renders neither family.
        text = strip_empty_families(synthetic_exposition(with_lazy=False))
        self.assertNotIn("tom_backend_errors_total", text)
        run = CheckerRun(self, text)
        code, out = run.run()
        self.assertEqual(code, 1, out)
        self.assertIn("unknown metric tom_backend_errors_total", out)
        self.assertIn("unknown metric tom_media_frames_dropped_total", out)
        self.assertIn("zero_known_series", out)
        code, out = run.run("--allow-absent", "tom_backend_errors_total",
                            "--allow-absent", "tom_media_frames_dropped_total")
        self.assertEqual(code, 0, out)
        self.assertIn("WARNING: tom_backend_errors_total is not in the exposition", out)

    def test_prometheus_own_metrics_are_refused(self):
        run = CheckerRun(self, "# TYPE prometheus_build_info gauge\nprometheus_build_info{version=\"2.42.0\"} 1\n")
        code, out = run.run()
        self.assertEqual(code, 2, out)
        self.assertIn("no tom_ metric", out)

    def test_histograms_are_queried_by_bucket_sum_count(self):
        exp = check_metrics.parse_exposition(synthetic_exposition())
        self.assertIn("tom_realtime_e2e_ms_bucket", exp.names)
        self.assertIn("tom_realtime_e2e_ms_count", exp.names)
        self.assertNotIn("tom_realtime_e2e_ms", exp.names)
        self.assertEqual(exp.family_of("tom_realtime_e2e_ms_bucket"), "tom_realtime_e2e_ms")
        self.assertEqual(exp.labels["tom_stage_latency_ms_bucket"], {"stage", "backend", "le"})
        self.assertEqual(exp.labels["tom_stage_latency_ms_sum"], {"stage", "backend"})
        self.assertEqual(exp.values[("tom_realtime_backend", "backend")], {"provider", "local"})

    def test_garbage_is_refused(self):
        with self.assertRaises(ValueError):
            check_metrics.parse_exposition("<html>not metrics</html>\n")


class PromQL(unittest.TestCase):
    def names(self, expr):
        a = check_metrics.analyze(expr)
        self.assertEqual(a.errors, [])
        return sorted(s.name for s in a.selectors)

    def test_labels_durations_and_functions_are_not_metric_names(self):
        self.assertEqual(self.names('histogram_quantile(0.95, sum by (le, backend) (rate(x_bucket{backend="local"}[5m])))'), ["x_bucket"])
        self.assertEqual(self.names("sum(rate(a[5m])) by (job) / on (job) group_left sum(b offset 1h)"), ["a", "b"])
        self.assertEqual(self.names("hour() * 60 + minute() >= 450 < 1020 and on () day_of_week() >= 1"), [])
        self.assertEqual(self.names("a and on() vector(1) or absent(up{job=\"x\"})"), ["a", "up"])
        self.assertEqual(self.names("rate(a[$__rate_interval]) * ${factor} # a comment with b_total\n"), ["a"])
        self.assertEqual(self.names("max_over_time(rec:name:op[1h:5m]) > bool 0"), ["rec:name:op"])
        self.assertEqual(self.names('{__name__="a", job="x"} + Inf'), ["a"])
        self.assertEqual(self.names("topk(3, sum without (instance) (c)) @ end()"), ["c"])

    def test_selector_matchers_and_grouping_are_collected(self):
        a = check_metrics.analyze('sum by (job, instance) (m{backend=~"provider|local", kind!="x"}) and on (job) n')
        self.assertEqual([(s.name, s.matchers) for s in a.selectors],
                         [("m", [("backend", "=~", "provider|local"), ("kind", "!=", "x")]), ("n", [])])
        self.assertEqual(a.grouping, ["job", "instance", "job"])

    def test_rule_labels_follow_the_level(self):
        self.assertEqual(check_metrics.rule_labels("stage_backend:tom_stage_latency_ms:p95_5m"), {"stage", "backend"})
        self.assertEqual(check_metrics.rule_labels("job:tom_cost_eur_total:increase1h"), {"job"})


if __name__ == "__main__":
    unittest.main()
