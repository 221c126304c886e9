"""A checkpoint's files, checked without PyTorch: where the checkpoint of a
run directory is, and whether its config.json and weights file are there.

checkpoint.py loads and saves checkpoints with PyTorch; the command line
runs these checks first, so that a wrong path fails at once instead of
after the seconds that importing PyTorch takes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import LstmgenError

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
_PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"}
_KERAS_SUFFIXES = {".h5", ".hdf5", ".keras"}


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """Find the checkpoint directory for a run directory or a checkpoint path."""
    p = Path(path)
    if p.is_file():
        if p.suffix.lower() in _KERAS_SUFFIXES:
            raise LstmgenError(
                f"{p} is a Keras file; import it first: lstmgen import-keras {p} --corpus TEXT_FILE --out NEW_RUN"
            )
        if p.suffix.lower() in _PICKLE_SUFFIXES:
            raise LstmgenError(
                f"{p} is a {p.suffix} file; lstmgen never loads pickled files. "
                "Give a run directory or a checkpoint directory holding model.safetensors and config.json"
            )
        if p.name in (WEIGHTS, CONFIG, TOKENIZER):
            return resolve_checkpoint(p.parent)
        raise LstmgenError(f"{p} is a file; give a run directory (from lstmgen train --out) or a checkpoint directory")
    if not p.exists():
        raise LstmgenError(f"{p}: no such run directory; give the --out directory of lstmgen train")
    if (p / CONFIG).exists() or (p / WEIGHTS).exists():
        return p
    for name in ("best", "last"):
        for candidate in (p / name, p / f".{name}.old"):
            if (candidate / CONFIG).exists():
                return candidate
    raise LstmgenError(
        f"{p} is not an lstmgen checkpoint (no config.json, best/ or last/ inside); "
        "give the --out directory of lstmgen train"
    )


def read_config(directory: Path) -> dict:
    try:
        config = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LstmgenError(f"{directory} has no {CONFIG}; the checkpoint is incomplete, re-train or copy it again") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LstmgenError(f"{directory / CONFIG} is corrupt (not valid JSON); re-train or copy the checkpoint again") from None
    if not isinstance(config, dict) or config.get("format") != "lstmgen":
        raise LstmgenError(f"{directory / CONFIG} is not an lstmgen checkpoint config")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise LstmgenError(
            f"{directory} has checkpoint format version {version!r}, but this lstmgen reads version "
            f"{FORMAT_VERSION}; use the lstmgen version that wrote it"
        )
    return config


def checked_checkpoint(path: str | os.PathLike) -> tuple[Path, dict]:
    """The checkpoint directory of ``path`` and its config, once the directory,
    its config.json and its weights file are found: the first checks of
    loading a checkpoint, in the order loading makes them (the weights'
    SHA-256 and contents are checked when they are loaded)."""
    directory = resolve_checkpoint(path)
    config = read_config(directory)
    if not (directory / WEIGHTS).exists():
        raise LstmgenError(f"{directory} has no {WEIGHTS}; the checkpoint is incomplete, re-train or copy it again")
    return directory, config
