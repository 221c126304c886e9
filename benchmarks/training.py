"""Training throughput, achieved FLOP/s and model FLOP utilisation (MFU).

    .venv/bin/python benchmarks/training.py [--steps 30] [--warmup 5] [--device auto] [--json out.json]
        [--batches 32 64 128] [--threads-sweep] [--compile]

For each preset (default, tutorial-small, tutorial-large) and precision (auto,
fp32, bf16 autocast) it times steady-state optimizer steps of lstmgen's own training
step (Trainer.step: forward, loss at every position, backward, clipping, Adam)
on Alice, after warm-up steps, without validation or checkpoints.

FLOPs are counted as 6 × parameters per trained character (forward 2,
backward 4); for the tutorial's window framing, per window × window length,
because the LSTM runs over every character of every window. MFU is achieved
FLOP/s over the matmul peak measured at the start of the same run.

--batches, --threads-sweep and --compile add the experiments behind the
chosen settings: other batch sizes, one thread against all, torch.compile.
"""

from __future__ import annotations

import argparse
import time

import torch

from lstmgen.text.corpus import read_corpus
from lstmgen.errors import LstmgenError
from lstmgen.model import LSTMLanguageModel, ModelConfig
from lstmgen.precision import PrecisionChoice
from lstmgen.training.presets import resolve
from lstmgen.text.tokenizer import CharTokenizer
from lstmgen.text.batches import TokenSplit
from lstmgen.training.loop import epoch_batches
from lstmgen.training.trainer import Trainer

from common import ALICE, machine, print_table, require, start, sync, write_json


def throughput(preset: str, precision: str, device: torch.device, steps: int, warmup: int = 5,
               compile_model: bool = False, **overrides) -> dict:
    model_options, corpus_config, config, _ = resolve(preset, precision=precision, device=device.type, **overrides)
    text = read_corpus(require(ALICE), corpus_config).text
    tokenizer = CharTokenizer.from_text(text)
    ids = tokenizer.encode(text)
    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, **model_options)).to(device).train()
    trainer = Trainer(model, config, device)
    call = torch.compile(model) if compile_model else model
    batches = epoch_batches(config, TokenSplit(ids, ids[:0]), config.batch_size, 0)
    stream = config.framing == "stream"
    carried = None
    data_s = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            start, data_s = time.perf_counter(), 0.0
        t = time.perf_counter()
        x_np, y_np = batches.batch(i % len(batches))
        x, y = torch.from_numpy(x_np).to(device), torch.from_numpy(y_np).to(device)
        data_s += time.perf_counter() - t
        if stream and i % len(batches) == 0:
            carried = None
        loss, carried = trainer.step(call, x, y, carried)
        loss.item()  # the training loop reads every loss, so time that sync too
    sync(device)
    seconds = time.perf_counter() - start
    params = model.num_parameters()
    positions = config.batch_size * config.seq_len * steps  # LSTM steps run
    targets = config.batch_size * (config.seq_len if stream else 1) * steps  # characters predicted
    flops = 6 * params * positions
    return {
        "preset": preset, "precision": precision, "ran_in": trainer.precision.precision,
        "choice": trainer.precision.to_dict(),
        "batch_size": config.batch_size, "seq_len": config.seq_len, "framing": config.framing,
        "threads": torch.get_num_threads(), "compiled": compile_model,
        "parameters": params, "steps": steps, "seconds": round(seconds, 3),
        "chars_per_second": targets / seconds, "lstm_steps_per_second": positions / seconds,
        "flops_per_second": flops / seconds, "data_ms_per_step": 1000 * data_s / steps,
    }


def attempt(preset: str, precision: str, device: torch.device, steps: int, warmup: int = 5,
            **overrides) -> dict | None:
    """A row, or None (said on the terminal) where this machine cannot train in ``precision``."""
    try:
        row = throughput(preset, precision, device, steps, warmup, **overrides)
    except LstmgenError as exc:
        print(f"{preset} in {precision}: not run: {exc}")
        return None
    row["choice_line"] = PrecisionChoice(**row["choice"]).describe("training")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before the timed ones (default 5)")
    parser.add_argument("--presets", nargs="+", default=["default", "tutorial-small", "tutorial-large"])
    parser.add_argument("--precisions", nargs="+", default=["auto", "fp32", "bf16"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", nargs="*", type=int, default=[],
                        help="also time the default preset at these batch sizes")
    parser.add_argument("--threads-sweep", action="store_true", help="also time the default preset on one thread")
    parser.add_argument("--compile", action="store_true", help="also time the default preset under torch.compile")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device, peak = start(args.device)
    rows = [r for p in args.presets for prec in args.precisions
            if (r := attempt(p, prec, device, args.steps, args.warmup))]
    for batch in args.batches:
        rows += [r for prec in args.precisions if (r := attempt("default", prec, device, args.steps, args.warmup,
                                                                          batch_size=batch))]
    threads = torch.get_num_threads()
    if args.threads_sweep and device.type == "cpu" and threads > 1:
        torch.set_num_threads(1)
        rows += [r for prec in args.precisions if (r := attempt("default", prec, device, args.steps, args.warmup))]
        torch.set_num_threads(threads)
    if args.compile:
        for prec in args.precisions:
            try:
                rows.append(throughput("default", prec, device, args.steps, args.warmup, compile_model=True))
            except Exception as exc:  # noqa: BLE001 - report and go on; compile support varies
                print(f"torch.compile ({prec}) failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    for r in rows:
        r["gflops"] = r["flops_per_second"] / 1e9
        r["mfu_fp32"] = r["flops_per_second"] / peak["fp32"]
        r["mfu_bf16"] = r["flops_per_second"] / peak["bf16"]
    for r in rows:
        if r["precision"] == "auto":
            print(f"{r['preset']} batch {r['batch_size']}: {r['choice_line']}")
    print_table(rows, [("preset", "preset", ""), ("precision", "precision", ""), ("ran_in", "ran in", ""),
                       ("batch_size", "batch", "d"),
                       ("threads", "threads", "d"), ("compiled", "compiled", ""), ("parameters", "params", ",d"),
                       ("chars_per_second", "chars/s", ",.0f"), ("lstm_steps_per_second", "LSTM steps/s", ",.0f"),
                       ("gflops", "GFLOP/s", ",.1f"), ("mfu_fp32", "of fp32 peak", ".1%"),
                       ("mfu_bf16", "of bf16 peak", ".1%"), ("data_ms_per_step", "data ms/step", ".3f")])
    ratios = {}
    for r in rows:
        base = next((b for b in rows if b["precision"] == "fp32" and all(
            b[k] == r[k] for k in ("preset", "batch_size", "threads", "compiled"))), None)
        if r["precision"] != "fp32" and base is not None:
            key = f"{r['preset']} batch {r['batch_size']} threads {r['threads']}"
            key += (" compiled" if r["compiled"] else "") + f" {r['precision']}"
            ratios[key] = r["chars_per_second"] / base["chars_per_second"]
            print(f"{key} / fp32 = {ratios[key]:.2f}×")
    write_json(args.json, {"machine": machine(device), "peak_flops_per_second": peak, "training": rows,
                           "speedup_over_fp32": ratios})


if __name__ == "__main__":
    main()
