"""Each row of docs/errors.md: the command prints exactly the message shown."""

import json
import re
import shlex
import shutil
import sys

import pytest

from lstmgen.cli import main

from conftest import ROOT, corpus_path

DOC = ROOT / "docs" / "errors.md"


def rows():
    out = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| ") or line.startswith("| bad input") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").replace("\\|", "\0").split("|")]
        what, command, message = (c.replace("\0", "|").strip("`") for c in cells)
        out.append(pytest.param(what, command, message, id=what))
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    d = tmp_path_factory.mktemp("errors") / "DIR"
    d.mkdir()
    (d / "empty.txt").write_bytes(b"")
    (d / "blank.txt").write_text("  \n\n\t\n")
    (d / "header-only.txt").write_text(
        "*** START OF THE PROJECT GUTENBERG EBOOK 1 ***\n\n*** END OF THE PROJECT GUTENBERG EBOOK 1 ***\n")
    (d / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)))
    (d / "short.txt").write_text("A tiny text.")
    (d / "latin1.txt").write_bytes("na\u00efve caf\u00e9".encode("latin-1"))
    (d / "a-file").write_text("x")
    (d / "folder").mkdir()
    (d / "model.pt").write_bytes(b"\x80\x04pickle")
    (d / "model.h5").write_bytes(b"\x89HDF\r\n")
    (d / "long-line.txt").write_text("short\n" + "x" * 5000 + "\nshort again\n")
    (d / "export-held").mkdir()
    (d / "export-held" / "step.onnx").write_bytes(b"")
    alice = corpus_path("alice-gutenberg-11-utf8.txt")
    assert main(["train", str(alice), "--out", str(d / "run"), "--max-steps", "2", "--hidden-size", "8",
                 "--num-layers", "1", "--embedding-dim", "4", "--batch-size", "2", "--seq-len", "8", "--quiet"]) == 0
    from lstmgen.text.prepare import prepare

    prepare([str(d / "short.txt")], d / "data-ok", progress=False, log=lambda *_: None)
    for name in ("no-weights", "corrupt-weights", "truncated-weights", "future-format"):
        shutil.copytree(d / "run" / "best", d / name)
    (d / "no-weights" / "model.safetensors").unlink()
    weights = d / "corrupt-weights" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    weights = d / "truncated-weights" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    config_path = d / "future-format" / "config.json"
    config = json.loads(config_path.read_text())
    config["format_version"] = 99
    config_path.write_text(json.dumps(config))
    keras_files(d)
    return d, alice


def keras_files(d):
    """The tutorial's real Keras checkpoint, and an HDF5 file of another architecture (a GRU's shapes)."""
    from conftest import fixture_path

    shutil.copy(fixture_path("keras-tutorial/tutorial-small.h5"), d / "tutorial-small.h5")
    import h5py
    import numpy as np

    with h5py.File(d / "gru.h5", "w") as f:
        cell = f.create_group("model_weights/gru/sequential/gru/gru_cell")
        cell["kernel"] = np.zeros((1, 768), np.float32)
        cell["recurrent_kernel"] = np.zeros((256, 768), np.float32)
        cell["bias"] = np.zeros((2, 768), np.float32)
        dense = f.create_group("model_weights/dense/sequential/dense")
        dense["kernel"] = np.zeros((256, 45), np.float32)
        dense["bias"] = np.zeros(45, np.float32)


def test_the_table_is_there():
    assert len(rows()) >= 30


@pytest.mark.parametrize("what, command, message", rows())
def test_documented_message(scratch, what, command, message, capsys, monkeypatch):
    d, alice = scratch
    monkeypatch.chdir(ROOT)
    missing = re.fullmatch(r"without the (\w+) package", what)
    if missing:  # an optional package not installed: importing it fails as it would then
        monkeypatch.setitem(sys.modules, missing.group(1), None)
    argv = [a.replace("DIR", str(d)).replace("ALICE", str(alice)) for a in shlex.split(command)]
    assert argv[0] == "lstmgen"
    try:
        code = main(argv[1:])
    except SystemExit as exc:  # argparse's own exit for unparsable flags
        code = exc.code
    assert code in (1, 2)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = [l for l in err.splitlines() if l.strip()][-1]
    assert last == message.replace("DIR", str(d)).replace("ALICE", str(alice))
