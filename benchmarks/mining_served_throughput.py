"""Served-backend throughput: items/s with concurrency 1, 4 and 8 against one chat server, side by side.

Starts `python -m deepinterestgr.mining.server` on 127.0.0.1 over SmolLM2-135M-Instruct (the packaged GGUF copy,
else the Hub id) unless `--base-url` points at a running OpenAI-compatible endpoint. Each item of the bundled Beauty
sample is one intent-descriptor request (brand + categories in, `{"descriptors": [...]}` JSON out through the JSON
schema); every concurrency level answers the same items, after one warm-up request (grammar compilation).

Run: `.venv/bin/python benchmarks/mining_served_throughput.py [--items 12] [--max-new-tokens 64] [--threads 2]`
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from deepinterestgr.mining.backends import GenerationRequest
from deepinterestgr.mining.served import ServedBackend
from deepinterestgr.offline_models import SMOLLM2_ID, smollm2_gguf

SAMPLE = Path(__file__).resolve().parents[1] / "src/deepinterestgr/data/samples/beauty_2k/item_attributes.json"
SCHEMA = {
    "type": "object",
    "properties": {
        "descriptors": {
            "type": "array",
            "maxItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "descriptor": {"type": "string", "maxLength": 32},
                    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                },
                "required": ["descriptor", "confidence"],
            },
        }
    },
    "required": ["descriptors"],
}


def item_requests(count: int, max_new_tokens: int) -> list[GenerationRequest]:
    attributes = json.loads(SAMPLE.read_text())
    texts = [", ".join(entry["attributes"]) for _, entry in sorted(attributes.items(), key=lambda kv: int(kv[0]))]
    return [
        GenerationRequest(
            messages=(
                {"role": "system", "content": "You name why shoppers want a product. Answer in JSON."},
                {"role": "user", "content": f"Product: {text}\nGive up to 2 short intent descriptors."},
            ),
            json_schema=SCHEMA,
            max_new_tokens=max_new_tokens,
        )
        for text in texts[:count]
    ]


def start_server(threads: int, max_batch_size: int) -> tuple[subprocess.Popen, str]:
    packaged = smollm2_gguf()
    model = ["--model", packaged[0], "--gguf-file", packaged[1]] if packaged else ["--model", SMOLLM2_ID]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "deepinterestgr.mining.server", *model, "--port", str(port)]
    command += ["--threads", str(threads), "--max-batch-size", str(max_batch_size)]
    log = Path(tempfile.mkdtemp()) / "server.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit(f"server did not answer within 300 s:\n{log.read_text()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", default=None, help="a running OpenAI-compatible endpoint (default: start ours)")
    parser.add_argument("--model", default=SMOLLM2_ID, help="model name sent to --base-url")
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server we start")
    parser.add_argument("--max-batch-size", type=int, default=8, help="batch limit of the server we start")
    args = parser.parse_args()

    process, url = (
        (None, args.base_url.removesuffix("/v1")) if args.base_url else start_server(args.threads, args.max_batch_size)
    )
    requests = item_requests(args.items, args.max_new_tokens)
    rows = []
    try:
        warm = ServedBackend(f"{url}/v1", args.model, timeout=600, max_retries=0)
        list(warm.generate(requests[:1]))
        for concurrency in args.concurrency:
            backend = ServedBackend(f"{url}/v1", args.model, concurrency=concurrency, timeout=600, max_retries=0)
            stats = httpx.get(f"{url}/stats").json() if process else {}
            start = time.perf_counter()
            results = dict(backend.generate(requests))
            seconds = time.perf_counter() - start
            after = httpx.get(f"{url}/stats").json() if process else {}
            batches = after.get("batches", 0) - stats.get("batches", 0)
            valid = 0
            for result in results.values():
                with contextlib.suppress(ValueError, AttributeError):  # not JSON, or not an object
                    valid += isinstance(json.loads(result.text).get("descriptors"), list)
            rows.append((concurrency, len(requests), seconds, batches, valid, results))
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)

    base = rows[0][1] / rows[0][2]
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print(f"server: {'ours, ' + str(args.threads) + ' torch threads' if process else url}; model {args.model}")
    print(f"{args.items} items, max_new_tokens {args.max_new_tokens}, JSON schema on\n")
    print("| concurrency | items | seconds | items/s | speed-up | mean batch | schema-valid | cut at limit | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for concurrency, items, seconds, batches, valid, results in rows:
        errors = sum(result.finish_reason == "error" for result in results.values())
        cut = sum(result.finish_reason == "length" for result in results.values())
        mean_batch = f"{items / batches:.1f}" if batches else "-"
        print(
            f"| {concurrency} | {items} | {seconds:.1f} | {items / seconds:.2f} | {items / seconds / base:.2f}x "
            f"| {mean_batch} | {valid}/{items} | {cut} | {errors} |"
        )


if __name__ == "__main__":
    main()
