"""Load on `lstmgen serve`: concurrent streaming clients on loopback.

    .venv/bin/python benchmarks/serve.py [--clients 64] [--seconds 60] [--json out.json]

Starts the real server (`lstmgen serve`, bundled model) in a subprocess,
then runs CLIENTS clients for SECONDS, each asking again and again for
NEW_TOKENS characters streamed after a 100-character prompt from Alice.
Reports p50/p99 time to first token and between tokens, aggregate
characters per second, errors and the server's peak RSS; beside it, the
64-stream figure of plain batched generation on the same model, measured
first in this process (the server is not running then).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

import lstmgen
from common import ALICE, machine, pick_device, require, write_json
from lstmgen.text.corpus import read_corpus


def generation_baseline(streams: int, steps: int = 300) -> float:
    """Characters per second of lstmgen's own batched generation (fp32, as the server steps)."""
    model = lstmgen.load()
    config = lstmgen.SampleConfig(max_new_tokens=steps, num_samples=streams, seed=0, precision="fp32")
    start = time.perf_counter()
    count = sum(len(p) for step in model.stream("Alice was beginning", config) for p in step)
    return count / (time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def client(http: httpx.AsyncClient, url: str, prompts: list[str], new_tokens: int, until: float,
                 stats: dict, index: int) -> None:
    k = index
    while time.monotonic() < until:
        prompt = prompts[k % len(prompts)]
        k += len(prompts) // 7 + 1
        sent = time.monotonic()
        last = None
        try:
            async with http.stream("POST", url, json={"prompt": prompt, "max_tokens": new_tokens, "stream": True,
                                                      "seed": k}) as response:
                if response.status_code != 200:
                    stats["errors"] += 1
                    await response.aread()
                    continue
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        stats["errors"] += 1
                        break
                    now = time.monotonic()
                    text = chunk["choices"][0]["text"]
                    if last is None:
                        stats["ttft"].append(now - sent)
                    else:
                        stats["itl"].append(now - last)
                    last = now
                    stats["chars"] += len(text)
        except httpx.HTTPError:
            stats["errors"] += 1


async def load(url: str, clients: int, seconds: float, prompts: list[str], new_tokens: int) -> dict:
    stats = {"ttft": [], "itl": [], "chars": 0, "errors": 0}
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        start = time.monotonic()
        until = start + seconds
        await asyncio.gather(*(client(http, url, prompts, new_tokens, until, stats, i) for i in range(clients)))
        stats["seconds"] = time.monotonic() - start
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--new-tokens", type=int, default=500)
    parser.add_argument("--json")
    args = parser.parse_args()
    print(f"machine: {machine(pick_device('cpu'))}")
    baseline = generation_baseline(args.clients)
    print(f"batched generation, {args.clients} streams, fp32: {baseline:,.0f} chars/s")
    text = read_corpus(require(ALICE), lstmgen.CorpusConfig()).text
    prompts = [text[i:i + 100] for i in range(5000, 5000 + 100 * 97, 97)]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "lstmgen", "serve", "--port", str(port),
                               "--max-streams", str(args.clients)], stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        stats = asyncio.run(load(f"http://127.0.0.1:{port}/v1/completions", args.clients, args.seconds, prompts,
                                 args.new_tokens))
        rss = peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    ttft, itl = np.array(stats["ttft"]) * 1000, np.array(stats["itl"]) * 1000
    result = {
        "machine": machine(pick_device("cpu")), "clients": args.clients, "seconds": stats["seconds"],
        "new_tokens": args.new_tokens, "requests_started": len(ttft), "errors": stats["errors"],
        "ttft_ms_p50": float(np.percentile(ttft, 50)) if len(ttft) else None,
        "ttft_ms_p99": float(np.percentile(ttft, 99)) if len(ttft) else None,
        "itl_ms_p50": float(np.percentile(itl, 50)) if len(itl) else None,
        "itl_ms_p99": float(np.percentile(itl, 99)) if len(itl) else None,
        "chars_per_second": stats["chars"] / stats["seconds"], "generation_chars_per_second": baseline,
        "server_peak_rss_mb": rss,
    }
    result["of_generation"] = result["chars_per_second"] / baseline
    for key, value in result.items():
        if key != "machine":
            print(f"{key:>30}: {value:,.2f}" if isinstance(value, float) else f"{key:>30}: {value}")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
