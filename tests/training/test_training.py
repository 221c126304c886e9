import json

import numpy as np
import pytest
import torch

import lstmgen
from lstmgen.errors import LstmgenError
from lstmgen.precision import PrecisionChoice
from lstmgen.text.batches import load_split
from lstmgen.training.config import TrainConfig
from lstmgen.training.presets import PRESETS, resolve
from lstmgen.training.schedule import lr_at
from lstmgen.training.trainer import Trainer

from conftest import corpus_path

TINY = dict(hidden_size=32, num_layers=1, embedding_dim=8, eval_every=None)


def quiet(*_):
    pass


def test_tutorial_small_preset_is_the_tutorials_setup():
    model, corpus, train, tokens = resolve("tutorial-small")
    assert tokens.level == "char"
    assert model == {"hidden_size": 256, "num_layers": 1, "dropout": 0.2, "input_mode": "scaled"}
    assert corpus.lowercase and not corpus.ascii
    assert (train.framing, train.batch_size, train.seq_len, train.epochs) == ("windows", 128, 100, 20)
    _, _, large, _ = resolve("tutorial-large")
    assert (large.batch_size, large.epochs) == (64, 50)
    assert PRESETS["tutorial-large"]["model"]["num_layers"] == 2


def test_flags_override_the_preset():
    model, corpus, train, _ = resolve("tutorial-small", hidden_size=64, lowercase=False, epochs=3, seed=None)
    assert model["hidden_size"] == 64 and not corpus.lowercase and train.epochs == 3 and train.seed == 1337


def test_every_preset_makes_valid_configs_and_the_default_is_the_5_minute_recipe():
    from lstmgen.cli import build_parser
    from lstmgen.model import ModelConfig

    for name in PRESETS:
        model, _, train, _ = resolve(name)
        ModelConfig(vocab_size=60, **model)
        assert train.max_minutes or train.epochs
    assert PRESETS["default"] == PRESETS["cpu-5min"]
    assert [resolve(f"cpu-{m}min")[2].max_minutes for m in (5, 20, 60)] == [5.0, 20.0, 60.0]
    # A preset's switch can be turned off from the command line.
    args = build_parser().parse_args(["train", "x.txt", "--out", "r", "--no-locked-dropout", "--weight-dropout", "0"])
    model, _, _, _ = resolve("cpu-5min", locked_dropout=args.locked_dropout, weight_dropout=args.weight_dropout)
    assert model["locked_dropout"] is False and model["weight_dropout"] == 0.0


def test_tutorial_framing_trains_and_evaluates_on_windows(tmp_path):
    result = lstmgen.train(corpus_path("alice-wonderland-tutorial-trimmed.txt"), tmp_path / "run",
                           preset="tutorial-small", max_steps=4, epochs=None, progress=False, log=quiet,
                           hidden_size=16)
    assert result.steps == 4
    model = lstmgen.load(tmp_path / "run")
    assert model.model.config.input_mode == "scaled" and model.framing == "windows"
    text = lstmgen.read_corpus(corpus_path("alice-wonderland-tutorial-trimmed.txt"), model.corpus_config).text
    assert model.tokenizer.chars == sorted(set(text)) and "A" not in model.tokenizer.chars
    val = model.evaluate_validation()
    ids_val = np.fromfile(tmp_path / "run" / "data" / "val.bin", dtype=np.uint8)
    assert val.tokens == len(ids_val) - 100  # one prediction per window after the first 100 characters
    assert val.loss_nats == pytest.approx(result.best_val.loss_nats, abs=1e-4)


def test_same_seed_same_weights(tmp_path):
    runs = []
    for name in ("a", "b"):
        lstmgen.train(corpus_path("alice-gutenberg-11-utf8.txt"), tmp_path / name, max_steps=3, progress=False,
                      log=quiet, batch_size=4, seq_len=16, **TINY)
        runs.append(lstmgen.load(tmp_path / name).model.state_dict())
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key])


