#!/usr/bin/env bash
# Validates the deployment files (infra/Dockerfile, infra/compose.yaml, infra/k8s/,
# infra/systemd/) as far as a machine without a Docker engine, a cluster or a running
# systemd can: YAML, schemas, structure and the references between files and to the
# engine's code. Run from any directory; prints one line per check and
# "N passed, N failed, N skipped"; exits 1 when any check failed.
#
# Needs: python3 >= 3.11 with venv, PyPI access the first time (kubernetes-validate,
# pinned, into $TOM_CACHE/venv-infra), systemd-analyze. Uses when present: kubectl
# (kustomize build), docker compose or docker-compose (compose config), yamllint, and a
# built `tom` ($TOM_BIN, else $CARGO_TARGET_DIR or $TOM_CACHE/target, release then
# debug) for `tom config check` on the shipped TOML files.
#
# What is never run here: docker build, the containers, a cluster, the unit under
# systemd (docs/deployment.md, "What was validated").
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA="$REPO/infra"
CACHE="${TOM_CACHE:-$HOME/.cache/tom}"
VENV="$CACHE/venv-infra"
# kubernetes-validate bundles the Kubernetes JSON schemas, so validation works offline.
# Every package pinned, so a new release upstream cannot change the verdict.
PINS=(kubernetes-validate==1.37.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
      referencing==0.37.0 rpds-py==2026.9.1 attrs==26.1.0 PyYAML==6.0.4
      typing_extensions==4.16.0 importlib_resources==7.1.0 packaging==26.4)
# Native sidecars (FreeSWITCH in the engine's pod) are on by default from 1.29.
K8S_VERSIONS=(1.29.0 1.37.0)

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
RESULTS="$WORK/results"
: >"$RESULTS"

pass() { printf 'ok    %s\n' "$1" | tee -a "$RESULTS"; }
fail() { printf 'FAIL  %s: %s\n' "$1" "$2" | tee -a "$RESULTS"; }
skip() { printf 'skip  %s: %s\n' "$1" "$2" | tee -a "$RESULTS"; }
# run NAME CMD...: the command's output is shown only when it fails.
run() {
    local name="$1"; shift
    if "$@" >"$WORK/out" 2>&1; then pass "$name"; else fail "$name" "$(tail -n 20 "$WORK/out")"; fi
}

