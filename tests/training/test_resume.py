"""Nothing lost: kill -9 and resume gives the same weights, bit for bit;
SIGINT/SIGTERM checkpoint and exit; a full disk keeps the last checkpoint."""

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

import lstmgen
from lstmgen.checkpoint import load_checkpoint, load_trainer_state

from conftest import corpus_path, run_cli

TINY = ["--hidden-size", "32", "--num-layers", "2", "--embedding-dim", "8", "--batch-size", "4",
        "--seq-len", "16", "--eval-every", "7", "--quiet", "--dropout", "0.3", "--lr-schedule", "cosine",
        "--warmup-steps", "3"]
STEPS = 30


def train_args(out, *extra):
    return ["train", str(corpus_path("alice-gutenberg-11-utf8.txt")), "--out", str(out), "--max-steps", str(STEPS),
            *TINY, *extra]


def start(args):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "lstmgen", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def saved_step(run) -> int:
    try:
        return json.loads((run / "last" / "trainer_state.json").read_text())["position"]["step"]
    except (OSError, ValueError, KeyError):
        return -1


def wait_for_step(proc, run, step, timeout=120):
    deadline = time.monotonic() + timeout
    while saved_step(run) < step:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "training did not reach the step in time"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    result = run_cli(*train_args(out, "--checkpoint-every", "1"))
    assert result.returncode == 0, result.stderr.decode()
    return out


def assert_same_run(a, b):
    wa, wb = load_file(str(a / "last" / "model.safetensors")), load_file(str(b / "last" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert (wa[key] == wb[key]).all(), f"{key} differs"
    ta, tb = load_file(str(a / "last" / "trainer_state.safetensors")), load_file(str(b / "last" / "trainer_state.safetensors"))
    for key in ta:
        if not key.startswith("rng."):
            assert (ta[key] == tb[key]).all(), f"{key} differs"
    ma = [json.loads(l) for l in (a / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(l) for l in (b / "metrics.jsonl").read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("elapsed_s", "train_s", "train_chars_per_second")} for r in rows]
    assert strip(ma) == strip(mb)


def test_sigkill_at_random_steps_then_resume_is_bitwise_identical(reference, tmp_path):
    run = tmp_path / "run"
    # One kill in each third of the run; LSTMGEN_TEST_SEED picks other steps.
    rng = random.Random(os.environ.get("LSTMGEN_TEST_SEED", "kill"))
    third = STEPS // 3
    kills = [rng.randrange(max(1, k * third), (k + 1) * third - 1) for k in range(3)]
    proc = start(train_args(run, "--checkpoint-every", "1"))
    for i, step in enumerate(kills):
        wait_for_step(proc, run, step)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = start(["train", "--resume", str(run), "--quiet"])
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
    assert b"resuming" in proc.stderr.read()
    assert_same_run(reference, run)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_checkpoints_and_says_how_to_resume(reference, tmp_path, sig, code):
    run = tmp_path / "run"
    proc = start(train_args(run, "--checkpoint-every", "1"))
    wait_for_step(proc, run, 11)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code
    lines = [l for l in err.decode().splitlines() if l.strip()]
    assert "Traceback" not in err.decode()
    assert f"lstmgen train --resume {run}" in lines[-1]
    stopped_at = saved_step(run)
    assert stopped_at >= 11
    resumed = run_cli("train", "--resume", str(run), "--quiet")
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert_same_run(reference, run)


def test_resume_with_a_raised_limit_continues(reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference, run)  # a finished run of STEPS steps
    again = run_cli("train", "--resume", str(run), "--quiet")
    assert again.returncode == 0 and b"already reached its limits" in again.stderr
    longer = run_cli("train", "--resume", str(run), "--max-steps", str(STEPS + 5), "--quiet")
    assert longer.returncode == 0, longer.stderr.decode()
    assert saved_step(run) == STEPS + 5
    bad = run_cli("train", "--resume", str(run), "--hidden-size", "64")
    assert bad.returncode != 0 and b"cannot be given with --resume" in bad.stderr


def test_full_disk_keeps_the_previous_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = start(train_args(run, "--checkpoint-every", "1") + ["--max-steps", "100000"])
    wait_for_step(proc, run, 3)
    # Lower the child's file-size limit under a checkpoint's size: the next write fails.
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (20_000, 20_000))
    _, err = proc.communicate(timeout=120)
    text = err.decode()
    assert proc.returncode == 1 and "Traceback" not in text
    line = [l for l in text.splitlines() if l.strip()][-1]
    assert "could not write" in line and "intact" in line and "--resume" in line
    checkpoint = load_checkpoint(run / "last")
    tensors, data = load_trainer_state(run / "last")
    assert data["position"]["step"] >= 3 and checkpoint.model is not None
    assert not list(run.glob(".last.tmp-*"))
    resumed = run_cli("train", "--resume", str(run), "--max-steps", str(data["position"]["step"] + 2), "--quiet")
    assert resumed.returncode == 0, resumed.stderr.decode()


def test_api_resume(tmp_path):
    """lstmgen.train for 4 steps, then lstmgen.resume to 6, is bit for bit an uninterrupted 6-step run."""
    quiet = lambda *_: None
    alice = corpus_path("alice-gutenberg-11-utf8.txt")
    # The same settings on both sides. Raising max_steps on resume changes the plan, so the rate must not
    # depend on it: a constant schedule (cosine decays over the planned steps), its warm-up across the
    # resume point. Validation every 2 steps gives both runs the same metrics rows and checkpoints;
    # fp32 keeps --precision auto from timing its way to another choice on resume. Dropout stays on.
    settings = dict(progress=False, log=quiet, hidden_size=16, num_layers=1, batch_size=2, seq_len=8,
                    eval_every=2, lr_schedule="constant", warmup_steps=5, precision="fp32")
    run, whole = tmp_path / "run", tmp_path / "whole"
    first = lstmgen.train(alice, run, max_steps=4, **settings)
    assert first.steps == 4 and saved_step(run) == 4
    result = lstmgen.resume(run, max_steps=6, progress=False, log=quiet)
    assert result.steps == 6
    reference = lstmgen.train(alice, whole, max_steps=6, **settings)
    assert reference.steps == 6
    assert_same_run(whole, run)


def test_checkpoint_every_minutes_writes_between_evaluations(tmp_path):
    run = tmp_path / "run"
    # Evaluation every 1000 steps and an epoch of ~2000 steps: only the
    # minute-based checkpoint can write last/ within the first steps.
    proc = start(train_args(run, "--checkpoint-every", "0.0001m", "--eval-every", "1000", "--max-steps", "100000"))
    wait_for_step(proc, run, 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    config = json.loads((run / "last" / "config.json").read_text())
    assert config["train"]["checkpoint_minutes"] == 0.0001 and config["train"]["checkpoint_every"] is None
    assert not (run / "metrics.jsonl").read_text().strip()  # no evaluation happened yet


def test_existing_run_names_resume_and_force(reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    again = run_cli(*train_args(run, "--max-steps", "2"))
    assert again.returncode == 1
    assert f"--resume {run}".encode() in again.stderr and b"--force" in again.stderr
    forced = run_cli(*train_args(run, "--max-steps", "3", "--force"))
    assert forced.returncode == 0 and saved_step(run) == 3