def test_short_text_lowers_the_batch_size_and_no_validation_keeps_best_by_train_loss(tmp_path):
    corpus = tmp_path / "small.txt"
    corpus.write_text("the cat sat on the mat. " * 20)
    notes = []
    settings = dict(TINY, progress=False, batch_size=64, seq_len=32, val_fraction=0.0, eval_every=1)
    result = lstmgen.train(corpus, tmp_path / "run", max_steps=6, log=notes.append, **settings)
    assert any("--batch-size is lowered" in n for n in notes)
    assert result.best_val is None
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all("val_loss_nats" not in row for row in rows)
    # best/ is the step with the lowest training loss (the mean of the recent
    # steps), and holds that step's weights: a run stopped there has them too.
    best_row = min(rows, key=lambda row: row["train_loss_nats"])
    best = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert best["progress"]["step"] == best_row["step"]
    lstmgen.train(corpus, tmp_path / "to-best", max_steps=best_row["step"], log=quiet, **settings)
    same = lstmgen.load(tmp_path / "to-best").model.state_dict()
    kept = lstmgen.load(tmp_path / "run" / "best").model.state_dict()
    assert all(torch.equal(same[k], kept[k]) for k in same)
    with pytest.raises(LstmgenError, match="held out no validation"):
        lstmgen.load(tmp_path / "run").evaluate_validation()


def test_cosine_schedule_with_warmup():
    config = TrainConfig(max_steps=100, lr=1e-2, lr_schedule="cosine", warmup_steps=10)
    assert lr_at(config, 0, 0.0) == pytest.approx(1e-3)
    assert lr_at(config, 9, 0.09) == pytest.approx(1e-2)
    assert lr_at(config, 50, 0.5) == pytest.approx(1e-3 + 9e-3 * 0.5)
    assert lr_at(config, 100, 1.0) == pytest.approx(1e-3)


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "--batch-size"),
    ({"seq_len": -1}, "--seq-len"),
    ({"lr": 0.0}, "--lr"),
    ({"max_minutes": -2.0}, "--max-minutes"),
    ({"val_fraction": 1.0}, "--val-fraction"),
    ({"framing": "bags"}, "--framing"),
    ({"weight_decay": -1.0}, "--weight-decay"),
    ({"patience": 0}, "--patience"),
    ({"lr_schedule": "plateau", "plateau_factor": 1.0}, "--plateau-factor"),
    ({"plateau_patience": 0}, "--plateau-patience"),
    ({"lr_schedule": "step"}, "--lr-schedule"),
    ({"precision": "fp16"}, "--precision"),
    ({"stop_at_loss": 0.0}, "--stop-at-loss"),
    ({"epochs": None, "max_steps": None, "max_minutes": None}, "needs a limit"),
])
def test_impossible_training_options(kwargs, message):
    base = {"epochs": 1}
    base.update(kwargs)
    with pytest.raises(LstmgenError, match=message):
        TrainConfig(**base)


def test_bf16_autocast_trains_close_to_fp32(tmp_path):
    """The same tiny run in both precisions: finite, and close in held-out loss."""
    from test_precision import bf16_lstm_runs

    if not bf16_lstm_runs():
        pytest.skip("PyTorch has no bf16 LSTM on this CPU; test_precision checks the error a user gets instead")
    options = dict(TINY, eval_every=None, batch_size=4, seq_len=32)
    losses = {}
    for precision in ("fp32", "bf16"):
        result = lstmgen.train(corpus_path("alice-gutenberg-11-utf8.txt"), tmp_path / precision, max_steps=8,
                               progress=False, log=quiet, precision=precision, **options)
        losses[precision] = result.best_val_loss
        assert json.loads((tmp_path / precision / "last" / "config.json").read_text())["train"][
            "precision"] == precision
    assert np.isfinite(losses["bf16"])
    assert abs(losses["fp32"] - losses["bf16"]) < 0.05
    assert losses["fp32"] != losses["bf16"]  # bf16 really ran: its rounding changes the result


def test_stop_at_loss_ends_the_run_at_the_first_validation_reaching_it(tmp_path):
    alice = corpus_path("alice-gutenberg-11-utf8.txt")
    options = dict(TINY, eval_every=3, batch_size=4, seq_len=32, max_steps=30)
    result = lstmgen.train(alice, tmp_path / "hit", progress=False, log=quiet, stop_at_loss=50.0, **options)
    assert (result.steps, result.stopped_by) == (3, "stop_at_loss")
    result = lstmgen.train(alice, tmp_path / "miss", progress=False, log=quiet, stop_at_loss=0.01, **options)
    assert (result.steps, result.stopped_by) == (30, "max_steps")
    rows = [json.loads(line) for line in (tmp_path / "miss" / "metrics.jsonl").read_text().splitlines()]
    # train_s counts optimizer steps only, so it grows but stays below the wall clock.
    assert all(0 < r["train_s"] <= r["elapsed_s"] for r in rows)
    assert [r["train_s"] for r in rows] == sorted(r["train_s"] for r in rows)


