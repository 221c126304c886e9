"""The real `lstmgen` command in a subprocess: one end-to-end run and every bad input."""

import json
import shutil
import subprocess
import sys

import pytest

from conftest import corpus_path, run_cli

TINY = ["--hidden-size", "48", "--num-layers", "1", "--embedding-dim", "16", "--batch-size", "8",
        "--seq-len", "32", "--eval-every", "20", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "alice"
    result = run_cli("train", str(corpus_path("alice-gutenberg-11-utf8.txt")), "--out", str(out),
                     "--max-steps", "40", *TINY)
    assert result.returncode == 0, result.stderr.decode()
    return out


def test_end_to_end_train_generate_evaluate(run_dir):
    for name in ("best", "last"):
        for f in ("model.safetensors", "config.json", "tokenizer.json"):
            assert (run_dir / name / f).is_file()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [20, 40]
    assert rows[-1]["val_loss_nats"] < 4.0  # better than uniform over ~73 characters (4.29 nats)
    config = json.loads((run_dir / "last" / "config.json").read_text())
    assert config["corpus"]["lowercase"] is False and config["train"]["max_steps"] == 40

    a = run_cli("generate", str(run_dir), "--prompt", "Alice was", "--max-new-tokens", "80", "--seed", "7")
    b = run_cli("generate", str(run_dir), "--prompt", "Alice was", "--max-new-tokens", "80", "--seed", "7")
    assert a.returncode == 0, a.stderr.decode()
    out = a.stdout.decode()
    assert out.startswith("Alice was") and len(out) == len("Alice was") + 80 + 1
    assert a.stdout == b.stdout

    # A prompt on standard input is the same prompt as --prompt: with one
    # seed, the same text; another prompt with that seed gives another text.
    # (The bundled model, since 40 steps of training barely read the context.)
    sampled = ("--temperature", "1", "--max-new-tokens", "40", "--seed", "3", "--no-echo")
    piped = run_cli("generate", "--prompt", "-", *sampled, input=b"The Queen said")
    assert piped.returncode == 0 and len(piped.stdout.decode()) == 41, piped.stderr.decode()
    assert piped.stdout == run_cli("generate", "--prompt", "The Queen said", *sampled).stdout
    assert piped.stdout != run_cli("generate", "--prompt", "Down the rabbit", *sampled).stdout

    many = run_cli("generate", str(run_dir), "--num-samples", "3", "--max-new-tokens", "20", "--seed", "1")
    assert many.stdout.decode().count("--- sample") == 3
    assert b"random excerpt" in many.stderr

    ev = run_cli("evaluate", str(run_dir), "--json")
    assert ev.returncode == 0, ev.stderr.decode()
    result = json.loads(ev.stdout)
    assert result["loss_nats"] == pytest.approx(rows[-1]["val_loss_nats"], abs=2e-3)  # best == last here
    assert result["bits_per_char"] == pytest.approx(result["loss_nats"] / 0.6931471805599453)

    other = run_cli("evaluate", str(run_dir), str(corpus_path("alice-wonderland-tutorial-trimmed.txt")))
    assert other.returncode == 0 and b"bits/char" in other.stdout


def test_unknown_prompt_characters_warn_in_one_line(run_dir):
    result = run_cli("generate", str(run_dir), "--prompt", "Alice ate 🍰 and é", "--max-new-tokens", "5",
                     "--seed", "1")
    assert result.returncode == 0
    warnings = [line for line in result.stderr.decode().splitlines() if "warning" in line]
    assert len(warnings) == 1 and "'🍰'" in warnings[0]


def test_corpus_command_summary_and_dump(tmp_path):
    dump = tmp_path / "clean.txt"
    result = run_cli("corpus", str(corpus_path("alice-wonderland-cp1252-trimmed.txt")), "--lowercase",
                     "--dump", str(dump), "--json")
    assert result.returncode == 0
    summary = json.loads(result.stdout)
    assert summary["encoding"] == "cp1252"
    assert summary["total_chars"] == len(dump.read_text(encoding="utf-8"))
    assert summary["vocab"] == sorted(set(dump.read_text(encoding="utf-8")))
    text = run_cli("corpus", str(corpus_path("alice-gutenberg-11-utf8.txt")))
    assert b"Vocabulary size:  73" in text.stdout and b"\\n" in text.stdout


def one_error_line(result, *needles):
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "header-only.txt").write_text(
        "*** START OF THE PROJECT GUTENBERG EBOOK 1 ***\n\n*** END OF THE PROJECT GUTENBERG EBOOK 1 ***\n")
    (tmp_path / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "short.txt").write_text("too short for the window")
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "notrun").mkdir()
    return tmp_path


