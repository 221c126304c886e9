"""lstmgen export --onnx: both files run in onnxruntime as the model runs in PyTorch."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import lstmgen
from lstmgen import SampleConfig
from lstmgen.cli import main

from conftest import corpus_path, fixture_path, run_cli

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the test extra: pip install -e '.[test]'")
pytest.importorskip("onnx", reason="onnx is in the test extra: pip install -e '.[test]'")

STEPS = 200
TOLERANCE = 1e-4
PROMPT = "alice was beginning to get very tired of sitting by her sister on the bank, "
KINDS = ["bundled char embedding", "char onehot", "tutorial char scaled", "word embedding", "bpe embedding"]


def _small_run(path, **options):
    quiet = lambda *_: None
    lstmgen.train(corpus_path("alice-gutenberg-11-utf8.txt"), path, max_steps=40, hidden_size=48, num_layers=2,
                  embedding_dim=16, batch_size=8, seq_len=32, progress=False, log=quiet, **options)
    return path


def _run_for(kind, tmp):
    if kind.startswith("bundled"):
        return None
    if kind.startswith("tutorial"):
        pytest.importorskip("h5py")
        lstmgen.import_keras(fixture_path("keras-tutorial/tutorial-small.h5"),
                             corpus_path("alice-wonderland-tutorial-trimmed.txt"), tmp / "run")
        return tmp / "run"
    level, mode = kind.split()
    return _small_run(tmp / "run", level=level, input_mode=mode, **({"vocab_size": 300} if level != "char" else {}))


@pytest.fixture(scope="module", params=KINDS)
def exported(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param.replace(" ", "-"))
    run = _run_for(request.param, tmp)
    out = tmp / "onnx"
    args = ([str(run)] if run else []) + ["--onnx", str(out)]
    assert main(["export", *args]) == 0
    return lstmgen.load(run), out


def _sessions(out):
    return (ort.InferenceSession(str(out / "step.onnx"), providers=["CPUExecutionProvider"]),
            ort.InferenceSession(str(out / "sequence.onnx"), providers=["CPUExecutionProvider"]))


def _prompt_ids(model):
    return model.tokenizer.encode(model.prepare_text(PROMPT).text).tolist()


def _greedy_onnx(out, prompt_ids, steps):
    """Greedy tokens from the prompt with the two files alone, and each step's logits."""
    step, sequence = _sessions(out)
    card = json.loads((out / "model.json").read_text())
    h = c = np.zeros((card["num_layers"], 1, card["hidden_size"]), np.float32)
    logits, h, c = sequence.run(None, {"token_ids": np.array([prompt_ids]), "h": h, "c": c})
    logits, tokens, seen = logits[:, -1], [], []
    for _ in range(steps):
        seen.append(logits[0])
        tokens.append(int(np.argmax(logits[0])))
        logits, h, c = step.run(None, {"token_ids": np.array([tokens[-1]]), "h": h, "c": c})
    return tokens, np.stack(seen)


def test_both_files_match_pytorch_over_200_steps_and_greedy_text_is_lstmgens(exported):
    model, out = exported
    ids = _prompt_ids(model)
    tokens, onnx_logits = _greedy_onnx(out, ids, STEPS)
    # PyTorch's own model, read through the same tokens in one pass.
    with torch.no_grad():
        logits, _, _ = model.model(torch.tensor([ids + tokens[:-1]]))
    torch_logits = logits[0, len(ids) - 1:].numpy()
    assert np.abs(onnx_logits - torch_logits).max() <= TOLERANCE
    # sequence.onnx over prompt and text at once agrees too.
    _, sequence = _sessions(out)
    zeros = np.zeros((model.model.config.num_layers, 1, model.model.config.hidden_size), np.float32)
    whole, _, _ = sequence.run(None, {"token_ids": np.array([ids + tokens[:-1]]), "h": zeros, "c": zeros})
    assert np.abs(whole[0] - logits[0].numpy()).max() <= TOLERANCE
    # And lstmgen's own greedy generation (its fp32 steps, statefully) writes the same text.
    config = SampleConfig.plain(temperature=0.0, max_new_tokens=STEPS, precision="fp32",
                                window_generation="stateful", seed=1)
    assert model.generate(PROMPT, config)[0] == model.tokenizer.decode(tokens)


