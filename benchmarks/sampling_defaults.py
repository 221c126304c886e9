"""Choose the default sampling settings by measurement: for each model and
each candidate setting, the samples report at the setting's own temperature
and at temperature 0.5, against plain temperature 0.8, argmax and held-out
text.

    .venv/bin/python benchmarks/sampling_defaults.py \\
        --model bundled= --model shakespeare=runs/ts-5min --model words=runs/alice-words \\
        --held-out bundled=../shared/corpora/alice-gutenberg-11-utf8.txt \\
        --candidate "dry_multiplier=0.8" --candidate "dry_multiplier=0.8,temperature=0.7" \\
        --json benchmarks/results/sampling-defaults.json

A candidate passes on a model when none of its texts loops (a unit of 10 or
more characters said 3 or more times back to back), neither at its own
temperature nor at 0.5, and when its distinct-1..4 and seq-rep-4 sit closer
to held-out text's than plain temperature 0.8's do: the sum of the five
gaps is smaller. (Each gap on its own cannot always close: on these models
plain sampling has fewer distinct words than held-out text but more
distinct 3- and 4-grams, and temperature moves both the same way.)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import lstmgen
from common import machine, pick_device, print_table, write_json

DIVERSITY = ("distinct_1", "distinct_2", "distinct_3", "distinct_4", "seq_rep_4")


def named(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq:
            sys.exit(f"sampling_defaults: {pair!r} is not NAME=VALUE")
        out[name] = value
    return out


def report(model, held_out: str, settings: dict, samples: int, length: int, seed: int, training) -> dict:
    rows = lstmgen.samples_report(model, settings, held_out, samples, length, seed=seed, training=training)
    return {r["setting"]: r for r in rows}


def judge(rows: dict, candidate: str, cooler: str) -> dict:
    held, plain = rows["held-out text"], rows["temperature=0.8"]
    mine = rows[candidate]
    closer = {k: abs(mine[k] - held[k]) <= abs(plain[k] - held[k]) for k in DIVERSITY}
    distance = sum(abs(mine[k] - held[k]) for k in DIVERSITY)
    plain_distance = sum(abs(plain[k] - held[k]) for k in DIVERSITY)
    return {"loops": mine["loops"], "loops_at_0.5": rows[cooler]["loops"], "closer": closer,
            "distance": distance, "plain_distance": plain_distance,
            "passes": mine["loops"] == 0 and rows[cooler]["loops"] == 0 and distance < plain_distance}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=RUN_DIR",
                        help="a model to judge on; an empty RUN_DIR is the bundled model")
    parser.add_argument("--held-out", action="append", default=[], metavar="NAME=TEXT_FILE",
                        help="held-out text for a model without its own split (its last SAMPLES × LENGTH characters)")
    parser.add_argument("--train-text", action="append", default=[], metavar="NAME=TEXT_FILE",
                        help="training text for the copying columns of a model without its own")
    parser.add_argument("--candidate", action="append", required=True, metavar="SETTING",
                        help="NAME=VALUE[,NAME=VALUE] on top of SampleConfig's current defaults")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--length", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args()
    held_files, train_files = named(args.held_out), named(args.train_text)
    print(f"machine: {machine(pick_device('cpu'))}; {args.samples} texts × {args.length:,} characters")
    # Candidates are given on top of plain sampling, whatever SampleConfig's defaults are now.
    neutral = lstmgen.SampleConfig.plain(temperature=0.8)
    results = {}
    for name, run_dir in named(args.model).items():
        model = lstmgen.load(run_dir or None)
        if name in held_files:
            held_out = lstmgen.read_corpus(held_files[name], model.corpus_config).text[-args.samples * args.length:]
        else:
            held_out = model.held_out_text(args.samples * args.length)
        training = model.training_text(train_files.get(name)) if (name in train_files or run_dir) else None
        settings = {"temperature=0": dataclasses.replace(neutral, temperature=0.0),
                    "temperature=0.8": neutral, "temperature=0.5": dataclasses.replace(neutral, temperature=0.5),
                    "default": lstmgen.SampleConfig()}
        for text in args.candidate:
            config = lstmgen.parse_setting(text, neutral)
            settings[text] = config
            settings[f"{text} @0.5"] = dataclasses.replace(config, temperature=0.5)
        rows = report(model, held_out, settings, args.samples, args.length, args.seed, training)
        verdicts = {text: judge(rows, text, f"{text} @0.5") for text in args.candidate}
        results[name] = {"run_dir": run_dir or "bundled", "rows": list(rows.values()), "verdicts": verdicts}
        print(f"\n{name} ({run_dir or 'bundled'})")
        columns = [("setting", "setting", ""), ("loops", "loops", "d"), ("longest_repeat", "longest repeat", ""),
                   ("repeated_share", "in repeats", ".1%"), *((k, k.replace("_", "-"), ".3f") for k in DIVERSITY),
                   *([("longest_copy_chars", "longest copy", "d"), ("copied_20grams", "copied 20-grams", ".1%")]
                     if training else []), ("loss_nats", "loss nats", ".3f")]
        print_table(list(rows.values()), columns)
        for text, v in verdicts.items():
            print(f"  {text}: {'passes' if v['passes'] else 'fails'} (loops {v['loops']}, at 0.5 {v['loops_at_0.5']}; "
                  f"distance to held-out {v['distance']:.3f} against plain 0.8's {v['plain_distance']:.3f}; "
                  f"closer on {', '.join(k for k, ok in v['closer'].items() if ok) or 'none'})")
    write_json(args.json, {"samples": args.samples, "length": args.length, "seed": args.seed, "models": results})


if __name__ == "__main__":
    main()
