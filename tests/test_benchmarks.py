"""The benchmark scripts run and write what BENCHMARKS.md reads (tiny settings;
the speed figures themselves are not checked here)."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, corpus_path


def bench(script: str, *args: str, tmp_path) -> dict:
    corpus_path("alice-gutenberg-11-utf8.txt")
    out = tmp_path / f"{script}.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *args, "--json", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=ROOT / "benchmarks")
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(out.read_text())


def test_training_benchmark_counts_flops_per_framing(tmp_path):
    data = bench("training", "--steps", "1", "--warmup", "1", "--presets", "default", "tutorial-small", "--precisions", "fp32",
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
    data = bench("generation", "--batches", "1", "2", "--seconds", "0.05", "--prompt-rounds", "1",
                 "--processors", "dry_multiplier=0.8", "stop=zzz", tmp_path=tmp_path)
    assert {(r["streams"], r["precision"]) for r in data["generation"]} >= {(1, "auto"), (2, "fp32"), (2, "bf16")}
    assert data["processor_settings"] == {"dry_multiplier": 0.8, "stop": ["zzz"]}
    assert [r["streams"] for r in data["processor_overhead"]] == [1, 64]
    assert all(r["processors_us_per_step"] > 0 and r["plain_us_per_step"] > 0 for r in data["processor_overhead"])
    assert [r["prompt_chars"] for r in data["prompt_length"]] == [10, 10_000]
    assert data["prompt_length_cost_ratio"] > 0 and data["window_refeed_chars_per_second"] > 0


# time_to_quality.py trains in a temporary folder; this runs it with its run() wrapped to keep each
# run's metrics.jsonl (as lstmgen wrote it) in the folder given first, for the test to read.
KEEP_METRICS = """
import shutil, sys
from pathlib import Path
import time_to_quality
keep = Path(sys.argv.pop(1))
sys.argv[0] = time_to_quality.__file__
trained = time_to_quality.run
def run(preset, out, **overrides):
    rows = trained(preset, out, **overrides)
    (keep / out.name).mkdir(parents=True)
    shutil.copy(out / "metrics.jsonl", keep / out.name / "metrics.jsonl")
    return rows
