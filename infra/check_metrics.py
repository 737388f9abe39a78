#!/usr/bin/env python3
"""Cross-check: every metric the alerts, recording rules and Grafana panels query is one
the engine really exports.

    infra/check_metrics.py --url http://127.0.0.1:9090/metrics     # a running `tom serve`
    infra/check_metrics.py --file metrics.txt                      # a saved exposition

The exported names come from the engine's own /metrics text (never from a list kept by
hand), so a metric renamed in engine/src/telemetry/metrics.rs breaks this check, not a
dashboard at 3 am. For every PromQL expression (`expr` of the rules in
infra/prometheus/rules/*.yml, every `expr` in infra/grafana/dashboards/*.json) it checks:

  - every metric name is exported by the engine (`_bucket`/`_sum`/`_count` of histograms
    per the `# TYPE` lines), is a recording rule defined in the rule files (names with a
    colon), or is built into Prometheus (`up`, ...);
  - every label in a selector (`{backend="local"}`) exists on that metric, and every label
    in `by (...)`, `on (...)` ... on some series of the expression; a recording rule's
    labels are its level (`stage_backend:...` keeps stage and backend);
  - values of closed label sets (backend = provider|local, ... see CLOSED_LABELS) are
    values the engine uses;
  - every function called is a PromQL function.

Exit status: 0 all good, 1 something queried is unknown (each listed with its file),
2 the check could not run (no exposition, unreadable file). Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_RULES = os.path.join(HERE, "prometheus", "rules", "*.yml")
DEFAULT_DASHBOARDS = os.path.join(HERE, "grafana", "dashboards", "*.json")
DEFAULT_METRICS_RS = os.path.join(REPO, "engine", "src", "telemetry", "metrics.rs")

# Series Prometheus makes itself for every target (no exporter has them), and the
# series of its own alerting.
BUILTIN = {
    "up": {"job", "instance"},
    "scrape_duration_seconds": {"job", "instance"},
    "scrape_samples_scraped": {"job", "instance"},
    "scrape_samples_post_metric_relabeling": {"job", "instance"},
    "scrape_series_added": {"job", "instance"},
    "ALERTS": None,  # any label: the alerts' own
    "ALERTS_FOR_STATE": None,
}
# Labels Prometheus attaches to every scraped series (the target's).
TARGET_LABELS = {"job", "instance"}

# Labels whose complete value set the engine exports from the start: metrics.rs creates
# these label sets at zero (Metrics::zero_known_series), so a value the exposition does
# not show is a typo, not "has not happened yet". A bare label name applies to every
# metric (values are the union over the exposition); `family.label` to one metric.
# Labels left out (kind of tom_backend_errors_total, reason of
# tom_media_frames_dropped_total) only show values that already happened.
CLOSED_LABELS = (
    "backend",
    "stage",
    "direction",
    "outcome",
    "component",
    "tom_provider_failover_total.reason",
    "tom_stream_rejected_total.reason",
    "tom_bad_input_total.source",
)

AGGREGATORS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
    "delta", "deriv", "exp", "floor", "histogram_count", "histogram_fraction",
    "histogram_quantile", "histogram_stddev", "histogram_stdvar", "histogram_sum",
    "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace",
    "last_over_time", "ln", "log10", "log2", "mad_over_time", "max_over_time",
    "min_over_time", "minute", "month", "pi", "predict_linear", "present_over_time",
    "quantile_over_time", "rad", "rate", "resets", "round", "scalar", "sgn", "sin", "sinh",
    "sort", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time",
    "tan", "tanh", "time", "timestamp", "vector", "year",
    # `@ start()` / `@ end()` modifiers
    "start", "end",
}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
BINARY_KEYWORDS = {"and", "or", "unless", "bool", "atan2"}
NUMBER_WORDS = {"inf", "nan"}

NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
PLAIN_ALTERNATION = re.compile(r"^[A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*$")


# --- the exposition ------------------------------------------------------------------


@dataclass
class Exposition:
    """What an engine's /metrics says it exports."""

    types: dict = field(default_factory=dict)  # family -> counter|gauge|histogram|...
    names: set = field(default_factory=set)  # queryable series names
    labels: dict = field(default_factory=dict)  # series name -> label names
    values: dict = field(default_factory=dict)  # (series name, label) -> values

    def family_of(self, name: str) -> str:
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[: -len(suffix)]
            if name.endswith(suffix) and self.types.get(base) in ("histogram", "summary"):
                return base
        return name


SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+\S+(\s+\S+)?\s*$")
LABEL_PAIR_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_exposition(text: str) -> Exposition:
    """Prometheus text format 0.0.4: `# TYPE` lines and samples."""
    exp = Exposition()
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                exp.types[parts[2]] = parts[3]
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            raise ValueError(f"not an exposition line: {line[:80]!r}")
        name, body = m.group(1), m.group(3) or ""
        exp.names.add(name)
        labels = exp.labels.setdefault(name, set())
        for lm in LABEL_PAIR_RE.finditer(body):
            labels.add(lm.group(1))
            exp.values.setdefault((name, lm.group(1)), set()).add(lm.group(2))
    return exp


# --- PromQL ---------------------------------------------------------------------------


TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[^\]]*\]\])
  | (?P<number>(?:\d+(?:ms|[smhdwy]))+|0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[=<>+\-*/%^@(){}\[\],])
    """,
    re.VERBOSE,
)


@dataclass
class Token:
    kind: str
    text: str


def lex(expr: str) -> list:
    tokens, pos = [], 0
    while pos < len(expr):
        m = TOKEN_RE.match(expr, pos)
        if not m:
            raise ValueError(f"cannot read PromQL at {expr[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind in ("ws", "comment"):
            continue
        tokens.append(Token(kind, m.group()))
    return tokens


def unquote(s: str) -> str:
    if s[0] == "`":
        return s[1:-1]
    return re.sub(r"\\(.)", r"\1", s[1:-1])


@dataclass
class Selector:
    name: str
    matchers: list  # (label, op, value)


@dataclass
class Analysis:
    selectors: list = field(default_factory=list)
    grouping: list = field(default_factory=list)  # label names in by/on/...
    functions: list = field(default_factory=list)
    errors: list = field(default_factory=list)


def analyze(expr: str) -> Analysis:
    """The metric selectors, grouping labels and functions of one PromQL expression.
    Not a full parser: it knows enough of the grammar to tell a metric name from a
    function, a keyword, a label name or a duration."""
    out = Analysis()
    try:
        toks = lex(expr)
    except ValueError as e:
        out.errors.append(str(e))
        return out
    i, n = 0, len(toks)

    def peek(k: int):
        return toks[k] if k < n else None

    def label_list(k: int) -> int:
        # toks[k] is "(": names separated by commas up to ")".
        k += 1
        while k < n and toks[k].text != ")":
            if toks[k].kind == "ident":
                out.grouping.append(toks[k].text)
            k += 1
        return k + 1

    def matchers(k: int) -> tuple:
        # toks[k] is "{": label op "value" [, ...] up to "}".
        found, k = [], k + 1
        while k < n and toks[k].text != "}":
            if toks[k].text == ",":
                k += 1
                continue
            lab, op, val = peek(k), peek(k + 1), peek(k + 2)
            if not (lab and op and val) or lab.kind != "ident" or op.text not in ("=", "!=", "=~", "!~"):
                out.errors.append(f"cannot read label matcher near {lab.text if lab else 'end'!r}")
                while k < n and toks[k].text != "}":
                    k += 1
                break
            value = unquote(val.text) if val.kind == "string" else val.text
            found.append((lab.text, op.text, value))
            k += 3
        return found, k + 1

    while i < n:
        t = toks[i]
        nxt = peek(i + 1)
        if t.text == "[":
            depth = 0
            while i < n:
                depth += toks[i].text == "["
                depth -= toks[i].text == "]"
                i += 1
                if depth == 0:
                    break
            continue
        if t.text == "{":
            ms, i = matchers(i)
            names = [v for (lab, op, v) in ms if lab == "__name__" and op == "="]
            out.selectors.append(Selector(names[0] if names else "", ms))
            continue
        if t.kind != "ident":
            i += 1
            continue
        low = t.text.lower()
        if low in GROUPING:
            i = label_list(i + 1) if nxt and nxt.text == "(" else i + 1
        elif low in BINARY_KEYWORDS or low in NUMBER_WORDS:
            i += 1
        elif low == "offset":
            i += 2 if nxt and nxt.kind == "number" else 1
        elif nxt is not None and nxt.text == "(":
            if t.text not in FUNCTIONS and t.text not in AGGREGATORS:
                out.errors.append(f"unknown function {t.text}()")
            out.functions.append(t.text)
            i += 1
        elif t.text in AGGREGATORS and nxt is not None and nxt.text in ("by", "without"):
            out.functions.append(t.text)
            i += 1
        else:
            if nxt is not None and nxt.text == "{":
                ms, i = matchers(i + 1)
            else:
                ms, i = [], i + 1
            out.selectors.append(Selector(t.text, ms))
    return out


# --- where the expressions are ----------------------------------------------------------


@dataclass
class Expr:
    file: str
    where: str  # "alert TomEngineDown", "panel 21 'First audio ...' target A"
    text: str


def _block_scalar(lines: list, start: int, key_indent: int) -> tuple:
    """Lines of a YAML block scalar (`|` / `>`) after line `start`: everything more
    indented than its key, blank lines included."""
    body, k = [], start + 1
    while k < len(lines):
        line = lines[k]
        if line.strip() and (len(line) - len(line.lstrip(" "))) <= key_indent:
            break
        body.append(line)
        k += 1
    while body and not body[-1].strip():
        body.pop()
    return "\n".join(body), k


RULE_KEY_RE = re.compile(r"^(?P<indent>\s*)(?:-\s+)?(?P<key>record|alert|expr):\s*(?P<value>.*?)\s*$")


def read_rule_file(path: str) -> tuple:
    """(expressions, recording rule names) of a Prometheus rule file. A small reader for
    the shapes rule files use (`expr:` plain, quoted, `|` or `>` blocks), so that this
    check needs nothing outside the standard library; a rule whose expr it cannot find
    is reported, never skipped silently."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    exprs, records, problems = [], [], []
    current, got_expr = None, True
    k = 0
    while k < len(lines):
        m = RULE_KEY_RE.match(lines[k])
        if not m or lines[k].lstrip().startswith("#"):
            k += 1
            continue
        key, value = m.group("key"), m.group("value")
        key_indent = lines[k].index(key)
        if key in ("record", "alert"):
            if not got_expr:
                problems.append(f"{path}: no expr found for {current}")
            current, got_expr = f"{key} {value.strip(chr(34) + chr(39))}", False
            if key == "record":
                records.append(value.strip("\"'"))
            k += 1
            continue
        # expr
        if value[:1] in ("|", ">"):
            text, k = _block_scalar(lines, k, key_indent)
        else:
            text, k = value, k + 1
            if text[:1] in ("'", '"'):
                quote = text[0]
                while not (len(text) > 1 and text.endswith(quote)) and k < len(lines):
                    text += " " + lines[k].strip()
                    k += 1
                text = text[1:-1].replace("''", "'") if quote == "'" else unquote(text)
            else:
                text = re.sub(r"\s+#.*$", "", text)
                while k < len(lines) and lines[k].strip() and (
                    len(lines[k]) - len(lines[k].lstrip(" "))
                ) > key_indent and not RULE_KEY_RE.match(lines[k]):
                    text += " " + re.sub(r"\s+#.*$", "", lines[k].strip())
                    k += 1
        if current is None:
            problems.append(f"{path}:{k}: expr outside a rule")
        exprs.append(Expr(path, current or "?", text))
        got_expr = True
    if not got_expr:
        problems.append(f"{path}: no expr found for {current}")
    return exprs, records, problems


