#!/usr/bin/env python3
"""Time to first token and decoding speed of tom-llm, measured from the client side.

Starts the given tom-llm binary on a free loopback port, waits for its ready line, sends
one warm-up request and then RUNS streaming chat completions of a typical phone prompt,
exactly as the engine's brain does (stream=true, one system and one user message). Each
run's user message starts with its own call number, so only the system prompt can come
from tom-llm's prefix cache, as on a new call; --cold numbers the system prompt too, so
nothing is reused. For each run it records

  ttft_ms     request sent -> first non-empty content delta received
  total_ms    request sent -> [DONE]
  tokens      completion tokens (from the usage chunk, stream_options.include_usage)
  tok_s       (tokens - 1) / (time of last delta - time of first delta)

and prints every run plus median / mean / min / max as JSON lines on stdout. Standard
library only, so it runs anywhere python3 does.

Usage: tools/bench/llm_bench.py --bin "$CARGO_TARGET_DIR/release/tom-llm" [--runs 10]
"""

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import time

SYSTEM = "You are a friendly phone agent. Answer in one or two short sentences."
PROMPT = (
    "A caller asks: could I book a table for two tomorrow evening? "
    "Reply in one short sentence."
)


def start(binary, threads, extra):
    cmd = [binary, "--listen", "127.0.0.1:0", "--threads", str(threads), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    prefix = "tom-llm ready on http://"
    if not line.startswith(prefix):
        proc.kill()
        sys.exit(f"llm_bench: tom-llm did not get ready (first line: {line!r})")
    host, port = line[len(prefix):].rsplit(":", 1)
    return proc, host, int(port)


def one_run(host, port, max_tokens, ignore_eos, call, cold):
    system = f"Call {call}. {SYSTEM}" if cold else SYSTEM
    body = {
        "model": "smollm2",
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": f"Call {call}. {PROMPT}"},
        ],
        "max_completion_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if ignore_eos:
        body["ignore_eos"] = True
    conn = http.client.HTTPConnection(host, port, timeout=60)
    sent = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", json.dumps(body),
                 {"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        sys.exit(f"llm_bench: HTTP {response.status}: {response.read()!r}")
    first = last = None
    tokens = cached = prompt = None
    text = []
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: "):
            continue
        data = line[len("data: "):]
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
            cached = chunk["usage"].get("prompt_tokens_details", {}).get("cached_tokens")
            prompt = chunk["usage"]["prompt_tokens"]
        for choice in chunk["choices"]:
            content = choice["delta"].get("content")
            if content:
                now = time.perf_counter()
                first = first or now
                last = now
                text.append(content)
    done = time.perf_counter()
    conn.close()
    tok_s = None
    if tokens and tokens > 1 and last and last > first:
        tok_s = (tokens - 1) / (last - first)
    return {
        "ttft_ms": round((first - sent) * 1000, 1) if first else None,
        "total_ms": round((done - sent) * 1000, 1),
        "tokens": tokens,
        "tok_s": round(tok_s, 1) if tok_s else None,
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "chars": len("".join(text)),
    }


def summary(name, values):
    values = [v for v in values if v is not None]
    if not values:
        return {name: None}
    return {
        name: {
            "median": round(statistics.median(values), 1),
            "mean": round(statistics.fmean(values), 1),
            "min": round(min(values), 1),
            "max": round(max(values), 1),
        }
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", required=True, help="the tom-llm binary (a release build)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--ignore-eos", action="store_true",
                        help="always generate --max-tokens tokens (steadier tok/s)")
    parser.add_argument("--cold", action="store_true",
                        help="no prefix shared between runs (nothing from the cache)")
    parser.add_argument("server_args", nargs="*", help="more tom-llm arguments (after --)")
    args = parser.parse_args()

    proc, host, port = start(args.bin, args.threads, args.server_args)
    try:
        one_run(host, port, 8, False, 0, args.cold)  # warm-up, not counted
        runs = []
        for i in range(args.runs):
            run = one_run(host, port, args.max_tokens, args.ignore_eos, i + 1, args.cold)
            runs.append(run)
            print(json.dumps({"run": i + 1, **run}), flush=True)
        result = {"runs": args.runs, "threads": args.threads, "max_tokens": args.max_tokens,
                  "ignore_eos": args.ignore_eos, "cold": args.cold}
        for key in ("ttft_ms", "tok_s", "total_ms", "tokens"):
            result.update(summary(key, [r[key] for r in runs]))
        print(json.dumps(result))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
