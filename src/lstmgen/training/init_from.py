"""Fine-tuning: a new run whose model starts from another run's weights and
keeps that run's vocabulary (``lstmgen train CORPUS --init-from RUN_DIR``).

What the new run takes from RUN_DIR, and what may change:

- the model's shape (sizes, layers, input mode, tied weights) and its
  tokenizer are fixed, because the weights only fit those; an option or a
  preset that asks for another shape or level is refused in one line;
- the text options that made the vocabulary's text (lowercase, ASCII
  folding, punctuation removal) are RUN_DIR's, so the new text reads like
  the old one; a flag can switch one on. How a file is read (its encoding,
  its Gutenberg header) belongs to the new file and follows the usual
  defaults;
- the training recipe (framing, window or BPTT length, batch, rate,
  schedule, dropout...) is RUN_DIR's, so a window-trained model keeps its
  windows; a named preset replaces it with the preset's, whose model shape
  must match; every flag overrides either. The limits belong to the new run
  (the default preset's 5 minutes unless given).

RUN_DIR is only read: the new run has its own directory, optimizer and data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoint import Checkpoint, load_checkpoint
from ..errors import LstmgenError
from ..model import LSTMLanguageModel
from ..text.corpus import CorpusConfig, normalize_text
from ..text.tokenizer import UnknownReport
from .config import TrainConfig
from .presets import PRESETS, apply_overrides, configs_from_parts, get_preset

SHAPE_FIELDS = ("hidden_size", "num_layers", "input_mode", "embedding_dim", "tie_weights")
"""ModelConfig fields the weights depend on (the dropouts only act in training)."""
TEXT_FIELDS = ("lowercase", "ascii", "strip_punctuation")
"""CorpusConfig fields that decide which characters the text holds."""
RECIPE_FIELDS = ("framing", "max_item_tokens", "batch_size", "seq_len", "lr", "weight_decay", "lr_schedule", "plateau_patience",
                 "plateau_factor", "warmup_steps", "grad_clip", "val_fraction", "eval_every", "eval_max_tokens",
                 "patience")
"""TrainConfig fields taken from RUN_DIR; the limits, the seed, the device and
the precision are the new run's own."""
_LIMITS = ("epochs", "max_steps", "max_minutes")
_LABELS = {"hidden_size": "hidden size", "num_layers": "layers", "input_mode": "input",
           "embedding_dim": "embedding dim", "tie_weights": "tied weights", "level": "level",
           "vocab_size": "vocabulary size"}
_FLAGS = {"input_mode": "--input"}


@dataclass(frozen=True)
class InitFrom:
    """Where a fine-tuning run starts, and what it does with characters its vocabulary lacks."""

    run_dir: str | os.PathLike
    """A run directory (its best checkpoint is used, as ``lstmgen.load``
    picks), a checkpoint directory, or the bundled model's folder."""
    replace_unknown: bool = False
    """Characters of the corpus that the vocabulary lacks: False refuses the
    corpus, naming them; True replaces each by its ASCII form where the
    vocabulary has that, drops the others, and says what it changed."""