# ------------------------------------------------------------------ tools
PY=""
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    fail "python" "python3 >= 3.11 is needed (tomllib)"
else
    want_ok() { "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("kubernetes-validate") != "1.37.0")' 2>/dev/null; }
    if ! want_ok; then
        rm -rf "$VENV"
        if python3 -m venv "$VENV" >"$WORK/out" 2>&1 \
            && "$VENV/bin/python" -m pip install --disable-pip-version-check -q "${PINS[@]}" >>"$WORK/out" 2>&1; then
            :
        else
            fail "venv" "cannot prepare $VENV: $(tail -n 5 "$WORK/out")"
        fi
    fi
    want_ok && PY="$VENV/bin/python"
fi

# ------------------------------------------------------------------ YAML lint
if command -v yamllint >/dev/null; then
    # Style is not the point; duplicate keys, bad indentation and syntax are.
    run "yamllint compose.yaml k8s/*.yaml" yamllint --strict \
        -d '{extends: relaxed, rules: {line-length: {max: 130}}}' \
        "$INFRA/compose.yaml" "$INFRA"/k8s/*.yaml
else
    skip "yamllint" "not installed (the python checks below still parse every file)"
fi

# ------------------------------------------------------------------ compose
compose_cli=()
if docker compose version >/dev/null 2>&1; then compose_cli=(docker compose)
elif command -v docker-compose >/dev/null; then compose_cli=(docker-compose)
fi
if [ "${#compose_cli[@]}" -gt 0 ]; then
    # `config` validates against the Compose schema and resolves the file without
    # talking to a Docker engine.
    run "compose: ${compose_cli[*]} config" \
        env -C "$INFRA" TOM_PII_SALT=check "${compose_cli[@]}" -f compose.yaml -p tom config -q
else
    skip "compose: docker compose config" "neither docker compose nor docker-compose installed"
fi

# ------------------------------------------------------------------ kubernetes
RENDERED="$WORK/k8s-rendered.yaml"
if command -v kubectl >/dev/null; then
    # The FreeSWITCH files sit outside infra/k8s (../../freeswitch-conf).
    if kubectl kustomize --load-restrictor LoadRestrictionsNone "$INFRA/k8s" >"$RENDERED" 2>"$WORK/out"; then
        pass "k8s: kustomize build"
    else
        fail "k8s: kustomize build" "$(tail -n 20 "$WORK/out")"
        rm -f "$RENDERED"
    fi
else
    skip "k8s: kustomize build" "kubectl not installed (schema check runs on the files one by one)"
fi
if [ -n "$PY" ]; then
    if [ -f "$RENDERED" ]; then
        targets=("$RENDERED")
    else
        # Without kustomize: the plain resource files (the generated ConfigMaps are
        # then not schema-checked).
        mapfile -t targets < <("$PY" -c '
import sys, yaml
k = yaml.safe_load(open(sys.argv[1] + "/kustomization.yaml"))
print("\n".join(sys.argv[1] + "/" + r for r in k.get("resources", [])))' "$INFRA/k8s")
    fi
    targets+=("$INFRA/k8s/secret.example.yaml")
    for v in "${K8S_VERSIONS[@]}"; do
        # --strict: unknown fields (a typo such as readinessProb) are errors.
        run "k8s: kubernetes-validate --strict (Kubernetes $v)" \
            "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "${targets[@]}"
    done
else
    skip "k8s: kubernetes-validate" "no python venv (see the failure above)"
fi

# ------------------------------------------------------------------ systemd
UNIT="$INFRA/systemd/tom.service"
if command -v systemd-analyze >/dev/null; then
    # verify insists that ExecStart's program exists; /usr/local/bin/tom is not
    # installed here, so a copy with the same settings runs /bin/true instead. Any
    # output (unknown key, bad value, missing file) counts as a failure.
    mkdir -p "$WORK/unit"
    sed 's#^ExecStart=.*#ExecStart=/bin/true#' "$UNIT" >"$WORK/unit/tom.service"
    if out="$(systemd-analyze verify "$WORK/unit/tom.service" 2>&1)" && [ -z "$out" ]; then
        pass "systemd: systemd-analyze verify"
    else
        fail "systemd: systemd-analyze verify" "$out"
    fi
    # Offline exposure score (0 = locked down, 10 = wide open; --threshold counts in
    # tenths). 2.0 keeps today's hardening from eroding; the unit scores about 1.4.
    if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
        name="systemd: systemd-analyze security --offline (exposure <= 2.0)"
        if out="$(systemd-analyze security --offline=true --threshold=20 --no-pager "$WORK/unit/tom.service" 2>&1)"; then
            pass "$name"
        else
            fail "$name" "$(printf '%s\n' "$out" | grep 'Overall exposure')"
        fi
    else
        skip "systemd: systemd-analyze security" "this systemd has no --offline"
    fi
else
    skip "systemd: systemd-analyze" "not installed"
fi

# ------------------------------------------------------------------ tom config check
TOM=""
for candidate in "${TOM_BIN:-}" "${CARGO_TARGET_DIR:-$CACHE/target}/release/tom" "${CARGO_TARGET_DIR:-$CACHE/target}/debug/tom"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then TOM="$candidate"; break; fi
done
for toml in "$INFRA/k8s/tom.toml" "$INFRA/systemd/tom.toml.example"; do
    name="tom config check ${toml#"$REPO"/}"
    if [ -n "$TOM" ]; then
        # A clean environment: only the file is under test, not this shell's settings.
        # The salt is the one variable every deployment injects (a Secret, tom.env): the
        # engine refuses its public development salt beyond loopback.
        run "$name" env -i PATH="$PATH" HOME="$HOME" TOM_PII_SALT=deployment-injected \
            "$TOM" config check --config "$toml"
    else
        skip "$name" "no built tom binary (set TOM_BIN); the key check below still runs"
    fi
done

# ------------------------------------------------------------------ structure (python)
if [ -n "$PY" ]; then
    "$PY" - "$REPO" "$RESULTS" "${RENDERED}" <<'PY' || fail "structural checks" "the checker itself crashed (see above)"
import fnmatch, http.server, ipaddress, os, re, socket, subprocess, sys, tempfile
import threading, tomllib, traceback
import yaml

REPO, RESULTS, RENDERED = sys.argv[1], sys.argv[2], sys.argv[3]
INFRA = os.path.join(REPO, "infra")


class Fail(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise Fail(msg)


def report(line):
    print(line)
    with open(RESULTS, "a") as f:
        f.write(line + "\n")


def check(name):
    def wrap(fn):
        try:
            fn()
            report(f"ok    {name}")
        except Fail as e:
            report(f"FAIL  {name}: {e}")
        except Exception:
            report(f"FAIL  {name}: {traceback.format_exc(limit=2).strip()}")
        return fn
    return wrap


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a deployment file must not."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.load_all(f, Loader=UniqueKeyLoader) if d is not None]


def read(path):
    with open(path) as f:
        return f.read()


# ---------------------------------------------------------------- facts from the engine
ENGINE_SRC = [os.path.join(REPO, d) for d in ("engine/src", "llm-server/src")]
SOURCES = {}
for root_dir in ENGINE_SRC:
    for root, _, files in os.walk(root_dir):
        for name in files:
            if name.endswith(".rs"):
                p = os.path.join(root, name)
                SOURCES[p] = read(p)
ALL_SRC = "\n".join(SOURCES.values())
ENV_PATTERN = re.compile(r"^(TOM_[A-Z0-9_]+|FALLBACK_[A-Z0-9_]+|ALLOW_EGRESS|REDIS_URL|OPENAI_API_KEY)$")
# Every variable name the engine (or tom-llm) can read appears as a string literal.
KNOWN_ENV = {m for m in re.findall(r'"([A-Z][A-Z0-9_]+)"', ALL_SRC) if ENV_PATTERN.match(m)}
KNOWN_ENV.add("RUST_LOG")  # tracing-subscriber's EnvFilter default


def unknown_env(names):
    return sorted(n for n in names if ENV_PATTERN.match(n) and n not in KNOWN_ENV)


def default_drain_secs():
    m = re.search(r"drain_secs:\s*(\d+)\s*,", SOURCES[os.path.join(REPO, "engine/src/config.rs")])
    need(m, "no drain_secs default in engine/src/config.rs")
    return int(m.group(1))


def rust_structs():
    """struct name -> {field: type} for every `pub struct X { pub f: T, ... }` of the
    engine crate (tom-llm has its own, unrelated ServerConfig)."""
    structs = {}
    engine_src = os.path.join(REPO, "engine", "src") + os.sep
    for path, text in SOURCES.items():
        if not path.startswith(engine_src):
            continue
        for m in re.finditer(r"pub struct (\w+)\s*\{(.*?)\n\}", text, re.S):
            fields, skip_next = {}, False
            for line in m.group(2).splitlines():
                line = line.strip()
                if line.startswith("#[serde(skip"):
                    skip_next = True
                    continue
                fm = re.match(r"pub (\w+):\s*(.+?),?$", line)
                if fm:
                    if not skip_next:
                        fields[fm.group(1)] = fm.group(2)
                    skip_next = False
            structs[m.group(1)] = fields
    return structs


STRUCTS = rust_structs()


def check_toml_keys(table, struct, where):
    """Every key must be a field of the engine's config type (deny_unknown_fields)."""
    fields = STRUCTS.get(struct)
    need(fields is not None, f"engine struct {struct} not found")
    for key, value in table.items():
        need(key in fields, f"{where}{key}: not a setting of {struct} (engine/src)")
        inner = re.sub(r"^(Option|Vec|Box)<(.+)>$", r"\2", fields[key])
        if isinstance(value, dict) and inner in STRUCTS:
            check_toml_keys(value, inner, f"{where}{key}.")


def toml_server(path):
    with open(path, "rb") as f:
        data = tomllib.load(f)
    check_toml_keys(data, "Config", "")
    return data.get("server", {})


def duration_secs(text):
    text = str(text)
    if text.isdigit():
        return int(text)
    total, rest = 0, text
    for amount, unit in re.findall(r"(\d+)(h|ms|m|s|us)", text):
        total += int(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}[unit]
        rest = rest.replace(amount + unit, "", 1)
    need(rest == "", f"cannot read duration {text!r}")
    return total


def is_loopback(ip):
    return ipaddress.ip_address(ip).is_loopback


# ---------------------------------------------------------------- YAML
@check("yaml: every file under infra/compose.yaml, infra/k8s parses (no duplicate keys)")
def _():
    paths = [os.path.join(INFRA, "compose.yaml")]
    paths += sorted(os.path.join(INFRA, "k8s", f) for f in os.listdir(os.path.join(INFRA, "k8s"))
                    if f.endswith((".yaml", ".yml")))
    for p in paths:
        try:
            need(load_all(p), f"{p}: empty")
        except yaml.YAMLError as e:
            raise Fail(f"{os.path.relpath(p, REPO)}: {e}")


def load_or_note(path, note):
    """A file that does not load fails the checks that need it, not the whole checker."""
    try:
        return load_all(path)
    except Exception as e:  # noqa: BLE001 - reported as a check failure
        note.append(f"{os.path.relpath(path, REPO)}: {e}".splitlines()[0])
        return [{}]


# ---------------------------------------------------------------- compose
COMPOSE_ERRORS = []
COMPOSE = load_or_note(os.path.join(INFRA, "compose.yaml"), COMPOSE_ERRORS)[0]
SERVICES = COMPOSE.get("services", {})


def service_env(svc):
    env = svc.get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: str(v) for k, v in env.items()}


def netns_owner(name):
    mode = SERVICES[name].get("network_mode", "")
    return mode.split(":", 1)[1] if mode.startswith("service:") else name


def dns_names(name):
    """Names under which service `name` answers on the compose networks."""
    owner = netns_owner(name)
    names = {owner}
    nets = SERVICES[owner].get("networks", {})
    if isinstance(nets, dict):
        for cfg in nets.values():
            names.update((cfg or {}).get("aliases", []))
    return names


@check("compose: services, depends_on, network_mode, named volumes and bind sources exist")
def _():
    need(not COMPOSE_ERRORS, "; ".join(COMPOSE_ERRORS))
    for want in ("freeswitch", "engine", "redis", "prometheus", "grafana"):
        need(want in SERVICES, f"service {want} missing")
    declared = set((COMPOSE.get("volumes") or {}).keys())
    for name, svc in SERVICES.items():
        deps = svc.get("depends_on", [])
        for dep in (deps.keys() if isinstance(deps, dict) else deps):
            need(dep in SERVICES, f"{name}: depends_on unknown service {dep}")
        mode = svc.get("network_mode", "")
        if mode.startswith("service:"):
            need(mode[8:] in SERVICES, f"{name}: network_mode names unknown service {mode[8:]}")
            need("ports" not in svc and "networks" not in svc,
                 f"{name}: a service in another's network namespace cannot have ports/networks")
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith((".", "/")):
                need(os.path.exists(os.path.normpath(os.path.join(INFRA, src))),
                     f"{name}: bind source {src} does not exist (relative to infra/)")
            else:
                need(src in declared, f"{name}: named volume {src} not declared")
        build = svc.get("build")
        if build:
            ctx = os.path.normpath(os.path.join(INFRA, build.get("context", ".")))
            need(os.path.isfile(os.path.join(ctx, build.get("dockerfile", "Dockerfile"))),
                 f"{name}: dockerfile not found")


@check("compose: engine shares FreeSWITCH's network namespace, ESL/media on loopback, HTTP reachable")
def _():
    engine = SERVICES["engine"]
    env = service_env(engine)
    # The engine tells FreeSWITCH to bind its media end on TOM_MEDIA_IP: both must own it.
    need(netns_owner("engine") == netns_owner("freeswitch"),
         "engine and freeswitch are in different network namespaces; unicast media cannot work")
    for key in ("TOM_ESL_LISTEN", "TOM_HTTP_ADDR", "TOM_MEDIA_IP", "TOM_ESL_ALLOW", "REDIS_URL"):
        need(key in env, f"engine: {key} not set")
    need(is_loopback(env["TOM_MEDIA_IP"]), "TOM_MEDIA_IP should stay on loopback in the shared namespace")
    esl_host = env["TOM_ESL_LISTEN"].rsplit(":", 1)[0]
    need(is_loopback(esl_host), "TOM_ESL_LISTEN leaves loopback although FreeSWITCH is in the same namespace")
    need(env["TOM_HTTP_ADDR"].startswith("0.0.0.0:"), "TOM_HTTP_ADDR must listen beyond loopback for Prometheus")
    need(not unknown_env(env), f"engine: variables the engine does not read: {unknown_env(env)}")


@check("compose: REDIS_URL names the redis service; Prometheus targets resolve to the engine's HTTP port")
def _():
    env = service_env(SERVICES["engine"])
    m = re.match(r"redis://(?:[^@]*@)?([^:/]+):(\d+)", env["REDIS_URL"])
    need(m, "REDIS_URL is not redis://host:port")
    need(m.group(1) in SERVICES and m.group(1) in dns_names(m.group(1)), f"REDIS_URL host {m.group(1)} is no service")
    http_port = env["TOM_HTTP_ADDR"].rsplit(":", 1)[1]
    prom = SERVICES["prometheus"]
    mounts = [v for v in prom.get("volumes", []) if isinstance(v, str)]
    target_files = [v.split(":")[0] for v in mounts if "targets/" in v.split(":")[1]]
    need(target_files, "prometheus: no targets file mounted for the engine")
    engine_names = dns_names("engine")
    for tf in target_files:
        for group in load_all(os.path.normpath(os.path.join(INFRA, tf)))[0]:
            for target in group["targets"]:
                host, port = target.rsplit(":", 1)
                need(host in engine_names, f"prometheus target {target}: {host} is not a name of the engine ({sorted(engine_names)})")
                need(port == http_port, f"prometheus target {target}: engine HTTP is on port {http_port}")
    # The engine's netns owner must share a network with prometheus.
    owner_nets = set((SERVICES[netns_owner("engine")].get("networks") or {}))
    prom_nets = set(prom.get("networks") or [])
    need(owner_nets & prom_nets, "prometheus and the engine share no network")


@check("compose: Grafana provisioning points at the mounted dashboards and the prometheus service")
def _():
    graf = SERVICES["grafana"]
    binds = {}
    for v in graf.get("volumes", []):
        parts = v.split(":")
        if parts[0].startswith("."):
            binds[parts[1]] = os.path.normpath(os.path.join(INFRA, parts[0]))
    prov_host = next((h for c, h in binds.items() if c == "/etc/grafana/provisioning"), None)
    need(prov_host, "grafana: /etc/grafana/provisioning is not mounted")
    dash_dir = os.path.join(prov_host, "dashboards")
    need(os.path.isdir(dash_dir), f"{os.path.relpath(dash_dir, REPO)} missing")
    providers = [prov for f in sorted(os.listdir(dash_dir)) if f.endswith((".yml", ".yaml"))
                 for prov in load_all(os.path.join(dash_dir, f))[0].get("providers", [])]
    need(providers, f"no dashboard provider in {os.path.relpath(dash_dir, REPO)}")
    for prov in providers:
        path = (prov.get("options") or {}).get("path", "")
        mounted = [c for c in binds if path == c or path.startswith(c.rstrip("/") + "/")]
        need(mounted, f"dashboard provider path {path} is not a mounted directory ({sorted(binds)})")
        c = max(mounted, key=len)
        host = os.path.join(binds[c], os.path.relpath(path, c))
        need(os.path.isdir(host) and any(f.endswith(".json") for f in os.listdir(host)),
             f"dashboard provider path {path} is {os.path.relpath(host, REPO)} here, which holds no dashboard")
    ds_dir = os.path.join(prov_host, "datasources")
    need(os.path.isdir(ds_dir), f"{os.path.relpath(ds_dir, REPO)} missing")
    sources = [ds for f in sorted(os.listdir(ds_dir)) if f.endswith((".yml", ".yaml"))
               for ds in load_all(os.path.join(ds_dir, f))[0].get("datasources", [])
               if ds.get("type") == "prometheus"]
    need(sources, f"no Prometheus datasource in {os.path.relpath(ds_dir, REPO)}")
    for ds in sources:
        m = re.match(r"https?://([^:/]+):(\d+)", ds.get("url", ""))
        need(m and m.group(1) in SERVICES, f"datasource url {ds.get('url')} is not a compose service")
        need(m.group(2) == "9090", f"datasource url {ds.get('url')}: Prometheus listens on 9090 inside")


@check("compose: engine stop grace > drain_secs, healthcheck on /ready, hardened, admin ports on loopback")
def _():
    engine = SERVICES["engine"]
    drain = default_drain_secs()
    need("stop_grace_period" in engine, "engine: no stop_grace_period (Docker's 10 s default cuts the drain)")
    grace = duration_secs(engine["stop_grace_period"])
    need(grace > drain + 10, f"engine: stop_grace_period {grace}s is not above drain_secs {drain}s + 10s")
    test = " ".join(engine.get("healthcheck", {}).get("test", []))
    need("/ready" in test, "engine: healthcheck does not use /ready")
    need(engine.get("read_only") is True, "engine: root filesystem not read_only")
    need("ALL" in engine.get("cap_drop", []), "engine: capabilities not dropped")
    need(any("no-new-privileges" in s for s in engine.get("security_opt", [])), "engine: no-new-privileges missing")
    for name, svc in SERVICES.items():
        for p in svc.get("ports", []):
            p = str(p)
            container = p.rsplit(":", 1)[-1].split("/")[0]
            if container in ("9090", "3000", "6379", "8084", "8021"):
                need(p.startswith("127.0.0.1:"), f"{name}: port {p} published beyond loopback")


# ---------------------------------------------------------------- Dockerfile
def dockerfile_instructions(text):
    """(instruction, argument) pairs; continuation lines joined, heredoc bodies kept."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        body = None
        m = re.search(r"<<-?'?(\w+)'?", line)
        if m:
            body, end = [], m.group(1)
            while i < len(lines) and lines[i] != end:
                body.append(lines[i])
                i += 1
            i += 1
        word, _, arg = line.strip().partition(" ")
        out.append((word.upper(), arg.strip(), "\n".join(body) if body is not None else None))
    return out


DOCKERFILE = dockerfile_instructions(read(os.path.join(INFRA, "Dockerfile")))


@check("dockerfile: bookworm build and runtime, non-root numeric USER, HEALTHCHECK /health, STOPSIGNAL SIGTERM")
def _():
    froms = [a for w, a, _ in DOCKERFILE if w == "FROM"]
    need(len(froms) >= 2, "not multi-stage")
    need("bookworm" in froms[0] and "bookworm" in froms[-1],
         "builder and runtime must be the same Debian release (glibc, libespeak-ng)")
    users = [a for w, a, _ in DOCKERFILE if w == "USER"]
    need(users, "no USER: the engine would run as root")
    uid = users[-1].split(":")[0]
    need(uid.isdigit() and uid != "0", f"USER {users[-1]}: use a numeric non-root id (runAsNonRoot checks it)")
    hc = [a for w, a, _ in DOCKERFILE if w == "HEALTHCHECK"]
    need(hc and "/health" in hc[-1], "no HEALTHCHECK on /health")
    need(("STOPSIGNAL", "SIGTERM", None) in DOCKERFILE, "STOPSIGNAL SIGTERM missing")
    runs = " ".join(a for w, a, _ in DOCKERFILE if w == "RUN")
    need("scripts/fetch-models.sh" in runs, "models are not fetched (and sha256-checked) by fetch-models.sh")
    need("--locked" in runs, "cargo build without --locked")


@check("dockerfile: COPY sources exist and .dockerignore keeps them; models land in TOM_MODELS")
def _():
    ignore = [l.strip() for l in read(os.path.join(REPO, ".dockerignore")).splitlines()
              if l.strip() and not l.startswith("#")]
    needed = ["Cargo.toml", "Cargo.lock", "engine", "esl-bridge", "llm-server", "probes",
              "models/models.toml", "scripts/fetch-models.sh", "tools/models"]
    for path in needed:
        for pat in ignore:
            need(not (fnmatch.fnmatch(path, pat) or path.startswith(pat.rstrip("/") + "/")),
                 f".dockerignore pattern {pat} drops {path}, which the build needs")
    env_models = None
    for w, a, body in DOCKERFILE:
        if w == "COPY" and body is None and "--from=" not in a:
            srcs = [s for s in a.split() if not s.startswith("--")][:-1]
            for s in srcs:
                need(os.path.exists(os.path.join(REPO, s)), f"COPY source {s} does not exist")
        if w == "ENV":
            m = re.search(r"TOM_MODELS=(\S+)", a)
            if m:
                env_models = m.group(1)
    dests = [a.split()[-1] for w, a, _ in DOCKERFILE if w == "COPY" and "--from=models" in a]
    need(env_models and dests and dests[0].rstrip("/") == env_models.rstrip("/"),
         f"models are copied to {dests} but TOM_MODELS is {env_models}")
    env_names = set()
    for w, a, _ in DOCKERFILE:
        if w == "ENV":
            env_names.update(re.findall(r"(\w+)=", a))
    need(not unknown_env(env_names), f"ENV the engine does not read: {unknown_env(env_names)}")


@check("dockerfile: tom-probe (the health check script) passes on 200, fails on 503 and on a closed port")
def _():
    body = next((b for w, a, b in DOCKERFILE if w == "COPY" and "tom-probe" in a and b), None)
    need(body, "no tom-probe heredoc")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
        f.write(body + "\n")
    try:
        def probe(addr, path):
            return subprocess.run(["bash", f.name, path], env={"TOM_HTTP_ADDR": addr, "PATH": os.environ["PATH"]},
                                  capture_output=True, timeout=20).returncode
        need(probe(f"0.0.0.0:{port}", "/health") == 0, "200 on /health did not pass")
        need(probe(f"127.0.0.1:{port}", "/ready") != 0, "503 on /ready passed")
        need(probe(f"127.0.0.1:{closed}", "/health") != 0, "a closed port passed")
    finally:
        os.unlink(f.name)
        server.shutdown()


# ---------------------------------------------------------------- kubernetes
K8S = os.path.join(INFRA, "k8s")
K8S_ERRORS = []
KUST = load_or_note(os.path.join(K8S, "kustomization.yaml"), K8S_ERRORS)[0]
DOCS = []
for r in KUST.get("resources", []):
    DOCS += load_or_note(os.path.join(K8S, r), K8S_ERRORS)
DOCS = [d for d in DOCS if d]
SECRET_EXAMPLE = load_or_note(os.path.join(K8S, "secret.example.yaml"), K8S_ERRORS)[0]
ADAPTER = load_or_note(os.path.join(K8S, "prometheus-adapter-rules.yaml"), K8S_ERRORS)[0]


def find(kind, name=None):
    need(not K8S_ERRORS, "; ".join(K8S_ERRORS))
    hits = [d for d in DOCS if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    need(hits, f"no {kind} {name or ''} in the kustomization's resources")
    return hits


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


ENGINE_DEP = None
for d in DOCS:
    if d.get("kind") == "Deployment":
        names = [c["name"] for c in d["spec"]["template"]["spec"].get("containers", [])]
        if "engine" in names:
            ENGINE_DEP = d


def engine_pod():
    need(not K8S_ERRORS, "; ".join(K8S_ERRORS))
    need(ENGINE_DEP, "no Deployment with a container named engine")
    return ENGINE_DEP["spec"]["template"]["spec"]


def engine_container():
    return next(c for c in engine_pod()["containers"] if c["name"] == "engine")


def k8s_server():
    gen = [g for g in KUST.get("configMapGenerator", []) if g["name"] == "tom-config"]
    need(gen, "no configMapGenerator tom-config")
    toml = next(f for f in gen[0]["files"] if f.split("=")[-1].endswith("tom.toml")).split("=")[-1]
    return toml_server(os.path.join(K8S, toml))


@check("k8s: kustomization resources and generator files exist, apiVersion/kind pairs are the expected ones")
def _():
    for r in KUST.get("resources", []):
        need(os.path.isfile(os.path.join(K8S, r)), f"resource {r} missing")
    need(not K8S_ERRORS, "; ".join(K8S_ERRORS))
    for g in KUST.get("configMapGenerator", []):
        for f in g.get("files", []):
            src = f.split("=", 1)[-1]
            need(os.path.isfile(os.path.normpath(os.path.join(K8S, src))), f"generator file {src} missing")
    expected = {"Deployment": "apps/v1", "Service": "v1", "HorizontalPodAutoscaler": "autoscaling/v2",
                "PodDisruptionBudget": "policy/v1", "NetworkPolicy": "networking.k8s.io/v1",
                "ConfigMap": "v1", "Secret": "v1"}
    for d in DOCS + [SECRET_EXAMPLE]:
        need(d.get("kind") in expected, f"unexpected kind {d.get('kind')}")
        need(d.get("apiVersion") == expected[d["kind"]], f"{d['kind']} {d['metadata']['name']}: apiVersion {d.get('apiVersion')}")
        need("namespace" not in d["metadata"], f"{d['kind']} {d['metadata']['name']}: hard-coded namespace")


@check("k8s: tom.toml keys are engine settings; FreeSWITCH shares the pod when media is on loopback")
def _():
    server = k8s_server()
    media = server.get("media_ip", "127.0.0.1")
    pod = engine_pod()
    others = [c["name"] for c in pod.get("containers", []) if c["name"] != "engine"]
    others += [c["name"] for c in pod.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    if is_loopback(media) or pod.get("hostNetwork"):
        need(any("freeswitch" in n for n in others),
             "media_ip is loopback but no FreeSWITCH container shares the engine's pod")
    need(is_loopback(server.get("esl_listen", "127.0.0.1:8084").rsplit(":", 1)[0]) or "esl" in str(find("Service")),
         "ESL listens beyond loopback but no Service exposes it")


@check("k8s: probes (startup+liveness /health, readiness /ready) on a named container port")
def _():
    c = engine_container()
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    want = {"startupProbe": "/health", "livenessProbe": "/health", "readinessProbe": "/ready"}
    for probe, path in want.items():
        p = c.get(probe)
        need(p and "httpGet" in p, f"engine: {probe} missing")
        need(p["httpGet"]["path"] == path, f"engine: {probe} on {p['httpGet']['path']}, want {path}")
        port = p["httpGet"]["port"]
        need(port in ports or port in ports.values(), f"engine: {probe} port {port} is not a container port")
    http_port = int(k8s_server().get("http_addr", "127.0.0.1:9090").rsplit(":", 1)[1])
    need(http_port in ports.values(), f"engine: containerPort does not match http_addr port {http_port}")
    need(not is_loopback(k8s_server().get("http_addr", "127.0.0.1:9090").rsplit(":", 1)[0]),
         "http_addr is loopback: kubelet probes would fail")


@check("k8s: terminationGracePeriodSeconds > preStop + drain_secs (+10 s), preStop present")
def _():
    pod = engine_pod()
    drain = k8s_server().get("drain_secs", default_drain_secs())
    pre = engine_container().get("lifecycle", {}).get("preStop")
    need(pre, "engine: no preStop")
    sleep = 0
    if "exec" in pre:
        cmd = pre["exec"]["command"]
        if cmd and cmd[0].endswith("sleep"):
            sleep = int(cmd[1])
    elif "sleep" in pre:
        sleep = int(pre["sleep"]["seconds"])
    grace = pod.get("terminationGracePeriodSeconds", 30)
    need(grace > sleep + drain + 10,
         f"terminationGracePeriodSeconds {grace} is not above preStop {sleep}s + drain_secs {drain}s + 10s")


@check("k8s: engine security context (non-root, read-only root, no escalation, drop ALL) and writable cost log volume")
def _():
    pod = engine_pod()
    c = engine_container()
    sc = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
    need(sc.get("runAsNonRoot") is True, "runAsNonRoot not true")
    need(sc.get("runAsUser", 1) != 0, "runAsUser 0")
    need(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem not true")
    need(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation not false")
    need("ALL" in sc.get("capabilities", {}).get("drop", []), "capabilities do not drop ALL")
    cost = k8s_server().get("cost_log_dir", "data/cost_logs")
    need(os.path.isabs(cost), f"cost_log_dir {cost} is relative; set an absolute path on a volume")
    mounts = [m for m in c.get("volumeMounts", []) if (cost + "/").startswith(m["mountPath"].rstrip("/") + "/")]
    need(mounts and not mounts[-1].get("readOnly"), f"no writable volume mounted at or above {cost}")
    cache = [e["value"] for e in c.get("env", []) if e["name"] == "TOM_CACHE"] or ["/var/cache/tom"]
    need(any((cache[0] + "/").startswith(m["mountPath"].rstrip("/") + "/") and not m.get("readOnly")
             for m in c.get("volumeMounts", [])), f"no writable volume for TOM_CACHE {cache[0]} (phrase cache)")


@check("k8s: every volume, ConfigMap, Secret and key referenced exists; env names are the engine's")
def _():
    pod = engine_pod()
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    generated = {g["name"]: g for g in KUST.get("configMapGenerator", [])}
    secret_name = SECRET_EXAMPLE["metadata"]["name"]
    secret_keys = set(SECRET_EXAMPLE.get("stringData", {})) | set(SECRET_EXAMPLE.get("data", {}))
    env_names = set()
    for d in [d for d in DOCS if d["kind"] == "Deployment"]:
        spec = d["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for m in c.get("volumeMounts", []):
                need(m["name"] in vols, f"{c['name']}: volumeMount {m['name']} has no volume")
            for e in c.get("env", []):
                if c["name"] == "engine":
                    env_names.add(e["name"])
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    need(ref["name"] == secret_name, f"{c['name']}: Secret {ref['name']} is not {secret_name}")
                    need(ref["key"] in secret_keys, f"{c['name']}: Secret key {ref['key']} not in secret.example.yaml")
                cref = e.get("valueFrom", {}).get("configMapKeyRef")
                if cref:
                    need(cref["name"] in generated, f"{c['name']}: ConfigMap {cref['name']} not generated")
        for v in vols.values():
            if "configMap" in v:
                need(v["configMap"]["name"] in generated, f"ConfigMap {v['configMap']['name']} not generated")
                gen_keys = {f.split("=")[0] if "=" in f else os.path.basename(f) for f in generated[v["configMap"]["name"]]["files"]}
                for item in v["configMap"].get("items", []):
                    need(item["key"] in gen_keys, f"ConfigMap key {item['key']} not generated")
            if "secret" in v:
                need(v["secret"]["secretName"] == secret_name, f"Secret {v['secret']['secretName']} is not {secret_name}")
                for item in v["secret"].get("items", []):
                    need(item["key"] in secret_keys, f"Secret key {item['key']} not in secret.example.yaml")
    need(not unknown_env(env_names), f"engine env the engine does not read: {unknown_env(env_names)}")
    # The init container copies generated keys by name: they must exist.
    init = " ".join(" ".join(c.get("args", []) + c.get("command", [])) for c in pod.get("initContainers", []))
    for key in re.findall(r"/tom/([\w.-]+\.xml)", init):
        need(any(key == f.split("=")[0] for g in generated.values() for f in g["files"]),
             f"init container reads /tom/{key}, which no generator provides")
    images = {i["name"] for i in KUST.get("images", [])}
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        need(c["image"].split(":")[0] in images or ":" in c["image"] or "/" in c["image"],
             f"{c['name']}: image {c['image']} has no entry in kustomization images")


@check("k8s: Services, PDB and NetworkPolicy select the right pods and ports; REDIS_URL names the Redis Service")
def _():
    labels = ENGINE_DEP["spec"]["template"]["metadata"]["labels"]
    pod = engine_pod()
    port_names = {p["name"] for c in pod.get("containers", []) + pod.get("initContainers", []) for p in c.get("ports", [])}
    redis_dep = next(d for d in DOCS if d["kind"] == "Deployment" and d is not ENGINE_DEP)
    redis_labels = redis_dep["spec"]["template"]["metadata"]["labels"]
    redis_ports = {p["name"]: p["containerPort"] for c in redis_dep["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
    services = {s["metadata"]["name"]: s for s in find("Service")}
    for s in services.values():
        sel = s["spec"]["selector"]
        if selects(sel, labels):
            for p in s["spec"]["ports"]:
                need(p["targetPort"] in port_names or p["targetPort"] in {pp["containerPort"] for c in pod["containers"] for pp in c.get("ports", [])},
                     f"Service {s['metadata']['name']}: targetPort {p['targetPort']} is no container port")
        else:
            need(selects(sel, redis_labels), f"Service {s['metadata']['name']} selects no pod")
            for p in s["spec"]["ports"]:
                need(p["targetPort"] in redis_ports, f"Service {s['metadata']['name']}: targetPort {p['targetPort']}")
    for pdb in find("PodDisruptionBudget"):
        need(selects(pdb["spec"]["selector"]["matchLabels"], labels), "PDB does not select the engine pods")
    for np_ in find("NetworkPolicy"):
        need(selects(np_["spec"]["podSelector"]["matchLabels"], redis_labels), "NetworkPolicy does not protect Redis")
        for rule in np_["spec"]["ingress"]:
            for src in rule["from"]:
                need(selects(src["podSelector"]["matchLabels"], labels), "NetworkPolicy does not admit the engines")
            for p in rule.get("ports", []):
                need(p["port"] in redis_ports or p["port"] in redis_ports.values(), f"NetworkPolicy port {p['port']}")
    url = next(e["value"] for e in engine_container()["env"] if e["name"] == "REDIS_URL")
    m = re.match(r"redis://(?:[^@]*@)?([^:/]+):(\d+)", url)
    need(m and m.group(1) in services and selects(services[m.group(1)]["spec"]["selector"], redis_labels),
         f"REDIS_URL {url} does not name the Redis Service")
    need(int(m.group(2)) in {p["port"] for p in services[m.group(1)]["spec"]["ports"]}, "REDIS_URL port")


@check("k8s: HPA scales the engine Deployment on tom_calls_active (Pods, AverageValue) exposed by the adapter rule")
def _():
    hpa = find("HorizontalPodAutoscaler")[0]["spec"]
    ref = hpa["scaleTargetRef"]
    need(ref["kind"] == "Deployment" and ref["name"] == ENGINE_DEP["metadata"]["name"], f"HPA targets {ref}")
    need(1 <= hpa.get("minReplicas", 1) <= hpa["maxReplicas"], "min/max replicas")
    pods = [m for m in hpa["metrics"] if m["type"] == "Pods"]
    need(pods, "no Pods metric")
    metric = pods[0]["pods"]["metric"]["name"]
    need(metric == "tom_calls_active", f"HPA metric {metric}")
    need(pods[0]["pods"]["target"]["type"] == "AverageValue", "target is not AverageValue")
    need(f'"{metric}"' in ALL_SRC, f"the engine does not export {metric} (engine/src)")
    rules = [r for r in ADAPTER["rules"] if r.get("name", {}).get("as") == metric]
    need(rules, f"prometheus-adapter-rules.yaml exposes no metric named {metric}")
    need(metric in rules[0]["seriesQuery"], "the adapter rule does not query the engine's series")
    over = rules[0]["resources"]["overrides"]
    need({o["resource"] for o in over.values()} >= {"namespace", "pod"}, "adapter rule must map namespace and pod")


# ---------------------------------------------------------------- systemd
def parse_unit(path):
    sections, current = {}, None
    for line in read(path).splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@check("systemd: hardening and restart/stop keys present; TimeoutStopSec > drain_secs of tom.toml.example")
def _():
    unit = parse_unit(os.path.join(INFRA, "systemd", "tom.service"))
    svc, u = unit.get("Service", {}), unit.get("Unit", {})
    exact = {"User": "tom", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
             "NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "Restart": "on-failure",
             "KillSignal": "SIGTERM", "EnvironmentFile": "/etc/tom/tom.env",
             "MemoryDenyWriteExecute": "yes", "StateDirectory": "tom", "CacheDirectory": "tom"}
    for key, want in exact.items():
        need(key in svc, f"[Service] {key}= missing")
        need(svc[key][-1] == want, f"[Service] {key}={svc[key][-1]}, want {want!r}")
    need(set(svc.get("RestrictAddressFamilies", [""])[-1].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"},
         "RestrictAddressFamilies is not exactly AF_INET AF_INET6 AF_UNIX")
    need("@system-service" in " ".join(svc.get("SystemCallFilter", [])), "SystemCallFilter lacks @system-service")
    for key in ("RestartSec", "TimeoutStopSec"):
        need(key in svc, f"[Service] {key}= missing")
    for key in ("StartLimitIntervalSec", "StartLimitBurst"):
        need(key in u, f"[Unit] {key}= missing (it is ignored in [Service])")
    example = os.path.join(INFRA, "systemd", "tom.toml.example")
    server = toml_server(example)
    need("--config /etc/tom/tom.toml" in svc["ExecStart"][-1], "ExecStart does not read /etc/tom/tom.toml")
    drain = server.get("drain_secs", default_drain_secs())
    stop = duration_secs(svc["TimeoutStopSec"][-1])
    need(stop > drain + 10, f"TimeoutStopSec {stop}s is not above drain_secs {drain}s + 10s")
    env = dict(e.split("=", 1) for e in svc.get("Environment", []))
    cost = env.get("TOM_COST_LOG_DIR") or server.get("cost_log_dir", "data/cost_logs")
    writable = ["/var/lib/" + svc["StateDirectory"][-1], "/var/cache/" + svc["CacheDirectory"][-1]]
    writable += " ".join(svc.get("ReadWritePaths", [])).replace("-/", "/").split()
    need(any((cost + "/").startswith(w.rstrip("/") + "/") for w in writable),
         f"cost log dir {cost} is not writable under ProtectSystem=strict ({writable})")
    need(not unknown_env(env), f"Environment= names the engine does not read: {unknown_env(env)}")


@check("systemd: tom.env.example names only variables the engine reads")
def _():
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", read(os.path.join(INFRA, "systemd", "tom.env.example")), re.M)
    need(names, "no variables")
    need(not unknown_env(names), f"unknown: {unknown_env(names)}")
PY
else
    skip "structural checks" "no python with PyYAML (see the venv failure above)"
fi

# ------------------------------------------------------------------ summary
passed=$(grep -c '^ok ' "$RESULTS" || true)
failed=$(grep -c '^FAIL ' "$RESULTS" || true)
skipped=$(grep -c '^skip ' "$RESULTS" || true)
echo
echo "check-deploy: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
