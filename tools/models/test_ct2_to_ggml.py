"""Tests for ct2_to_ggml.py (synthetic CTranslate2 model, no downloads) and for fetch.py's
verification paths (fake distributions, no network).

Run: python3 -B -m unittest discover tools/models
The converter tests need numpy (scripts/fetch-models.sh puts it in $TOM_CACHE/venv);
without numpy they are skipped and the fetcher tests still run.
"""

import contextlib
import hashlib
import io
import os
import struct
import sys
import tarfile
import tempfile
import unittest
import zipfile
from unittest import mock

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fetch  # noqa: E402

try:
    import numpy as np

    import ct2_to_ggml as conv
except ModuleNotFoundError:  # pragma: no cover - depends on the interpreter
    np = None
    conv = None

needs_numpy = unittest.skipIf(np is None, "numpy missing: run with $TOM_CACHE/venv/bin/python")

# ----------------------------------------------------------------------------- helpers

CT2_DTYPE_IDS = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}


def write_ct2(path, variables, aliases, spec="WhisperSpec", revision=3, version=6):
    """Serializer mirroring CTranslate2's ModelSpec._serialize (binary version 6)."""

    def s(text):
        raw = text.encode("utf-8")
        return struct.pack("<H", len(raw) + 1) + raw + b"\0"

    out = [struct.pack("<I", version), s(spec), struct.pack("<I", revision),
           struct.pack("<I", len(variables))]
    for name, arr in variables.items():
        arr = np.ascontiguousarray(arr)
        out.append(s(name) + struct.pack("<B", arr.ndim))
        out.extend(struct.pack("<I", d) for d in arr.shape)
        out.append(struct.pack("<B", CT2_DTYPE_IDS[arr.dtype.name]))
        data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        out.append(struct.pack("<I", len(data)) + data)
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out.append(s(alias) + s(target))
    with open(path, "wb") as f:
        f.write(b"".join(out))


N = 4          # state
N_MELS = 2
N_VOCAB = 7
AUDIO_CTX = 5
TEXT_CTX = 3


def synthetic_model(rng):
    f16 = lambda *shape: rng.standard_normal(shape).astype(np.float16)  # noqa: E731
    v = {
        "decoder/num_heads": np.array(2, dtype=np.int16),
        "encoder/num_heads": np.array(2, dtype=np.int16),
        "decoder/pre_norm": np.array(1, dtype=np.int8),
        "encoder/conv1/weight": f16(N, N_MELS, 3),
        "encoder/conv1/bias": f16(N),
        "encoder/conv2/weight": f16(N, N, 3),
        "encoder/conv2/bias": f16(N),
        "encoder/position_encodings/encodings": f16(AUDIO_CTX, N),
        "encoder/layer_norm/gamma": f16(N),
        "encoder/layer_norm/beta": f16(N),
        "decoder/embeddings/weight": f16(N_VOCAB, N),
        "decoder/position_encodings/encodings": f16(TEXT_CTX, N),
        "decoder/layer_norm/gamma": f16(N),
        "decoder/layer_norm/beta": f16(N),
    }

    def ln(p):
        v[f"{p}/gamma"], v[f"{p}/beta"] = f16(N), f16(N)

    def lin(p, rows, cols):
        v[f"{p}/weight"], v[f"{p}/bias"] = f16(rows, cols), f16(rows)

    for side in ("encoder", "decoder"):
        c = f"{side}/layer_0"
        lin(f"{c}/self_attention/linear_0", 3 * N, N)
        v[f"{c}/self_attention/linear_0/bias"][N:2 * N] = 0  # whisper has no key bias
        lin(f"{c}/self_attention/linear_1", N, N)
        ln(f"{c}/self_attention/layer_norm")
        lin(f"{c}/ffn/linear_1", N, 4 * N)
        ln(f"{c}/ffn/layer_norm")
    # int8 quantized first FFN matrix of the encoder (per-row scale, as CT2 writes it)
    w = rng.standard_normal((4 * N, N)).astype(np.float32)
    scale = (127.0 / np.abs(w).max(axis=1)).astype(np.float32)
    v["encoder/layer_0/ffn/linear_0/weight"] = np.round(w * scale[:, None]).astype(np.int8)
    v["encoder/layer_0/ffn/linear_0/weight_scale"] = scale
    v["encoder/layer_0/ffn/linear_0/bias"] = f16(4 * N)
    # float32 one for the decoder
    v["decoder/layer_0/ffn/linear_0/weight"] = rng.standard_normal((4 * N, N)).astype(np.float32)
    v["decoder/layer_0/ffn/linear_0/bias"] = f16(4 * N)
    c = "decoder/layer_0/attention"
    lin(f"{c}/linear_0", N, N)
    lin(f"{c}/linear_1", 2 * N, N)
    v[f"{c}/linear_1/bias"][:N] = 0
    lin(f"{c}/linear_2", N, N)
    ln(f"{c}/layer_norm")
    return v, {"decoder/projection/weight": "decoder/embeddings/weight"}