time_to_quality.run = run
time_to_quality.main()
"""


def read_metrics(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def time_to_quality_by_hand(tutorial: list[dict], default: list[dict]) -> dict:
    """What time_to_quality.py should report, worked out here from the two runs' metrics rows:
    the target is the tutorial run's lowest held-out loss, its time the training seconds
    (train_s) of the first validation that got there; the default recipe's time is the
    train_s of its first validation at or below the target."""
    target = best = None
    for row in tutorial:
        loss = row.get("val_loss_nats")
        if loss is not None and (target is None or loss < target):  # strictly lower: the first row wins ties
            target, best = loss, row
    reached = None
    for row in default:
        if row.get("val_loss_nats") is not None and row["val_loss_nats"] <= target:
            reached = row
            break
    return {
        "target_nats": target,
        "tutorial": {"best_val_loss_nats": target, "train_s_to_target": best["train_s"], "steps": best["step"],
                     "epochs": best["epoch"]},
        "default": None if reached is None else {
            "best_val_loss_nats": reached["val_loss_nats"], "train_s_to_target": reached["train_s"],
            "steps": reached["step"], "epochs": reached["epoch"]},
        "ratio": None if reached is None else best["train_s"] / reached["train_s"],
    }


def assert_time_to_quality_reported(data: dict, tutorial_rows: list[dict], default_rows: list[dict]):
    expected = time_to_quality_by_hand(tutorial_rows, default_rows)
    tutorial, default = data["rows"]
    assert data["target_nats"] == expected["target_nats"]
    assert {k: tutorial[k] for k in expected["tutorial"]} == expected["tutorial"]
    assert expected["default"] is not None, "the default recipe did not reach the target"
    assert {k: default[k] for k in expected["default"]} == expected["default"]
    assert data["ratio"] == pytest.approx(expected["ratio"], rel=1e-12)


def test_time_to_quality_benchmark_reports_the_times_in_the_runs_metrics(tmp_path):
    # Three seconds of tutorial-small make an easy target; the default recipe must reach it. Both runs
    # validate on the first 2,000 held-out characters: the figures come from the rows all the same, and
    # the tutorial's validation (every window read from an empty state) takes a seventh of the time.
    corpus_path("alice-gutenberg-11-utf8.txt")
    out, kept = tmp_path / "ttq.json", tmp_path / "runs"
    result = subprocess.run([sys.executable, "-c", KEEP_METRICS, str(kept), "--minutes", "0.05",
                             "--default-minutes", "0.5", "--eval-max-tokens", "2000", "--json", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=ROOT / "benchmarks")
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    tutorial_rows, default_rows = read_metrics(kept / "tutorial" / "metrics.jsonl"), read_metrics(kept / "default" / "metrics.jsonl")
    assert data["tutorial_history"] == tutorial_rows and data["default_history"] == default_rows
    assert [r["budget_min"] for r in data["rows"]] == [0.05, 0.5] and data["eval_max_tokens"] == 2000
    # Training time, not wall-clock: the two differ in these rows (validation is timed only in elapsed_s).
    assert all(r["train_s"] < r["elapsed_s"] for r in tutorial_rows + default_rows)
    assert_time_to_quality_reported(data, tutorial_rows, default_rows)
    # The default recipe stops at its first validation at or below the target.
    assert default_rows[-1]["val_loss_nats"] <= data["target_nats"]
    assert all(r["val_loss_nats"] > data["target_nats"] for r in default_rows[:-1])


def test_time_to_quality_takes_the_first_validation_to_reach_the_target(tmp_path, monkeypatch):
    """Made-up metrics where the first row to reach each loss is neither the last nor the
    lowest, and train_s is not elapsed_s: the figures must come from the right rows."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import time_to_quality

    def row(step, val, train_s):
        return {"step": step, "epoch": step / 100, "elapsed_s": 2 * train_s + 1, "train_s": train_s,
                "lr": 1e-3, "train_loss_nats": val + 0.1, "val_loss_nats": val}

    runs = {"tutorial-small": [row(10, 2.9, 10.5), row(20, 2.6, 21.0), row(30, 2.7, 31.5), row(40, 2.6, 42.0),
                               dict(row(50, 0, 52.5), val_loss_nats=None)],
            "default": [row(5, 2.8, 0.7), row(10, 2.55, 1.4), row(15, 2.5, 2.1)]}

    def train(corpus, out, preset, **overrides):
        out.mkdir(parents=True)
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs[preset]))

    monkeypatch.setattr(time_to_quality.lstmgen, "train", train)
    monkeypatch.setattr(time_to_quality, "start", lambda _: (torch.device("cpu"), {"fp32": 1.0, "bf16": 1.0}))
    monkeypatch.setattr(time_to_quality, "require", lambda path: path)
    monkeypatch.setattr(sys, "argv", ["time_to_quality.py", "--json", str(tmp_path / "ttq.json")])
    time_to_quality.main()
    data = json.loads((tmp_path / "ttq.json").read_text())
    assert_time_to_quality_reported(data, runs["tutorial-small"], runs["default"])
    assert data["ratio"] == pytest.approx(21.0 / 1.4)  # the figures above, by hand


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
    data = bench("quality", "--corpora", "alice", "alice-lower", "--recipes", "cpu-5min", "--minutes", "0.05",
                 "--plots", str(tmp_path), "--runs", str(tmp_path / "runs"), tmp_path=tmp_path)
    cased, lower = data["results"]
    assert (cased["corpus"], lower["corpus"]) == ("alice", "alice-lower")
    for row in (cased, lower):
        assert row["best_val_loss_nats"] == min(p["val_loss_nats"] for p in row["curve"])
        assert row["best_val_bits_per_char"] == pytest.approx(row["best_val_loss_nats"] / math.log(2), abs=1e-4)
        assert row["budget_min"] == 0.05 and row["target_met"] is None  # no target for a 3-second budget
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


def test_serve_benchmark_counts_text_errors_hang_ups_and_seeded_probes(tmp_path):
    pytest.importorskip("uvicorn")
    data = bench("serve", "--clients", "4", "--seconds", "2", "--new-tokens", "60", "--ramp", "0.5",
                 "--disconnect", "0.5", "--probes", "1", "--baseline-seconds", "0.1", tmp_path=tmp_path)
    assert data["errors"] == 0 and data["server_alive_at_end"]
    assert data["requests_started"] >= 4 and data["hung_up"] >= 1
    assert data["chars_per_second"] > 0 and 0 < data["of_generation"] < 5
    # The steady state runs from the end of the ramp to the end of the run; the whole run's
    # figure also counts the ramp and the last requests finishing, with fewer clients.
    assert data["steady_seconds"] == pytest.approx(1.5) and data["chars_per_second_whole_run"] > 0
    # Batched generation is measured on both sides of the load, and the mean taken.
    before, after = data["generation_before_load"], data["generation_after_load"]
    assert data["generation_chars_per_second"] == pytest.approx((before["auto"] + after["auto"]) / 2)
    assert data["ttft_ms_p50"] <= data["ttft_ms_p99"] and data["chars_per_chunk"] >= 1
    assert 0 < data["server_cpu_cores"] <= os.cpu_count() + 0.5 and 0 < data["clients_cpu_cores"] <= os.cpu_count() + 0.5
    # A seeded request, alone and then among the clients: the same text and log-probabilities.
    assert data["seeded_probes"] == 1 and data["seeded_same_text_under_load"] == 1
    assert data["seeded_same_logprobs_under_load"] == 1


