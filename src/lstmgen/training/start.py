"""Starting and resuming a run: the run directory, the corpus turned into
token files (or prepared data used where it lies), the model and its trainer,
then the loop."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_checkpoint, load_trainer_state
from ..errors import LstmgenError
from ..machine import pick_device
from ..model import LSTMLanguageModel, ModelConfig
from ..text.batches import TokenSplit, item_ends, load_split, save_split, split_ids
from ..text.items import ITEM_SPLITTERS
from ..text.corpus import CorpusConfig, read_corpus
from ..text.prepare import is_data_dir
from ..text.tokenizer import ItemTokenizer, TokenizerConfig, tokenizer_from_dict
from . import distributed as D
from .config import TrainConfig, TrainResult
from .init_from import StartingPoint, describe_start
from .loop import run, run_data_dir
from .presets import SpeedFloor
from .recorder import format_eval
from .speed import agreed_training_precision, fit_to_speed
from .state import Position, restore_trainer_state
from .trainer import Trainer
from .validation import HeldOut


def prepare_run_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise LstmgenError(f"{out} is a file; give a directory for --out")
    if out.is_dir() and any((out / n).exists() for n in ("best", "last", ".last.old")) and not force:
        raise LstmgenError(
            f"{out} already holds a training run; continue it with --resume {out}, "
            "or pass --force to overwrite it, or choose another --out"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise LstmgenError(f"cannot write to {out} ({exc.strerror}); choose a writable --out directory") from None


def sample_excerpts(text: str, rng: random.Random, count: int = 32, length: int = 100) -> list[str]:
    """Random excerpts of the training text, kept in the checkpoint so a model
    can be prompted 'from the training text' without the corpus at hand."""
    if len(text) <= length:
        return [text]
    out = []
    for _ in range(count):
        start = rng.randrange(0, len(text) - length)
        # Start at a word boundary so the seed reads naturally.
        space = text.find(" ", start, start + 20)
        if space >= 0 and space + 1 + length <= len(text):
            start = space + 1
        out.append(text[start:start + length])
    return out


def _load_corpus_ids(corpus_path, corpus_config: CorpusConfig, config: TrainConfig, log,
                     tokenizer_config: TokenizerConfig, init: StartingPoint | None = None):
    """The corpus as token ids, with a vocabulary built from it, or with the
    vocabulary of the model that ``init`` starts from."""
    corpus = read_corpus(corpus_path, corpus_config)
    for note in corpus.notes:
        log(f"lstmgen: {note}")
    text = corpus.text
    if init is not None:
        text = init.fit_text(text, corpus_path, corpus_config, log)
    if config.items:
        return _item_ids(text, corpus_path, config, log, tokenizer_config, init)
    if init is not None and isinstance(init.tokenizer, ItemTokenizer):
        raise LstmgenError(f"the --init-from model was trained on items (lines or sentences); keep its framing "
                           f"instead of --framing {config.framing}")

    def build(part: str):
        return init.tokenizer if init is not None else tokenizer_config.build(part)

    level = init.tokenizer.level if init is not None else tokenizer_config.level
    if level == "char":
        tokenizer = build(text)
        ids = tokenizer.encode(text)
        cut_chars = split_ids(len(ids), config.val_fraction)
        cut = cut_chars
    else:
        # Split the text first, so that word and BPE vocabularies are learned
        # from the training part only and every level holds out the same text.
        cut_chars = split_ids(len(text), config.val_fraction)
        tokenizer = build(text[:cut_chars])
        train_ids, val_ids = tokenizer.encode(text[:cut_chars]), tokenizer.encode(text[cut_chars:])
        ids = np.concatenate([train_ids, val_ids]).astype(tokenizer.dtype)
        cut = len(train_ids)
    if tokenizer.level == "word":
        unknown = int((ids == 0).sum())
        log(f"lstmgen: word vocabulary of {tokenizer.vocab_size:,} tokens; {unknown:,} of {len(ids):,} tokens "
            f"({unknown / max(len(ids), 1):.2%}) are <unk> "
            + ("(the vocabulary is the --init-from model's)" if init else "(raise --vocab-size to keep more words)"))
    elif tokenizer.level == "bpe":
        log(f"lstmgen: BPE vocabulary of {tokenizer.vocab_size:,} tokens; {len(text) / max(len(ids), 1):.2f} "
            "characters per token")
    unit = "characters" if tokenizer.level == "char" else "tokens"
    if len(ids) < config.seq_len + 1:
        raise LstmgenError(
            f"the corpus has {len(ids):,} {unit} after cleaning, fewer than --seq-len {config.seq_len} + 1; "
            "lower --seq-len or give more text"
        )
    return text, tokenizer, ids, cut, cut_chars


def _item_ids(text: str, corpus_path, config: TrainConfig, log, tokenizer_config: TokenizerConfig,
              init: StartingPoint | None):
    """The corpus cut into items (lines or sentences), held out by items (the
    last ``val_fraction`` of them), as ``<end> item <end> item ... <end>``.

    Returns what _load_corpus_ids does; the text is the items, each followed
    by a newline standing for its end token, so that characters counted on
    it count each end token as one character."""
    items = ITEM_SPLITTERS[config.framing](text)
    unit = "line" if config.framing == "lines" else "sentence"
    if len(items) < 2:
        raise LstmgenError(f"{corpus_path} holds {len(items)} {unit}(s); --framing {config.framing} needs at least two "
                           f"items, one to train on and one to hold out (or use --framing stream)")
    cut_items = min(max(split_ids(len(items), config.val_fraction), 1), len(items) - (config.val_fraction > 0))
    train_items, val_items = items[:cut_items], items[cut_items:]
    tokenizer = _item_tokenizer(items, train_items, tokenizer_config, init, config)
    train_ids, val_ids = tokenizer.encode_items(train_items), tokenizer.encode_items(val_items)
    _check_item_lengths(train_ids, val_ids, items, tokenizer, config, corpus_path, unit)
    joined = "".join(item + "\n" for item in items)
    cut_chars = sum(len(item) + 1 for item in train_items)
    log(f"lstmgen: {len(items):,} {unit}s as items ({len(train_items):,} for training, {len(val_items):,} held "
        f"out); vocabulary {tokenizer.vocab_size:,} with the end-of-item token")
    ids = np.concatenate([train_ids, val_ids]).astype(tokenizer.dtype)
    return joined, tokenizer, ids, len(train_ids), cut_chars


def _item_tokenizer(items: list[str], train_items: list[str], tokenizer_config: TokenizerConfig,
                    init: StartingPoint | None, config: TrainConfig) -> ItemTokenizer:
    if init is not None:
        if not isinstance(init.tokenizer, ItemTokenizer):
            raise LstmgenError(f"the --init-from model was trained on a stream and has no end-of-item token, so it "
                               f"cannot learn --framing {config.framing}; train a new model on the items")
        return init.tokenizer
    # A character vocabulary holds every character (as for streams); word and
    # BPE vocabularies are learned from the training items only.
    return tokenizer_config.build_items(items if tokenizer_config.level == "char" else train_items)


def _check_item_lengths(train_ids, val_ids, items: list[str], tokenizer, config: TrainConfig, corpus_path,
                        unit: str) -> None:
    """Refuse an item longer than --max-item-tokens, naming it."""
    lengths = np.concatenate([np.diff(item_ends(train_ids, tokenizer.end_id)),
                              np.diff(item_ends(val_ids, tokenizer.end_id))]) - 1
    longest = int(np.argmax(lengths))
    if lengths[longest] > config.max_item_tokens:
        start = items[longest][:40].replace("\n", " ")
        hint = ("a file without line ends is one long line: use --framing stream or sentences"
                if config.framing == "lines" else "use --framing lines or stream")
        raise LstmgenError(f"{corpus_path}: {unit} {longest + 1:,} (\"{start}…\") is {int(lengths[longest]):,} tokens "
                           f"long, more than --max-item-tokens {config.max_item_tokens:,}; {hint}, or raise "
                           "--max-item-tokens")


def _check_split_sizes(train_ids, val_ids, config: TrainConfig) -> None:
    if config.items:  # items were checked when they were cut
        return
    min_train = config.seq_len + 1 if config.framing == "windows" else config.seq_len + 2
    if len(train_ids) < min_train:
        raise LstmgenError(
            f"the training part ({len(train_ids):,} characters) is shorter than --seq-len {config.seq_len} + 1; "
            "lower --seq-len or --val-fraction, or give more text"
        )
    if config.framing == "windows" and 0 < len(val_ids) <= config.seq_len:
        raise LstmgenError(
            f"the validation part ({len(val_ids):,} characters) is not longer than the {config.seq_len}-character "
            "window; raise --val-fraction, lower --seq-len or give more text"
        )


def train(
    corpus_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    model_options: dict | None = None,
    corpus_config: CorpusConfig | None = None,
    train_config: TrainConfig | None = None,
    force: bool = False,
    progress: bool = True,
    log=print,
    tokenizer_config: TokenizerConfig | None = None,
    speed_floor: SpeedFloor | None = None,
    init: StartingPoint | None = None,
) -> TrainResult:
    """Train a new model on a text file and write checkpoints to ``out_dir``.

    ``model_options`` are ModelConfig fields except vocab_size, which comes
    from the corpus. ``speed_floor``: train its slower settings instead if
    this machine trains the model slower than its floor. ``init``: start
    from that model's weights and encode the corpus with its tokenizer
    (``model_options`` must then keep its shape; see init_from.py).
    """
    corpus_config = corpus_config or CorpusConfig()
    config = train_config or TrainConfig(max_minutes=5.0)
    out = Path(out_dir)
    # Check everything that can be checked before touching the disk or the clock.
    ModelConfig(vocab_size=1, **(model_options or {}))
    if init is not None:
        init.check_out(out)
    info = D.setup(config.device)
    if not info.is_main:
        log, progress = (lambda *_: None), False
    finished = False
    try:
        result = _train(corpus_path, out, model_options, corpus_config, config, force, progress, log,
                        tokenizer_config, info, speed_floor, init)
        finished = True
        return result
    finally:
        D.teardown(info, finished)


@dataclass
class RunData:
    """The token files a run trains on, and what the checkpoint keeps of the corpus."""

    data_dir: Path
    tokenizer: object
    corpus_config: CorpusConfig
    split: TokenSplit
    excerpts: list[str]
    corpus_chars: int
    source: str


def _train(corpus_path, out: Path, model_options, corpus_config: CorpusConfig, config: TrainConfig, force: bool,
           progress: bool, log, tokenizer_config, info: D.Dist, speed_floor: SpeedFloor | None = None,
           init: StartingPoint | None = None) -> TrainResult:
    prepare_run_dir(out, force)
    D.barrier(info)
    if force and info.is_local_main:
        for stale in ("best", "last", ".best.old", ".last.old"):
            if (out / stale).exists():
                shutil.rmtree(out / stale)
    if is_data_dir(corpus_path):
        config = framing_of_data(corpus_path, config, log)
        data = _use_prepared(corpus_path, corpus_config, config, tokenizer_config, init)
    elif not info.is_local_main:
        data = _read_peer_token_files(corpus_path, out, corpus_config, info)
    else:
        data = _write_token_files(corpus_path, out, corpus_config, config, tokenizer_config, info, log, init)
    split = data.split
    if not config.items and len(split.train) + len(split.val) < config.seq_len + 1:
        raise LstmgenError(
            f"the corpus has {len(split.train) + len(split.val):,} characters, fewer than --seq-len "
            f"{config.seq_len} + 1; lower --seq-len or give more text")
    _check_split_sizes(split.train, split.val, config)
    batch_size = _fit_batch_size(config, split, log)
    rows = D.check_batch(info, batch_size)
    device = D.device_for(info, config.device) or pick_device(config.device)
    model_config = ModelConfig(vocab_size=data.tokenizer.vocab_size, **(model_options or {}))
    speed_check = None
    if speed_floor is not None and data.tokenizer.level == "char":  # the floors are in characters per second
        model_config, speed_check = fit_to_speed(model_config, speed_floor, config, rows, device, info, log)
    torch.manual_seed(config.seed)
    model = LSTMLanguageModel(model_config).to(device)
    if init is not None:
        init.load_weights(model)
    trainer = Trainer(model, config, device, agreed_training_precision(model_config, config, rows, device, info))
    meta_base = {
        "train": config.to_dict(),
        "effective_batch_size": batch_size,
        "source": data.source,
        "data_dir": str(data.data_dir if data.data_dir != out / "data" else "data"),
        "corpus_chars": data.corpus_chars,
        "prompt_excerpts": data.excerpts,
    }
    if speed_check is not None:
        meta_base["speed_check"] = speed_check
    log(f"lstmgen: {data.corpus_chars:,} characters, vocabulary {data.tokenizer.vocab_size}, "
        f"{len(split.train):,} for training and {len(split.val):,} held out; "
        f"model {model.num_parameters():,} parameters on {device}"
        + (f", {info.world} processes" if info.enabled else ""))
    if init is not None:
        meta_base["init_from"] = _starting_loss(init, model, config, data, log, info)
    if info.is_main:
        (out / "metrics.jsonl").write_text("")
    if info.enabled:
        # The same initial weights everywhere; each rank its own dropout.
        torch.manual_seed(config.seed + 1_000_003 * info.rank)
    return run(out, trainer, data.tokenizer, data.corpus_config, split, batch_size, meta_base, Position(), None,
               progress, log, info)


def framing_of_data(corpus_path, config: TrainConfig, log) -> TrainConfig:
    """Prepared items train as the items they are: their framing replaces a
    stream's; a stream trains as a stream or as windows, not as items, and
    items neither as windows nor as the other kind of items."""
    data_framing = json.loads((Path(corpus_path) / "meta.json").read_text(encoding="utf-8")).get("framing", "stream")
    if data_framing == config.framing or (data_framing == "stream" and not config.items):
        return config  # windows are cut from a stream as it lies
    if data_framing != "stream" and config.framing == "stream":
        log(f"lstmgen: {corpus_path} was prepared as items ({data_framing}), so they train as items")
        return dataclasses.replace(config, framing=data_framing)
    fix = (f"prepare it with --framing {config.framing}" if config.items else f"drop --framing {config.framing}")
    raise LstmgenError(f"{corpus_path} was prepared as {'a stream' if data_framing == 'stream' else data_framing}, "
                       f"not for --framing {config.framing}; {fix}")


def _use_prepared(corpus_path, corpus_config: CorpusConfig, config: TrainConfig, tokenizer_config,
                  init: StartingPoint | None = None) -> RunData:
    """Prepared data is used where it lies, memory-mapped, never copied."""
    data_dir = Path(corpus_path).resolve()
    data_meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))
    # A fine-tuning run's options also hold what it took from its model, so only the given ones count there.
    corpus_given = init.given & set(CorpusConfig.__dataclass_fields__) if init else corpus_config != CorpusConfig()
    if corpus_given:
        raise LstmgenError(f"{corpus_path} is prepared data, whose corpus options were fixed by lstmgen prepare; "
                           "drop --lowercase, --ascii, --strip-punctuation, --keep-header and --encoding")
    val_given = "val_fraction" in init.given if init else config.val_fraction != TrainConfig.val_fraction
    if val_given and config.val_fraction != data_meta["val_fraction"]:
        raise LstmgenError(f"{corpus_path} was split by lstmgen prepare --val-fraction "
                           f"{data_meta['val_fraction']}; drop --val-fraction or prepare again")
    data_level = data_meta.get("level", "char")
    # "char" is also what an unset --level resolves to, so only a
    # different explicit level or a --vocab-size is refused.
    if tokenizer_config is not None and (tokenizer_config.vocab_size is not None
                                         or tokenizer_config.level not in ("char", data_level)):
        raise LstmgenError(f"{corpus_path} was tokenized by lstmgen prepare (level "
                           f"{data_meta.get('level', 'char')}); drop --level and --vocab-size, or prepare again")
    tokenizer = tokenizer_from_dict(data_meta["tokenizer"])
    if init is not None:
        init.check_prepared(corpus_path, tokenizer)
    split = load_split(data_dir)
    excerpt_source = tokenizer.decode(split.train[: 1 << 20]) if len(split.train) else ""
    return RunData(data_dir, tokenizer, CorpusConfig.from_dict(data_meta["corpus"]), split,
                   sample_excerpts(excerpt_source, random.Random(config.seed)), int(data_meta["chars"]),
                   str(corpus_path))


def _read_peer_token_files(corpus_path, out: Path, corpus_config: CorpusConfig, info: D.Dist) -> RunData:
    """In a DDP run, the first process of each machine writes the token
    files and the others read them."""
    D.barrier(info)
    data_dir = out / "data"
    own_meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))
    tokenizer = tokenizer_from_dict(own_meta["tokenizer"])
    return RunData(data_dir, tokenizer, corpus_config, load_split(data_dir), [],
                   int(own_meta.get("corpus_chars", 0)), str(corpus_path))


def _write_token_files(corpus_path, out: Path, corpus_config: CorpusConfig, config: TrainConfig, tokenizer_config,
                       info: D.Dist, log, init: StartingPoint | None = None) -> RunData:
    """Read and tokenize the corpus, and write its split into the run's data/."""
    data_dir = out / "data"
    text, tokenizer, ids, cut, cut_chars = _load_corpus_ids(corpus_path, corpus_config, config, log,
                                                            tokenizer_config or TokenizerConfig(), init)
    try:
        split = save_split(data_dir, ids, config.val_fraction,
                           {"source": str(corpus_path), "vocab_size": tokenizer.vocab_size,
                            "level": tokenizer.level, "val_chars": len(text) - cut_chars,
                            "corpus_chars": len(text), "tokenizer": tokenizer.to_dict(),
                            **({"end_id": tokenizer.end_id, "framing": config.framing} if config.items else {})},
                           cut=cut)
    except OSError as exc:
        raise LstmgenError(f"could not write the token files in {out} ({exc.strerror}); free some disk space "
                           "or choose another --out") from None
    data = RunData(data_dir, tokenizer, corpus_config, split, sample_excerpts(text[:cut_chars], random.Random(config.seed)),
                   len(text), str(corpus_path))
    if info.enabled:
        D.barrier(info)
    return data


