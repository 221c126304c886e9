"""Item framing against a stream: the same text, model, size and minutes.

    .venv/bin/python benchmarks/items.py CORPUS --framing lines|sentences [--minutes 5] [--samples 1000]
        [--out-dir runs/items-bench] [--json out.json] [--train-args "--hidden-size 256 ..."]

Trains two models with lstmgen's default preset (or the given options) for
the same minutes, one with ``--framing lines`` or ``sentences`` and one as a
stream, then scores both on the item model's held-out items (the last 10%
of them): the item model reads each from a fresh state and predicts its end
token; the stream model reads them joined by a newline (lines) or a space
(sentences) and predicts that separator where the item model predicts the
end, so both predict exactly one symbol per character plus one per item.
The stream model is also scored on its own held-out split.

Then ``--samples`` items from each: the item model's stop at their end
token; the stream model's start after a newline and are cut by the same
splitter that cut the corpus. Reported: lengths against the held-out items, the
share found verbatim among the training items (for names: not new), the
share that never ended within 4 × the longest held-out item, and 20 of each.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

import lstmgen
from common import machine, write_json
from lstmgen.sampling.item_report import generate_items, length_summary
from lstmgen.text.items import ITEM_SPLITTERS

SEPARATOR = {"lines": "\n", "sentences": " "}


def train(corpus: str, out: Path, framing: str, minutes: float, extra: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lstmgen", "train", corpus, "--out", str(out), "--framing", framing,
                    "--max-minutes", str(minutes), "--quiet", "--force", *extra], check=True)
    return time.perf_counter() - start


def stream_on_items(model, items: list[str], separator: str):
    """The stream model on the items joined by ``separator``, after one
    leading separator (its first character is context, not scored)."""
    text = separator + separator.join(items) + separator
    return model.evaluate_ids(model.tokenizer.encode(model.prepare_text(text).text))


def stream_items(model, framing: str, count: int, limit: int, seed: int) -> tuple[list[str], list[bool]]:
    """``count`` items from a stream model: each from a fresh state after a
    newline, cut by the item model's own splitter; it ended if the text went
    on past it within ``limit`` tokens."""
    config = lstmgen.SampleConfig(num_samples=count, seed=seed, max_new_tokens=limit)
    cut = [ITEM_SPLITTERS[framing](text) for text in model.generate("\n", config)]
    return [items[0] if items else "" for items in cut], [len(items) > 1 for items in cut]


def summary(items: list[str], ended: list[bool], training: set[str]) -> dict:
    done = [item for item, end in zip(items, ended) if end]
    return {"count": len(items), "unfinished_share": 1 - len(done) / len(items),
            "in_training_share": sum(i in training for i in done) / max(len(done), 1),
            "new_share": 1 - sum(i in training for i in done) / max(len(done), 1),
            **length_summary(done), "first_20": done[:20]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus")
    parser.add_argument("--framing", choices=["lines", "sentences"], required=True)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default="runs/items-bench")
    parser.add_argument("--train-args", default="", help="extra lstmgen train options for both runs")
    parser.add_argument("--skip-training", action="store_true", help="score runs already in --out-dir")
    parser.add_argument("--json")
    args = parser.parse_args()
    out = Path(args.out_dir)
    runs = {"items": out / args.framing, "stream": out / "stream"}
    seconds = {}
    if not args.skip_training:
        for name, run in runs.items():
            seconds[name] = train(args.corpus, run, args.framing if name == "items" else "stream", args.minutes,
                                  shlex.split(args.train_args))
    item_model, stream_model = lstmgen.load(runs["items"]), lstmgen.load(runs["stream"])
    held_out, training = item_model.split_items("val"), set(item_model.split_items("train"))
    separator = SEPARATOR[args.framing]
    scores = {"items_on_items": item_model.evaluate_validation().to_dict(),
              "stream_on_items": stream_on_items(stream_model, held_out, separator).to_dict(),
              "stream_on_own_split": stream_model.evaluate_validation().to_dict()}
    limit = 4 * max(len(item_model.tokenizer.encode(i)) for i in held_out) + 1
    config = lstmgen.SampleConfig(num_samples=args.samples, seed=args.seed, max_new_tokens=limit)
    samples = {"items": summary(*generate_items(item_model, config), training),
               "stream": summary(*stream_items(stream_model, args.framing, args.samples, limit, args.seed), training),
               "held_out": summary(held_out, [True] * len(held_out), training)}
    print(f"machine: {machine(item_model.model.head.weight.device)}")
    for name, score in scores.items():
        print(f"{name:>20}: {score['loss_nats']:.4f} nats/token, {score['bits_per_char']:.4f} bits/char "
              f"over {score['tokens']:,} tokens")
    for name, s in samples.items():
        print(f"{name:>9}: {s['count']} items, {s['unfinished_share']:.1%} unfinished, {s['new_share']:.1%} new, "
              f"length mean {s['mean_chars']:.1f} (p10 {s['p10_chars']:.0f}, median {s['median_chars']:.0f}, "
              f"p90 {s['p90_chars']:.0f})")
        print("           " + " | ".join(s["first_20"]))
    write_json(args.json, {"machine": machine(item_model.model.head.weight.device), "corpus": args.corpus,
                           "framing": args.framing, "minutes": args.minutes, "train_args": args.train_args,
                           "wall_seconds": seconds, "scores": scores, "samples": samples})


if __name__ == "__main__":
    main()
