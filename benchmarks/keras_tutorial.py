"""The tutorial's own stack (Keras on TensorFlow) against lstmgen, side by side.

    pip install -e '.[bench-keras]'      # keras and tensorflow-cpu; never in the default install
    python benchmarks/keras_tutorial.py [--epochs 1] [--gen-chars 100] [--json out.json]

The Keras side follows the tutorial ("Text Generation With LSTM Recurrent
Neural Networks in Python with Keras"): integer ids of the lowercased text,
every 100-character window as one sample, divided by the vocabulary size,
LSTM(256) → Dropout(0.2) → Dense softmax, categorical cross-entropy, Adam,
batch 128; generation re-runs the window through model.predict for every
character and takes the argmax. The only change: it trains on the first 90%
of the text and is scored on the last 10%, the same split lstmgen uses.

The lstmgen side, in the same run, on the same text and split:
- tutorial-small, the same model and framing, for the same number of epochs;
- the default recipe given the same training time the Keras run took.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import lstmgen
from lstmgen.text.corpus import read_corpus
from lstmgen.text.batches import split_ids
from lstmgen.sampling.config import SampleConfig
from lstmgen.training.presets import resolve

from common import ALICE, machine, print_table, require, write_json

WINDOW = 100


def keras_side(text: str, epochs: int, gen_chars: int) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from keras import layers

    chars = sorted(set(text))
    char_to_int = {c: i for i, c in enumerate(chars)}
    n_vocab = len(chars)
    ids = np.array([char_to_int[c] for c in text], dtype=np.int64)
    cut = split_ids(len(ids), 0.1)

    def frame(part: np.ndarray):
        starts = np.arange(len(part) - WINDOW)
        x = part[starts[:, None] + np.arange(WINDOW)].reshape(-1, WINDOW, 1) / float(n_vocab)
        y = keras.utils.to_categorical(part[starts + WINDOW], num_classes=n_vocab)
        return x, y

    x_train, y_train = frame(ids[:cut])
    x_val, y_val = frame(ids[cut:])
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(shape=(WINDOW, 1)),
        layers.LSTM(256),
        layers.Dropout(0.2),
        layers.Dense(n_vocab, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam")

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    times: list[float] = []
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=128, verbose=2, callbacks=[EpochTimes()])
    val_loss = float(model.evaluate(x_val, y_val, batch_size=256, verbose=0))

    pattern = list(ids[cut - WINDOW:cut])
    start = time.perf_counter()
    for _ in range(gen_chars):
        x = np.reshape(pattern, (1, len(pattern), 1)) / float(n_vocab)
        prediction = model.predict(x, verbose=0)
        pattern.append(int(np.argmax(prediction)))
        pattern = pattern[1:]
    gen_cps = gen_chars / (time.perf_counter() - start)
    return {"side": "Keras tutorial", "seconds_per_epoch": float(np.mean(times)), "epochs": epochs,
            "train_seconds": float(sum(times)), "train_loss_nats": float(history.history["loss"][-1]),
            "val_loss_nats": val_loss, "gen_chars_per_second": gen_cps, "versions": {
                "keras": keras.__version__, "tensorflow": importlib.import_module("tensorflow").__version__}}


def lstmgen_side(preset: str, out: Path, label: str, gen_chars: int, **overrides) -> dict:
    config = resolve(preset, **overrides)[2]
    result = lstmgen.train(require(ALICE), out, preset, force=True, progress=False, log=lambda *_: None, **overrides)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = rows[-1]
    model = lstmgen.load(out)
    start = time.perf_counter()
    model.generate("alice was beginning to get very tired", SampleConfig.plain(max_new_tokens=gen_chars, temperature=0,
                                                                         seed=0))
    gen_cps = gen_chars / (time.perf_counter() - start)
    epochs = last["epoch"]
    return {"side": label, "seconds_per_epoch": last["train_s"] / epochs if epochs else None, "epochs": epochs,
            "train_seconds": last["train_s"], "train_loss_nats": last["train_loss_nats"],
            "val_loss_nats": result.best_val_loss, "gen_chars_per_second": gen_cps,
            "precision": config.precision}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--gen-chars", type=int, default=100, help="characters the Keras loop generates")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if importlib.util.find_spec("keras") is None or importlib.util.find_spec("tensorflow") is None:
        sys.exit("benchmark: keras and tensorflow are not installed; run: pip install -e '.[bench-keras]'")
    _, corpus_config, _, _ = resolve("tutorial-small")
    text = read_corpus(require(ALICE), corpus_config).text
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(lstmgen_side("tutorial-small", Path(tmp) / "ts", "lstmgen tutorial-small", 2000,
                                 epochs=args.epochs, eval_every=10**9))
        keras_row = keras_side(text, args.epochs, args.gen_chars)
        rows.append(keras_row)
        rows.append(lstmgen_side("default", Path(tmp) / "default", "lstmgen default recipe", 2000, lowercase=True,
                                 max_minutes=keras_row["train_seconds"] / 60, eval_every=10**9))
    print_table(rows, [("side", "", ""), ("epochs", "epochs", ".2f"), ("seconds_per_epoch", "s/epoch", ",.1f"),
                       ("train_seconds", "train s", ",.1f"), ("val_loss_nats", "held-out nats", ".4f"),
                       ("gen_chars_per_second", "gen chars/s", ",.1f")])
    k, t = rows[1], rows[0]
    print(f"lstmgen tutorial-small vs Keras: {k['seconds_per_epoch'] / t['seconds_per_epoch']:.2f}× faster per epoch, "
          f"{t['gen_chars_per_second'] / k['gen_chars_per_second']:,.0f}× faster generation")
    print(f"lstmgen default recipe in the same training time: held-out {rows[2]['val_loss_nats']:.4f} nats vs Keras "
          f"{k['val_loss_nats']:.4f}")
    write_json(args.json, {"machine": machine(torch.device("cpu")), "rows": rows})


if __name__ == "__main__":
    main()