def write_assets(d):
    filters = np.arange(N_MELS * 5, dtype=np.float32).reshape(N_MELS, 5) / 10
    buf = io.BytesIO()
    np.save(buf, filters)
    with zipfile.ZipFile(os.path.join(d, "mel_filters.npz"), "w") as z:
        z.writestr(f"mel_{N_MELS}.npy", buf.getvalue())
    import base64

    tokens = [b"a", b"bc", b" hello"]
    with open(os.path.join(d, "gpt2.tiktoken"), "wb") as f:
        for i, t in enumerate(tokens):
            f.write(base64.b64encode(t) + b" %d\n" % i)
    return filters, tokens


def read_ggml(path):
    with open(path, "rb") as f:
        buf = f.read()
    pos = 0

    def ints(n):
        nonlocal pos
        out = struct.unpack_from(f"<{n}i", buf, pos)
        pos += 4 * n
        return out

    magic, *hp = ints(12)
    n_mel, n_fft = ints(2)
    filters = np.frombuffer(buf, "<f4", n_mel * n_fft, pos).reshape(n_mel, n_fft)
    pos += 4 * n_mel * n_fft
    (n_tok,) = ints(1)
    tokens = []
    for _ in range(n_tok):
        (ln,) = ints(1)
        tokens.append(buf[pos:pos + ln])
        pos += ln
    tensors = {}
    while pos < len(buf):
        n_dims, name_len, ttype = ints(3)
        ne = ints(n_dims)
        name = buf[pos:pos + name_len].decode()
        pos += name_len
        shape = tuple(reversed(ne))
        dt = "<f2" if ttype == 1 else "<f4"
        count = int(np.prod(shape))
        tensors[name] = (ttype, ne, np.frombuffer(buf, dt, count, pos).reshape(shape))
        pos += count * np.dtype(dt).itemsize
    return magic, hp, filters, tokens, tensors


# ----------------------------------------------------------------------------- converter


