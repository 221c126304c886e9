"""Learning curves: curves.png after training, `lstmgen plot`, and the
numbers behind them, from real metrics files."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

import lstmgen
from lstmgen.cli import main
from lstmgen.curves import read_curve

from conftest import corpus_path

PNG = b"\x89PNG\r\n\x1a\n"


def write_run(folder, rows, train=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if train is not None:
        (folder / "last").mkdir(exist_ok=True)
        (folder / "last" / "config.json").write_text(json.dumps({"train": train}))
    return folder


ROWS = [
    {"step": 10, "elapsed_s": 30.0, "trained_tokens": 1000, "train_loss_nats": 2.0,
     "val_loss_nats": 2.1, "val_bits_per_char": 2.1 / math.log(2)},
    {"step": 20, "elapsed_s": 60.0, "trained_tokens": 2000, "train_loss_nats": 1.5},  # a checkpoint without validation
    {"step": 30, "elapsed_s": 90.0, "trained_tokens": 3000, "train_loss_nats": 1.2,
     "val_loss_nats": 1.6, "val_bits_per_char": 1.6 / math.log(2)},
    {"step": 40, "elapsed_s": 120.0, "trained_tokens": 4000, "train_loss_nats": 1.0,
     "val_loss_nats": 1.7, "val_bits_per_char": 1.7 / math.log(2)},
]


def test_a_character_run_in_bits_per_character(tmp_path):
    curve = read_curve(write_run(tmp_path / "char-run", ROWS))
    assert curve.name == "char-run" and not curve.chars_estimated
    assert list(curve.chars) == [1000, 2000, 3000, 4000]
    assert list(curve.minutes) == [0.5, 1.0, 1.5, 2.0]
    assert curve.train_bits_per_char[1] == pytest.approx(1.5 / math.log(2))
    assert np.isnan(curve.val_bits_per_char[1])
    assert curve.best == 2  # the lowest held-out loss, not the last row


def test_a_word_run_counts_characters_through_the_held_out_ratio(tmp_path):
    # 4 characters per token: a token's loss in nats is spread over 4 characters.
    rows = [dict(r, **({"val_bits_per_char": r["val_loss_nats"] / math.log(2) / 4} if "val_loss_nats" in r else {}))
            for r in ROWS]
    curve = read_curve(write_run(tmp_path / "words", rows))
    assert curve.chars_estimated
    assert curve.chars[-1] == pytest.approx(16000)
    assert curve.train_bits_per_char[-1] == pytest.approx(1.0 / math.log(2) / 4)


def test_rows_from_before_trained_tokens_were_recorded(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "trained_tokens"} for r in ROWS]
    curve = read_curve(write_run(tmp_path / "old", rows, train={"batch_size": 4, "seq_len": 25}))
    assert list(curve.chars) == [1000, 2000, 3000, 4000]


def test_training_draws_curves_png(tmp_path):
    out = tmp_path / "run"
    result = lstmgen.train(corpus_path("alice-wonderland-tutorial-trimmed.txt"), out, max_steps=12, eval_every=6,
                           hidden_size=32, num_layers=1, embedding_dim=8, batch_size=4, seq_len=16,
                           progress=False, log=lambda *_: None)
    assert (out / "curves.png").read_bytes().startswith(PNG)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["trained_tokens"] for r in rows] == [6 * 4 * 16, 12 * 4 * 16]
    assert result.history == rows


def test_plot_overlays_runs_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    a = write_run(tmp_path / "a" / "default", ROWS)
    b = write_run(tmp_path / "b" / "default", ROWS[:2])
    assert main(["plot", str(a), str(b), "--out", str(tmp_path / "both.png")]) == 0
    assert (tmp_path / "both.png").read_bytes().startswith(PNG)
    for argv, needle in [
        ([str(tmp_path / "missing")], "no such run directory"),
        ([str(tmp_path)], "has no metrics.jsonl"),
        ([str(a), "--out", str(tmp_path / "x.svg")], "--out must name a .png file"),
        ([str(a), "--out", str(tmp_path / "no" / "such" / "x.png")], "could not write"),
    ]:
        assert main(["plot", *argv]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.jsonl").write_text("{not json\n")
    assert main(["plot", str(tmp_path / "broken")]) == 1
    assert "is not the JSON lines lstmgen train writes" in capsys.readouterr().err


def test_without_matplotlib_plot_says_how_to_install_it(tmp_path):
    run = write_run(tmp_path / "run", ROWS)
    code = ("import sys; sys.modules['matplotlib'] = None  # as if it were not installed\n"
            "from lstmgen.cli import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "plot", str(run), "--out", str(tmp_path / "c.png")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == "lstmgen plot: error: drawing curves needs matplotlib: pip install matplotlib"


def test_without_matplotlib_training_finishes_with_one_warning(tmp_path):
    out = tmp_path / "run"
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from lstmgen.cli import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "train", str(corpus_path("alice-wonderland-tutorial-trimmed.txt")),
                             "--out", str(out), "--max-steps", "6", "--eval-every", "3", "--hidden-size", "16",
                             "--num-layers", "1", "--embedding-dim", "4", "--batch-size", "2", "--seq-len", "8",
                             "--quiet"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "curves.png" in line]
    assert warnings == ["lstmgen: warning: no curves.png: drawing curves needs matplotlib: pip install matplotlib"]
    assert (out / "best" / "model.safetensors").exists() and not (out / "curves.png").exists()
