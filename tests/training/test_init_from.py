"""Fine-tuning with `lstmgen train CORPUS --init-from RUN_DIR --out NEW_RUN`: the Keras
tutorial's real checkpoint, imported, then trained further by lstmgen's own trainer."""

import json

import pytest
import torch

import lstmgen
from lstmgen.api import BUNDLED_DIR
from lstmgen.cli import main
from lstmgen.errors import LstmgenError
from lstmgen.model import LSTMLanguageModel
from lstmgen.text.batches import load_split
from lstmgen.training.init_from import InitFrom, replace_unknown, resolve_fine_tune

from conftest import corpus_path, fixture_path

pytest.importorskip("h5py", reason="h5py is in the test extra: pip install -e '.[test]'")

TUTORIAL_TEXT = "alice-wonderland-tutorial-trimmed.txt"
# A short held-out part keeps each validation (one 100-character window per
# held-out character) under a second. A fresh Adam moves every weight by about
# --lr in its first steps, and the tutorial's model sits on a plateau, so a rate
# well below the 1e-3 it was trained with lowers the loss from the first steps;
# fp32, so that the figures are the same on every CPU.
QUICK = ["--lr", "2e-4", "--batch-size", "64", "--val-fraction", "0.005", "--eval-every", "4", "--precision", "fp32",
         "--quiet"]


