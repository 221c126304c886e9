"""The benchmark scripts run and write what BENCHMARKS.md reads (tiny settings;
the speed figures themselves are not checked here)."""

import json
import math
import subprocess
import sys

import pytest

from conftest import ROOT, corpus_path


def bench(script: str, *args: str, tmp_path) -> dict:
    corpus_path("alice-gutenberg-11-utf8.txt")
    out = tmp_path / f"{script}.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *args, "--json", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=ROOT / "benchmarks")
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(out.read_text())


def test_training_benchmark_counts_flops_per_framing(tmp_path):
    data = bench("training", "--steps", "1", "--presets", "default", "tutorial-small", "--precisions", "fp32",
                 tmp_path=tmp_path)
    assert data["peak_flops_per_second"]["fp32"] > 0
    default, tutorial = data["training"]
    for row in (default, tutorial):
        assert row["flops_per_second"] == pytest.approx(row["lstm_steps_per_second"] * 6 * row["parameters"])
        assert row["mfu_fp32"] == pytest.approx(row["flops_per_second"] / data["peak_flops_per_second"]["fp32"])
    # Stream framing predicts every position; window framing one character per 100 LSTM steps.
    assert default["chars_per_second"] == pytest.approx(default["lstm_steps_per_second"])
    assert abs(tutorial["lstm_steps_per_second"] / tutorial["chars_per_second"] - 100) < 1e-6


def test_generation_benchmark_reports_batches_and_prompt_lengths(tmp_path):
    data = bench("generation", "--batches", "1", "2", "--seconds", "0.05", tmp_path=tmp_path)
    assert {(r["streams"], r["precision"]) for r in data["generation"]} >= {(1, "auto"), (2, "fp32"), (2, "bf16")}
    assert [r["prompt_chars"] for r in data["prompt_length"]] == [10, 10_000]
    assert data["prompt_length_cost_ratio"] > 0 and data["window_refeed_chars_per_second"] > 0


def test_time_to_quality_benchmark_finds_the_target_and_the_ratio(tmp_path):
    # A few seconds of tutorial-small make an easy target; the default recipe must reach it.
    data = bench("time_to_quality", "--minutes", "0.1", "--default-minutes", "0.5", tmp_path=tmp_path)
    tutorial, default = data["rows"]
    assert tutorial["best_val_loss_nats"] == data["target_nats"]
    assert default["best_val_loss_nats"] <= data["target_nats"]
    assert data["ratio"] == pytest.approx(tutorial["train_s_to_target"] / default["train_s_to_target"])


def test_keras_benchmark_without_keras_names_the_extra():
    import importlib.util

    if importlib.util.find_spec("keras") is not None:
        pytest.skip("keras is installed here; this checks the message given without it")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "keras_tutorial.py")], capture_output=True,
                            text=True, timeout=120, cwd=ROOT / "benchmarks")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "benchmark: keras and tensorflow are not installed; run: pip install -e '.[bench-keras]'")


def test_quality_benchmark_reports_the_best_held_out_loss_and_draws_the_curves(tmp_path):
    data = bench("quality", "--corpora", "alice", "alice-lower", "--recipes", "cpu-5min", "--minutes", "0.1",
                 "--plots", str(tmp_path), "--runs", str(tmp_path / "runs"), tmp_path=tmp_path)
    cased, lower = data["results"]
    assert (cased["corpus"], lower["corpus"]) == ("alice", "alice-lower")
    for row in (cased, lower):
        assert row["best_val_loss_nats"] == min(p["val_loss_nats"] for p in row["curve"])
        assert row["best_val_bits_per_char"] == pytest.approx(row["best_val_loss_nats"] / math.log(2), abs=1e-4)
        assert row["budget_min"] == 0.1 and row["target_met"] is None  # no target for a 6-second budget
        assert row["parameters"] > 1_000_000
    assert (tmp_path / "runs" / "alice-lower" / "cpu-5min" / "best" / "model.safetensors").exists()
    lowered = json.loads((tmp_path / "runs" / "alice-lower" / "cpu-5min" / "best" / "config.json").read_text())
    assert lowered["corpus"]["lowercase"] is True
    for corpus in ("alice", "alice-lower"):
        png = (tmp_path / f"quality-{corpus}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert data["anchors"]["tinyshakespeare"][0]["loss_nats"] == 1.4697


def test_quality_summary_of_a_run_without_a_clock_budget_has_no_target():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import quality

    rows = [{"step": s, "epoch": s / 10, "elapsed_s": 30.0 * s, "val_loss_nats": v, "val_bits_per_char": v / math.log(2),
             "train_loss_nats": v + 0.1, "train_chars_per_second": 900.0} for s, v in ((1, 2.5), (2, 2.2), (3, 2.3))]
    summary = quality.summarize("alice-lower", "tutorial-small", math.nan, rows, 1000)  # an epochs-limited preset
    assert summary["target_nats"] is None and summary["best_val_loss_nats"] == 2.2 and summary["best_at_min"] == 1.0
    on_budget = quality.summarize("tinyshakespeare", "cpu-20min", 20.0, rows, 1000)
    assert on_budget["target_nats"] == 1.47 and on_budget["target_met"] is False
