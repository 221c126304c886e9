"""Two DDP processes on the CPU (gloo) take the same steps as one process
with the same global batch."""

import json
import shutil

import pytest
from safetensors.torch import load_file

from conftest import corpus_path, run_cli

# Dropout and weight dropout 0: the two ranks draw their own masks, one process draws one.
# fp32: the comparison is of the arithmetic, which bf16 rounding would blur.
COMMON = ["--max-steps", "6", "--dropout", "0", "--weight-dropout", "0", "--batch-size", "8", "--seq-len", "32",
          "--hidden-size", "32", "--num-layers", "2", "--embedding-dim", "8", "--eval-every", "3", "--precision", "fp32", "--quiet"]
TOLERANCE = 1e-4  # float sums in another order (2 threads in one process, 1 in each rank)


def max_difference(a, b):
    wa = load_file(str(a / "last" / "model.safetensors"))
    wb = load_file(str(b / "last" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def assert_matches_one_process(one, two):
    """``two`` (trained by 2 processes) took the same 6 steps as ``one``: weights and held-out losses."""
    diff = max_difference(one, two)
    print(f"largest weight difference after 6 steps: {diff:.3g}")
    assert diff < TOLERANCE
    rows_one = [json.loads(l) for l in (one / "metrics.jsonl").read_text().splitlines()]
    rows_two = [json.loads(l) for l in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows_one] == [r["step"] for r in rows_two] == [3, 6]
    for a, b in zip(rows_one, rows_two):
        assert a["val_loss_nats"] == pytest.approx(b["val_loss_nats"], abs=1e-4)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The one-process run of COMMON that the two-process runs are compared with; a test that
    changes it works on a copy."""
    out = tmp_path_factory.mktemp("one") / "one"
    one = run_cli("train", str(corpus_path("alice-gutenberg-11-utf8.txt")), "--out", str(out), *COMMON)
    assert one.returncode == 0, one.stderr.decode()
    return out


def test_two_processes_match_one_with_the_same_global_batch(one_process, tmp_path):
    alice = str(corpus_path("alice-gutenberg-11-utf8.txt"))
    shutil.copytree(one_process, tmp_path / "one")
    two = run_cli("train", alice, "--out", str(tmp_path / "two"), "--nproc", "2", *COMMON, timeout=600)
    assert two.returncode == 0, two.stderr.decode()[-3000:]
    assert b"2 processes" in two.stderr
    assert_matches_one_process(tmp_path / "one", tmp_path / "two")

    # Resume works with the same number of processes, and keeps matching.
    for name, extra in (("one", []), ("two", ["--nproc", "2"])):
        resumed = run_cli("train", "--resume", str(tmp_path / name), "--max-steps", "9", "--quiet", *extra, timeout=600)
        assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    assert max_difference(tmp_path / "one", tmp_path / "two") < TOLERANCE
    wrong = run_cli("train", "--resume", str(tmp_path / "two"), "--max-steps", "10", "--quiet")
    assert wrong.returncode == 1 and b"resume it with the same number" in wrong.stderr


def test_two_processes_match_one_on_items(tmp_path):
    """Item batches hold rows of unequal token counts; the processes' shares
    are weighted so that two take the steps one takes."""
    names = str(corpus_path("names.txt"))
    items = ["--framing", "lines", "--max-steps", "4", "--eval-every", "2", "--dropout", "0", "--weight-dropout", "0",
             "--batch-size", "8",
             "--seq-len", "8", "--hidden-size", "16", "--num-layers", "2", "--embedding-dim", "8", "--precision",
             "fp32", "--quiet"]
    one = run_cli("train", names, "--out", str(tmp_path / "one"), *items)
    assert one.returncode == 0, one.stderr.decode()
    two = run_cli("train", names, "--out", str(tmp_path / "two"), "--nproc", "2", *items, timeout=600)
    assert two.returncode == 0, two.stderr.decode()[-3000:]
    diff = max_difference(tmp_path / "one", tmp_path / "two")
    print(f"largest weight difference after 4 steps: {diff:.3g}")
    assert diff < TOLERANCE


def test_batch_must_split_over_the_processes(tmp_path):
    result = run_cli("train", str(corpus_path("alice-gutenberg-11-utf8.txt")), "--out", str(tmp_path / "r"),
                     "--nproc", "2", "--batch-size", "7", "--max-steps", "1", "--quiet", timeout=300)
    assert result.returncode != 0
    assert b"does not split evenly over 2 processes" in result.stderr


def test_torchrun_starts_the_same_training(one_process, tmp_path):
    """Started by torchrun instead of --nproc, two processes still take one process's steps."""
    import subprocess
    import sys

    alice = str(corpus_path("alice-gutenberg-11-utf8.txt"))
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lstmgen",
         "train", alice, "--out", str(tmp_path / "run"), *COMMON],
        capture_output=True, timeout=600)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert b"2 processes" in result.stderr
    assert (tmp_path / "run" / "best" / "model.safetensors").exists()
    assert_matches_one_process(one_process, tmp_path / "run")
