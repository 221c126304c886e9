"""The cost of one generation step by the number of rows it steps: what
splitting a server's streams among scheduler processes costs each row.

    .venv/bin/python benchmarks/step_rows.py [--rows 16,32,64] [--precision bf16,fp32] [--threads 1] [--json out.json]

For each precision and row count, times StepWeights.step of the bundled
model on random states (the median of --repeats runs of 200 steps, after 50
warm-up steps) on --threads PyTorch threads (a scheduler process has one),
and reports milliseconds per step and microseconds per row.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import lstmgen
from common import machine, pick_device, print_table, write_json
from lstmgen.sampling.steps import step_weights


def time_step(stepper, rows: int, vocab: int, hidden: int, layers: int, repeats: int) -> float:
    """Median milliseconds per step of ``rows`` rows."""
    g = torch.Generator().manual_seed(0)
    token = torch.randint(vocab, (rows,), generator=g)
    h = [torch.randn(rows, hidden, generator=g) * 0.5 for _ in range(layers)]
    c = [torch.randn(rows, hidden, generator=g) for _ in range(layers)]
    runs = []
    with torch.inference_mode():
        for _ in range(50):
            stepper.step(token, h, c)
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(200):
                stepper.step(token, h, c)
            runs.append((time.perf_counter() - start) / 200 * 1000)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="16,32,64")
    parser.add_argument("--precision", default="bf16,fp32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net = lstmgen.load().model.eval()
    cfg = net.config
    results = []
    for precision in args.precision.split(","):
        stepper = step_weights(net, precision)
        for rows in (int(r) for r in args.rows.split(",")):
            ms = time_step(stepper, rows, cfg.vocab_size, cfg.hidden_size, cfg.num_layers, args.repeats)
            results.append({"precision": precision, "rows": rows, "ms_per_step": ms, "us_per_row": 1000 * ms / rows})
    print_table(results, [("precision", "precision", "s"), ("rows", "rows", "d"), ("ms_per_step", "ms/step", ".3f"),
                          ("us_per_row", "µs/row", ".1f")])
    write_json(args.json, {"machine": machine(pick_device("cpu")), "threads": args.threads, "results": results})


if __name__ == "__main__":
    main()
