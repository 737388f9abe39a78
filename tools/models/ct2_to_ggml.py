#!/usr/bin/env python3
"""Convert a CTranslate2 (faster-whisper) Whisper model.bin to whisper.cpp's ggml format.

Input
  * model.bin written by CTranslate2 (binary version 6, spec "WhisperSpec"):
      u32 binary_version, str spec_name, u32 spec_revision, u32 n_variables,
      n_variables x { str name, u8 rank, u32 dims[rank], u8 dtype, u32 n_bytes, bytes },
      u32 n_aliases, n_aliases x { str alias, str target }
    where str = u16 length (incl. trailing NUL) + utf-8 bytes + NUL, little endian, and
    dtype is the index in (float32, int8, int16, int32, float16, bfloat16).
    Quantized weights (int8 / int16) carry a sibling "<name>_scale" (float32, one per
    output row for int8); the real value is q / scale.
  * whisper assets from the openai-whisper sdist: mel_filters.npz (mel_80 / mel_128) and
    gpt2.tiktoken (English-only models) or multilingual.tiktoken (n_vocab >= 51865).

Output: the layout written by whisper.cpp's models/convert-pt-to-ggml.py and read by
whisper_model_load():
    i32 magic 0x67676d6c, i32 hparams x 11 (n_vocab, n_audio_ctx, n_audio_state,
    n_audio_head, n_audio_layer, n_text_ctx, n_text_state, n_text_head, n_text_layer,
    n_mels, ftype), i32 n_mel, i32 n_fft, f32 filters[n_mel*n_fft], i32 n_tokens,
    n_tokens x { i32 len, bytes }, then tensors { i32 n_dims, i32 name_len, i32 ttype,
    i32 ne[n_dims] (reversed numpy shape), name, data }.
Tensor types follow the reference converter: f16 for matrices (ftype 1), f32 for vectors,
conv biases (reshaped to [n, 1]) and positional embeddings.

Fused projections are split: CT2 stores self-attention q|k|v as one [3n, n] matrix and
cross-attention k|v as one [2n, n] matrix. Whisper's key projection has no bias; a key
bias would only add a per-query constant to the logits, which softmax ignores, so the key
slice of the fused bias is dropped (it is zero in converted whisper models anyway).

Needs numpy only. Output is a pure function of the inputs (deterministic, byte for byte).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import struct
import sys
import zipfile

import numpy as np

CONVERTER_VERSION = "1"
GGML_MAGIC = 0x67676D6C
CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
CT2_SUPPORTED_BINARY_VERSIONS = (5, 6)


class ConversionError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[ct2_to_ggml] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- CT2 reader


def read_ct2(path: str):
    """Returns (spec_name, revision, variables: dict[str, np.ndarray], aliases: dict)."""
    with open(path, "rb") as f:
        buf = f.read()
    mv = memoryview(buf)
    pos = 0

    def take(n: int) -> memoryview:
        nonlocal pos
        if pos + n > len(buf):
            raise ConversionError(f"{path}: truncated CTranslate2 file at byte {pos}")
        out = mv[pos : pos + n]
        pos += n
        return out

    def u(fmt: str):
        return struct.unpack("<" + fmt, take(struct.calcsize("<" + fmt)))[0]

    def s() -> str:
        n = u("H")
        raw = bytes(take(n))
        return raw[:-1].decode("utf-8")

    version = u("I")
    if version not in CT2_SUPPORTED_BINARY_VERSIONS:
        raise ConversionError(f"{path}: unsupported CTranslate2 binary version {version}")
    spec = s()
    revision = u("I")
    n_vars = u("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(n_vars):
        name = s()
        rank = u("B")
        dims = tuple(u("I") for _ in range(rank))
        dtype_id = u("B")
        nbytes = u("I")
        raw = take(nbytes)
        if dtype_id >= len(CT2_DTYPES):
            raise ConversionError(f"{path}: variable {name}: unknown dtype id {dtype_id}")
        dtype = CT2_DTYPES[dtype_id]
        if dtype == "bfloat16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
        count = int(np.prod(dims)) if dims else 1
        if arr.size != count:
            raise ConversionError(f"{path}: variable {name}: {arr.size} values for shape {dims}")
        variables[name] = arr.reshape(dims)
    aliases = {}
    n_alias = u("I")
    for _ in range(n_alias):
        alias = s()
        aliases[alias] = s()
    if pos != len(buf):
        raise ConversionError(f"{path}: {len(buf) - pos} trailing bytes after the alias table")
    return spec, revision, variables, aliases


def ct2_dtypes_summary(variables: dict) -> dict:
    out: dict[str, int] = {}
    for v in variables.values():
        if v.ndim >= 2:
            out[str(v.dtype)] = out.get(str(v.dtype), 0) + 1
    return out


# --------------------------------------------------------------------------- mapping


class Ct2Whisper:
    def __init__(self, variables: dict, aliases: dict):
        self.v = variables
        self.aliases = aliases

    def has(self, name: str) -> bool:
        return name in self.v or name in self.aliases

    def raw(self, name: str) -> np.ndarray:
        seen = 0
        while name not in self.v and name in self.aliases and seen < 8:
            name = self.aliases[name]
            seen += 1
        if name not in self.v:
            raise ConversionError(f"CTranslate2 model lacks variable {name}")
        return self.v[name]

    def get(self, name: str) -> np.ndarray:
        """Float array, int8/int16 weights dequantized with their stored scale."""
        arr = self.raw(name)
        if arr.dtype in (np.int8, np.int16):
            scale_name = name + "_scale"
            if not self.has(scale_name):
                raise ConversionError(f"{name} is {arr.dtype} but {scale_name} is missing")
            scale = self.raw(scale_name).astype(np.float32)
            q = arr.astype(np.float32)
            if scale.ndim == 0 or scale.size == 1:
                return q / scale.reshape(())
            return q / scale.reshape((-1,) + (1,) * (q.ndim - 1))
        if arr.dtype not in (np.float16, np.float32):
            raise ConversionError(f"{name}: unexpected dtype {arr.dtype}")
        return arr

    def scalar(self, name: str, default=None):
        if not self.has(name):
            return default
        return int(np.asarray(self.raw(name)).reshape(-1)[0])

    def n_layers(self, prefix: str) -> int:
        n = 0
        while any(k.startswith(f"{prefix}/layer_{n}/") for k in self.v):
            n += 1
        return n


def _split(arr: np.ndarray, parts: int, what: str):
    if arr.shape[0] % parts:
        raise ConversionError(f"{what}: leading dim {arr.shape[0]} not divisible by {parts}")
    return np.split(arr, parts, axis=0)


def whisper_tensors(m: Ct2Whisper):
    """Yields (ggml_name, float array) in the order of OpenAI's state_dict."""
    n_enc = m.n_layers("encoder")
    n_dec = m.n_layers("decoder")
    if n_enc == 0 or n_dec == 0:
        raise ConversionError("no encoder/decoder layers found: is this a Whisper CT2 model?")

    def linear(ct2: str, out: str, bias: bool = True):
        yield f"{out}.weight", m.get(f"{ct2}/weight")
        if bias:
            yield f"{out}.bias", m.get(f"{ct2}/bias")

    def ln(ct2: str, out: str):
        yield f"{out}.weight", m.get(f"{ct2}/gamma")
        yield f"{out}.bias", m.get(f"{ct2}/beta")

    def self_attn(ct2: str, out: str):
        w = m.get(f"{ct2}/linear_0/weight")
        b = m.get(f"{ct2}/linear_0/bias")
        wq, wk, wv = _split(w, 3, f"{ct2}/linear_0/weight")
        bq, _bk, bv = _split(b, 3, f"{ct2}/linear_0/bias")
        yield f"{out}.query.weight", wq
        yield f"{out}.query.bias", bq
        yield f"{out}.key.weight", wk
        yield f"{out}.value.weight", wv
        yield f"{out}.value.bias", bv
        yield from linear(f"{ct2}/linear_1", f"{out}.out")

    def cross_attn(ct2: str, out: str):
        yield from linear(f"{ct2}/linear_0", f"{out}.query")
        w = m.get(f"{ct2}/linear_1/weight")
        b = m.get(f"{ct2}/linear_1/bias")
        wk, wv = _split(w, 2, f"{ct2}/linear_1/weight")
        _bk, bv = _split(b, 2, f"{ct2}/linear_1/bias")
        yield f"{out}.key.weight", wk
        yield f"{out}.value.weight", wv
        yield f"{out}.value.bias", bv
        yield from linear(f"{ct2}/linear_2", f"{out}.out")

    def mlp(ct2: str, out: str):
        yield from linear(f"{ct2}/linear_0", f"{out}.mlp.0")
        yield from linear(f"{ct2}/linear_1", f"{out}.mlp.2")
        yield from ln(f"{ct2}/layer_norm", f"{out}.mlp_ln")

    yield "encoder.positional_embedding", m.get("encoder/position_encodings/encodings")
    yield from linear("encoder/conv1", "encoder.conv1")
    yield from linear("encoder/conv2", "encoder.conv2")
    for i in range(n_enc):
        c, o = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        yield from self_attn(f"{c}/self_attention", f"{o}.attn")
        yield from ln(f"{c}/self_attention/layer_norm", f"{o}.attn_ln")
        yield from mlp(f"{c}/ffn", o)
    yield from ln("encoder/layer_norm", "encoder.ln_post")

    yield "decoder.positional_embedding", m.get("decoder/position_encodings/encodings")
    yield "decoder.token_embedding.weight", m.get("decoder/embeddings/weight")
    for i in range(n_dec):
        c, o = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        yield from self_attn(f"{c}/self_attention", f"{o}.attn")
        yield from ln(f"{c}/self_attention/layer_norm", f"{o}.attn_ln")
        yield from cross_attn(f"{c}/attention", f"{o}.cross_attn")
        yield from ln(f"{c}/attention/layer_norm", f"{o}.cross_attn_ln")
        yield from mlp(f"{c}/ffn", o)
    yield from ln("decoder/layer_norm", "decoder.ln")