def listing(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("init-from") / "tutorial"
    lstmgen.import_keras(fixture_path("keras-tutorial/tutorial-small.h5"), corpus_path(TUTORIAL_TEXT), out)
    return out


@pytest.fixture(scope="module")
def tuned(imported):
    before = listing(imported)
    out = imported.parent / "tuned"
    assert main(["train", str(corpus_path(TUTORIAL_TEXT)), "--init-from", str(imported), "--out", str(out),
                 "--max-steps", "8", *QUICK]) == 0
    assert listing(imported) == before  # RUN_DIR is only read
    return out


def test_fine_tuning_starts_from_the_imported_weights_and_lowers_the_held_out_loss(imported, tuned):
    source, new = lstmgen.load(imported), lstmgen.load(tuned)
    config = json.loads((tuned / "last" / "config.json").read_text())
    record = config["init_from"]
    assert record["weights_sha256"] == source.checkpoint.meta["weights_sha256"]
    assert record["imported_from"]["file"] == "tutorial-small.h5"
    # The imported model's own loss on the new run's held-out text is the loss the
    # run measured before its first step: it started from exactly those weights.
    val = load_split(tuned / "data").val
    assert record["start_val_loss_nats"] == pytest.approx(source.evaluate_ids(val).loss_nats, abs=1e-5)
    rows = [json.loads(line) for line in (tuned / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 8]
    assert rows[-1]["val_loss_nats"] < rows[0]["val_loss_nats"] < record["start_val_loss_nats"]
    # Shape, vocabulary, text options and the window framing come from the imported run.
    assert new.tokenizer.to_dict() == source.tokenizer.to_dict()
    assert new.model.config == source.model.config
    assert new.corpus_config.lowercase and new.framing == "windows"
    assert (config["train"]["seq_len"], config["train"]["lr"], config["train"]["max_steps"]) == (100, 2e-4, 8)
    assert config["train"]["epochs"] is None  # the limits are the new run's own


def test_the_starting_weights_are_the_checkpoints():
    model_options, _, _, point = resolve_fine_tune(InitFrom(BUNDLED_DIR), None, {})
    model = LSTMLanguageModel(point.checkpoint.model.config)
    point.load_weights(model)
    bundled = lstmgen.load().model.state_dict()
    assert all(torch.equal(t, bundled[k]) for k, t in model.state_dict().items())


def test_the_fine_tuned_run_generates_and_resumes(tuned, capsys):
    assert main(["generate", str(tuned), "--prompt", "alice was", "--max-new-tokens", "30", "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("alice was") and len(text) == len("alice was") + 30 + 1
    assert main(["train", "--resume", str(tuned), "--max-steps", "10", "--quiet"]) == 0
    config = json.loads((tuned / "last" / "config.json").read_text())
    assert config["progress"]["step"] == 10 and config["train"]["framing"] == "windows"
    assert config["init_from"]["weights_sha256"]  # kept across the resume


def test_settings_come_from_run_dir_and_a_preset_must_fit_its_shape(imported):
    model, corpus, train, _ = resolve_fine_tune(InitFrom(imported), None, {"framing": "stream", "dropout": 0.1})
    assert (train.framing, train.batch_size, train.max_minutes, train.epochs) == ("stream", 128, 5.0, None)
    assert model["dropout"] == 0.1 and model["input_mode"] == "scaled" and corpus.lowercase and not corpus.keep_header
    _, _, train, _ = resolve_fine_tune(InitFrom(imported), "tutorial-small", {"hidden_size": 256})
    assert (train.framing, train.epochs) == ("windows", 20)
    with pytest.raises(LstmgenError, match=r"--preset cpu-5min trains hidden size 384, layers 2, input embedding, "
                                           r"but the model in .* has hidden size 256, layers 1, input scaled"):
        resolve_fine_tune(InitFrom(imported), "cpu-5min", {})
    # The bundled model's shape is the default preset's: its dropouts apply.
    model, _, train, _ = resolve_fine_tune(InitFrom(BUNDLED_DIR), "default", {})
    assert model["locked_dropout"] is True and train.framing == "stream"


def test_replace_unknown_is_make_known_on_the_whole_text(imported):
    tokenizer = lstmgen.load(imported).tokenizer
    text = "‘Curiouser’, 1862 — café!"
    unknown = sorted(set(text) - set(tokenizer.index))
    fitted, report = replace_unknown(tokenizer, text, unknown)
    expected, expected_report = tokenizer.make_known(text)
    assert fitted == expected and set(fitted) <= set(tokenizer.index)
    assert report.replaced == expected_report.replaced and report.dropped == expected_report.dropped


def test_prepared_data_with_the_same_vocabulary_fine_tunes(imported, tmp_path):
    data = tmp_path / "data"
    # Read as the tutorial read it, the prepared vocabulary is the model's own.
    lstmgen.prepare([str(corpus_path(TUTORIAL_TEXT))], data, val_fraction=0.005, progress=False, log=lambda *_: None,
                    lowercase=True, keep_header=True)
    result = lstmgen.train(data, tmp_path / "run", init_from=imported, max_steps=1, batch_size=8, eval_every=None,
                           progress=False, log=lambda *_: None)
    assert result.steps == 1
    other = tmp_path / "other"
    lstmgen.prepare([str(corpus_path(TUTORIAL_TEXT))], other, progress=False, log=lambda *_: None)
    with pytest.raises(LstmgenError, match="was tokenized with another vocabulary than the model in"):
        lstmgen.train(other, tmp_path / "refused", init_from=imported, max_steps=1, progress=False)


@pytest.mark.parametrize("argv, message", [
    (["--init-from", "{dir}/missing"],
     "--init-from {dir}/missing: no such run directory; give the --out directory of lstmgen train or "
     "lstmgen import-keras"),
    (["--init-from", "{run}", "--hidden-size", "64", "--input", "scaled"],
     "--hidden-size asks for hidden size 64, but the model in {run} has hidden size 256; a fine-tuned model "
     "keeps the shape and vocabulary it was trained with: drop --hidden-size, or train a new model without "
     "--init-from"),
    (["--init-from", "{run}", "--level", "word"],
     "--level asks for level word, but the model in {run} has level char; a fine-tuned model keeps the shape "
     "and vocabulary it was trained with: drop --level, or train a new model without --init-from"),
])
def test_bad_input_is_one_line(imported, argv, message, capsys):
    values = {"dir": imported.parent, "run": imported}
    argv = [a.format(**values) for a in argv]
    code = main(["train", str(corpus_path(TUTORIAL_TEXT)), "--out", str(imported.parent / "new"), *argv])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == ["lstmgen train: error: " + message.format(**values)]


def test_unknown_characters_are_named_with_the_fix(imported, capsys):
    # The curly-quote edition has capitals (lowercased, as the model's text was),
    # curly quotes and digits that the tutorial's 45 characters lack.
    corpus = corpus_path("alice-gutenberg-11-utf8.txt")
    code = main(["train", str(corpus), "--init-from", str(imported), "--out", str(imported.parent / "new")])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1
    assert last.startswith(f"lstmgen train: error: {corpus} has ")
    assert "that the vocabulary of" in last and "'‘'" in last and "'A'" not in last
    assert last.endswith("--replace-unknown to replace them by known ASCII forms or drop them, "
                         "or train a new model without --init-from")
