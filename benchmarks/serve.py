"""Load on `lstmgen serve`: concurrent streaming clients on loopback.

    .venv/bin/python benchmarks/serve.py [--clients 64] [--seconds 60] [--json out.json]
    .venv/bin/python benchmarks/serve.py --seconds 300 --disconnect 0.3   # the soak

Starts the real server (`lstmgen serve`, bundled model) in a subprocess,
then runs CLIENTS clients for SECONDS, each asking again and again for
NEW_TOKENS characters streamed after a 100-character prompt from Alice
(client i starts at i × RAMP / CLIENTS seconds). Reports p50/p99 time to
first text and between chunks (after a stream's first text the server
sends every stream's chunk at the same ticks, --stream-interval seconds
apart, each with all the text since), aggregate characters per second (those that arrived between the end of
the ramp and the end of the run, when every client is running; the
whole run's figure beside it), errors and the server's peak RSS; beside
it, the 64-stream figure of plain batched generation on the same model,
measured in this process before and after the load (the server is not
running then; the mean of the two is taken, as the machine's speed drifts), in fp32
and in --precision auto (what benchmarks/generation.py reports), each as
generation.py measures it (the precision chosen first, then about
--baseline-seconds of steps); the share of generation is taken against
auto's, and against the faster of the two.
With --disconnect F, a share F of the requests hang up after a random
part of their text; the server's RSS and /health are sampled every 10 s.
Before the load, --probes seeded requests (300 characters, logprobs) are
sent alone; during it they are sent again, spread over the run, and their
text and log-probabilities compared with the first answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import torch

import lstmgen
from common import alice_excerpts, machine, pick_device, write_json
from generation import timed_for
from lstmgen.sampling.steps import step_precision


def generation_baseline(model, streams: int, seconds: float = 2.0, precision: str = "fp32") -> float:
    """Characters per second of lstmgen's own batched generation, measured
    as benchmarks/generation.py measures it: the step precision chosen
    first (auto's timing is not part of the figure), a 50-step probe, then
    about ``seconds`` of steps."""
    step_precision(model.model, precision, streams)
    return timed_for(model, "Alice was beginning", streams, precision, seconds, torch.device("cpu"))["chars_per_second"]


def generation_baselines(args) -> dict[str, float]:
    """Batched generation at --clients streams, fp32 and auto, each as generation.py measures it."""
    model = lstmgen.load()
    rates = {p: generation_baseline(model, args.clients, args.baseline_seconds, p) for p in ("fp32", "auto")}
    print(f"batched generation, {args.clients} streams: fp32 {rates['fp32']:,.0f} chars/s, auto {rates['auto']:,.0f}")
    return rates


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def family(pid: int) -> list[int]:
    """The process and all its descendants (the server's scheduler processes)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:  # a thread that ended meanwhile
                pass
    return pids


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """Peak (VmHWM) or current (VmRSS) resident memory of the process and its descendants, added up."""
    total = 0.0
    for p in family(pid):
        try:
            lines = Path(f"/proc/{p}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) / 1024 for line in lines if line.startswith(field + ":"))
    return total


def cpu_seconds(pid: int, descendants: bool = True) -> float:
    """User and system CPU time so far of a process (and its living descendants)."""
    total = 0.0
    for p in family(pid) if descendants else [pid]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def client(http: aiohttp.ClientSession, url: str, prompts: list[str], args, until: float, stats: dict,
                 index: int) -> None:
    """One client, asking again and again until ``until``. aiohttp parses
    HTTP in C: with httpx (pure-Python h11) the 64 clients took 0.22 of a
    core of the two that the server runs on, with aiohttp 0.11."""
    await asyncio.sleep(index * args.ramp / args.clients)
    rng = random.Random(index)
    k = index
    while time.monotonic() < until:
        prompt = prompts[k % len(prompts)]
        k += len(prompts) // 7 + 1
        # A hang-up comes after a random share (5% to 90%) of the text asked for.
        hang_up_at = rng.uniform(0.05, 0.9) * args.new_tokens if rng.random() < args.disconnect else None
        received = 0
        sent = time.monotonic()
        last = None
        try:
            async with http.post(url, json={"prompt": prompt, "max_tokens": args.new_tokens,
                                            "stream": True, "seed": k}) as response:
                if response.status != 200:
                    stats["errors"] += 1
                    await response.read()
                    continue
                async for raw in response.content:  # one line at a time
                    line = raw.decode().rstrip("\r\n")
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        stats["errors"] += 1
                        break
                    now = time.monotonic()
                    if last is None:
                        stats["ttft"].append(now - sent)
                    else:
                        stats["between"].append(now - last)
                    last = now
                    chars = len(chunk["choices"][0]["text"])
                    stats["arrivals"].append((now, chars))
                    stats["chunks"] += 1
                    received += chars
                    if hang_up_at is not None and received >= hang_up_at:
                        stats["hung_up"] += 1
                        break  # leaving the block closes the connection mid-stream
        except (aiohttp.ClientError, asyncio.TimeoutError):
            stats["errors"] += 1


def steady_rate(arrivals: list[tuple[float, int]], start: float, end: float) -> float:
    """Characters per second that arrived between ``start`` and ``end``."""
    return sum(chars for t, chars in arrivals if start <= t < end) / (end - start)


async def watch(base: str, pid: int, until: float, samples: list) -> None:
    """Every 10 s: the server's RSS and whether /health answers."""
    async with httpx.AsyncClient(timeout=10) as http:
        while time.monotonic() < until:
            await asyncio.sleep(min(10.0, max(until - time.monotonic(), 0.0)))
            try:
                ok = (await http.get(f"{base}/health")).status_code == 200
            except httpx.HTTPError:
                ok = False
            samples.append({"t": round(time.monotonic() - until, 1), "rss_mb": rss_mb(pid, "VmRSS"), "health": ok})


async def seeded(http: httpx.AsyncClient, base: str, prompt: str, seed: int) -> tuple[str, list[float]]:
    body = {"prompt": prompt, "max_tokens": 300, "seed": seed, "logprobs": 1}
    choice = (await http.post(f"{base}/v1/completions", json=body)).json()["choices"][0]
    return choice["text"], choice["logprobs"]["token_logprobs"]


async def probe(base: str, prompts: list[str], count: int, alone: dict, until: float, found: list) -> None:
    """Seeded requests sent again under load, compared with the same requests sent alone."""
    async with httpx.AsyncClient(timeout=120) as http:
        for i in range(count):
            await asyncio.sleep(max(0.0, (until - time.monotonic()) / (count - i + 1)))
            text, logprobs = await seeded(http, base, prompts[i], 1000 + i)
            found.append({"seed": 1000 + i, "same_text": text == alone[i][0], "same_logprobs": logprobs == alone[i][1],
                          "max_logprob_difference": max(abs(a - b) for a, b in zip(logprobs, alone[i][1]))})


async def load(base: str, pid: int, prompts: list[str], args) -> dict:
    stats = {"ttft": [], "between": [], "arrivals": [], "errors": 0, "chunks": 0, "hung_up": 0, "watch": [],
             "probes": []}
    async with httpx.AsyncClient(timeout=120) as probes:
        alone = [await seeded(probes, base, prompts[i], 1000 + i) for i in range(args.probes)]
    connector = aiohttp.TCPConnector(limit=args.clients + 8)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:
        start = time.monotonic()
        until = start + args.seconds
        await asyncio.gather(watch(base, pid, until, stats["watch"]),
                             probe(base, prompts, args.probes, alone, until, stats["probes"]),
                             *(client(http, f"{base}/v1/completions", prompts, args, until, stats, i)
                               for i in range(args.clients)))
        stats["seconds"] = time.monotonic() - start
    stats["chars"] = sum(chars for _, chars in stats["arrivals"])
    # Every client is running from the end of the ramp to the end of the run: the steady state,
    # without the ramp's and the last requests' fewer streams.
    stats["steady_chars_per_second"] = steady_rate(stats["arrivals"], start + args.ramp, until)
    stats["steady_seconds"] = until - start - args.ramp
    return stats


def start_server(args) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "lstmgen", "serve", "--port", str(port),
                               "--max-streams", str(args.clients), "--stream-interval", str(args.stream_interval),
                               *args.server_args.split()], stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not answer /health within 30 s")


def percentiles(values: list[float]) -> tuple[float | None, float | None]:
    ms = np.array(values) * 1000
    return (float(np.percentile(ms, 50)), float(np.percentile(ms, 99))) if len(ms) else (None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--new-tokens", type=int, default=500)
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds over which the clients start")
    parser.add_argument("--stream-interval", type=float, default=0.05)
    parser.add_argument("--disconnect", type=float, default=0.0, help="share of requests that hang up mid-stream")
    parser.add_argument("--probes", type=int, default=8,
                        help="seeded requests sent alone first, then again under load, and compared")
    parser.add_argument("--server-args", default="", help="more options for lstmgen serve, as one string")
    parser.add_argument("--baseline-seconds", type=float, default=2.0,
                        help="about this long for each batched-generation figure (as generation.py's --seconds)")
    parser.add_argument("--json")
    args = parser.parse_args()
    if not 0 <= args.ramp < args.seconds:
        parser.error("--ramp must be at least 0 and shorter than --seconds")
    print(f"machine: {machine(pick_device('cpu'))}")
    before = generation_baselines(args)
    prompts = alice_excerpts(100, 100, 97)
    server, base = start_server(args)
    try:
        server_cpu, client_cpu, wall = cpu_seconds(server.pid), cpu_seconds(os.getpid(), descendants=False), time.monotonic()
        stats = asyncio.run(load(base, server.pid, prompts, args))
        wall = time.monotonic() - wall
        server_cores = (cpu_seconds(server.pid) - server_cpu) / wall
        client_cores = (cpu_seconds(os.getpid(), descendants=False) - client_cpu) / wall
        rss = rss_mb(server.pid)
        alive = server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=60)
    after = generation_baselines(args)
    # A shared machine's speed drifts over minutes: the load is set against the mean of both sides of it.
    fp32, baseline = ((before[p] + after[p]) / 2 for p in ("fp32", "auto"))
    ttft, between = percentiles(stats["ttft"]), percentiles(stats["between"])
    result = {
        "machine": machine(pick_device("cpu")), "clients": args.clients, "seconds": stats["seconds"],
        "new_tokens": args.new_tokens, "ramp_seconds": args.ramp, "stream_interval": args.stream_interval,
        "server_args": args.server_args, "requests_started": len(stats["ttft"]), "errors": stats["errors"],
        "hung_up": stats["hung_up"], "ttft_ms_p50": ttft[0], "ttft_ms_p99": ttft[1],
        "between_chunks_ms_p50": between[0], "between_chunks_ms_p99": between[1],
        "chars_per_chunk": stats["chars"] / max(stats["chunks"], 1),
        "chars_per_second": stats["steady_chars_per_second"], "steady_seconds": stats["steady_seconds"],
        "chars_per_second_whole_run": stats["chars"] / stats["seconds"], "generation_chars_per_second": baseline,
        "generation_fp32_chars_per_second": fp32, "generation_before_load": before, "generation_after_load": after,
        "server_peak_rss_mb": rss, "server_alive_at_end": alive, "watch": stats["watch"],
        "server_cpu_cores": server_cores, "clients_cpu_cores": client_cores,
        "seeded_same_text_under_load": sum(p["same_text"] for p in stats["probes"]),
        "seeded_same_logprobs_under_load": sum(p["same_logprobs"] for p in stats["probes"]),
        "seeded_probes": len(stats["probes"]), "probes": stats["probes"],
    }
    result["of_generation"] = result["chars_per_second"] / baseline
    result["of_generation_fp32"] = result["chars_per_second"] / fp32
    # Against the faster of the two: the target read as strictly as the figures allow.
    result["of_generation_best"] = result["chars_per_second"] / max(baseline, fp32)
    for key, value in result.items():
        if key not in ("machine", "watch", "probes"):
            print(f"{key:>30}: {value:,.2f}" if isinstance(value, float) else f"{key:>30}: {value}")
    if stats["watch"]:
        print("rss_mb every 10 s:", " ".join(f"{w['rss_mb']:.0f}{'' if w['health'] else '!'}" for w in stats["watch"]))
    write_json(args.json, result)


if __name__ == "__main__":
    main()