def read_dashboard(path: str) -> list:
    """Every `expr` in a Grafana dashboard: panel targets (rows and nested panels
    included) and annotation queries."""
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    found = []

    def walk(node, where):
        if isinstance(node, dict):
            if "id" in node and "type" in node:
                where = f"panel {node['id']} {node.get('title', '')!r}"
            elif "refId" in node:
                where = f"{where} target {node['refId']}"
            elif "expr" in node and "name" in node:
                where = f"annotation {node['name']!r}"
            if isinstance(node.get("expr"), str) and node["expr"].strip():
                found.append(Expr(path, where, node["expr"]))
            for value in node.values():
                walk(value, where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk(dash, "dashboard")
    return found


# --- the check ----------------------------------------------------------------------------


def shown(path: str) -> str:
    """A path as the operator typed it: relative to the repository when inside it."""
    path = os.path.abspath(path)
    return os.path.relpath(path, REPO) if path.startswith(REPO + os.sep) else path


def rule_labels(name: str) -> set:
    """Labels a recording rule keeps, from its level (level:metric:operations)."""
    level = name.split(":", 1)[0]
    return {part for part in level.split("_") if part}


def closed_values(exp: Exposition) -> tuple:
    """({label: values} for every metric, {(family, label): values} for one)."""
    everywhere, per_family = {}, {}
    for spec in CLOSED_LABELS:
        if "." in spec:
            family, label = spec.split(".", 1)
            vals = set()
            for name in exp.names:
                if exp.family_of(name) == family:
                    vals |= exp.values.get((name, label), set())
            if vals:
                per_family[(family, spec.split(".", 1)[1])] = vals
        else:
            vals = set()
            for (name, label), v in exp.values.items():
                if label == spec:
                    vals |= v
            if vals:
                everywhere[spec] = vals
    return everywhere, per_family


def matcher_values(op: str, value: str):
    """The literal values a matcher names, or None when it cannot be enumerated."""
    if "$" in value or value == "":
        return None
    if op in ("=", "!="):
        return [value]
    if PLAIN_ALTERNATION.match(value):
        return value.split("|")
    return None


def metrics_rs_hint(family: str, metrics_rs: str):
    try:
        with open(metrics_rs, encoding="utf-8") as f:
            source = f.read()
    except OSError:
        return None
    if f'"{family}"' in source:
        return (
            f"{family} is registered in {shown(metrics_rs)} but the engine "
            "exports no series of it yet: a labelled metric is only exported once a label "
            "set exists. Create its label sets at zero in Metrics::zero_known_series() (that "
            "also lets rate()/increase() see the first event), or query it only after it "
            "has happened."
        )
    return None


def check(exp: Exposition, exprs: list, records: set, metrics_rs: str, allow_absent=()) -> tuple:
    """(problems, summary numbers)."""
    problems = []
    everywhere, per_family = closed_values(exp)
    checked_names = set()
    allow_absent = set(allow_absent)
    hinted, warned = set(), set()

    def problem(e: Expr, msg: str):
        problems.append(f"{shown(e.file)}: {e.where}: {msg}")

    for e in exprs:
        a = analyze(e.text)
        for err in a.errors:
            problem(e, err)
        available = set()
        for sel in a.selectors:
            name = sel.name
            if not name:
                problem(e, "a selector without a metric name")
                continue
            checked_names.add(name)
            if not NAME_RE.fullmatch(name):
                problem(e, f"{name!r} is not a metric name")
                continue
            if ":" in name:
                if name not in records:
                    problem(e, f"unknown recording rule {name} (not defined in the rule files)")
                    continue
                allowed = rule_labels(name)
                family = None
            elif name in BUILTIN:
                allowed = BUILTIN[name]
                family = None
            elif name in exp.names:
                allowed = exp.labels.get(name, set()) | TARGET_LABELS
                family = exp.family_of(name)
            elif name in allow_absent:
                if name not in warned:
                    warned.add(name)
                    print(f"WARNING: {name} is not in the exposition (allowed by --allow-absent)", file=sys.stderr)
                continue
            else:
                problem(e, f"unknown metric {name} (the engine does not export it)")
                fam = re.sub(r"_(bucket|sum|count)$", "", name)
                hint = metrics_rs_hint(fam, metrics_rs) or metrics_rs_hint(name, metrics_rs)
                if hint and hint not in hinted:
                    hinted.add(hint)
                    problems.append(f"  hint: {hint}")
                continue
            if allowed is not None:
                available |= allowed
            for label, op, value in sel.matchers:
                if label == "__name__":
                    continue
                if allowed is not None and label not in allowed:
                    problem(e, f"{name} has no label {label!r} (it has: {', '.join(sorted(allowed)) or 'none'})")
                    continue
                vals = matcher_values(op, value)
                if vals is None:
                    continue
                known = per_family.get((family, label)) if family else None
                if known is None:
                    known = everywhere.get(label)
                if known is None:
                    continue
                for v in vals:
                    if v not in known:
                        problem(e, f"{name}{{{label}{op}\"{value}\"}}: {v!r} is not a {label} the engine uses ({', '.join(sorted(known))})")
        for label in a.grouping:
            if available and label not in available:
                problem(e, f"label {label!r} in by/on/without/ignoring is on none of the series of this expression ({', '.join(sorted(available))})")
    return problems, len(checked_names)


def level_problems(exprs: list, exp: Exposition) -> list:
    """Recording rules whose level names a label their expression cannot have."""
    problems = []
    for e in exprs:
        if not e.where.startswith("record "):
            continue
        name = e.where.split(" ", 1)[1]
        a = analyze(e.text)
        have = set(TARGET_LABELS)
        if any(":" not in s.name and s.name not in exp.names and s.name not in BUILTIN for s in a.selectors):
            continue  # a series the exposition lacks: reported (or allowed) already
        for sel in a.selectors:
            if ":" in sel.name:
                have |= rule_labels(sel.name)
            else:
                have |= exp.labels.get(sel.name, set())
        for label in rule_labels(name):
            if label not in have:
                problems.append(f"{shown(e.file)}: record {name}: the level names {label!r}, which its expression does not have")
    return problems


def load_exposition(args) -> str:
    if args.file:
        with open(args.file, encoding="utf-8") as f:
            return f.read()
    try:
        with urllib.request.urlopen(args.url, timeout=10) as resp:
            return resp.read().decode("utf-8")
    except (urllib.error.URLError, OSError) as e:
        raise OSError(f"cannot read {args.url}: {e}") from e


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--url", help="the engine's /metrics, e.g. http://127.0.0.1:9090/metrics")
    src.add_argument("--file", help="a saved exposition text")
    p.add_argument("--rules", action="append", help=f"rule files (glob; default {os.path.relpath(DEFAULT_RULES, REPO)})")
    p.add_argument("--dashboards", action="append", help=f"Grafana dashboards (glob; default {os.path.relpath(DEFAULT_DASHBOARDS, REPO)})")
    p.add_argument("--metrics-rs", default=DEFAULT_METRICS_RS, help="metrics.rs, only for hints")
    p.add_argument("--allow-absent", action="append", default=[], metavar="NAME",
                   help="accept NAME although the exposition lacks it (warns); for a metric that has no series until its first event")
    args = p.parse_args(argv)

    try:
        exp = parse_exposition(load_exposition(args))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        print(f"check_metrics: {e}", file=sys.stderr)
        return 2
    if not any(name.startswith("tom_") for name in exp.names):
        print("check_metrics: no tom_ metric in the exposition: is this a TOM engine's /metrics? "
              "(Prometheus itself also defaults to port 9090)", file=sys.stderr)
        return 2

    rule_files = sorted({f for g in (args.rules or [DEFAULT_RULES]) for f in glob.glob(g)})
    dash_files = sorted({f for g in (args.dashboards or [DEFAULT_DASHBOARDS]) for f in glob.glob(g)})
    if not rule_files or not dash_files:
        print("check_metrics: no rule files or no dashboards found", file=sys.stderr)
        return 2
    exprs, records, problems = [], set(), []
    try:
        for path in rule_files:
            es, rs, ps = read_rule_file(path)
            exprs += es
            records |= set(rs)
            problems += ps
        for path in dash_files:
            exprs += read_dashboard(path)
    except (OSError, ValueError) as e:
        print(f"check_metrics: {e}", file=sys.stderr)
        return 2

    found, names = check(exp, exprs, records, args.metrics_rs, args.allow_absent)
    problems += found + level_problems(exprs, exp)
    if problems:
        for line in problems:
            print(line)
        print(f"check_metrics: FAILED: {sum(not l.startswith('  hint') for l in problems)} problem(s) "
              f"in {len(exprs)} expressions", file=sys.stderr)
        return 1
    print(f"check_metrics: OK: {names} metric names checked in {len(exprs)} expressions "
          f"({len(rule_files)} rule files, {len(dash_files)} dashboards) against "
          f"{len(exp.names)} exported series names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