def test_prompt_reading_benchmark_times_and_scores_both_precisions(tmp_path):
    data = bench("prompt_reading", "--prompts", "5", "--chars", "40", tmp_path=tmp_path)
    assert data["prompts"] == 5 and data["fp32"]["ms_per_prompt"] > 0
    assert 0 < data["fp32"]["next_char_bits"] < 10
    if data["bf16_steps_read_in"] == "bf16":
        assert data["bf16"]["ms_per_prompt"] > 0 and data["bf16"]["next_char_bits"] != data["fp32"]["next_char_bits"]
    else:
        assert "bf16" not in data


def test_step_rows_benchmark_times_each_precision_and_row_count(tmp_path):
    data = bench("step_rows", "--rows", "2,4", "--precision", "fp32,bf16", "--repeats", "1", tmp_path=tmp_path)
    assert [(r["precision"], r["rows"]) for r in data["results"]] == [("fp32", 2), ("fp32", 4), ("bf16", 2), ("bf16", 4)]
    assert all(r["ms_per_step"] > 0 and r["us_per_row"] > 0 for r in data["results"])
    assert data["machine"]["cpu_flags"] is not None and data["threads"] == 1


def test_serve_benchmark_counts_the_steady_state_only():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import serve

    arrivals = [(0.5, 10), (1.0, 20), (1.999, 30), (2.0, 40), (3.5, 50)]
    assert serve.steady_rate(arrivals, 1.0, 2.0) == pytest.approx(50.0)  # 20 + 30 over one second
    assert serve.steady_rate(arrivals, 0.0, 4.0) == pytest.approx(150 / 4)


def test_batcher_benchmark_reports_rounds_and_tokens(tmp_path):
    data = bench("batcher", "--streams", "4", "--seconds", "0.3", "--neighbour", "0.1,0.3", tmp_path=tmp_path)
    assert data["streams"] == 4 and data["ms_per_round"] > 0
    assert data["tokens_per_second"] > 0 and data["neighbour"] == "0.1,0.3"


def test_batcher_benchmark_replaces_streams_that_end(tmp_path):
    """--new-tokens: streams of 5 characters end and new ones with fresh prompts take their places."""
    data = bench("batcher", "--streams", "4", "--seconds", "0.5", "--new-tokens", "5", tmp_path=tmp_path)
    assert data["new_tokens"] == 5 and data["ms_per_round"] is None
    # Each stream writes 5 characters, so at least one new prompt per 5 characters after the first streams.
    assert data["prompts_per_second"] > 0 and data["tokens_per_second"] > 0
    assert data["prompts_per_second"] * 5 == pytest.approx(data["tokens_per_second"], rel=0.5)


def test_items_benchmark_scores_both_models_on_the_same_items(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(corpus_path("names.txt").read_text().splitlines()[:400]) + "\n")
    data = bench("items", str(names), "--framing", "lines", "--samples", "5", "--out-dir", str(tmp_path / "runs"),
                 "--train-args=--max-steps 2 --hidden-size 8 --num-layers 1 --embedding-dim 4", tmp_path=tmp_path)
    scores = data["scores"]
    # One symbol per character and one per name, for both models.
    assert scores["items_on_items"]["tokens"] == scores["stream_on_items"]["tokens"] == sum(
        len(n) + 1 for n in names.read_text().split()[-40:])
    assert set(data["samples"]) == {"items", "stream", "held_out"}
    assert data["samples"]["held_out"]["count"] == 40 and data["samples"]["items"]["count"] == 5


def test_onnx_step_benchmark_compares_onnxruntime_with_lstmgen(tmp_path):
    pytest.importorskip("onnxruntime")
    data = bench("onnx_step", "--batches", "1", "--seconds", "0.05", "--rounds", "1", tmp_path=tmp_path)
    assert [r["way"] for r in data["rows"]] == ["onnx step", "lstmgen auto", "lstmgen fp32"]
    assert all(r["tokens_per_second"] > 0 for r in data["rows"]) and data["rows"][0]["vs_onnx"] == 1.0


def test_import_keras_benchmark_times_the_commands_and_each_way(tmp_path):
    from conftest import fixture_path

    fixture_path("keras-tutorial/tutorial-small.h5")
    data = bench("import_keras", "--chars", "30", tmp_path=tmp_path)
    rows = {r["key"]: r for r in data["rows"]}
    assert data["chars"] == 30 and data["file"] == "tutorial-small.h5"
    assert list(rows) == ["import", "generate", "sliding", "stateful", "sliding-16"]
    assert all(r["seconds"] > 0 for r in data["rows"]) and not any("texts" in r for r in data["rows"])
    assert rows["sliding"]["chars_per_second"] == pytest.approx(30 / rows["sliding"]["seconds"])
    assert rows["sliding-16"]["chars_per_second"] == pytest.approx(16 * 30 / rows["sliding-16"]["seconds"])
