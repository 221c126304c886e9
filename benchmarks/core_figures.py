"""Training and generation throughput of the core presets on this machine.

    .venv/bin/python benchmarks/core_figures.py [--steps 30] [--json out.json]

Training: characters per second for the default preset and tutorial-small on
Alice, timed over steady-state optimizer steps (after warm-up steps, without
evaluation or checkpointing). For the tutorial's window framing each window
predicts one character, so its "characters per second" is windows per second;
the LSTM also steps through the 100 characters of every window, shown as
lstm_steps_per_second.

Generation: single-stream characters per second of the bundled model (or
--run), and the time to the first new character.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import lstmgen
from lstmgen.corpus import read_corpus
from lstmgen.data import StreamBatches, WindowBatches
from lstmgen.generate import SampleConfig
from lstmgen.model import LSTMLanguageModel, ModelConfig
from lstmgen.presets import resolve
from lstmgen.tokenizer import CharTokenizer

CORPORA = Path(os.environ.get("LSTMGEN_CORPORA", Path(__file__).resolve().parents[2] / "shared" / "corpora"))


def training_throughput(preset: str, steps: int, warmup: int = 3) -> dict:
    model_options, corpus_config, train_config, _ = resolve(preset)
    text = read_corpus(CORPORA / "alice-gutenberg-11-utf8.txt", corpus_config).text
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig(vocab_size=tok.vocab_size, **model_options)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr)
    windows = train_config.framing == "windows"
    if windows:
        batches = WindowBatches(ids, train_config.batch_size, train_config.seq_len, np.random.default_rng(0))
    else:
        batches = StreamBatches(ids, train_config.batch_size, train_config.seq_len)
    state = None
    chars = 0
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
            chars = 0
        x, y = (torch.from_numpy(a) for a in batches.batch(i % len(batches)))
        if windows:
            _, loss, _ = model(x, None, y, last_only=True)
        else:
            _, loss, state = model(x, state, y)
            state = (state[0].detach(), state[1].detach())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if train_config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
        optimizer.step()
        chars += x.shape[0] * (1 if windows else x.shape[1])
    seconds = time.perf_counter() - start
    return {
        "preset": preset, "parameters": model.num_parameters(), "steps": steps, "seconds": round(seconds, 3),
        "train_chars_per_second": round(chars / seconds, 1),
        "lstm_steps_per_second": round(chars * (train_config.seq_len if windows else 1) / seconds, 1),
    }


def generation_throughput(run: str | None, chars: int) -> dict:
    model = lstmgen.load(run)
    config = SampleConfig(max_new_tokens=chars, temperature=0.8, seed=0)
    start = time.perf_counter()
    first = None
    count = 0
    for _ in model.stream("Alice was beginning to get very tired", config):
        if first is None:
            first = time.perf_counter() - start
        count += 1
    seconds = time.perf_counter() - start
    return {"model": run or "bundled", "chars": count, "seconds": round(seconds, 3),
            "chars_per_second": round(count / seconds, 1), "first_char_ms": round(first * 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--gen-chars", type=int, default=5000)
    parser.add_argument("--run", default=None, help="model for the generation figure (default: bundled)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "torch": torch.__version__, "threads": torch.get_num_threads(), "python": sys.version.split()[0]}
    try:
        with open("/proc/cpuinfo") as f:
            machine["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    rows = [training_throughput(p, args.steps) for p in ("default", "tutorial-small")]
    gen = generation_throughput(args.run, args.gen_chars)
    print(f"machine: {machine}")
    print(f"{'preset':16} {'params':>10} {'train chars/s':>14} {'LSTM steps/s':>14}")
    for r in rows:
        print(f"{r['preset']:16} {r['parameters']:>10,} {r['train_chars_per_second']:>14,.0f} "
              f"{r['lstm_steps_per_second']:>14,.0f}")
    print(f"generation ({gen['model']}, 1 stream): {gen['chars_per_second']:,.0f} chars/s, "
          f"first character after {gen['first_char_ms']:.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "training": rows, "generation": gen}, indent=2))


if __name__ == "__main__":
    main()
