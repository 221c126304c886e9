"""Checkpoints a stranger can read: safetensors weights plus plain JSON.

A checkpoint is a directory::

    model.safetensors   the weights (never pickle)
    config.json         format version, ModelConfig, CorpusConfig, training
                        settings and progress, SHA-256 of the weights
    tokenizer.json      the vocabulary
    trainer_state.*     (last/ only) optimizer, RNG, data position and carried
                        LSTM state, so that --resume continues the same run

A run directory holds ``best/`` (lowest validation loss) and ``last/``.
Writes go to a temporary directory that is renamed into place, so a crash
leaves the previous checkpoint whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .text.corpus import CorpusConfig
# The checks that need no PyTorch live there, for the command line to run first; still importable from here.
from .checkpoint_files import CONFIG, FORMAT_VERSION, TOKENIZER, WEIGHTS, checked_checkpoint
from .checkpoint_files import read_config, resolve_checkpoint  # noqa: F401
from .errors import LstmgenError
from .model import LSTMLanguageModel, ModelConfig
from .text.tokenizer import CharTokenizer, tokenizer_from_dict

TRAINER_TENSORS = "trainer_state.safetensors"
TRAINER_JSON = "trainer_state.json"
# safetensors creates its file with mode 0600; give it the mode every other
# file gets, so that a run directory can be shared like any other.
_UMASK = os.umask(0)
os.umask(_UMASK)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model in eval mode and everything needed to use it."""

    model: LSTMLanguageModel
    tokenizer: CharTokenizer
    corpus_config: CorpusConfig
    path: Path
    meta: dict = field(default_factory=dict)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json(path: Path, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    """save_file, flushed to disk; its write errors (disk full, file-size
    limit) come back as OSError like every other write's."""
    try:
        save_file(tensors, str(path), metadata=metadata)
        os.chmod(path, 0o666 & ~_UMASK)
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
    except SafetensorError as exc:
        raise OSError(f"writing {path.name} failed: {exc}") from None


def save_checkpoint(
    directory: Path,
    model: LSTMLanguageModel,
    tokenizer: CharTokenizer,
    corpus_config: CorpusConfig,
    meta: dict,
    weights_dtype: torch.dtype = torch.float32,
    trainer_state: tuple[dict[str, torch.Tensor], dict] | None = None,
) -> None:
    """Write a checkpoint directory atomically.

    ``weights_dtype=torch.float16`` halves the file (used for the bundled
    model); loading always returns float32 weights. ``trainer_state`` is
    (tensors, JSON data) for exact resume.
    """
    directory = Path(directory)
    parent = directory.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{directory.name}.tmp-{os.getpid()}"
    old = parent / f".{directory.name}.old"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        tensors = {k: v.detach().to("cpu", weights_dtype).contiguous() for k, v in model.state_dict().items()}
        if model.config.tie_weights:
            del tensors["head.weight"]  # the embedding itself; safetensors refuses shared tensors
        # One metadata key only: safetensors writes its metadata in a random
        # order, so two keys made the bytes (and weights_sha256) of identical
        # weights differ from save to save. The version is in config.json.
        _save_tensors(tensors, tmp / WEIGHTS, {"format": "lstmgen"})
        config = {
            "format": "lstmgen",
            "format_version": FORMAT_VERSION,
            "weights_sha256": sha256_file(tmp / WEIGHTS),
            "weights_dtype": str(weights_dtype).replace("torch.", ""),
            "model": model.config.to_dict(),
            "corpus": corpus_config.to_dict(),
            **meta,
        }
        _write_json(tmp / CONFIG, config)
        _write_json(tmp / TOKENIZER, tokenizer.to_dict())
        if trainer_state is not None:
            tensors, data = trainer_state
            _save_tensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp / TRAINER_TENSORS)
            _write_json(tmp / TRAINER_JSON, dict(data, format_version=FORMAT_VERSION,
                                                 tensors_sha256=sha256_file(tmp / TRAINER_TENSORS)))
        _fsync_dir(tmp)
        if old.exists():
            shutil.rmtree(old)
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        _fsync_dir(parent)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint (or the best one of a run directory), verifying its weights."""
    directory, config = checked_checkpoint(path)
    weights = directory / WEIGHTS
    expected = config.get("weights_sha256")
    if expected and sha256_file(weights) != expected:
        raise LstmgenError(
            f"{weights} is corrupt (its SHA-256 does not match config.json); re-train or copy the checkpoint again"
        )
    try:
        tokenizer_data = json.loads((directory / TOKENIZER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LstmgenError(f"{directory} has no {TOKENIZER}; the checkpoint is incomplete") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LstmgenError(f"{directory / TOKENIZER} is corrupt (not valid JSON)") from None
    tokenizer = tokenizer_from_dict(tokenizer_data)
    try:
        model_config = ModelConfig.from_dict(config["model"])
        corpus_config = CorpusConfig.from_dict(config.get("corpus", {}))
    except (KeyError, TypeError) as exc:
        raise LstmgenError(f"{directory / CONFIG} is missing or has bad fields ({exc})") from None
    if model_config.vocab_size != tokenizer.vocab_size:
        raise LstmgenError(f"{directory}: the model's vocabulary size does not match tokenizer.json")
    model = LSTMLanguageModel(model_config)
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise LstmgenError(f"{weights} is corrupt ({exc}); re-train or copy the checkpoint again") from None
    if model_config.tie_weights and "embedding.weight" in tensors:
        tensors["head.weight"] = tensors["embedding.weight"]
    try:
        model.load_state_dict({k: v.float() for k, v in tensors.items()})
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise LstmgenError(f"{weights} does not fit config.json ({first})") from None
    model.to(device).eval()
    return Checkpoint(model=model, tokenizer=tokenizer, corpus_config=corpus_config, path=directory, meta=config)


def load_trainer_state(directory: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The optimizer, RNG and data-position state saved beside ``last/``'s weights."""
    tensors_path, json_path = directory / TRAINER_TENSORS, directory / TRAINER_JSON
    if not tensors_path.exists() or not json_path.exists():
        raise LstmgenError(
            f"{directory} holds no training state to resume from (it was not written by lstmgen train, "
            "or is a best/ checkpoint); start a new run with --force"
        )
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LstmgenError(f"{json_path} is corrupt (not valid JSON); start a new run with --force") from None
    if data.get("format_version") != FORMAT_VERSION:
        raise LstmgenError(f"{json_path} has an unknown format version; resume it with the lstmgen that wrote it")
    if sha256_file(tensors_path) != data.get("tensors_sha256"):
        raise LstmgenError(f"{tensors_path} is corrupt (its SHA-256 does not match); start a new run with --force")
    try:
        tensors = load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise LstmgenError(f"{tensors_path} is corrupt ({exc}); start a new run with --force") from None
    return tensors, data
