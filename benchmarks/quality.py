"""Quality: the best held-out loss each recipe reaches, against wall-clock time.

    .venv/bin/python benchmarks/quality.py [--corpora tinyshakespeare alice alice-lower]
        [--recipes cpu-5min cpu-20min] [--minutes M] [--runs DIR] [--plots DIR] [--json out.json]
    .venv/bin/python benchmarks/quality.py --from-json results/quality-*.json   # table and plots again

Corpora (from LSTMGEN_CORPORA, default ../shared/corpora), each split as
nanoGPT splits Tiny Shakespeare: the first 90% of characters train, the last
10% are held out.

- ``tinyshakespeare``: tinyshakespeare.txt, as it is.
- ``alice``: alice-gutenberg-11-utf8.txt, Gutenberg header and footer removed, case kept.
- ``alice-lower``: the same, lowercased as in the tutorial.

Every recipe is a preset trained as a user would train it (its own budget,
schedule and validation interval; --minutes overrides the budget). The
clock is the run's wall-clock time, validation and checkpoint writing
included. For each run the table gives the best held-out loss in nats and
bits per character and the minute it was reached, and one PNG per corpus
draws every recipe's held-out loss against minutes, beside the published
anchors and this issue's targets.

The anchors are not measured here. nanoGPT's character-level Transformer
scores the mean loss of random 256-character blocks, each character with
at most 255 before it; lstmgen scores the held-out text in one pass, each
character with all the text before it. The numbers are the same quantity
(mean negative log-likelihood per character, nats) on the same characters,
but not the same protocol.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import lstmgen
from lstmgen.checkpoint import load_checkpoint

from common import CORPORA, machine, print_table, require, start, write_json

CORPUS_FILES = {
    "tinyshakespeare": ("tinyshakespeare.txt", {}),
    "alice": ("alice-gutenberg-11-utf8.txt", {}),
    "alice-lower": ("alice-gutenberg-11-utf8.txt", {"lowercase": True}),
}

# Results to compare with, and where they come from: nanoGPT's published
# figures, and the tutorial's first model as lstmgen measured it on this
# benchmark's lowercased Alice split (benchmarks/time_to_quality.py).
ANCHORS = {
    "tinyshakespeare": [
        {"label": "nanoGPT, A100, ~3 min", "loss_nats": 1.4697,
         "source": "github.com/karpathy/nanoGPT README, shakespeare_char (val loss 1.4697)"},
        {"label": "nanoGPT CPU recipe, ~3 min", "loss_nats": 1.88,
         "source": "github.com/karpathy/nanoGPT README, 'I only have a macbook' (val loss ~1.88)"},
    ],
    "alice-lower": [
        {"label": "tutorial-small, 20 min on 2 cores", "loss_nats": 2.3630,
         "source": "benchmarks/results/time_to_quality.json (best of tutorial-small in 20 minutes, same split)"},
    ],
}

# This targets on a 2-core CPU: (corpus, budget in minutes) -> nats.
TARGETS = {
    ("tinyshakespeare", 5): 1.65,
    ("tinyshakespeare", 20): 1.47,
    ("tinyshakespeare", 60): 1.40,
    ("alice", 10): 1.40,
}


def read_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(corpus: str, recipe: str, budget_min: float, rows: list[dict], parameters: int) -> dict:
    scored = [r for r in rows if r.get("val_loss_nats") is not None]
    if not scored:
        raise SystemExit(f"benchmark: the {recipe} run on {corpus} never validated; give it a longer budget")
    best = min(scored, key=lambda r: r["val_loss_nats"])
    target = TARGETS.get((corpus, round(budget_min))) if math.isfinite(budget_min) else None  # epochs, no clock
    return {
        "corpus": corpus, "recipe": recipe, "budget_min": budget_min, "parameters": parameters,
        "best_val_loss_nats": best["val_loss_nats"], "best_val_bits_per_char": best["val_bits_per_char"],
        "best_at_min": best["elapsed_s"] / 60, "best_step": best["step"], "best_epoch": best["epoch"],
        "last_val_loss_nats": scored[-1]["val_loss_nats"], "minutes": rows[-1]["elapsed_s"] / 60,
        "train_chars_per_second": rows[-1]["train_chars_per_second"],
        "target_nats": target, "target_met": None if target is None else best["val_loss_nats"] <= target,
        "curve": [{"minutes": round(r["elapsed_s"] / 60, 4), "step": r["step"], "val_loss_nats": r["val_loss_nats"],
                   "train_loss_nats": r["train_loss_nats"]} for r in scored],
    }


def plot(corpus: str, results: list[dict], path: Path, targets: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5), dpi=110)
    for r in results:
        xs = [p["minutes"] for p in r["curve"]]
        ax.plot(xs, [p["val_loss_nats"] for p in r["curve"]], marker=".", label=f"{r['recipe']} (held-out)")
        ax.plot(xs, [p["train_loss_nats"] for p in r["curve"]], linestyle=":", alpha=0.6,
                color=ax.lines[-1].get_color(), label=f"{r['recipe']} (training, last 50 steps)")
    for anchor in ANCHORS.get(corpus, []):
        ax.axhline(anchor["loss_nats"], color="grey", linestyle="--", linewidth=1)
        # At the right edge: the curves fall steeply through the left one.
        ax.annotate(anchor["label"], (1, anchor["loss_nats"]), xycoords=("axes fraction", "data"),
                    textcoords="offset points", xytext=(-4, 3), ha="right", fontsize=8, color="grey")
    for (name, minutes), nats in TARGETS.items():
        if targets and name == corpus:
            ax.plot([minutes], [nats], marker="v", color="black", linestyle="none")
            ax.annotate(f"target, {minutes} min on 2 cores", (minutes, nats), textcoords="offset points", xytext=(4, -12),
                        fontsize=8)
    best = min(p["val_loss_nats"] for r in results for p in r["curve"])
    # Low enough to show the training curves too: their gap to the held-out loss is the overfitting.
    lowest = min([best] + [p["train_loss_nats"] for r in results for p in r["curve"]])
    highest_anchor = max((a["loss_nats"] for a in ANCHORS.get(corpus, [])), default=0.0)
    ax.set_ylim(lowest - 0.05, max(best + 0.8, highest_anchor + 0.1))
    ax.set_xlabel("wall-clock minutes (validation and checkpoints included)")
    ax.set_ylabel("loss, nats per character")
    ax.set_title(f"{corpus}: held-out loss (last 10%) against time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes, off every curve and label
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", nargs="+", choices=list(CORPUS_FILES), default=["tinyshakespeare", "alice"])
    parser.add_argument("--recipes", nargs="+", default=["cpu-5min"], help="presets to train (default cpu-5min)")
    parser.add_argument("--minutes", type=float, default=None, help="override every recipe's budget")
    parser.add_argument("--runs", default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--plots", default="results", help="folder for the PNGs (default benchmarks/results)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=None)
    parser.add_argument("--from-json", nargs="+", metavar="JSON",
                        help="train nothing: print the table and draw the plots of these earlier results together")
    args = parser.parse_args()
    if args.from_json:
        report([dict(r, device=r.get("device") or data["machine"]["device"])
                for data in map(json.loads, map(Path.read_text, map(Path, args.from_json)))
                for r in data["results"]], args.plots)
        return
    device, peak = start(args.device)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(args.runs) if args.runs else Path(tmp)
        for corpus in args.corpora:
            name, corpus_options = CORPUS_FILES[corpus]
            path = require(CORPORA / name)
            for recipe in args.recipes:
                out = runs / corpus / recipe
                print(f"training {recipe} on {corpus} into {out}", flush=True)
                overrides = dict(corpus_options, val_fraction=0.1, device=args.device)
                if args.minutes is not None:
                    overrides["max_minutes"] = args.minutes
                lstmgen.train(path, out, recipe, force=True, progress=False, log=lambda *_: None, **overrides)
                config = json.loads((out / "last" / "config.json").read_text())
                budget = config["train"]["max_minutes"] or math.nan
                parameters = sum(p.numel() for p in load_checkpoint(out / "best").model.parameters())
                results.append(dict(summarize(corpus, recipe, budget, read_rows(out), parameters),
                                    device=str(device)))
    report(results, args.plots)
    write_json(args.json, {"machine": machine(device), "peak_flops_per_second": peak, "anchors": ANCHORS,
                           "results": results})


def report(results: list[dict], plots_dir: str) -> None:
    columns = [("corpus", "corpus", ""), ("recipe", "recipe", ""), ("device", "device", ""),
               ("budget_min", "budget min", ".1f"), ("parameters", "params", ","), ("best_val_loss_nats", "best held-out nats", ".4f"),
               ("best_val_bits_per_char", "bits/char", ".3f"), ("best_at_min", "at min", ".1f"),
               ("train_chars_per_second", "chars/s", ",.0f"), ("target_nats", "target", ".2f"),
               ("target_met", "met", "")]
    print_table([dict(r, target_met=None if r["target_met"] is None else ("yes" if r["target_met"] else "no"))
                 for r in results], columns)
    plots = Path(plots_dir)
    if not plots.is_absolute():
        plots = Path(__file__).resolve().parent / plots
    groups: dict[tuple[str, str], list[dict]] = {}  # one plot per corpus and kind of device
    for r in results:
        groups.setdefault((r["corpus"], r["device"].split(":")[0]), []).append(r)
    for (corpus, device), mine in groups.items():
        # The targets are for a 2-core CPU; on a GPU they would only squash the curves.
        name = f"quality-{corpus}.png" if device == "cpu" else f"quality-{corpus}-{device}.png"
        plot(corpus, mine, plots / name, targets=device == "cpu")


if __name__ == "__main__":
    main()