F32_ALWAYS = {
    "encoder.conv1.bias",
    "encoder.conv2.bias",
    "encoder.positional_embedding",
    "decoder.positional_embedding",
}


def hparams_of(m: Ct2Whisper) -> dict:
    emb = m.raw("decoder/embeddings/weight")
    enc_pe = m.raw("encoder/position_encodings/encodings")
    dec_pe = m.raw("decoder/position_encodings/encodings")
    conv1 = m.raw("encoder/conv1/weight")
    n_audio_state = int(enc_pe.shape[1])
    n_text_state = int(emb.shape[1])
    return {
        "n_vocab": int(emb.shape[0]),
        "n_audio_ctx": int(enc_pe.shape[0]),
        "n_audio_state": n_audio_state,
        "n_audio_head": m.scalar("encoder/num_heads", n_audio_state // 64),
        "n_audio_layer": m.n_layers("encoder"),
        "n_text_ctx": int(dec_pe.shape[0]),
        "n_text_state": n_text_state,
        "n_text_head": m.scalar("decoder/num_heads", n_text_state // 64),
        "n_text_layer": m.n_layers("decoder"),
        "n_mels": int(conv1.shape[1]),
    }


HPARAM_ORDER = (
    "n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
    "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer", "n_mels",
)


# --------------------------------------------------------------------------- assets


def load_mel_filters(npz_path: str, n_mels: int) -> np.ndarray:
    # np.load on an npz is fine, but read the member explicitly to avoid pickle paths.
    with zipfile.ZipFile(npz_path) as z:
        member = f"mel_{n_mels}.npy"
        if member not in z.namelist():
            raise ConversionError(f"{npz_path} has no {member} (has {z.namelist()})")
        arr = np.load(io.BytesIO(z.read(member)), allow_pickle=False)
    return np.ascontiguousarray(arr, dtype="<f4")


def load_tiktoken(path: str) -> list[bytes]:
    ranks: dict[int, bytes] = {}
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) == 1:  # an empty token is written as " <rank>"
                tok, rank = b"", int(parts[0])
            else:
                tok, rank = base64.b64decode(parts[0]), int(parts[1])
            ranks[rank] = tok
    if sorted(ranks) != list(range(len(ranks))):
        raise ConversionError(f"{path}: token ranks are not contiguous from 0")
    return [ranks[i] for i in range(len(ranks))]


def tokenizer_name(n_vocab: int) -> str:
    return "multilingual.tiktoken" if n_vocab >= 51865 else "gpt2.tiktoken"


# --------------------------------------------------------------------------- writer


class HashingWriter:
    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, b) -> None:
        self.f.write(b)
        self.h.update(b)
        self.n += len(b)


