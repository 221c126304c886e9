"""The server's scheduler alone, in-process: rounds of 64 streams of the
bundled model (default settings, 400 new characters each), without HTTP.

    .venv/bin/python benchmarks/batcher.py [--streams 64] [--seconds 5] [--threads 1] [--precision bf16]
    .venv/bin/python benchmarks/batcher.py --neighbour 1,3      # a Python thread busy 1 ms in every 4
    .venv/bin/python benchmarks/batcher.py --new-tokens 500     # streams end and new ones arrive

Prints milliseconds per round and tokens per second. With --new-tokens N
each stream ends after N characters and a new one takes its place at once,
with the next 100-character prompt from Alice, read by Batcher.run's reader
thread as under `lstmgen serve` (the load of benchmarks/serve.py without
HTTP); it also prints the prompts read per second. --neighbour BUSY,IDLE
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
from common import alice_excerpts, machine, pick_device, write_json


def spin(busy_ms: float, idle_ms: float, stop: threading.Event) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        while time.perf_counter() - start < busy_ms / 1000:
            pass
        time.sleep(idle_ms / 1000)


def alice_prompts(model, count: int = 97) -> list[list[int]]:
    """100-character prompts from Alice (as benchmarks/serve.py sends), as token ids."""
    return [model.prompt_ids(model.prepare_text(text).text) for text in alice_excerpts(count, 100, 100)]


def churn(batcher, seconds: float, made: list, started: list) -> tuple[float, int, int]:
    """Batcher.run in a thread: a second of warm-up, then ``seconds``
    measured. Returns the seconds, and the tokens made and prompts started in them."""
    stopping = threading.Event()
    thread = threading.Thread(target=batcher.run, args=(stopping,), daemon=True)
    thread.start()
    time.sleep(1.0)
    tokens, prompts, start = made[0], started[0], time.perf_counter()
    time.sleep(seconds)
    elapsed, tokens, prompts = time.perf_counter() - start, made[0] - tokens, started[0] - prompts
    stopping.set()
    thread.join()
    return elapsed, tokens, prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads (the server's default here: 1)")
    parser.add_argument("--precision", default="fp32", help="the scheduler's step precision (serve's default is auto)")
    parser.add_argument("--neighbour", help="BUSY,IDLE milliseconds of a Python thread beside the scheduler")
    parser.add_argument("--switch-interval", type=float)
    parser.add_argument("--new-tokens", type=int, help="each stream ends after this many characters and a new one "
                        "arrives (default: streams never end)")
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
    made, started = [0], [0]
    alice = alice_prompts(model) if args.new_tokens else None

    def submit() -> None:
        prompt = ids if alice is None else alice[started[0] % len(alice)]
        batcher.submit(prompt, lstmgen.SampleConfig(max_new_tokens=args.new_tokens or 10**9), started[0], emit)
        started[0] += 1

    def emit(piece, reason, info):
        made[0] += 1
        if reason is not None:
            submit()  # a new request takes the place of the one that ended
    for _ in range(args.streams):
        submit()
    stop = threading.Event()
    if args.neighbour:
        busy, idle = (float(x) for x in args.neighbour.split(","))
        threading.Thread(target=spin, args=(busy, idle, stop), daemon=True).start()
    rounds, prompts = 0, 0
    if args.new_tokens:
        elapsed, tokens, prompts = churn(batcher, args.seconds, made, started)
    else:
        batcher.step()  # reads the prompts
        start, before = time.perf_counter(), made[0]
        while time.perf_counter() - start < args.seconds:
            batcher.step()
            rounds += 1
        elapsed, tokens = time.perf_counter() - start, made[0] - before
    stop.set()
    result = {"machine": machine(pick_device("cpu")), "streams": args.streams, "threads": args.threads,
              "precision": batcher.precision_choice.precision,
              "neighbour": args.neighbour, "switch_interval": sys.getswitchinterval(), "new_tokens": args.new_tokens,
              "ms_per_round": elapsed / rounds * 1000 if rounds else None,
              "tokens_per_second": tokens / elapsed}
    if args.new_tokens:
        result["prompts_per_second"] = prompts / elapsed
        print(f"{result['tokens_per_second']:,.0f} tokens/s, {result['prompts_per_second']:.1f} prompts read per second")
    else:
        print(f"{result['ms_per_round']:.2f} ms per round, {result['tokens_per_second']:,.0f} tokens/s")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
