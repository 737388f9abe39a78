#!/usr/bin/env python3
"""Regenerates fuzz/seeds/<target>/ from the recorded FreeSWITCH fixtures.

Seeds are small fragments of real traffic so the fuzzer starts from valid messages
instead of having to discover `Content-Length` framing by itself. Run from anywhere:
    python3 esl-bridge/fuzz/seeds/make_seeds.py [FIXTURE_DIR]
"""
import hashlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = (sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TOM_FIXTURES")
       or os.path.join(HERE, "../../../../shared/fixtures/freeswitch"))
MAX_SEED = 3000  # keep every seed below libFuzzer's default max_len (4096)


def frames(raw):
    """Cuts an ESL stream into whole messages, like the decoder (reference parser)."""
    out, i = [], 0
    while i < len(raw):
        while i < len(raw) and raw[i:i + 1] == b"\n":
            i += 1
        end = raw.find(b"\n\n", i)
        if end < 0:
            break
        n = 0
        for line in raw[i:end].split(b"\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                n = int(value.strip())
        out.append(raw[i:end + 2 + n])
        i = end + 2 + n
    return out


def read(rel):
    with open(os.path.join(FIX, rel), "rb") as f:
        return f.read()


def write(target, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def plan(split, step=0):
    # Plan::parse prefix: split (u16 LE), step, limits (0 = defaults).
    return struct.pack("<HBB", split, step, 0)


def small_frames(rel, want):
    fs = [f for f in frames(read(rel)) if len(f) <= MAX_SEED]
    seen, picked = set(), []
    for f in fs:
        kind = f.split(b"\n", 2)[:2]
        key = b"".join(kind)[:60]
        if key not in seen:
            seen.add(key)
            picked.append(f)
        if len(picked) >= want:
            break
    return picked


# decoder: 1-3 consecutive messages from several sessions, with varied split points.
for rel, want in [
    ("esl-inbound/inbound_auth_fail.fs_to_client.raw", 3),
    ("esl-inbound/inbound_plain_all.fs_to_client.raw", 5),
    ("esl-inbound/inbound_json_sip_call.fs_to_client.raw", 2),
    ("esl-inbound/inbound_xml_events.fs_to_client.raw", 2),
    ("esl-inbound/inbound_log_filter_sendevent.fs_to_client.raw", 3),
    ("esl-outbound/outbound_basic.fs_to_client.raw", 3),
]:
    fs = small_frames(rel, want)
    for k, f in enumerate(fs):
        nxt = fs[k + 1] if k + 1 < len(fs) and len(f) + len(fs[k + 1]) <= MAX_SEED else b""
        data = f + nxt
        write("decoder", plan(len(f) // 2 + k, step=[0, 0, 7][k % 3]) + data)

# event_bodies: the smallest event bodies of each wire format (with and without an
# inner body), plus a log body.
for rel, ctype, want in [
    ("esl-inbound/inbound_plain_all.fs_to_client.raw", b"text/event-plain", 3),
    ("esl-inbound/inbound_log_filter_sendevent.fs_to_client.raw", b"text/event-plain", 2),
    ("esl-inbound/inbound_json_sip_call.fs_to_client.raw", b"text/event-json", 2),
    ("esl-inbound/inbound_xml_events.fs_to_client.raw", b"text/event-xml", 2),
    ("mod_audio_stream/mod_audio_stream.esl.fs_to_client.raw", b"text/event-plain", 1),
]:
    bodies = sorted((f[f.find(b"\n\n") + 2:] for f in frames(read(rel))
                     if b"Content-Type: " + ctype in f.split(b"\n\n")[0]), key=len)
    with_body = [b for b in bodies if b"Content-Length" in b]
    for b in (bodies[:want] + with_body[:1]):
        if len(b) <= MAX_SEED:
            write("event_bodies", b)

# request: what the clients sent.
for rel in [
    "esl-inbound/inbound_plain_all.client_to_fs.raw",
    "esl-inbound/inbound_log_filter_sendevent.client_to_fs.raw",
    "esl-outbound/outbound_basic.client_to_fs.raw",
    "media-unicast/outbound_unicast_pcmu_native.client_to_fs.raw",
]:
    raw = read(rel)[:MAX_SEED]
    write("request", plan(len(raw) // 3) + raw)

# url_decode: encoded values seen in plain events.
for value in [b"sofia/internal/%2B4930123456%40127.0.0.1", b"2026-11-23%2007%3A19%3A54",
              b"fixture%3A%3Atest", b"FILE%20PLAYED", b"%2BOK%0A", b"a+b", b"%C3%BC", b"cut%2"]:
    write("url_decode", value)