def test_regularized_model_trains_resumes_and_generates_from_the_command_line(tmp_path):
    from conftest import run_cli

    alice = str(corpus_path("alice-gutenberg-11-utf8.txt"))
    out = str(tmp_path / "run")
    flags = ["--hidden-size", "32", "--embedding-dim", "32", "--batch-size", "4", "--seq-len", "32",
             "--embedding-dropout", "0.1", "--locked-dropout", "--weight-dropout", "0.2", "--tie-weights", "--quiet"]
    result = run_cli("train", alice, "--out", out, "--max-steps", "3", *flags)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    config = json.loads((tmp_path / "run" / "last" / "config.json").read_text())["model"]
    assert (config["embedding_dropout"], config["locked_dropout"], config["weight_dropout"], config["tie_weights"]) == (
        0.1, True, 0.2, True)
    assert run_cli("train", "--resume", out, "--max-steps", "5", "--quiet").returncode == 0
    generated = run_cli("generate", out, "--prompt", "Alice", "--max-new-tokens", "20", "--seed", "1")
    assert generated.returncode == 0 and len(generated.stdout.decode()) >= 20


def test_weight_decay_uses_adamw_on_matrices_only():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    fp32 = PrecisionChoice("fp32", "requested")
    trainer = Trainer(model, TrainConfig(max_steps=1, weight_decay=0.5, lr=0.1), torch.device("cpu"), fp32)
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    weight, bias = model[0].weight.detach().clone(), model[0].bias.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    trainer.optimizer.step()
    assert torch.allclose(model[0].weight, weight * (1 - 0.1 * 0.5))  # decoupled decay, no gradient
    assert torch.equal(model[0].bias, bias)
    plain = Trainer(model, TrainConfig(max_steps=1), torch.device("cpu"), fp32)
    assert type(plain.optimizer) is torch.optim.Adam


def test_patience_stops_after_validations_without_a_new_best(tmp_path):
    # At lr 1e-12 no fp32 weight moves, so the held-out loss repeats and never improves after the first.
    result = lstmgen.train(corpus_path("alice-gutenberg-11-utf8.txt"), tmp_path / "run", progress=False, log=quiet,
                           **dict(TINY, eval_every=1, batch_size=4, seq_len=32, max_steps=30, lr=1e-12,
                                  warmup_steps=0, patience=2))
    assert (result.steps, result.stopped_by) == (3, "patience")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["val_loss_nats"] >= rows[0]["val_loss_nats"] and rows[2]["val_loss_nats"] >= rows[0]["val_loss_nats"]


def test_plateau_halves_the_rate_after_stalled_validations_and_resumes_with_it(tmp_path):
    # As above, lr 1e-12 keeps the held-out loss from ever improving after the first validation.
    options = dict(TINY, eval_every=1, batch_size=4, seq_len=32, lr=1e-12, warmup_steps=0, lr_schedule="plateau",
                   plateau_patience=2, plateau_factor=0.5, checkpoint_every=1)
    lstmgen.train(corpus_path("alice-gutenberg-11-utf8.txt"), tmp_path / "run", progress=False, log=quiet,
                  **dict(options, max_steps=5))
    lstmgen.resume(tmp_path / "run", progress=False, log=quiet, max_steps=8)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # Validations 2 and 3 stall: the rate halves from step 4 on; 4 and 5 stall again: quarter from step 6;
    # 6 and 7 stall (across the resume): an eighth at step 8.
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert [r["lr"] / 1e-12 for r in rows] == pytest.approx([1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.125])


def test_tiny_shakespeare_is_split_where_nanogpt_splits_it(tmp_path):
    path = corpus_path("tinyshakespeare.txt")
    text = path.read_text(encoding="utf-8")
    train_chars = int(len(text) * 0.9)  # nanoGPT's data/shakespeare_char/prepare.py
    lstmgen.train(path, tmp_path / "run", progress=False, log=quiet, **dict(TINY, max_steps=1))
    # The split as written: the token files themselves, decoded at the cut.
    split = load_split(tmp_path / "run" / "data")
    tokenizer = lstmgen.load(tmp_path / "run").tokenizer
    assert (len(split.train), len(split.val)) == (train_chars, len(text) - train_chars)
    assert tokenizer.decode(split.train[-300:]) == text[train_chars - 300:train_chars]
    assert tokenizer.decode(split.val[:300]) == text[train_chars:train_chars + 300]