def _starting_loss(init: StartingPoint, model: LSTMLanguageModel, config: TrainConfig, data: RunData, log,
                   info: D.Dist) -> dict:
    """init_from for config.json, with the held-out loss of the starting
    weights: the figure that fine-tuning has to beat."""
    record = init.record()
    log(describe_start(init, model, config))
    if info.is_main:
        start = HeldOut(data.split.val, config, data.tokenizer, data.data_dir, data.split.val_ends).evaluate(model)
        if start is not None:
            record["start_val_loss_nats"] = round(start.loss_nats, 5)
            log(f"lstmgen: held-out loss before fine-tuning: {format_eval(start)}")
    return record


def _fit_batch_size(config: TrainConfig, split, log) -> int:
    """The batch size, lowered where a short text cannot fill its columns."""
    batch_size = config.batch_size
    if config.framing == "stream":
        fit = (len(split.train) - 1 - config.seq_len) // config.seq_len
        if fit < batch_size:
            batch_size = max(1, fit)
            log(f"lstmgen: the training text is short, so --batch-size is lowered to {batch_size}")
    return batch_size


def resume(run_dir: str | os.PathLike, progress: bool = True, log=print, **limits) -> TrainResult:
    """Continue a run from its last checkpoint, exactly where it stopped.

    ``limits`` may raise ``epochs``, ``max_steps`` or ``max_minutes``; every
    other setting comes from the run itself.
    """
    out = Path(run_dir)
    unknown = set(limits) - {"epochs", "max_steps", "max_minutes"}
    if unknown:
        raise LstmgenError(f"only --epochs, --max-steps and --max-minutes can change on --resume, not {sorted(unknown)}")
    if not out.is_dir():
        raise LstmgenError(f"{out}: no such run directory to resume; give the --out directory of lstmgen train")
    last = out / "last" if (out / "last").exists() else out / ".last.old"
    if not last.exists():
        raise LstmgenError(f"{out} has no last/ checkpoint to resume from; start a new run with lstmgen train")
    checkpoint = load_checkpoint(last)
    meta = checkpoint.meta
    saved = dict(meta["train"])
    saved.setdefault("precision", "fp32")  # runs from before --precision trained in fp32
    config = TrainConfig.from_dict(dict(saved, **{k: v for k, v in limits.items() if v is not None}))
    info = D.setup(config.device)
    if not info.is_main:
        log, progress = (lambda *_: None), False
    finished = False
    try:
        device = D.device_for(info, config.device) or pick_device(config.device)
        model = checkpoint.model.to(device).train()
        rows = D.check_batch(info, meta["effective_batch_size"])
        trainer = Trainer(model, config, device, agreed_training_precision(model.config, config, rows, device, info))
        tensors, data = load_trainer_state(last)
        position, carried = restore_trainer_state(trainer.optimizer, tensors, data, device, info)
        result = _resume(out, checkpoint, meta, config, trainer, position, carried, progress, log, info)
        finished = True
        return result
    finally:
        D.teardown(info, finished)


def _resume(out: Path, checkpoint, meta: dict, config: TrainConfig, trainer: Trainer, position: Position, carried,
            progress: bool, log, info: D.Dist) -> TrainResult:
    split = load_split(run_data_dir(out, meta))
    meta_base = {k: meta[k] for k in ("effective_batch_size", "source", "corpus_chars", "prompt_excerpts")}
    if "init_from" in meta:
        meta_base["init_from"] = meta["init_from"]
    meta_base["data_dir"] = meta.get("data_dir", "data")
    meta_base["train"] = config.to_dict()
    # Metric rows written after this checkpoint belong to the lost part of the run.
    metrics = out / "metrics.jsonl"
    if info.is_main:
        rows = [line for line in metrics.read_text().splitlines() if line.strip()] if metrics.exists() else []
        kept = [line for line in rows if json.loads(line)["step"] <= position.step]
        metrics.write_text("".join(line + "\n" for line in kept))
    D.barrier(info)
    log(f"lstmgen: resuming {out} at step {position.step} (epoch {position.epoch + 1}, "
        f"batch {position.batch_index})")
    return run(out, trainer, checkpoint.tokenizer, checkpoint.corpus_config, split,
                meta["effective_batch_size"], meta_base, position, carried, progress, log, info)
