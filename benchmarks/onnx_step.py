"""onnxruntime against lstmgen's own generation, in one run on one machine.

    .venv/bin/python benchmarks/onnx_step.py [RUN_DIR] [--batches 1 64] [--seconds 3] [--rounds 3] [--json out.json]

Exports RUN_DIR (default: the bundled model) with ``lstmgen export --onnx``,
then times, for each batch size, in interleaved rounds (the fastest round
of each counts, as the machine here is shared and noisy):

- ``onnx step``: step.onnx in onnxruntime (default session options, CPU),
  the next token taken by numpy's argmax, the state fed back;
- ``lstmgen auto`` and ``lstmgen fp32``: ``LanguageModel.generate`` with
  greedy plain settings, in the step precision ``--precision auto`` picks
  here and in fp32: the whole of lstmgen's generation (steps, sampling,
  decoding), which is what a user of either gets.

Tokens per second count every stream's tokens.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch

import lstmgen
from common import machine, print_table, write_json


def onnx_rate(out_dir: str, batch: int, seconds: float) -> float:
    session = ort.InferenceSession(f"{out_dir}/step.onnx", providers=["CPUExecutionProvider"])
    layers, _, hidden = session.get_inputs()[1].shape
    h = c = np.zeros((layers, batch, hidden), np.float32)
    tokens = np.zeros(batch, np.int64)
    steps, start = 0, time.perf_counter()
    while steps == 0 or time.perf_counter() - start < seconds:
        logits, h, c = session.run(None, {"token_ids": tokens, "h": h, "c": c})
        tokens = logits.argmax(axis=1)
        steps += 1
    return steps * batch / (time.perf_counter() - start)


def lstmgen_rate(model, batch: int, seconds: float, precision: str) -> float:
    tokens = 50
    config = lstmgen.SampleConfig.plain(temperature=0.0, max_new_tokens=tokens, num_samples=batch, seed=0,
                                        precision=precision)
    generation = model.start("The ", config)  # reads the prompt (and times auto's candidates once): not counted
    made, start = 0, time.perf_counter()
    while made == 0 or time.perf_counter() - start < seconds:
        for _ in generation.pieces(tokens):
            made += batch
    return made / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    device = torch.device("cpu")
    print(f"machine: {machine(device)}")
    print(f"onnxruntime {ort.__version__}, torch {torch.__version__}, torch threads {torch.get_num_threads()}")
    model = lstmgen.load(args.run_dir)
    auto = {b: _auto(model, b) for b in args.batches}
    rows = []
    with tempfile.TemporaryDirectory() as out:
        lstmgen.export_onnx(args.run_dir, out, force=True)
        for batch in args.batches:
            ways = {"onnx step": lambda: onnx_rate(out, batch, args.seconds),
                    "lstmgen auto": lambda: lstmgen_rate(model, batch, args.seconds, "auto"),
                    "lstmgen fp32": lambda: lstmgen_rate(model, batch, args.seconds, "fp32")}
            best = {name: 0.0 for name in ways}
            for _ in range(args.rounds):
                for name, way in ways.items():
                    best[name] = max(best[name], way())
            for name, rate in best.items():
                rows.append({"batch": batch, "way": name, "precision": auto[batch] if name == "lstmgen auto" else
                             "fp32", "tokens_per_second": rate,
                             "vs_onnx": rate / best["onnx step"]})
    print_table(rows, [("batch", "streams", "d"), ("way", "way", "s"), ("precision", "precision", "s"),
                       ("tokens_per_second", "tokens/s", ",.0f"), ("vs_onnx", "× onnx", ".2f")])
    write_json(args.json, {"machine": machine(device), "onnxruntime": ort.__version__,
                           "run": str(model.path), "seconds": args.seconds, "rounds": args.rounds, "rows": rows})


def _auto(model, batch: int) -> str:
    from lstmgen.sampling.steps import step_precision

    return step_precision(model.model, "auto", batch).precision


if __name__ == "__main__":
    main()