@dataclass
class StartingPoint:
    """RUN_DIR's checkpoint, loaded, and what the new run was told explicitly."""

    options: InitFrom
    checkpoint: Checkpoint
    given: frozenset[str] = field(default_factory=frozenset)
    """Option names given explicitly (not taken from RUN_DIR or a preset)."""

    @property
    def tokenizer(self):
        return self.checkpoint.tokenizer

    @property
    def where(self) -> str:
        return str(self.options.run_dir)

    def record(self) -> dict:
        """What the new run's config.json keeps of where its weights came from."""
        meta = self.checkpoint.meta
        record = {"run_dir": self.where, "checkpoint": str(self.checkpoint.path.resolve()),
                  "weights_sha256": meta.get("weights_sha256")}
        if "progress" in meta:
            record["step"] = meta["progress"].get("step")
        if "imported_from" in meta:
            record["imported_from"] = meta["imported_from"]
        return record

    def check_out(self, out: Path) -> None:
        """The new run must not be written over the checkpoint it starts from."""
        checkpoint, target = self.checkpoint.path.resolve(), out.resolve()
        if target == checkpoint or target in checkpoint.parents:
            raise LstmgenError(f"--out {out} holds the model that --init-from starts from; fine-tuning writes "
                               "a new run, so choose another --out")

    def load_weights(self, model: LSTMLanguageModel) -> None:
        # The new ModelConfig may differ in its dropouts, never in a shape, so every tensor fits.
        model.load_state_dict(self.checkpoint.model.state_dict())

    def fit_text(self, text: str, source, corpus_config: CorpusConfig, log) -> str:
        """The corpus text, every character of it in the vocabulary, or one line naming the fix.

        Word vocabularies read unknown words as <unk> and byte-level BPE has no
        unknown text, so only a character vocabulary can refuse a corpus.
        """
        if self.tokenizer.level != "char":
            return text
        unknown = sorted(set(text) - set(self.tokenizer.index))
        if not unknown:
            return text
        if self.options.replace_unknown:
            text, report = replace_unknown(self.tokenizer, text, unknown)
            log(f"lstmgen: {report.describe()}")
            return text
        shown = ", ".join(repr(c) for c in unknown[:8]) + (", ..." if len(unknown) > 8 else "")
        raise LstmgenError(
            f"{source} has {len(unknown)} character(s) that the vocabulary of {self.where} lacks: {shown}; "
            f"{_unknown_fixes(unknown, set(self.tokenizer.index), corpus_config)}")

    def check_prepared(self, data_dir, tokenizer) -> None:
        """Prepared token ids mean something only under the tokenizer that wrote them."""
        if tokenizer.to_dict() != self.tokenizer.to_dict():
            raise LstmgenError(
                f"{data_dir} was tokenized with another vocabulary than the model in {self.where}; give the "
                "text file instead (it is encoded with the model's vocabulary), or train a new model without "
                "--init-from")


def replace_unknown(tokenizer, text: str, unknown: list[str]) -> tuple[str, UnknownReport]:
    """make_known's replacements, decided once per distinct character and
    applied with str.translate: the same text, at C speed on a big corpus."""
    table, replaced, dropped = {}, {}, {}
    for ch in unknown:
        known, report = tokenizer.make_known(ch)
        table[ord(ch)] = known
        replaced.update(report.replaced)
        if report.dropped:
            dropped[ch] = text.count(ch)
    return text.translate(table), UnknownReport(replaced, dropped)


def _unknown_fixes(unknown: list[str], vocab: set[str], corpus_config: CorpusConfig) -> str:
    """The corpus flags that would bring every unknown character into the vocabulary, and the other ways out."""
    fixes = []
    for flags in (("lowercase",), ("ascii",), ("lowercase", "ascii")):
        if any(getattr(corpus_config, f) for f in flags):
            continue
        trial = CorpusConfig.from_dict(dict(corpus_config.to_dict(), **{f: True for f in flags}))
        if all(set(normalize_text(ch, trial)[0]) <= vocab for ch in unknown):
            fixes.append(f"pass {' '.join('--' + f for f in flags)} to {_what(flags)}")
            break
    fixes.append(("" if fixes else "pass ") + "--replace-unknown to replace them by known ASCII forms or drop them")
    fixes.append("or train a new model without --init-from")
    return ", ".join(fixes)


def _what(flags: tuple[str, ...]) -> str:
    return " and ".join({"lowercase": "lowercase the text", "ascii": "fold them to ASCII"}[f] for f in flags)


def load_starting_point(options: InitFrom) -> Checkpoint:
    if not Path(options.run_dir).exists():
        raise LstmgenError(f"--init-from {options.run_dir}: no such run directory; give the --out directory of "
                           "lstmgen train or lstmgen import-keras")
    return load_checkpoint(options.run_dir)


