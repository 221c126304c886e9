"""Window-trained models (the tutorial's presets, imported Keras models):
generating from rolling windows, as trained, against one state carried
through the text.

    .venv/bin/python benchmarks/window_generation.py RUN_DIR [--samples 20] [--length 1000] [--json out.json]

For the run's own held-out split: the loss of each way (each token
predicted from its 100-token window, or from one state through the whole
split), the samples-report statistics of each way's text (same seed,
temperature 0.85, no anti-loop processors, so that only the way differs),
and the speed of each, beside the tutorial's own method in PyTorch
(re-reading the whole window for every character).
"""

from __future__ import annotations

import argparse
import time

import torch

import lstmgen
from common import machine, pick_device, print_table, write_json
from lstmgen.evaluate import evaluate_stream, evaluate_windows


def held_out_losses(model) -> dict:
    _, val = model._validation_ids("the run holds no validation split")
    window = model.unscored_tokens
    sliding = evaluate_windows(model.model, val, window)
    # The same tokens scored: those after the first window.
    stateful = evaluate_stream(model.model, val)
    stateful_tail = _stateful_loss_after(model.model, val, window)
    return {"tokens": int(len(val)), "sliding_nats": sliding.loss_nats, "stateful_nats_same_tokens": stateful_tail,
            "stateful_nats_all_tokens": stateful.loss_nats}


@torch.inference_mode()
def _stateful_loss_after(model, ids, skip: int) -> float:
    x = torch.as_tensor(ids[:-1], dtype=torch.long).unsqueeze(0)
    logits, _, _ = model(x, None)
    losses = torch.nn.functional.cross_entropy(logits[0].float(), torch.as_tensor(ids[1:], dtype=torch.long),
                                               reduction="none")
    return float(losses[skip - 1:].mean())


def speed(model, way: str, streams: int, chars: int = 300) -> float:
    config = lstmgen.SampleConfig(max_new_tokens=chars, num_samples=streams, seed=0, precision="fp32",
                                  window_generation=way)
    prompt = model.random_prompt(0)
    start = time.perf_counter()
    model.generate(prompt, config)
    return streams * chars / (time.perf_counter() - start)


@torch.inference_mode()
def tutorial_speed(model, chars: int = 100) -> float:
    """The tutorial's loop in PyTorch: the whole window read again for each character."""
    ids = model.tokenizer.encode(model.prepare_text(model.random_prompt(0)).text).tolist()
    window = model.unscored_tokens
    pattern = ids[-window:]
    start = time.perf_counter()
    for _ in range(chars):
        logits, _, _ = model.model(torch.tensor([pattern]), None, last_only=True)
        pattern = pattern[1:] + [int(logits[0].argmax())]
    return chars / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--json")
    args = parser.parse_args()
    print(f"machine: {machine(pick_device('cpu'))}")
    model = lstmgen.load(args.run_dir)
    if model.framing != "windows":
        raise SystemExit(f"{args.run_dir} was trained on a stream, not on windows")
    losses = held_out_losses(model)
    print(f"held-out loss over {losses['tokens']:,} tokens: sliding {losses['sliding_nats']:.4f} nats, stateful "
          f"{losses['stateful_nats_same_tokens']:.4f} on the same tokens ({losses['stateful_nats_all_tokens']:.4f} on all)")
    base = lstmgen.SampleConfig.plain()
    settings = {way: lstmgen.SampleConfig(**dict(base.to_dict(), window_generation=way)) for way in ("sliding", "stateful")}
    held = model.held_out_text(args.samples * args.length)
    rows = lstmgen.samples_report(model, settings, held, args.samples, args.length, seed=0)
    print_table(rows, [("setting", "setting", "s"), ("loops", "loops", "d"), ("distinct_4", "distinct-4", ".3f"),
                       ("seq_rep_4", "seq-rep-4", ".3f"), ("repeated_share", "repeated", ".3f"),
                       ("loss_nats", "own loss", ".3f")])
    speeds = {"sliding_1": speed(model, "sliding", 1), "sliding_16": speed(model, "sliding", 16),
              "stateful_1": speed(model, "stateful", 1), "stateful_16": speed(model, "stateful", 16),
              "tutorial_loop_1": tutorial_speed(model)}
    for key, value in speeds.items():
        print(f"{key:>16}: {value:,.0f} chars/s")
    write_json(args.json, {"machine": machine(pick_device("cpu")), "run": args.run_dir, "losses": losses,
                           "report": rows, "chars_per_second": speeds})


if __name__ == "__main__":
    main()
