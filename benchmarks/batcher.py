"""The server's scheduler alone, in-process: rounds of 64 streams of the
bundled model (default settings, 400 new characters each), without HTTP.

    .venv/bin/python benchmarks/batcher.py [--streams 64] [--seconds 5] [--threads 1] [--precision bf16]
    .venv/bin/python benchmarks/batcher.py --neighbour 1,3      # a Python thread busy 1 ms in every 4

Prints milliseconds per round and tokens per second. --neighbour BUSY,IDLE
runs a thread that spins in Python for BUSY ms, then sleeps IDLE ms, as an
HTTP event loop does; --switch-interval sets CPython's (seconds).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import torch

import lstmgen
from common import machine, pick_device, write_json


def spin(busy_ms: float, idle_ms: float, stop: threading.Event) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        while time.perf_counter() - start < busy_ms / 1000:
            pass
        time.sleep(idle_ms / 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads (the server's default here: 1)")
    parser.add_argument("--precision", default="fp32", help="the scheduler's step precision (serve's default is auto)")
    parser.add_argument("--neighbour", help="BUSY,IDLE milliseconds of a Python thread beside the scheduler")
    parser.add_argument("--switch-interval", type=float)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    print(f"machine: {machine(pick_device('cpu'))}")
    model = lstmgen.load()
    batcher = lstmgen.Batcher(model, precision=args.precision, max_streams=args.streams)
    ids = model.tokenizer.encode(model.prepare_text("Alice was beginning to get very tired of sitting by her "
                                                    "sister on the bank").text).tolist()
    made = [0]

    def emit(piece, reason, info):
        made[0] += 1
    for seed in range(args.streams):
        batcher.submit(ids, lstmgen.SampleConfig(max_new_tokens=10**9), seed, emit)
    batcher.step()  # reads the prompts
    stop = threading.Event()
    if args.neighbour:
        busy, idle = (float(x) for x in args.neighbour.split(","))
        threading.Thread(target=spin, args=(busy, idle, stop), daemon=True).start()
    rounds, start, before = 0, time.perf_counter(), made[0]
    while time.perf_counter() - start < args.seconds:
        batcher.step()
        rounds += 1
    elapsed = time.perf_counter() - start
    stop.set()
    result = {"machine": machine(pick_device("cpu")), "streams": args.streams, "threads": args.threads,
              "precision": batcher.precision_choice.precision,
              "neighbour": args.neighbour, "switch_interval": sys.getswitchinterval(),
              "ms_per_round": elapsed / rounds * 1000, "tokens_per_second": (made[0] - before) / elapsed}
    print(f"{result['ms_per_round']:.2f} ms per round, {result['tokens_per_second']:,.0f} tokens/s")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
