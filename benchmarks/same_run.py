"""A fingerprint of one seeded training run, to show that a change of code
changed no behaviour.

    .venv/bin/python benchmarks/same_run.py --out RUN_DIR [--json fingerprint.json]
    .venv/bin/python benchmarks/same_run.py --compare before.json after.json

``--flags`` adds training flags to the first run (for example the plateau
schedule and patience, to cover those decisions too).

The run: Alice, the default preset, seed 0, 30 steps with a checkpoint every
20 and an evaluation every 10, then a resume of the same run up to step 60.
The fingerprint holds the SHA-256 of the weights and optimizer state in
best/ and last/, and every row of metrics.jsonl without its clock figures
(elapsed_s, train_s, train_chars_per_second), and the position in
last/trainer_state.json without them. Run it on two commits, then
compare the two files: any difference is printed, and the exit status is 1.
Everything goes through the command line, so it works on any commit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from common import ALICE, require, write_json

CLOCK_KEYS = {"elapsed_s", "train_s", "train_chars_per_second"}
HASHED = ["best/model.safetensors", "last/model.safetensors", "last/trainer_state.safetensors"]


def lstmgen(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "lstmgen", *args, "--quiet"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"same_run: lstmgen {' '.join(args)} failed:\n{done.stderr}")


def train_with_a_resume(run: Path, flags: list[str]) -> None:
    lstmgen("train", str(require(ALICE)), "--out", str(run), "--force", "--seed", "0", "--max-steps", "30",
            "--checkpoint-every", "20", "--eval-every", "10",
            # A clock limit would make the fingerprint depend on the machine's speed.
            "--max-minutes", "600", *flags)
    lstmgen("train", "--resume", str(run), "--max-steps", "60")


def fingerprint(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {
        "sha256": {name: hashlib.sha256((run / name).read_bytes()).hexdigest() for name in HASHED},
        "metrics": [{k: v for k, v in row.items() if k not in CLOCK_KEYS} for row in rows],
        "last_position": {k: v for k, v in json.loads((run / "last" / "trainer_state.json").read_text())["position"].items()
                          if k not in CLOCK_KEYS},
    }


def compare(before: dict, after: dict) -> list[str]:
    differences = [f"{name}: {before['sha256'][name]} -> {after['sha256'].get(name)}"
                   for name in before["sha256"] if before["sha256"][name] != after["sha256"].get(name)]
    if len(before["metrics"]) != len(after["metrics"]):
        differences.append(f"metrics rows: {len(before['metrics'])} -> {len(after['metrics'])}")
    for a, b in zip(before["metrics"], after["metrics"]):
        if a != b:
            differences.append(f"metrics row at step {a.get('step')}: {a} -> {b}")
    if before["last_position"] != after["last_position"]:
        differences.append(f"last position: {before['last_position']} -> {after['last_position']}")
    return differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="run directory to train into (overwritten)")
    parser.add_argument("--json", default=None, help="write the fingerprint here")
    parser.add_argument("--flags", default="", help="more training flags, e.g. '--lr-schedule plateau --patience 2'")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="two fingerprint files")
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(Path(p).read_text()) for p in args.compare)
        differences = compare(before, after)
        for line in differences:
            print(line)
        print(f"{len(differences)} differences; compared {', '.join(before['sha256'])} "
              f"and {len(before['metrics'])} metrics rows")
        sys.exit(1 if differences else 0)
    if args.out is None:
        parser.error("give --out RUN_DIR, or --compare BEFORE AFTER")
    train_with_a_resume(args.out, args.flags.split())
    result = fingerprint(args.out)
    print(json.dumps(result["sha256"], indent=1))
    print(f"{len(result['metrics'])} metrics rows; last position {result['last_position']}")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
