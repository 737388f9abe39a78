#!/usr/bin/env python3
"""Static checks of the Grafana files (Python 3 standard library only; no Grafana needed):

    python3 infra/grafana/validate.py

- every dashboards/*.json parses and has uid, title, schemaVersion, panels;
- panel ids are unique (rows and nested panels included), every panel has a type, a
  title and a gridPos inside the 24-column grid, and top-level panels do not overlap;
- every panel that is not a row has a datasource and at least one target, every target
  an `expr` and a refId unique in its panel;
- the datasource is the DS_PROMETHEUS variable, whose default is the uid provisioned in
  provisioning/datasources/*.yml (or that uid directly);
- provisioning/dashboards/*.yml points (through the container path the compose file
  mounts) at a directory of this repository that holds the dashboards.

Which metrics the expressions query is infra/check_metrics.py's job.
Exit status 0 all good, 1 problems (each printed).
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DASHBOARDS = os.path.join(HERE, "dashboards")
PROVISIONING = os.path.join(HERE, "provisioning")

# Where the provisioning files expect the dashboards inside the Grafana container, and
# the directory of this repository mounted there (infra/compose.yaml must agree).
CONTAINER_PATHS = {"/var/lib/grafana/dashboards/tom": DASHBOARDS}

DS_VARIABLE = "DS_PROMETHEUS"


def yaml_values(path: str, key: str) -> list:
    """Values of `key: value` lines in a simple YAML file (comments ignored)."""
    found = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(rf"^\s*(?:-\s+)?{re.escape(key)}:\s*(.*?)\s*(?:#.*)?$", line)
            if m and m.group(1):
                found.append(m.group(1).strip("\"'"))
    return found


def check_provisioning(problems: list) -> set:
    """Checks the provisioning files; returns the provisioned data source uids."""
    uids = set()
    ds_files = sorted(glob.glob(os.path.join(PROVISIONING, "datasources", "*.yml")))
    db_files = sorted(glob.glob(os.path.join(PROVISIONING, "dashboards", "*.yml")))
    if not ds_files:
        problems.append("no provisioning/datasources/*.yml")
    if not db_files:
        problems.append("no provisioning/dashboards/*.yml")
    for path in ds_files + db_files:
        if yaml_values(path, "apiVersion") != ["1"]:
            problems.append(f"{path}: apiVersion must be 1")
    for path in ds_files:
        found = yaml_values(path, "uid")
        if not found:
            problems.append(f"{path}: a data source without a fixed uid (the dashboard needs one)")
        uids |= set(found)
        for kind in yaml_values(path, "type"):
            if kind != "prometheus":
                problems.append(f"{path}: unexpected data source type {kind}")
    for path in db_files:
        paths = yaml_values(path, "path")
        if not paths:
            problems.append(f"{path}: no options.path")
        for p in paths:
            local = CONTAINER_PATHS.get(p.rstrip("/"))
            if local is None:
                problems.append(f"{path}: path {p} is not a mount this repository knows "
                                f"({', '.join(CONTAINER_PATHS)})")
            elif not glob.glob(os.path.join(local, "*.json")):
                problems.append(f"{path}: {p} is mounted from {local}, which holds no dashboard")
    return uids


def all_panels(panels: list):
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []) or [])


def check_dashboard(path: str, uids: set, problems: list) -> int:
    def bad(msg):
        problems.append(f"{os.path.relpath(path, HERE)}: {msg}")

    try:
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        bad(f"not JSON: {e}")
        return 0
    for key in ("uid", "title", "schemaVersion", "panels"):
        if not dash.get(key):
            bad(f"missing {key}")
    if isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] < 36:
        bad(f"schemaVersion {dash['schemaVersion']} predates datasource uids (36)")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds_var = variables.get(DS_VARIABLE)
    if ds_var is not None:
        if ds_var.get("type") != "datasource" or ds_var.get("query") != "prometheus":
            bad(f"variable {DS_VARIABLE} must be a prometheus datasource variable")
        default = (ds_var.get("current") or {}).get("value")
        if default not in uids:
            bad(f"variable {DS_VARIABLE} defaults to {default!r}, not a provisioned uid ({', '.join(sorted(uids))})")
    ok_uids = set(uids) | ({"${%s}" % DS_VARIABLE, "$" + DS_VARIABLE} if ds_var else set())

    def check_ds(ds, where):
        if not isinstance(ds, dict) or ds.get("type") != "prometheus":
            bad(f"{where}: datasource must be {{type: prometheus, uid: ...}}, got {ds!r}")
        elif ds.get("uid") not in ok_uids:
            bad(f"{where}: datasource uid {ds.get('uid')!r} is neither ${{{DS_VARIABLE}}} nor a provisioned uid")

    seen, count = {}, 0
    for panel in all_panels(dash.get("panels", [])):
        pid, title = panel.get("id"), panel.get("title")
        where = f"panel {pid} {title!r}"
        if not isinstance(pid, int):
            bad(f"{where}: id must be an integer")
        elif pid in seen:
            bad(f"{where}: id {pid} also used by {seen[pid]!r}")
        else:
            seen[pid] = title
        if not panel.get("type") or not title:
            bad(f"{where}: needs a type and a title")
        gp = panel.get("gridPos") or {}
        if not all(isinstance(gp.get(k), int) for k in "xywh"):
            bad(f"{where}: gridPos needs integer x, y, w, h")
        elif gp["x"] < 0 or gp["w"] < 1 or gp["x"] + gp["w"] > 24 or gp["h"] < 1:
            bad(f"{where}: gridPos outside the 24-column grid")
        if panel.get("type") == "row":
            continue
        count += 1
        check_ds(panel.get("datasource"), where)
        targets = panel.get("targets") or []
        if not targets:
            bad(f"{where}: no targets")
        refs = set()
        for t in targets:
            if not str(t.get("expr", "")).strip():
                bad(f"{where}: a target without expr")
            ref = t.get("refId")
            if not ref or ref in refs:
                bad(f"{where}: target refId {ref!r} missing or repeated")
            refs.add(ref)
            if "datasource" in t:
                check_ds(t["datasource"], f"{where} target {ref}")
    for ann in dash.get("annotations", {}).get("list", []):
        if ann.get("expr"):
            check_ds(ann.get("datasource"), f"annotation {ann.get('name')!r}")
    # Overlapping panels render on top of each other.
    boxes = [(p.get("id"), p.get("gridPos") or {}) for p in dash.get("panels", [])]
    boxes = [(i, g) for i, g in boxes if all(isinstance(g.get(k), int) for k in "xywh")]
    for n, (a, ga) in enumerate(boxes):
        for b, gb in boxes[n + 1:]:
            if (ga["x"] < gb["x"] + gb["w"] and gb["x"] < ga["x"] + ga["w"]
                    and ga["y"] < gb["y"] + gb["h"] and gb["y"] < ga["y"] + ga["h"]):
                bad(f"panels {a} and {b} overlap")
    return count


def main() -> int:
    problems = []
    uids = check_provisioning(problems)
    files = sorted(glob.glob(os.path.join(DASHBOARDS, "*.json")))
    if not files:
        problems.append(f"no dashboards in {DASHBOARDS}")
    panels = sum(check_dashboard(path, uids, problems) for path in files)
    if problems:
        for p in problems:
            print(f"grafana: {p}")
        return 1
    print(f"grafana: OK: {len(files)} dashboard(s), {panels} panels, provisioning consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
