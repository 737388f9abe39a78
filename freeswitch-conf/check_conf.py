#!/usr/bin/env python3
"""Checks freeswitch-conf/ against what FreeSWITCH 1.10 relies on and against the config
the fixtures were recorded on (fixtures/freeswitch/config/freeswitch.xml).

Standard library only. It emulates the parts of the FreeSWITCH preprocessor these files
touch ($${var} expansion line by line, set directives, lines it drops), then parses the
result. Exit status: 0 all checks passed, 1 a check failed, 2 it could not run.

Usage: check_conf.py [--conf-dir DIR] [--fixtures DIR]
  --conf-dir  the freeswitch-conf tree to check (default: this script's folder)
  --fixtures  the FreeSWITCH fixtures folder (default: $TOM_FIXTURES, else
              <repo>/../shared/fixtures/freeswitch)
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# The repository must carry this placeholder, never a real password.
PLACEHOLDER_PASSWORD = "CHANGE_ME_tom_esl_password"
DEFAULT_ESL_PASSWORD = "ClueCon"

# Where event_socket.conf.xml deliberately differs from the recorded config, and why.
EVENT_SOCKET_DEVIATIONS = {
    "password": "comes from $${event_socket_password} instead of a literal in the file",
}

# Variables defined in vars/tom.xml, and what they are for.
REQUIRED_VARS = {
    "event_socket_password": "inbound event socket password",
    "tom_did_regex": "the DIDs handed to the engine",
    "tom_engines": "ordered engine targets",
    "tom_socket_targets": "the socket application's target list",
    "tom_fallback_dialstring": "who takes the call when no engine does",
    "tom_fallback_ring_secs": "how long the fallback rings",
    "tom_fallback_ringback": "what the caller hears meanwhile",
    "tom_fallback_mailbox": "last-resort mailbox",
}

# Modules needed whatever the dialplan says, and why.
ALWAYS_NEEDED = {
    "mod_event_socket": "the socket application and the inbound event socket",
    "mod_dialplan_xml": "dialplan/tom.xml is an XML dialplan",
    "mod_commands": "reloadxml, and realtime-probe's originate/uuid_getvar/uuid_kill",
    "mod_loopback": "realtime-probe's loopback/ calls",
}
APP_MODULES = {
    "answer": "mod_dptools",
    "set": "mod_dptools",
    "log": "mod_dptools",
    "bridge": "mod_dptools",
    "hangup": "mod_dptools",
    "transfer": "mod_dptools",
    "socket": "mod_event_socket",
    "voicemail": "mod_voicemail",
}
ENDPOINT_MODULES = {
    "user": "mod_dptools",
    "sofia": "mod_sofia",
    "loopback": "mod_loopback",
}

VAR_REF = re.compile(r"\$\$\{([^}]*)\}")
DIRECTIVE = re.compile(r"<X-PRE-PROCESS\b", re.IGNORECASE)
SET_DIRECTIVE = re.compile(
    r'<X-PRE-PROCESS\s+cmd="set"\s+data="([^"]*)"\s*/>', re.IGNORECASE
)
DISTRIBUTOR_PICK = re.compile(r"^\$\{distributor\(([A-Za-z0-9_.-]+)\)\}$")


class Report:
    def __init__(self) -> None:
        self.failures = 0
        self.passes = 0

    def ok(self, what: str) -> None:
        self.passes += 1
        print(f"  ok    {what}")

    def fail(self, where: str, what: str) -> None:
        self.failures += 1
        print(f"  FAIL  {where}: {what}")

    def note(self, what: str) -> None:
        print(f"  note  {what}")

    def check(self, cond: bool, where: str, ok: str, fail: str) -> bool:
        if cond:
            self.ok(ok)
        else:
            self.fail(where, fail)
        return cond


class Preprocessor:
    """The slice of FreeSWITCH's preprocessor (switch_xml.c) these files use: every line
    is $${var}-expanded when read, then a set directive defines a global variable."""

    def __init__(self) -> None:
        self.vars: dict[str, str] = {}
        self.defined_in: dict[str, str] = {}
        self.undefined: list[tuple[str, int, str]] = []

    def expand(self, line: str, where: str, lineno: int) -> str:
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in self.vars:
                self.undefined.append((where, lineno, name))
                return ""
            return self.vars[name]

        return VAR_REF.sub(sub, line)

    def run(self, text: str, where: str) -> str:
        out = []
        for lineno, line in enumerate(text.splitlines(), 1):
            line = self.expand(line, where, lineno)
            m = SET_DIRECTIVE.search(line)
            if m:
                name, _, value = m.group(1).partition("=")
                self.vars[name.strip()] = value.strip()
                self.defined_in[name.strip()] = where
            out.append(line)
        return "\n".join(out)


def parse(text: str, where: str, report: Report) -> ET.Element | None:
    try:
        return ET.fromstring(text)
    except ET.ParseError as e:
        report.fail(where, f"not well-formed after $${{}} expansion: {e}")
        return None


def params(settings: ET.Element | None) -> list[tuple[str, str]]:
    if settings is None:
        return []
    return [(p.get("name", ""), p.get("value", "")) for p in settings.findall("param")]


def config_section(root: ET.Element, name: str) -> ET.Element | None:
    if root.tag == "configuration" and root.get("name") == name:
        return root
    for c in root.iter("configuration"):
        if c.get("name") == name:
            return c
    return None


def socket_extensions(root: ET.Element) -> list[ET.Element]:
    return [
        ext
        for ext in root.iter("extension")
        if any(a.get("application") == "socket" for a in ext.iter("action"))
    ]


def actions(ext: ET.Element) -> list[tuple[str, str]]:
    return [(a.get("application", ""), a.get("data", "")) for a in ext.iter("action")]


def index_of(acts: list[tuple[str, str]], app: str, data_prefix: str = "") -> int:
    for i, (a, d) in enumerate(acts):
        if a == app and d.startswith(data_prefix):
            return i
    return -1


def split_target(target: str) -> tuple[str, int | None]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return target, None
    return host, int(port)


def dialstring_endpoint(dialstring: str) -> str:
    # Leading {var=value} / [var=value] / <var=value> blocks are channel variables.
    s = dialstring
    while s[:1] in "{[<":
        close = {"{": "}", "[": "]", "<": ">"}[s[0]]
        end = s.find(close)
        if end < 0:
            break
        s = s[end + 1 :]
    return s.split("/", 1)[0]


def check_hygiene(files: dict[str, str], report: Report) -> None:
    """Lines the preprocessor would mangle."""
    for where, text in files.items():
        bad = 0
        for lineno, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            if "<include>" in line or "</include>" in line or "<?" in line:
                if not (s in ("<include>", "</include>") or (s.startswith("<?xml") and s.endswith("?>"))):
                    bad += 1
                    report.fail(
                        f"{where}:{lineno}",
                        "FreeSWITCH drops every line containing <include>, </include> or <?: "
                        "put nothing else on it",
                    )
            if DIRECTIVE.search(line) and not re.fullmatch(r"<X-PRE-PROCESS\s[^>]*/>", s, re.IGNORECASE):
                bad += 1
                report.fail(
                    f"{where}:{lineno}",
                    "a pre-process directive must be alone on its line (the preprocessor "
                    "drops the rest of the line)",
                )
        for m in re.finditer(r"<!--(.*?)-->", text, re.DOTALL):
            if DIRECTIVE.search(m.group(1)):
                bad += 1
                lineno = text.count("\n", 0, m.start()) + 1
                report.fail(
                    f"{where}:{lineno}",
                    "pre-process directive inside an XML comment: the preprocessor is "
                    "line-based and still runs it",
                )
        if not bad:
            report.ok(f"{where}: no line the preprocessor would drop or run by surprise")


def check_vars(pp: Preprocessor, host_vars: set[str], used: set[str], fixture_target: str | None, report: Report) -> list[str]:
    where = "vars/tom.xml"
    ours = {n for n, w in pp.defined_in.items() if w == where}
    for name, why in REQUIRED_VARS.items():
        report.check(name in ours, where, f"{name} defined ({why})", f"{name} is not defined ({why})")
    clash = sorted(ours & host_vars)
    report.check(
        not clash,
        where,
        "no vanilla variable redefined",
        f"redefines {', '.join(clash)}, which the host config owns",
    )
    unused = sorted(ours - used)
    report.check(not unused, where, "every variable is used", f"defined but never used: {', '.join(unused)}")

    password = pp.vars.get("event_socket_password", "")
    report.check(
        password == PLACEHOLDER_PASSWORD,
        where,
        "event_socket_password is the placeholder (no real password in the repository)",
        f"event_socket_password must stay {PLACEHOLDER_PASSWORD!r} in the repository; set the real "
        "one on the installed copy (README)",
    )
    report.check(
        password not in ("", DEFAULT_ESL_PASSWORD),
        where,
        "event_socket_password is neither empty nor ClueCon",
        "event_socket_password is empty or ClueCon (empty makes mod_event_socket fall back to ClueCon)",
    )

    raw = pp.vars.get("tom_engines", "")
    targets = raw.split("|") if raw else []
    problems = []
    for t in targets:
        if t != t.strip() or " " in t or not t:
            problems.append(f"{t!r}: spaces or empty (the socket application splits its argument on spaces)")
            continue
        host, port = split_target(t)
        if port is None or not 0 < port < 65536:
            problems.append(f"{t!r}: no explicit port (a target without one reuses the previous target's port)")
            continue
        try:
            ipaddress.ip_address(host)
        except ValueError:
            problems.append(f"{t!r}: not an IP literal (no DNS lookup at call time)")
    if len(set(targets)) != len(targets):
        problems.append("a target appears twice")
    if not targets:
        problems.append("empty")
    for p in problems:
        report.fail(where, f"tom_engines {p}")
    if not problems:
        report.ok(f"tom_engines: {len(targets)} targets, each ip:port, no spaces, no duplicates")
    if fixture_target is not None and targets:
        report.check(
            targets[0] == fixture_target,
            where,
            f"first engine target {targets[0]} is the recorded socket target",
            f"first engine target {targets[0]} differs from the recorded socket target {fixture_target} "
            "(the engine's default TOM_ESL_LISTEN)",
        )

    regex = pp.vars.get("tom_did_regex", "")
    try:
        re.compile(regex)
        report.ok(f"tom_did_regex {regex!r} compiles")
    except re.error as e:
        report.fail(where, f"tom_did_regex {regex!r} does not compile: {e}")

    secs = pp.vars.get("tom_fallback_ring_secs", "")
    report.check(
        secs.isdigit() and int(secs) > 0,
        where,
        f"tom_fallback_ring_secs {secs} is a positive number",
        f"tom_fallback_ring_secs {secs!r} is not a positive number of seconds",
    )
    return targets


def check_socket_targets(pp: Preprocessor, targets: list[str], distributor_lists: dict[str, list[str]], loaded: set[str], report: Report) -> None:
    where = "vars/tom.xml"
    value = pp.vars.get("tom_socket_targets", "")
    parts = value.split("|") if value else []
    tail = parts[len(parts) - len(targets) :] if targets else []
    if not report.check(
        bool(targets) and tail == targets,
        where,
        "tom_socket_targets ends with the ordered engine list (failover always present)",
        f"tom_socket_targets {value!r} must end with tom_engines so that every engine is tried in order",
    ):
        return
    for pick in parts[: len(parts) - len(targets)]:
        m = DISTRIBUTOR_PICK.match(pick)
        if not m:
            report.fail(where, f"tom_socket_targets: {pick!r} before the engine list is not a ${{distributor(LIST)}} pick")
            continue
        report.check(
            m.group(1) in distributor_lists,
            where,
            f"distributor list {m.group(1)} exists",
            f"distributor list {m.group(1)!r} is not in autoload_configs/distributor.conf.xml",
        )
        report.check(
            "mod_distributor" in loaded,
            where,
            "mod_distributor is loaded for the distributor pick",
            "tom_socket_targets uses mod_distributor, which snippets/modules.conf.xml does not load",
        )


def check_dialplan(root: ET.Element, fixture_ext: ET.Element | None, pp: Preprocessor, loaded: set[str], fixture_did: str | None, report: Report) -> None:
    where = "dialplan/tom.xml"
    exts = socket_extensions(root)
    if not report.check(len(exts) == 1, where, "one extension hands calls to the engine", f"{len(exts)} extensions use socket; expected 1"):
        return
    ext = exts[0]
    cond = ext.find("condition")
    regex = pp.vars.get("tom_did_regex")
    report.check(
        cond is not None and cond.get("field") == "destination_number" and cond.get("expression") == regex,
        where,
        "the extension matches destination_number against tom_did_regex",
        "the extension's condition must be destination_number =~ tom_did_regex",
    )
    if fixture_did is not None and regex:
        try:
            report.check(
                re.search(regex, fixture_did) is not None,
                where,
                f"tom_did_regex matches the recorded extension {fixture_did} (realtime-probe examples)",
                f"tom_did_regex {regex!r} does not match the recorded extension {fixture_did}",
            )
        except re.error:
            pass

    acts = actions(ext)
    apps = [a for a, _ in acts]

    fixture_flags = None
    if fixture_ext is not None:
        fa = actions(fixture_ext)
        sock = [d for a, d in fa if a == "socket"]
        fixture_flags = sock[0].split(" ")[1:] if sock else None
    for a, d in acts:
        if a != "socket":
            continue
        tokens = d.split(" ")
        flags = tokens[1:]
        ok = sorted(flags) == ["async", "full"]
        report.check(ok, where, f"socket {tokens[0]} uses async full", f"socket action {d!r} must use exactly 'async full'")
        if fixture_flags is not None:
            report.check(
                flags == fixture_flags,
                where,
                "socket flags are the recorded ones",
                f"socket flags {flags} differ from the recorded {fixture_flags}",
            )

    if fixture_ext is not None:
        recorded = [a for a, _ in actions(fixture_ext)]
        pos = 0
        for a in apps:
            if pos < len(recorded) and a == recorded[pos]:
                pos += 1
        report.check(
            pos == len(recorded),
            where,
            f"the recorded sequence {' -> '.join(recorded)} is kept, in order",
            f"the recorded sequence {' -> '.join(recorded)} is not kept in order (have {' -> '.join(apps)})",
        )

    i_resume = index_of(acts, "set", "socket_resume=")
    i_socket = index_of(acts, "socket")
    i_cof = index_of(acts, "set", "continue_on_fail=")
    i_hab = index_of(acts, "set", "hangup_after_bridge=")
    i_bridge = index_of(acts, "bridge")
    report.check(
        0 <= i_resume < i_socket and acts[i_resume][1] == "socket_resume=true",
        where,
        "socket_resume=true is set before the socket",
        "set socket_resume=true before the socket action, or a dropped engine can leave the caller parked",
    )
    report.check(
        i_socket < i_bridge,
        where,
        "a fallback bridge follows the socket",
        "no bridge after the socket action: callers get no fallback when no engine takes the call",
    )
    report.check(
        0 <= i_cof < i_bridge and acts[i_cof][1] == "continue_on_fail=true",
        where,
        "continue_on_fail=true is set before the fallback bridge",
        "set continue_on_fail=true before the fallback bridge, or an unanswered fallback hangs up",
    )
    report.check(
        0 <= i_hab < i_bridge and acts[i_hab][1] == "hangup_after_bridge=true",
        where,
        "hangup_after_bridge=true is set before the fallback bridge",
        "set hangup_after_bridge=true before the fallback bridge, or callers get voicemail after talking to a human",
    )
    report.check(
        0 <= i_bridge < len(acts) - 1,
        where,
        f"the fallback goes on after the bridge ({', '.join(apps[i_bridge + 1:])})",
        "nothing after the fallback bridge: continue_on_fail has nothing to continue to",
    )

    needed: dict[str, list[str]] = {}
    for a in dict.fromkeys(apps):
        needed.setdefault(APP_MODULES.get(a, f"<unknown module for {a}>"), []).append(a)
    if i_bridge >= 0:
        endpoint = dialstring_endpoint(acts[i_bridge][1])
        module = ENDPOINT_MODULES.get(endpoint, f"<unknown module for endpoint {endpoint}>")
        needed.setdefault(module, []).append(f"{endpoint}/ endpoint")
    for module, uses in sorted(needed.items()):
        why = ", ".join(uses)
        report.check(module in loaded, "snippets/modules.conf.xml", f"{module} loaded ({why})", f"{module} is not loaded, needed by {why}")


def check_event_socket(raw_root: ET.Element, root: ET.Element, fixture_params: dict[str, str], report: Report) -> None:
    where = "autoload_configs/event_socket.conf.xml"
    section = config_section(root, "event_socket.conf")
    raw_section = config_section(raw_root, "event_socket.conf")
    if not report.check(section is not None, where, "defines event_socket.conf", "no <configuration name=\"event_socket.conf\">"):
        return
    ps = params(section.find("settings"))
    names = [n for n, _ in ps]
    values = dict(ps)
    raw_values = dict(params(raw_section.find("settings")))
    report.check(len(names) == len(set(names)), where, "no parameter set twice", f"a parameter is set twice: {names}")

    unknown = sorted(set(names) - set(fixture_params))
    report.check(
        not unknown,
        where,
        "every parameter name exists in the recorded config",
        f"parameters not in the recorded config (unverified names): {', '.join(unknown)}",
    )
    missing = sorted(set(fixture_params) - set(names))
    report.check(
        not missing,
        where,
        "every recorded parameter is carried over",
        f"recorded parameters missing here: {', '.join(missing)}",
    )

    ip = values.get("listen-ip", "")
    try:
        loopback = ipaddress.ip_address(ip).is_loopback
    except ValueError:
        loopback = False
    report.check(loopback, where, f"listen-ip {ip} is loopback", f"listen-ip {ip!r} is not a loopback address")

    raw_pw = raw_values.get("password", "")
    report.check(
        raw_pw == "$${event_socket_password}",
        where,
        "password is $${event_socket_password}, not a literal",
        f"password must be $${{event_socket_password}}, not {raw_pw!r}",
    )
    report.check(
        values.get("password", "") not in ("", DEFAULT_ESL_PASSWORD),
        where,
        "password expands to something other than empty/ClueCon",
        "password expands to empty or ClueCon (empty makes mod_event_socket use ClueCon)",
    )
    report.check(
        bool(values.get("apply-inbound-acl")),
        where,
        f"apply-inbound-acl {values.get('apply-inbound-acl')}",
        "no apply-inbound-acl",
    )

    for name in sorted(set(names) & set(fixture_params)):
        if name in EVENT_SOCKET_DEVIATIONS:
            report.note(f"event_socket {name}: deliberately not the recorded value: {EVENT_SOCKET_DEVIATIONS[name]}")
            continue
        report.check(
            values[name] == fixture_params[name],
            where,
            f"{name}={values[name]} as recorded",
            f"{name}={values[name]!r} but the recorded config has {fixture_params[name]!r}",
        )


def check_distributor(root: ET.Element, targets: list[str], report: Report) -> dict[str, list[str]]:
    where = "autoload_configs/distributor.conf.xml"
    section = config_section(root, "distributor.conf")
    if not report.check(section is not None, where, "defines distributor.conf", "no <configuration name=\"distributor.conf\">"):
        return {}
    lists: dict[str, list[str]] = {}
    for lst in section.iter("list"):
        name = lst.get("name", "")
        if lst.get("total-weight") is not None:
            report.fail(where, f"list {name}: total-weight is obsolete (the module warns and ignores it)")
        nodes = []
        for node in lst.findall("node"):
            weight = node.get("weight", "")
            if not (weight.isdigit() and int(weight) >= 1):
                report.fail(where, f"list {name}: node {node.get('name')} weight {weight!r} < 1 (the module skips it)")
            nodes.append(node.get("name", ""))
        lists[name] = nodes
    tom = lists.get("tom")
    if report.check(tom is not None, where, "list tom exists", "no list named tom (the one vars/tom.xml documents)"):
        report.check(
            sorted(tom) == sorted(targets),
            where,
            "list tom has exactly the tom_engines targets",
            f"list tom {sorted(tom)} differs from tom_engines {sorted(targets)}: a drained engine "
            "would still be picked, or a live one never",
        )
    return lists


def main() -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conf-dir", type=Path, default=here)
    default_fixtures = os.environ.get("TOM_FIXTURES") or str(here.parent.parent / "shared" / "fixtures" / "freeswitch")
    ap.add_argument("--fixtures", type=Path, default=Path(default_fixtures))
    args = ap.parse_args()

    conf: Path = args.conf_dir
    fixture_file = args.fixtures / "config" / "freeswitch.xml"
    names = {
        "vars": "vars/tom.xml",
        "dialplan": "dialplan/tom.xml",
        "event_socket": "autoload_configs/event_socket.conf.xml",
        "distributor": "autoload_configs/distributor.conf.xml",
        "modules": "snippets/modules.conf.xml",
    }
    texts: dict[str, str] = {}
    for rel in [*names.values(), *sorted(str(p.relative_to(conf)) for p in conf.rglob("*.xml"))]:
        if rel in texts:
            continue
        try:
            texts[rel] = (conf / rel).read_text(encoding="utf-8")
        except OSError as e:
            print(f"check_conf: cannot read {conf / rel}: {e}", file=sys.stderr)
            return 2
    try:
        fixture_text = fixture_file.read_text(encoding="utf-8")
    except OSError as e:
        print(f"check_conf: recorded config not found ({e}); set TOM_FIXTURES to the fixtures/freeswitch folder", file=sys.stderr)
        return 2

    report = Report()
    print(f"check_conf: {conf} against {fixture_file}")

    # The recorded config plays the host tree: its variables exist before ours, as vanilla
    # vars.xml's do before the line that includes vars/tom.xml.
    pp = Preprocessor()
    fixture_expanded = pp.run(fixture_text, "fixture")
    fixture_root = ET.fromstring(fixture_expanded)
    host_vars = set(pp.vars)
    fixture_modules = {m.get("module") for m in fixture_root.iter("load")}
    fixture_es = config_section(fixture_root, "event_socket.conf")
    fixture_params = dict(params(fixture_es.find("settings") if fixture_es is not None else None))
    fixture_exts = socket_extensions(fixture_root)
    fixture_ext = fixture_exts[0] if fixture_exts else None
    fixture_target = None
    fixture_did = None
    if fixture_ext is not None:
        fixture_target = next((d.split(" ")[0] for a, d in actions(fixture_ext) if a == "socket"), None)
        cond = fixture_ext.find("condition")
        m = re.fullmatch(r"\^?(\+?\d+)\$?", cond.get("expression", "") if cond is not None else "")
        fixture_did = m.group(1) if m else None
    else:
        report.fail("fixture", "no extension with a socket action in the recorded config")

    print("preprocessor:")
    check_hygiene(texts, report)
    # vars/tom.xml first: the other files use what it defines.
    order = [names["vars"], *(rel for rel in texts if rel != names["vars"])]
    expanded = {rel: pp.run(texts[rel], rel) for rel in order}
    used = {m.group(1) for text in texts.values() for m in VAR_REF.finditer(text)}
    for where, lineno, name in pp.undefined:
        if where == "fixture":
            continue
        report.fail(f"{where}:{lineno}", f"$${{{name}}} is not defined (it would expand to nothing)")
    if not [u for u in pp.undefined if u[0] != "fixture"]:
        report.ok("every $${var} used is defined")
    for name in sorted(used & host_vars):
        report.ok(f"$${{{name}}} comes from the host config and the recorded config defines it too")

    roots = {rel: parse(text, rel, report) for rel, text in expanded.items()}
    raw_es = parse(texts[names["event_socket"]], names["event_socket"], report)
    if any(r is None for r in roots.values()) or raw_es is None:
        print(f"check_conf: {report.failures} failed, {report.passes} passed")
        return 1

    loaded_section = config_section(roots[names["modules"]], "modules.conf")
    loaded = {m.get("module") for m in loaded_section.iter("load")} if loaded_section is not None else set()

    print("vars:")
    targets = check_vars(pp, host_vars, used, fixture_target, report)
    print("distributor:")
    lists = check_distributor(roots[names["distributor"]], targets, report)
    check_socket_targets(pp, targets, lists, loaded, report)
    print("dialplan:")
    check_dialplan(roots[names["dialplan"]], fixture_ext, pp, loaded, fixture_did, report)
    print("event socket:")
    check_event_socket(raw_es, roots[names["event_socket"]], fixture_params, report)
    print("modules:")
    for module, why in ALWAYS_NEEDED.items():
        report.check(module in loaded, names["modules"], f"{module} loaded ({why})", f"{module} is not loaded ({why})")
    for module in sorted(loaded - fixture_modules):
        report.note(f"{module} was not loaded in the recorded config: its path is untested")

    if report.failures:
        print(f"check_conf: FAILED: {report.failures} failed, {report.passes} passed")
        return 1
    print(f"check_conf: all {report.passes} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