def test_the_readme_example_runs_as_written(exported):
    model, out = exported
    code = re.search(r"```python\n(.*?)```", (out / "README.md").read_text(encoding="utf-8"), re.S).group(1)
    result = subprocess.run([sys.executable, "-c", code], cwd=out, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) > 50
    if model.tokenizer.level == "char":  # its text is in the model's own vocabulary
        assert set(result.stdout) - {"\n"} <= set(model.tokenizer.chars)


def test_a_window_model_generates_as_it_was_trained_from_the_sequence_file(tmp_path):
    """The README's recipe for window-trained models: the last W tokens from a
    zero state for each new token, which is what lstmgen generate does for them."""
    pytest.importorskip("h5py")
    run = _run_for("tutorial char scaled", tmp_path)
    assert main(["export", str(run), "--onnx", str(tmp_path / "onnx")]) == 0
    model = lstmgen.load(run)
    card = json.loads((tmp_path / "onnx" / "model.json").read_text())
    window = card["window_tokens"]
    assert card["framing"] == "windows" and window == 100
    _, sequence = _sessions(tmp_path / "onnx")
    zeros = np.zeros((card["num_layers"], 1, card["hidden_size"]), np.float32)
    ids = _prompt_ids(model)
    for _ in range(60):
        logits, _, _ = sequence.run(None, {"token_ids": np.array([ids[-window:]]), "h": zeros, "c": zeros})
        ids.append(int(np.argmax(logits[0, -1])))
    config = SampleConfig.plain(temperature=0.0, max_new_tokens=60, precision="fp32", seed=1)
    assert model.generate(PROMPT, config)[0] == model.tokenizer.decode(ids[-60:])


def test_an_export_is_not_overwritten_without_force(tmp_path):
    assert main(["export", "--onnx", str(tmp_path / "out")]) == 0
    before = (tmp_path / "out" / "step.onnx").stat().st_mtime_ns
    result = run_cli("export", "--onnx", str(tmp_path / "out"))
    assert result.returncode != 0 and b"Traceback" not in result.stderr
    assert result.stderr.decode().strip().splitlines() == [
        f"lstmgen export: error: {tmp_path / 'out'} already holds an export (step.onnx, sequence.onnx, "
        "tokenizer.json, model.json, README.md); pass --force to overwrite it, or choose another directory"]
    assert (tmp_path / "out" / "step.onnx").stat().st_mtime_ns == before
    assert main(["export", "--onnx", str(tmp_path / "out"), "--force"]) == 0


def test_without_onnx_one_line_names_the_install(tmp_path):
    code = ("import sys; sys.modules['onnx'] = None\n"
            "from lstmgen.cli import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "export", "--onnx", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "lstmgen export: error: exporting to ONNX needs the onnx package: pip install 'lstmgen[onnx]'"]
    assert not (tmp_path / "out").exists()


def test_without_onnxruntime_the_files_are_written_unchecked_and_onnx_steps_refused(tmp_path):
    """Writing the files needs onnx alone; checking them, and --precision onnx, need onnxruntime,
    and its absence is one line naming the install."""
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "from lstmgen.cli import main; sys.exit(main(sys.argv[1:]))")
    export = subprocess.run([sys.executable, "-c", code, "export", "--onnx", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stderr
    lines = export.stderr.strip().splitlines()
    assert len(lines) == 1 and "not checked against PyTorch, since onnxruntime is not installed: " \
        "pip install 'lstmgen[onnx]'" in lines[0]
    assert (tmp_path / "out" / "step.onnx").stat().st_size > 0 and (tmp_path / "out" / "sequence.onnx").exists()
    generate = subprocess.run([sys.executable, "-c", code, "generate", "--precision", "onnx"],
                              capture_output=True, text=True, timeout=120)
    assert generate.returncode == 1 and generate.stdout == "" and "Traceback" not in generate.stderr
    assert generate.stderr.strip().splitlines()[-1] == (
        "lstmgen generate: error: --precision onnx needs onnxruntime and onnx: pip install 'lstmgen[onnx]'")
