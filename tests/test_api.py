"""The doors use the public API: the command line imports nothing from
lstmgen but what ``lstmgen`` exports, and those names cover what it does."""

import ast
import json

import pytest

import lstmgen
from lstmgen.errors import LstmgenError

from conftest import ROOT, corpus_path


def public_names_used(door: str) -> set[str]:
    """The lstmgen names that src/lstmgen/DOOR uses, failing on any import from inside the package."""
    tree = ast.parse((ROOT / "src" / "lstmgen" / door).read_text(encoding="utf-8"))
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{door} imports a relative module (line {node.lineno})"
            if node.module and node.module.startswith("lstmgen"):
                assert node.module == "lstmgen", f"{door} reaches into {node.module} (line {node.lineno})"
                used |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name == "lstmgen" or not alias.name.startswith("lstmgen."), alias.name
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "lstmgen":
            used.add(node.attr)
    assert used - {"__version__"} <= set(lstmgen.__all__), sorted(used - set(lstmgen.__all__))
    return used


def test_the_command_line_uses_only_the_public_api():
    used = public_names_used("cli.py")
    assert {"train", "resume", "load", "prepare", "read_corpus", "summarize_corpus", "machine_report"} <= used


def test_the_chat_uses_only_the_public_api():
    assert {"config_fields", "SampleConfig", "LstmgenError"} <= public_names_used("chat.py")


def test_the_server_uses_only_the_public_api():
    assert {"config_fields", "SampleConfig", "Batcher"} <= public_names_used("server.py")


def test_every_exported_name_resolves():
    for name in lstmgen.__all__:
        assert getattr(lstmgen, name) is not None
    with pytest.raises(AttributeError):
        lstmgen.no_such_name


def test_prepare_and_summarize_from_python(tmp_path):
    path = corpus_path("alice-gutenberg-11-utf8.txt")
    corpus = lstmgen.read_corpus(path, lstmgen.CorpusConfig(lowercase=True))
    summary = lstmgen.summarize_corpus(corpus)
    assert summary["total_chars"] == len(corpus.text) and summary["vocab_size"] == len(set(corpus.text))
    assert not any(c.isupper() for c in summary["vocab"])
    result = lstmgen.prepare(path, tmp_path / "data", lowercase=True, val_fraction=0.2, progress=False,
                             log=lambda *_: None)
    meta = json.loads((tmp_path / "data" / "meta.json").read_text())
    assert result.chars == len(corpus.text) == meta["chars"]
    assert result.vocab_size == summary["vocab_size"]
    assert result.val_tokens == len(corpus.text) - int(len(corpus.text) * 0.8)
    with pytest.raises(LstmgenError, match="unknown corpus option.*lowercase"):
        lstmgen.prepare(path, tmp_path / "other", lower_case=True, progress=False)