def write_ggml(out, hp: dict, ftype: int, filters: np.ndarray, tokens: list, tensors) -> list:
    """Writes the ggml stream into `out` (has .write). Returns [(name, shape, ttype)]."""
    out.write(struct.pack("<i", GGML_MAGIC))
    for k in HPARAM_ORDER:
        out.write(struct.pack("<i", hp[k]))
    out.write(struct.pack("<i", ftype))
    out.write(struct.pack("<ii", filters.shape[0], filters.shape[1]))
    out.write(filters.astype("<f4").tobytes())
    out.write(struct.pack("<i", len(tokens)))
    for tok in tokens:
        out.write(struct.pack("<i", len(tok)))
        out.write(tok)
    written = []
    for name, data in tensors:
        data = np.asarray(data)
        if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
            data = data.reshape(data.shape[0], 1)
        if ftype == 1 and data.ndim >= 2 and name not in F32_ALWAYS:
            data, ttype = np.ascontiguousarray(data, dtype="<f2"), 1
        else:
            data, ttype = np.ascontiguousarray(data, dtype="<f4"), 0
        encoded = name.encode("utf-8")
        out.write(struct.pack("<iii", data.ndim, len(encoded), ttype))
        for dim in reversed(data.shape):
            out.write(struct.pack("<i", dim))
        out.write(encoded)
        out.write(data.tobytes())
        written.append((name, tuple(data.shape), ttype))
    return written