def resolve_fine_tune(options: InitFrom, preset: str | None, overrides: dict):
    """The configs of a run that starts from ``options.run_dir``: (model
    options, CorpusConfig, TrainConfig, StartingPoint). See the module's
    docstring for what comes from where."""
    checkpoint = load_starting_point(options)
    point = StartingPoint(options, checkpoint, frozenset(k for k, v in overrides.items() if v is not None))
    saved_model = checkpoint.model.config.to_dict()
    saved_model.pop("vocab_size")
    saved_train = checkpoint.meta.get("train") or {}
    if preset is None:
        model = dict(saved_model)
        train = {k: saved_train[k] for k in RECIPE_FIELDS if k in saved_train}
    else:
        parts = get_preset(preset)
        _check_shape(parts["model"], saved_model, point.where, asking=f"--preset {preset} trains",
                     fix=f"drop --preset to fine-tune with the settings of {point.where}")
        model = dict(saved_model, **parts["model"])
        train = parts["train"]
    given = {k: v for k, v in overrides.items() if v is not None}
    shape_given = {k: v for k, v in given.items() if k in SHAPE_FIELDS}
    tokens_given = {k: v for k, v in given.items() if k in ("level", "vocab_size")}
    _check_shape(dict(shape_given, **tokens_given),
                 dict(saved_model, level=checkpoint.tokenizer.level, vocab_size=checkpoint.tokenizer.vocab_size),
                 point.where)
    parts = {"model": model, "train": train, "tokenizer": {},
             "corpus": {k: getattr(checkpoint.corpus_config, k) for k in TEXT_FIELDS}}
    apply_overrides(parts, {k: v for k, v in given.items() if k not in tokens_given})
    if preset is None and not any(parts["train"].get(k) is not None for k in _LIMITS):
        parts["train"]["max_minutes"] = PRESETS["default"]["train"]["max_minutes"]
    model_options, corpus_config, train_config, _ = configs_from_parts(parts)
    return model_options, corpus_config, train_config, point


def _check_shape(wanted: dict, saved: dict, where: str, asking: str | None = None, fix: str | None = None) -> None:
    """One line naming each shape setting that differs from the saved model's
    (by default, as flags the user gave)."""
    differ = [k for k in _LABELS if k in wanted and k in saved and wanted[k] != saved[k]]
    if not differ:
        return
    flags = _flags_text({k: wanted[k] for k in differ})
    asking = asking or f"{flags} {'asks' if len(differ) == 1 else 'ask'} for"
    fix = fix or f"drop {flags}"
    ours = ", ".join(f"{_LABELS[k]} {_shown(wanted[k])}" for k in differ)
    theirs = ", ".join(f"{_LABELS[k]} {_shown(saved[k])}" for k in differ)
    raise LstmgenError(f"{asking} {ours}, but the model in {where} has {theirs}; a fine-tuned model keeps the "
                       f"shape and vocabulary it was trained with: {fix}, or train a new model without --init-from")


def _shown(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _flags_text(given: dict) -> str:
    flags = []
    for key in given:
        flag = _FLAGS.get(key, "--" + key.replace("_", "-"))
        if isinstance(given[key], bool) and not given[key]:
            flag = "--no-" + flag[2:]
        flags.append(flag)
    return " and ".join(flags) if len(flags) <= 2 else ", ".join(flags[:-1]) + " and " + flags[-1]


def describe_start(point: StartingPoint, model, config: TrainConfig) -> str:
    """One line: what the run starts from and the recipe it trains with."""
    cfg = model.config
    shape = f"{cfg.num_layers} × {cfg.hidden_size} LSTM, input {cfg.input_mode}"
    return (f"lstmgen: fine-tuning {point.checkpoint.path} ({shape}, vocabulary {point.tokenizer.vocab_size} "
            f"{'characters' if point.tokenizer.level == 'char' else point.tokenizer.level + ' tokens'}) with a new "
            f"optimizer: {config.framing} framing, --seq-len {config.seq_len}, --batch-size {config.batch_size}, "
            f"--lr {config.lr:g} ({config.lr_schedule})")