@needs_numpy
class ConverterTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.d = self.tmp.name
        self.vars, aliases = synthetic_model(np.random.default_rng(7))
        self.model = os.path.join(self.d, "model.bin")
        write_ct2(self.model, self.vars, aliases)
        self.filters, self.tokens = write_assets(self.d)
        self.out = os.path.join(self.d, "ggml.bin")
        with contextlib.redirect_stderr(io.StringIO()):
            self.info = conv.convert(self.model, self.d, self.out)
        self.magic, self.hp, self.ffilters, self.ftokens, self.t = read_ggml(self.out)

    def tearDown(self):
        self.tmp.cleanup()

    def test_header(self):
        self.assertEqual(self.magic, 0x67676D6C)
        self.assertEqual(self.hp, [N_VOCAB, AUDIO_CTX, N, 2, 1, TEXT_CTX, N, 2, 1, N_MELS, 1])
        np.testing.assert_array_equal(self.ffilters, self.filters)
        self.assertEqual(self.ftokens, self.tokens)

    def test_tensor_names_shapes_and_types(self):
        expected = {
            "encoder.positional_embedding", "encoder.conv1.weight", "encoder.conv1.bias",
            "encoder.conv2.weight", "encoder.conv2.bias", "encoder.ln_post.weight",
            "encoder.ln_post.bias", "decoder.positional_embedding",
            "decoder.token_embedding.weight", "decoder.ln.weight", "decoder.ln.bias",
        }
        attn = ["query.weight", "query.bias", "key.weight", "value.weight", "value.bias",
                "out.weight", "out.bias"]
        block = [f"attn.{a}" for a in attn] + ["attn_ln.weight", "attn_ln.bias", "mlp.0.weight",
                                                "mlp.0.bias", "mlp.2.weight", "mlp.2.bias",
                                                "mlp_ln.weight", "mlp_ln.bias"]
        expected |= {f"encoder.blocks.0.{b}" for b in block}
        expected |= {f"decoder.blocks.0.{b}" for b in block}
        expected |= {f"decoder.blocks.0.cross_attn.{a}" for a in attn}
        expected |= {"decoder.blocks.0.cross_attn_ln.weight", "decoder.blocks.0.cross_attn_ln.bias"}
        self.assertEqual(set(self.t), expected)
        self.assertNotIn("encoder.blocks.0.attn.key.bias", self.t)
        ttype, ne, arr = self.t["encoder.conv1.weight"]
        self.assertEqual((ttype, ne), (1, (3, N_MELS, N)))  # dims reversed, f16
        ttype, ne, arr = self.t["encoder.conv1.bias"]
        self.assertEqual((ttype, ne), (0, (1, N)))  # [n] -> [n, 1], f32
        self.assertEqual(self.t["encoder.positional_embedding"][:2], (0, (N, AUDIO_CTX)))
        self.assertEqual(self.t["decoder.positional_embedding"][0], 0)
        self.assertEqual(self.t["decoder.token_embedding.weight"][:2], (1, (N, N_VOCAB)))
        self.assertEqual(self.t["decoder.ln.weight"][:2], (0, (N,)))
        self.assertEqual(self.t["decoder.blocks.0.mlp.0.weight"][:2], (1, (N, 4 * N)))

    def test_qkv_split(self):
        fused = self.vars["encoder/layer_0/self_attention/linear_0/weight"]
        bias = self.vars["encoder/layer_0/self_attention/linear_0/bias"]
        g = lambda n: self.t[f"encoder.blocks.0.attn.{n}"][2]  # noqa: E731
        np.testing.assert_array_equal(g("query.weight"), fused[:N])
        np.testing.assert_array_equal(g("key.weight"), fused[N:2 * N])
        np.testing.assert_array_equal(g("value.weight"), fused[2 * N:])
        np.testing.assert_array_equal(g("query.bias"), bias[:N].astype(np.float32))
        np.testing.assert_array_equal(g("value.bias"), bias[2 * N:].astype(np.float32))

    def test_cross_attention_kv_split(self):
        kv = self.vars["decoder/layer_0/attention/linear_1/weight"]
        kvb = self.vars["decoder/layer_0/attention/linear_1/bias"]
        g = lambda n: self.t[f"decoder.blocks.0.cross_attn.{n}"][2]  # noqa: E731
        np.testing.assert_array_equal(g("key.weight"), kv[:N])
        np.testing.assert_array_equal(g("value.weight"), kv[N:])
        np.testing.assert_array_equal(g("value.bias"), kvb[N:].astype(np.float32))
        np.testing.assert_array_equal(
            g("out.weight"), self.vars["decoder/layer_0/attention/linear_2/weight"])

    def test_int8_dequantized(self):
        q = self.vars["encoder/layer_0/ffn/linear_0/weight"].astype(np.float32)
        scale = self.vars["encoder/layer_0/ffn/linear_0/weight_scale"]
        got = self.t["encoder.blocks.0.mlp.0.weight"][2].astype(np.float32)
        np.testing.assert_allclose(got, q / scale[:, None], rtol=1e-3, atol=1e-4)
        self.assertEqual(self.info["ct2_dtypes"], {"float16": 14, "int8": 1, "float32": 1})

    def test_deterministic(self):
        again = os.path.join(self.d, "again.bin")
        with contextlib.redirect_stderr(io.StringIO()):
            info2 = conv.convert(self.model, self.d, again)
        with open(self.out, "rb") as a, open(again, "rb") as b:
            self.assertEqual(a.read(), b.read())
        self.assertEqual(self.info["sha256"], info2["sha256"])
        with open(self.out, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), self.info["sha256"])

    def test_rejects_truncated_and_foreign(self):
        with open(self.model, "rb") as f:
            data = f.read()
        bad = os.path.join(self.d, "bad.bin")
        with open(bad, "wb") as f:
            f.write(data[: len(data) // 2])
        with self.assertRaises(conv.ConversionError):
            conv.read_ct2(bad)
        write_ct2(bad, {"x": np.zeros(2, np.float32)}, {}, spec="TransformerSpec")
        with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(conv.ConversionError):
            conv.convert(bad, self.d, os.path.join(self.d, "x.bin"))

    def test_tokenizer_choice(self):
        self.assertEqual(conv.tokenizer_name(51864), "gpt2.tiktoken")
        self.assertEqual(conv.tokenizer_name(51865), "multilingual.tiktoken")


# ----------------------------------------------------------------------------- fetcher


def sha(b):
    return hashlib.sha256(b).hexdigest()


class FetchTest(unittest.TestCase):
    """Offline: pip is replaced by `false`, so any download attempt fails loudly."""

    PAYLOAD = b"model weights \x00\x01" * 100
    PART2 = b"second part" * 50

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = os.path.join(self.tmp.name, "cache")
        self.dl = os.path.join(self.root, "downloads")
        os.makedirs(self.dl)
        # a wheel with one member, an sdist with another
        self.wheel = "fake_pkg-1.0-py3-none-any.whl"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("fake_pkg/data/model.bin", self.PAYLOAD)
        self.wheel_bytes = buf.getvalue()
        self.sdist = "fake-src-2.0.tar.gz"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as t:
            info = tarfile.TarInfo("fake-src-2.0/assets/p2")
            info.size = len(self.PART2)
            info.mtime = 0
            t.addfile(info, io.BytesIO(self.PART2))
        self.sdist_bytes = buf.getvalue()
        whole = self.PAYLOAD + self.PART2
        self.manifest = os.path.join(self.tmp.name, "models.toml")
        with open(self.manifest, "w") as f:
            f.write(f"""schema = 1
default = ["fake"]
extra = ["joined"]
[packages.fake-pkg]
version = "1.0"
dist = "{self.wheel}"
format = "wheel"
sha256 = "{sha(self.wheel_bytes)}"
size = {len(self.wheel_bytes)}
licence = "MIT"
[packages.fake-src]
version = "2.0"
dist = "{self.sdist}"
format = "sdist"
sha256 = "{sha(self.sdist_bytes)}"
size = {len(self.sdist_bytes)}
licence = "MIT"
[models.fake]
licence = "MIT"
files = [{{ path = "model.bin", sha256 = "{sha(self.PAYLOAD)}", size = {len(self.PAYLOAD)}, parts = [
  {{ package = "fake-pkg", member = "fake_pkg/data/model.bin" }} ] }}]
[models.joined]
licence = "MIT"
files = [{{ path = "joined.bin", sha256 = "{sha(whole)}", size = {len(whole)}, parts = [
  {{ package = "fake-pkg", member = "fake_pkg/data/model.bin", sha256 = "{sha(self.PAYLOAD)}" }},
  {{ package = "fake-src", member = "fake-src-2.0/assets/p2" }} ] }}]
""")
        self.env = mock.patch.dict(os.environ, {"TOM_CACHE": self.root, "TOM_PIP": "false"})
        self.env.start()

    def tearDown(self):
        self.env.stop()
        self.tmp.cleanup()

    def run_fetch(self, *args):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = fetch.main(["--manifest", self.manifest, *args])
        return rc, out.getvalue(), err.getvalue()

    def put(self, name, data):
        with open(os.path.join(self.dl, name), "wb") as f:
            f.write(data)

    def test_wrong_hash_download_is_deleted_and_reported(self):
        bad = b"X" * len(self.wheel_bytes)  # right size, wrong content
        self.put(self.wheel, bad)
        rc, out, err = self.run_fetch()
        self.assertNotEqual(rc, 0)
        self.assertFalse(os.path.exists(os.path.join(self.dl, self.wheel)))
        self.assertIn("hash mismatch for package fake-pkg==1.0", err)
        self.assertIn(sha(bad), err)
        self.assertIn("scripts/fetch-models.sh --only fake", err)
        self.assertFalse(os.path.exists(os.path.join(self.root, "models", "fake", "model.bin")))

    def test_download_failure_is_reported(self):
        rc, out, err = self.run_fetch()
        self.assertEqual(rc, 1)
        self.assertIn("pip download failed for package fake-pkg==1.0", err)

    def test_extract_verify_idempotent(self):
        self.put(self.wheel, self.wheel_bytes)
        rc, out, err = self.run_fetch()
        self.assertEqual(rc, 0, err)
        dest = os.path.join(self.root, "models", "fake", "model.bin")
        with open(dest, "rb") as f:
            self.assertEqual(f.read(), self.PAYLOAD)
        self.assertIn(dest, out)
        mtime = os.stat(dest).st_mtime_ns
        os.remove(os.path.join(self.dl, self.wheel))  # not needed any more
        rc, out, err = self.run_fetch()
        self.assertEqual(rc, 0, err)
        self.assertEqual(os.stat(dest).st_mtime_ns, mtime)
        self.assertEqual(self.run_fetch("--verify")[0], 0)

    def test_parts_concatenated_from_wheel_and_sdist(self):
        self.put(self.wheel, self.wheel_bytes)
        self.put(self.sdist, self.sdist_bytes)
        rc, out, err = self.run_fetch("--only", "joined")
        self.assertEqual(rc, 0, err)
        with open(os.path.join(self.root, "models", "joined", "joined.bin"), "rb") as f:
            self.assertEqual(f.read(), self.PAYLOAD + self.PART2)

    def test_verify_detects_tampered_and_missing(self):
        self.assertEqual(self.run_fetch("--verify")[0], 1)  # nothing there yet
        self.put(self.wheel, self.wheel_bytes)
        self.assertEqual(self.run_fetch()[0], 0)
        dest = os.path.join(self.root, "models", "fake", "model.bin")
        with open(dest, "r+b") as f:
            f.write(b"Z")
        rc, out, err = self.run_fetch("--verify")
        self.assertEqual(rc, 1)
        self.assertIn("fake/model.bin (from fake-pkg==1.0)", err)
        self.assertFalse(os.path.exists(dest))
        self.assertEqual(self.run_fetch()[0], 0)  # re-extracted from the cached wheel

    def test_unknown_id(self):
        rc, out, err = self.run_fetch("--only", "nope")
        self.assertEqual(rc, 1)
        self.assertIn("unknown model id 'nope'", err)

    def test_repo_manifest_is_consistent(self):
        m = fetch.load_manifest(fetch.DEFAULT_MANIFEST)
        ids = fetch.closure(m, m["default"] + m["extra"])
        self.assertEqual(set(ids), set(m["models"]))
        for spec in m["models"].values():
            self.assertIn("licence", spec)
            for f in spec["files"]:
                self.assertRegex(f["sha256"], r"^[0-9a-f]{64}$")
        for pkg in m["packages"].values():
            self.assertRegex(pkg["sha256"], r"^[0-9a-f]{64}$")
        if conv is not None:
            for spec in m["models"].values():
                if "convert" in spec:
                    self.assertEqual(spec["convert"]["version"], conv.CONVERTER_VERSION)


if __name__ == "__main__":
    unittest.main()
