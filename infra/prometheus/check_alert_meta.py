#!/usr/bin/env python3
"""What promtool does not check about the alerts (Python 3 standard library only):

    python3 infra/prometheus/check_alert_meta.py

- every alert in rules/*.yml has a severity (critical or warning), a summary, a
  description and a runbook_url whose #anchor is a heading of docs/operations.md, all
  runbook links sharing one prefix;
- every alert has, in tests/*.yml, at least one case where it fires and one where it
  stays quiet (`exp_alerts: []`);
- the file_sd target files list `host:port` entries.

Exit status 0 all good, 1 problems (each printed).
"""

from __future__ import annotations

import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RUNBOOK = os.path.join(REPO, "docs", "operations.md")
SEVERITIES = {"critical", "warning"}


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_anchors(path: str) -> set:
    anchors, fenced = set(), False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("```"):
                fenced = not fenced
            m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if m:
                anchors.add(github_anchor(m.group(1)))
    return anchors


def alerts(path: str) -> dict:
    """{alert name: its block of lines}."""
    found, name, block = {}, None, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^\s*-\s+(alert|record):\s*(\S+)", line)
            if m:
                if name:
                    found[name] = "".join(block)
                name, block = (m.group(2) if m.group(1) == "alert" else None), []
            block.append(line)
    if name:
        found[name] = "".join(block)
    return found


def test_cases(paths: list) -> tuple:
    """({alert: files where it fires}, {alert: files where it is expected quiet})."""
    fires, quiet = {}, {}
    for path in paths:
        name = None
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for k, line in enumerate(lines):
            m = re.match(r"^\s*alertname:\s*(\S+)", line)
            if m:
                name = m.group(1)
                continue
            m = re.match(r"^\s*exp_alerts:\s*(.*?)\s*$", line)
            if m and name:
                if m.group(1) == "[]":
                    quiet.setdefault(name, []).append(path)
                elif m.group(1) == "" and k + 1 < len(lines) and re.match(r"^\s*-\s+exp_labels:", lines[k + 1]):
                    fires.setdefault(name, []).append(path)
                name = None
    return fires, quiet


def main() -> int:
    problems = []
    try:
        anchors = runbook_anchors(RUNBOOK)
    except OSError as e:
        anchors = set()
        problems.append(f"cannot read the runbook: {e}")
    rules = {}
    for path in sorted(glob.glob(os.path.join(HERE, "rules", "*.yml"))):
        rules.update(alerts(path))
    if not rules:
        problems.append("no alerts found in rules/*.yml")
    fires, quiet = test_cases(sorted(glob.glob(os.path.join(HERE, "tests", "*.yml"))))
    prefixes = set()
    for name, block in rules.items():
        sev = re.findall(r"^\s*severity:\s*(\S+)", block, re.M)
        if len(sev) != 1 or sev[0] not in SEVERITIES:
            problems.append(f"{name}: severity must be one of {sorted(SEVERITIES)}, got {sev}")
        for key in ("summary", "description"):
            if not re.search(rf"^\s*{key}:\s*\S", block, re.M):
                problems.append(f"{name}: no {key} annotation")
        urls = re.findall(r"^\s*runbook_url:\s*(\S+)", block, re.M)
        if len(urls) != 1 or "#" not in urls[0]:
            problems.append(f"{name}: needs one runbook_url with an #anchor, got {urls}")
        else:
            prefix, anchor = urls[0].split("#", 1)
            prefixes.add(prefix)
            if anchor not in anchors:
                problems.append(f"{name}: runbook anchor #{anchor} is not a heading of docs/operations.md")
        if name not in fires:
            problems.append(f"{name}: no test where it fires (tests/*.yml)")
        if name not in quiet:
            problems.append(f"{name}: no test where it stays quiet (exp_alerts: [])")
    if len(prefixes) > 1:
        problems.append(f"runbook links use different prefixes: {sorted(prefixes)}")
    for name in sorted(set(fires) | set(quiet)):
        if name not in rules:
            problems.append(f"tests name an alert that does not exist: {name}")
    for path in sorted(glob.glob(os.path.join(HERE, "targets", "*.yml"))):
        with open(path, encoding="utf-8") as f:
            entries = re.findall(r"^\s*-\s+([^\s#:]+:\d+)\s*$", f.read(), re.M)
        if not entries:
            problems.append(f"{os.path.relpath(path, REPO)}: no `- host:port` target")
    if problems:
        for p in problems:
            print(f"alerts: {p}")
        return 1
    print(f"alerts: OK: {len(rules)} alerts, each with severity, summary, description, a runbook "
          f"section and tests that fire and stay quiet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
