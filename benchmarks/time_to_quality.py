"""Time to quality: how long the default recipe needs to reach the best
held-out loss that the tutorial's model reaches in a fixed budget.

    .venv/bin/python benchmarks/time_to_quality.py [--minutes 20] [--eval-max-tokens N] [--json out.json]

Both sides train with lstmgen on the same text and the same split: Alice,
lowercased as in the tutorial, the last 10% of characters held out.

1. ``tutorial-small`` (the tutorial's first model and framing) trains for
   --minutes; its best held-out loss is the target, and the training time at
   which it got there is the tutorial's time to quality.
2. The default recipe (default preset, lowercased text) validates every 5
   steps and stops at the first validation at or below the target.

Times are training time only (``train_s`` in metrics.jsonl: optimizer steps,
no validation or checkpoint writing), the same measure on both sides. Each
model is scored in its own framing: the tutorial's predicts each character
from the 100 before it, the default one with its state carried.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import lstmgen

from common import ALICE, machine, print_table, require, start, write_json


def run(preset: str, out: Path, **overrides) -> list[dict]:
    lstmgen.train(require(ALICE), out, preset, force=True, progress=False, log=lambda *_: None, **overrides)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def first_at_or_below(rows: list[dict], target: float) -> dict | None:
    return next((r for r in rows if r.get("val_loss_nats") is not None and r["val_loss_nats"] <= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="the tutorial model's budget")
    parser.add_argument("--default-minutes", type=float, default=5.0,
                        help="the default recipe's planned budget (its schedule); it stops at the target")
    parser.add_argument("--eval-max-tokens", type=int, default=None,
                        help="validate both runs on only the first N held-out characters (default: all of them)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    held_out = {} if args.eval_max_tokens is None else {"eval_max_tokens": args.eval_max_tokens}
    device, peak = start("auto")
    with tempfile.TemporaryDirectory() as tmp:
        tutorial = run("tutorial-small", Path(tmp) / "tutorial", max_minutes=args.minutes, epochs=1000,
                       **held_out)
        best = min((r for r in tutorial if r.get("val_loss_nats") is not None), key=lambda r: r["val_loss_nats"])
        target = best["val_loss_nats"]
        ours = run("default", Path(tmp) / "default", lowercase=True, eval_every=5, stop_at_loss=target,
                   max_minutes=args.default_minutes, **held_out)
    reached = first_at_or_below(ours, target)
    rows = [
        {"recipe": "tutorial-small", "budget_min": args.minutes, "best_val_loss_nats": target,
         "train_s_to_target": best["train_s"], "steps": best["step"], "epochs": best["epoch"]},
        {"recipe": "default", "budget_min": args.default_minutes,
         "best_val_loss_nats": reached["val_loss_nats"] if reached else min(
             r["val_loss_nats"] for r in ours if r.get("val_loss_nats") is not None),
         "train_s_to_target": reached["train_s"] if reached else None,
         "steps": reached["step"] if reached else ours[-1]["step"], "epochs": (reached or ours[-1])["epoch"]},
    ]
    print_table(rows, [("recipe", "recipe", ""), ("budget_min", "budget min", ".1f"),
                       ("best_val_loss_nats", "held-out nats", ".4f"),
                       ("train_s_to_target", "train s to target", ",.1f"),
                       ("steps", "steps", ",d"), ("epochs", "epochs", ".2f")])
    ratio = best["train_s"] / reached["train_s"] if reached else None
    if ratio:
        print(f"time to quality: default recipe {reached['train_s']:.1f} s vs tutorial-small {best['train_s']:.1f} s "
              f"→ {ratio:,.0f}× faster")
    else:
        print("the default recipe did not reach the target within its budget")
    write_json(args.json, {"machine": machine(device), "peak_flops_per_second": peak, "target_nats": target,
                           "eval_max_tokens": args.eval_max_tokens, "rows": rows, "ratio": ratio,
                           "tutorial_history": tutorial, "default_history": ours})


if __name__ == "__main__":
    main()
