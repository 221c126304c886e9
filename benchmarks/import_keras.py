"""A tutorial checkpoint imported and generated from, against Keras's own generation.

    .venv/bin/python benchmarks/import_keras.py [--file tutorial-small.h5] [--chars 1000]
        [--keras-python PATH] [--keras-chars 200] [--json out.json]

In one run, on one of the real Keras checkpoints in shared/fixtures/keras-tutorial:

- ``lstmgen import-keras`` as a user runs it (a subprocess: its start-up included);
- ``lstmgen generate RUN --plain --temperature 0`` from the fixture's seed window, as a user
  runs it (a subprocess), and the same generation inside this process: the tutorial's greedy
  text, each character predicted from the last 100 read from an empty state (rolling windows);
- the same model stepped statefully, and 16 streams of rolling windows, for contrast;
- with ``--keras-python``, a Python that has Keras and TensorFlow (``pip install keras
  tensorflow-cpu`` in a separate environment): the tutorial's own loop there, ``model.predict``
  on the window for every character and its argmax, on the same file and seed window. Its
  characters are compared with lstmgen's one by one, and its probabilities at every step with
  lstmgen's model on the same windows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import lstmgen
from common import CORPORA, machine, print_table, require, write_json

FIXTURES = CORPORA.parent / "fixtures" / "keras-tutorial"

# Runs in the Keras environment: the tutorial's generation loop, timed.
KERAS_LOOP = r"""
import json, sys, time
import numpy as np
import keras
path, seed_json, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
seed = json.loads(seed_json)
vocab = int(sys.argv[4])
model = keras.models.load_model(path, compile=False)
pattern, out, probs = list(seed), [], []
x = np.reshape(pattern, (1, len(pattern), 1)) / float(vocab)
model.predict(x, verbose=0)  # the first call builds the graph; the tutorial's loop pays it once too
start = time.perf_counter()
for _ in range(count):
    x = np.reshape(pattern, (1, len(pattern), 1)) / float(vocab)
    p = model.predict(x, verbose=0)[0]
    index = int(np.argmax(p))
    out.append(index)
    probs.append(p.tolist())
    pattern = pattern[1:] + [index]
seconds = time.perf_counter() - start
print(json.dumps({"ids": out, "probs": probs, "seconds": seconds, "keras": keras.__version__,
                  "backend": keras.backend.backend()}))
"""


def timed_command(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "lstmgen", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"benchmark: lstmgen {args[0]} failed: {result.stderr.strip()[-500:]}")
    return seconds, result


def in_process(model, prompt: str, config: lstmgen.SampleConfig) -> dict:
    model.generate(prompt, lstmgen.SampleConfig(**dict(config.to_dict(), max_new_tokens=5)))  # warm up
    start = time.perf_counter()
    texts = model.generate(prompt, config)
    seconds = time.perf_counter() - start
    chars = sum(len(t) for t in texts)
    return {"texts": texts, "seconds": seconds, "chars_per_second": chars / seconds}


def keras_side(python: str, path: Path, seed: list[int], count: int, vocab: int) -> dict:
    result = subprocess.run([python, "-c", KERAS_LOOP, str(path), json.dumps(seed), str(count), str(vocab)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"benchmark: the Keras loop failed: {result.stderr.strip()[-800:]}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    data["chars_per_second"] = count / data["seconds"]
    return data


@torch.inference_mode()
def largest_probability_difference(model, seed: list[int], keras: dict) -> float:
    """max |p_keras - p_lstmgen| over every step of Keras's loop, lstmgen's model reading the same
    windows (the seed, then Keras's own characters, 100 at a time) from an empty state."""
    ids, window = list(seed) + keras["ids"], len(seed)
    windows = torch.tensor([ids[k:k + window] for k in range(len(keras["ids"]))])  # (steps, window)
    logits, _, _ = model.model(windows, None, last_only=True)
    ours = torch.softmax(logits.double(), dim=-1)
    return float((ours - torch.tensor(keras["probs"], dtype=torch.float64)).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", default="tutorial-small.h5", help="a file in shared/fixtures/keras-tutorial")
    parser.add_argument("--chars", type=int, default=1000)
    parser.add_argument("--keras-python", default=None, help="a Python with keras and tensorflow installed")
    parser.add_argument("--keras-chars", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    weights = require(FIXTURES / args.file)
    expected = json.loads(require(FIXTURES / f"{args.file.split('.')[0]}.expected.json").read_text())
    corpus = require(CORPORA / expected["corpus_file"])
    print(f"machine: {machine(torch.device('cpu'))}")
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        import_s, _ = timed_command("import-keras", str(weights), "--corpus", str(corpus), "--out", str(run))
        model = lstmgen.load(run)
        seed_ids = expected["windows"][3]
        prompt = model.tokenizer.decode(seed_ids)
        greedy = lstmgen.SampleConfig.plain(temperature=0, max_new_tokens=args.chars)
        command_s, printed = timed_command("generate", str(run), "--plain", "--temperature", "0", "--prompt", prompt,
                                           "--max-new-tokens", str(args.chars))
        rows = [{"key": "import", "what": f"lstmgen import-keras {args.file} (the command)", "seconds": import_s},
                {"key": "generate", "what": f"lstmgen generate --plain --temperature 0, {args.chars:,} characters (the command)",
                 "seconds": command_s, "chars_per_second": args.chars / command_s}]
        sliding = in_process(model, prompt, greedy)
        # The command prints the prompt, then the text.
        assert printed.stdout.rstrip("\n") == (prompt + sliding["texts"][0]).rstrip("\n"), "the command and the API differ"
        rows.append({"key": "sliding", "what": "rolling windows, temperature 0, 1 stream (in process)", **sliding})
        stateful = in_process(model, prompt, lstmgen.SampleConfig.plain(
            temperature=0, max_new_tokens=args.chars, window_generation="stateful"))
        rows.append({"key": "stateful", "what": "stateful steps, temperature 0, 1 stream (in process)", **stateful})
        many = in_process(model, prompt, lstmgen.SampleConfig(max_new_tokens=args.chars, num_samples=16, seed=0))
        rows.append({"key": "sliding-16", "what": "rolling windows, default sampling, 16 streams (in process)", **many})
        if args.keras_python:
            keras = keras_side(args.keras_python, weights, seed_ids, args.keras_chars, len(expected["vocabulary"]))
            ours = model.tokenizer.encode(sliding["texts"][0][:args.keras_chars]).tolist()
            agree = sum(a == b for a, b in zip(keras["ids"], ours))
            rows.append({"key": "keras", "what": f"Keras {keras['keras']} ({keras['backend']}), the tutorial's loop, "
                                 f"{args.keras_chars} characters", "seconds": keras["seconds"],
                         "chars_per_second": keras["chars_per_second"],
                         "same_as_lstmgen": f"{agree} of {args.keras_chars}",
                         "largest_probability_difference": largest_probability_difference(model, seed_ids, keras)})
    print_table(rows, [("what", "what", ""), ("seconds", "seconds", ",.2f"), ("chars_per_second", "chars/s", ",.0f"),
                       ("same_as_lstmgen", "same characters as lstmgen", ""),
                       ("largest_probability_difference", "largest |Δp|", ".1e")])
    for row in rows:
        row.pop("texts", None)
    write_json(args.json, {"machine": machine(torch.device("cpu")), "file": args.file,
                           "chars": args.chars, "rows": rows})


if __name__ == "__main__":
    main()
