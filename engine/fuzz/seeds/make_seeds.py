#!/usr/bin/env python3
"""Regenerates engine/fuzz/seeds/<target>/: valid and near-valid inputs so the fuzzer
starts inside the parsers instead of discovering JSON and JWT framing by itself.

Run from anywhere (the output is deterministic):
    python3 engine/fuzz/seeds/make_seeds.py
It prints the tokens that verify; they must match VALID in fuzz_targets/jwt_token.rs.
"""
import base64
import hashlib
import hmac
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = b"engine-fuzz-hs256-secret-of-40-bytes-!!!"  # jwt_token.rs SECRET
OTHER = b"not-the-engine-secret-but-also-40-bytes!"
NOW = 1_800_000_000  # jwt_token.rs NOW


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def part(obj):
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def hs256(header, claims, secret=SECRET):
    signing = part(header) + "." + part(claims)
    mac = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64(mac)


def write(target, items):
    out = os.path.join(HERE, target)
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        os.remove(os.path.join(out, old))
    for item in items:
        data = item if isinstance(item, bytes) else item.encode()
        name = hashlib.sha1(data).hexdigest()[:16]
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


JWT = {"alg": "HS256", "typ": "JWT"}
valid = [
    hs256(JWT, {"jti": "fuzz-1", "exp": NOW + 300, "iat": NOW, "sub": "rig-7"}),
    hs256({"alg": "HS256"}, {"jti": "fuzz-2", "exp": NOW + 300.5, "nbf": NOW - 10,
                             "iss": "tom-tests"}),
]
refused = [
    hs256(JWT, {"jti": "old", "exp": NOW - 100}),                  # expired
    hs256(JWT, {"exp": NOW + 300}),                                # no jti
    hs256(JWT, {"jti": "later", "exp": NOW + 900, "nbf": NOW + 600}),  # not yet valid
    hs256(JWT, {"jti": "aud", "exp": NOW + 300, "aud": "someone"}),    # audience
    hs256(JWT, {"jti": "fuzz-1", "exp": NOW + 300}, OTHER),        # wrong key
    hs256({"alg": "HS256", "crit": ["b64"]}, {"jti": "c", "exp": NOW + 300}),
    part({"alg": "none"}) + "." + part({"jti": "none", "exp": NOW + 300}) + ".",
    part({"alg": "RS256"}) + "." + part({"jti": "rs", "exp": NOW + 300}) + ".c2ln",
    "a.b.c",
    "not-a-token",
]
write("jwt_token",
      [f"Bearer {valid[0]}\n\n", f"\ntoken={valid[1]}\n", f"Basic dTpw\n?token={valid[0]}\n",
       "bearer \n?token=a&token=b\n", f"\n\n{valid[1]}"]
      + [f"\n\n{t}" for t in refused]
      + [f"Bearer {refused[4]}\ntoken=x\n{refused[6]}"])

write("stream_protocol", [
    '{"type":"start","rate":16000,"caller":"+4930123","did":"100"}',
    '{"type":"start","rate":8000,"encoding":"pcm16"}',
    '{"type":"start","rate":24000,"caller":"","did":"sip:alice@example.com"}',
    '{"type":"start","rate":44100}',
    '{"type":"start","rate":8000,"encoding":"opus"}',
    '{"type":"start","rate":8000,"caller":"\\u0007bell"}',
    '{"type":"start","rate":8000,"caller":+4930999}',
    '{"type":"stop"}',
    '{"type":"hello"}',
    b"\x01\x00\xff\x7f\x00\x80",
    b"\x00\x00\x00",
])

write("provider_events", [
    '{"type":"session.created","event_id":"e1","session":{"id":"sess_1","type":"realtime",'
    '"audio":{"input":{"format":{"type":"audio/pcmu"}},"output":{"format":{"type":"audio/pcmu"}}}}}',
    '{"type":"session.updated","session":{"type":"realtime","temperature":0.8}}',
    '{"type":"input_audio_buffer.speech_started","audio_start_ms":320,"item_id":"item_1"}',
    '{"type":"input_audio_buffer.speech_stopped","audio_end_ms":1480,"item_id":"item_1"}',
    '{"type":"input_audio_buffer.committed","item_id":"item_1","previous_item_id":null}',
    '{"type":"conversation.item.input_audio_transcription.completed","item_id":"item_1",'
    '"content_index":0,"transcript":"Hallo, ich habe eine Frage."}',
    '{"type":"response.created","response":{"id":"resp_1","status":"in_progress"}}',
    '{"type":"response.output_item.added","response_id":"resp_1","output_index":0,'
    '"item":{"id":"item_2","type":"message","role":"assistant"}}',
    '{"type":"response.output_audio.delta","response_id":"resp_1","item_id":"item_2",'
    '"output_index":0,"content_index":0,"delta":"/39/f3+A"}',
    '{"type":"response.audio.delta","response_id":"resp_1","item_id":"item_2","delta":"!!"}',
    '{"type":"response.output_audio.done","response_id":"resp_1"}',
    '{"type":"response.audio_transcript.delta","response_id":"resp_1","delta":"Gern"}',
    '{"type":"response.output_audio_transcript.done","response_id":"resp_1","transcript":"Gern."}',
    '{"type":"response.output_text.delta","response_id":"resp_1","delta":"x"}',
    '{"type":"response.done","response":{"id":"resp_1","status":"completed","usage":'
    '{"total_tokens":120,"input_tokens":80,"output_tokens":40,"input_token_details":'
    '{"cached_tokens":0,"text_tokens":10,"audio_tokens":70},"output_token_details":'
    '{"text_tokens":8,"audio_tokens":32}}}}',
    '{"type":"response.done","response":{"id":"resp_2","status":"failed","status_details":'
    '{"type":"failed","error":{"type":"server_error","code":"server_error","message":"boom"}}}}',
    '{"type":"response.done","response":{"id":"resp_3","status":"cancelled","status_details":'
    '{"type":"cancelled","reason":"turn_detected"}}}',
    '{"type":"rate_limits.updated","rate_limits":[{"name":"requests","limit":1000,'
    '"remaining":999,"reset_seconds":0.06},{"name":"tokens","limit":50000,"remaining":49000,'
    '"reset_seconds":1.2e-3}]}',
    '{"type":"conversation.item.truncated","item_id":"item_2","content_index":0,"audio_end_ms":900}',
    '{"type":"error","event_id":"e9","error":{"type":"invalid_request_error",'
    '"code":"invalid_value","message":"Invalid value: \'pcm17\'","event_id":"c3"}}',
    '{"type":"error","error":{"type":"rate_limit_error","code":"rate_limit_exceeded","message":""}}',
    '{"type":"error","error":{"type":"authentication_error","code":"invalid_api_key"}}',
    '{"type":"response.output_audio.delta","response_id":"r"}',
    '{"type":"conversation.item.created","item":{"id":"x"}}',
    '{"type":7}',
])

for t in valid:
    print(t)
