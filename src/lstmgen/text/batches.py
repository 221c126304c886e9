"""Token files on disk and the batches cut from them.

Token ids are written once to a flat binary file of the smallest unsigned
dtype that holds the vocabulary and read back through ``np.memmap``, so the
corpus is never held as one-hot or float arrays (the tutorial's float64
windows cost 800 bytes per character).
"""

from __future__ import annotations

import json
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LstmgenError


def write_tokens(path: Path, ids: np.ndarray) -> None:
    """Write ids atomically: a crash leaves either the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        ids.tofile(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def open_tokens(path: Path, dtype: np.dtype) -> np.ndarray:
    size = path.stat().st_size
    if size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def release_pages(ids: np.ndarray) -> None:
    """Drop this process's mapping of pages already read from a token file.

    Mapped file pages count in the resident set size until unmapped, so a
    pass over a 1 GB token file would otherwise show 1 GB of RSS. The pages
    stay in the page cache; reading them again costs a soft page fault.
    """
    mapped = getattr(ids, "_mmap", None)
    if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mapped.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


def read_chunks(path: Path, dtype: np.dtype, start: int, stop: int, chunk: int = 1 << 24):
    """Yield ids [start, stop) of a token file in chunks, with plain reads
    (no mapping, so nothing stays resident)."""
    dtype = np.dtype(dtype)
    with open(path, "rb") as f:
        f.seek(start * dtype.itemsize)
        position = start
        while position < stop:
            n = min(chunk, stop - position)
            block = np.fromfile(f, dtype=dtype, count=n)
            if len(block) != n:
                raise LstmgenError(f"{path} is shorter than expected; prepare the data again")
            yield block
            position += n


@dataclass
class TokenSplit:
    """Train and validation ids, both memory-mapped."""

    train: np.ndarray
    val: np.ndarray


def split_ids(num_tokens: int, val_fraction: float) -> int:
    """Index where validation starts: the last ``val_fraction`` of the text,
    contiguous, so validation text is never seen in training. Computed as
    nanoGPT computes its split (``int(n * 0.9)`` for 10%), so the held-out
    characters of Tiny Shakespeare are exactly nanoGPT's."""
    if not 0.0 <= val_fraction < 1.0:
        raise LstmgenError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    return int(num_tokens * (1.0 - val_fraction))


def save_split(directory: Path, ids: np.ndarray, val_fraction: float, meta: dict,
               cut: int | None = None) -> TokenSplit:
    """Write ``train.bin``, ``val.bin`` and ``meta.json`` into ``directory``;
    validation starts at token ``cut`` (default: the last ``val_fraction``)."""
    directory.mkdir(parents=True, exist_ok=True)
    if cut is None:
        cut = split_ids(len(ids), val_fraction)
    write_tokens(directory / "train.bin", ids[:cut])
    write_tokens(directory / "val.bin", ids[cut:])
    meta = dict(meta, dtype=ids.dtype.name, train_tokens=int(cut), val_tokens=int(len(ids) - cut),
                val_fraction=val_fraction)
    tmp = directory / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, directory / "meta.json")
    return load_split(directory)


def load_split(directory: Path) -> TokenSplit:
    meta = json.loads((directory / "meta.json").read_text())
    dtype = np.dtype(meta["dtype"])
    return TokenSplit(open_tokens(directory / "train.bin", dtype), open_tokens(directory / "val.bin", dtype))


# ---------------------------------------------------------------------------
# Stream batches for truncated BPTT.
#
# The token stream is cut into B equal columns; step t reads the next T tokens
# of every column, so row b of step t+1 continues exactly where row b of step t
# stopped and the LSTM state can be carried across steps:
#
#   stream:  a b c d e f g h i j k l m n o p q r s t u v w x   (B=3, T=2)
#
#   column 0: a b | c d | e f | g h
#   column 1: i j | k l | m n | o p
#   column 2: q r | s t | u v | w x
#             step0 step1 step2 step3
#
#   step 1 inputs  (B, T) = [[c d], [k l], [s t]]
#   step 1 targets (B, T) = [[d e], [l m], [t u]]   (shifted by one)
#
# Each epoch starts the columns at a random offset in [0, T), so a window
# boundary does not fall on the same characters every epoch.
# ---------------------------------------------------------------------------


class StreamBatches:
    """Iterate (inputs, targets) int64 arrays of shape (B, T) for one epoch."""

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, offset: int = 0):
        self.ids = ids
        self.batch_size = batch_size
        self.seq_len = seq_len
        usable = len(ids) - 1 - offset
        self.column_len = usable // batch_size
        self.steps = self.column_len // seq_len
        self.offset = offset
        if self.steps < 1:
            raise LstmgenError(
                f"the training text ({len(ids):,} tokens) is too short for --batch-size {batch_size} × "
                f"--seq-len {seq_len}; lower them or give more text"
            )

    def __len__(self) -> int:
        return self.steps

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        starts = self.offset + np.arange(self.batch_size) * self.column_len + step * self.seq_len
        index = starts[:, None] + np.arange(self.seq_len + 1)  # (B, T+1)
        chunk = np.asarray(self.ids[index], dtype=np.int64)
        return chunk[:, :-1], chunk[:, 1:]

    def __iter__(self):
        for step in range(self.steps):
            yield self.batch(step)


class WindowBatches:
    """The tutorial's framing: every window of ``window`` tokens predicts the
    one token after it. All windows, shuffled once per epoch, batch by batch.

    Yields (inputs (B, window), targets (B,)).
    """

    def __init__(self, ids: np.ndarray, batch_size: int, window: int, rng: np.random.Generator,
                 drop_last: bool = False):
        self.ids = ids
        self.batch_size = batch_size
        self.window = window
        self.num_windows = len(ids) - window
        if self.num_windows < 1:
            raise LstmgenError(
                f"the training text ({len(ids):,} tokens) is shorter than the {window}-token window; "
                "lower --seq-len or give more text"
            )
        self.order = rng.permutation(self.num_windows)
        # Several processes split every batch evenly, so they drop a short last one.
        self.steps = self.num_windows // batch_size if drop_last else -(-self.num_windows // batch_size)
        if self.steps < 1:
            raise LstmgenError(f"the training text has {self.num_windows:,} windows, fewer than --batch-size "
                               f"{batch_size}; lower --batch-size or give more text")

    def __len__(self) -> int:
        return self.steps

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        starts = self.order[step * self.batch_size:(step + 1) * self.batch_size]
        index = starts[:, None] + np.arange(self.window + 1)
        chunk = np.asarray(self.ids[index], dtype=np.int64)
        return chunk[:, :-1], chunk[:, -1]

    def __iter__(self):
        for step in range(self.steps):
            yield self.batch(step)