def convert(model_bin: str, assets_dir: str, out_path: str, ftype: int = 1, tokenizer: str | None = None) -> dict:
    size = os.path.getsize(model_bin)
    log(f"reading {model_bin} ({size / 1e6:.1f} MB)")
    spec, revision, variables, aliases = read_ct2(model_bin)
    if spec != "WhisperSpec":
        raise ConversionError(f"{model_bin}: spec is {spec!r}, expected 'WhisperSpec'")
    m = Ct2Whisper(variables, aliases)
    hp = hparams_of(m)
    dtypes = ct2_dtypes_summary(variables)
    log(f"spec {spec} rev {revision}: {len(variables)} variables, {len(aliases)} aliases, "
        f"matrix dtypes {dtypes}")
    fused = m.raw("encoder/layer_0/self_attention/linear_0/weight").shape[0] == 3 * hp["n_audio_state"]
    if not fused:
        raise ConversionError("expected fused q|k|v self-attention (linear_0 of 3n rows)")
    log("hparams " + ", ".join(f"{k}={hp[k]}" for k in HPARAM_ORDER))
    filters = load_mel_filters(os.path.join(assets_dir, "mel_filters.npz"), hp["n_mels"])
    tok_path = tokenizer or os.path.join(assets_dir, tokenizer_name(hp["n_vocab"]))
    tokens = load_tiktoken(tok_path)
    log(f"mel filters {filters.shape}, {len(tokens)} tokens from {os.path.basename(tok_path)}")
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as f:
        hw = HashingWriter(f)
        written = write_ggml(hw, hp, ftype, filters, tokens, whisper_tensors(m))
    os.replace(tmp, out_path)
    digest = hw.h.hexdigest()
    log(f"wrote {out_path}: {len(written)} tensors, {hw.n / 1e6:.1f} MB, sha256 {digest}")
    return {"path": out_path, "sha256": digest, "size": hw.n, "tensors": len(written),
            "hparams": hp, "ct2_dtypes": dtypes, "fused_qkv": fused}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_bin", nargs="?", help="CTranslate2 whisper model.bin")
    ap.add_argument("--assets", help="directory with mel_filters.npz and *.tiktoken")
    ap.add_argument("--tokenizer", help="override the .tiktoken file")
    ap.add_argument("-o", "--out", help="output ggml file")
    ap.add_argument("--f32", action="store_true", help="write all tensors as f32 (ftype 0)")
    ap.add_argument("--version", action="store_true", help="print the converter version")
    args = ap.parse_args(argv)
    if args.version:
        print(CONVERTER_VERSION)
        return 0
    if not (args.model_bin and args.assets and args.out):
        ap.error("model_bin, --assets and --out are required")
    try:
        convert(args.model_bin, args.assets, args.out, 0 if args.f32 else 1, args.tokenizer)
    except (ConversionError, OSError) as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