@pytest.mark.parametrize("args, needles", [
    (["corpus", "{d}/missing.txt"], ["no such file"]),
    (["train", "{d}/missing.txt", "--out", "{d}/o"], ["no such file"]),
    (["train", "{d}/notrun", "--out", "{d}/o"], ["is a directory"]),
    (["train", "{d}/empty.txt", "--out", "{d}/o"], ["is empty"]),
    (["train", "{d}/header-only.txt", "--out", "{d}/o"], ["--keep-header"]),
    (["train", "{d}/binary.bin", "--out", "{d}/o"], ["binary"]),
    (["train", "{d}/short.txt", "--out", "{d}/o", "--seq-len", "100"], ["--seq-len"]),
    (["train", "{alice}", "--out", "{d}/a-file/run", "--max-steps", "1"], ["--out"]),
    (["train", "{alice}", "--out", "{d}/o", "--batch-size", "0"], ["--batch-size"]),
    (["train", "{alice}", "--out", "{d}/o", "--seq-len", "-5"], ["--seq-len"]),
    (["train", "{alice}", "--out", "{d}/o", "--preset", "huge"], ["unknown preset"]),
    (["train", "{alice}", "--out", "{d}/o", "--dropout", "1.5"], ["--dropout"]),
    (["train", "{alice}", "--out", "{d}/o", "--batch-size", "x"], ["--batch-size"]),
    (["generate", "{d}/notrun"], ["not an lstmgen checkpoint"]),
    (["generate", "{d}/missing-run"], ["no such run directory"]),
    (["generate", "{d}/binary.bin"], ["run directory"]),
    (["generate", "--temperature", "-1"], ["--temperature"]),
    (["generate", "--top-p", "0"], ["--top-p"]),
    (["generate", "--top-p", "1.2"], ["--top-p"]),
    (["generate", "--max-new-tokens", "-3"], ["--max-new-tokens"]),
    (["evaluate", "{d}/notrun"], ["not an lstmgen checkpoint"]),
    (["serve", "--scheduler", "thread", "--processes", "2"], ["--processes needs --scheduler process"]),
    (["serve", "--processes", "65"], ["--processes must be from 1 to --max-streams (64)"]),
    (["serve", "--stream-interval", "-1"], ["--stream-interval", "from 0"]),
    (["serve", "--stream-interval", "nan"], ["--stream-interval"]),
])
def test_bad_input_gets_one_clear_line(files, args, needles):
    alice = corpus_path("alice-gutenberg-11-utf8.txt")
    argv = [a.format(d=files, alice=alice) for a in args]
    one_error_line(run_cli(*argv), *needles)


@pytest.mark.parametrize("args, needles", [
    (["train", "{d}/missing.txt", "--out", "{d}/o"], ["no such file"]),
    (["train", "{d}/empty.txt", "--out", "{d}/o"], ["is empty"]),
    (["train", "{d}/a-file", "--out", "{d}/o", "--preset", "huge"], ["unknown preset"]),
    (["generate", "{d}/missing-run"], ["no such run directory"]),
    (["evaluate", "{d}/notrun"], ["not an lstmgen checkpoint"]),
    (["samples-report", "{d}/a-file"], ["is a file"]),
    (["chat", "{d}/missing-run"], ["no such run directory"]),
])
def test_a_wrong_path_fails_before_pytorch_is_imported(files, args, needles):
    """Importing PyTorch takes seconds; a typo in a path is refused before it."""
    argv = [a.format(d=files) for a in args]
    code = ("import sys\nfrom lstmgen.cli import main\nrc = main(sys.argv[1:])\n"
            "print('torch imported' if 'torch' in sys.modules else 'torch not imported', file=sys.stderr)\n"
            "sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, timeout=60)
    err = result.stderr.decode()
    assert result.returncode == 1 and err.splitlines()[-1] == "torch not imported", err
    assert all(needle in err.splitlines()[0] for needle in needles), err


def test_broken_checkpoints_are_refused(run_dir, tmp_path):
    missing = tmp_path / "missing"
    shutil.copytree(run_dir / "best", missing)
    (missing / "model.safetensors").unlink()
    one_error_line(run_cli("generate", str(missing)), "no model.safetensors")

    corrupt = tmp_path / "corrupt"
    shutil.copytree(run_dir / "best", corrupt)
    data = bytearray((corrupt / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (corrupt / "model.safetensors").write_bytes(bytes(data))
    one_error_line(run_cli("generate", str(corrupt)), "corrupt")

    truncated = tmp_path / "truncated"
    shutil.copytree(run_dir / "best", truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    one_error_line(run_cli("evaluate", str(truncated)), "corrupt")

    pickled = tmp_path / "model.pt"
    pickled.write_bytes(b"\x80\x04not really")
    one_error_line(run_cli("generate", str(pickled)), "never loads pickled")


def test_existing_run_is_not_overwritten_without_force(run_dir):
    result = run_cli("train", str(corpus_path("alice-gutenberg-11-utf8.txt")), "--out", str(run_dir),
                     "--max-steps", "1")
    one_error_line(result, "--force")


def test_ctrl_c_during_generation_keeps_what_was_printed():
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "lstmgen", "generate", "--max-new-tokens", "10000000",
                             "--seed", "3", "--prompt", "Alice"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    first = proc.stdout.read(200)  # generation is under way once text arrives
    assert first.startswith(b"Alice")
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert len(first + rest) > 200
    lines = [l for l in err.decode().splitlines() if l.strip()]
    assert "Traceback" not in err.decode() and lines[-1] == "lstmgen generate: interrupted"
