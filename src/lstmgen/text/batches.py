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
    """Train and validation ids, both memory-mapped; for item data also the
    positions of their end tokens (the item index, ``*.items.bin``)."""

    train: np.ndarray
    val: np.ndarray
    train_ends: np.ndarray | None = None
    val_ends: np.ndarray | None = None


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
    if "end_id" in meta:  # item data: the item index beside each token file
        write_item_index(directory, "train", ids[:cut], meta["end_id"])
        write_item_index(directory, "val", ids[cut:], meta["end_id"])
    meta = dict(meta, dtype=ids.dtype.name, train_tokens=int(cut), val_tokens=int(len(ids) - cut),
                val_fraction=val_fraction)
    tmp = directory / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, directory / "meta.json")
    return load_split(directory)


def load_split(directory: Path) -> TokenSplit:
    meta = json.loads((directory / "meta.json").read_text())
    dtype = np.dtype(meta["dtype"])
    split = TokenSplit(open_tokens(directory / "train.bin", dtype), open_tokens(directory / "val.bin", dtype))
    if "end_id" in meta:
        split.train_ends = open_tokens(directory / "train.items.bin", np.dtype(np.int64))
        split.val_ends = open_tokens(directory / "val.items.bin", np.dtype(np.int64))
    return split


def write_item_index(directory: Path, part: str, ids: np.ndarray, end_id: int) -> None:
    """``PART.items.bin``: the positions of the end tokens in ``PART.bin``, as int64."""
    write_tokens(directory / f"{part}.items.bin", item_ends(ids, end_id))


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


# ---------------------------------------------------------------------------
# Item batches: names, lines, sentences, each from a fresh state.
#
# The token file holds  <end> a b c <end> d e <end> f g h i <end>, so item k
# reads ids[ends[k]:ends[k+1]] (its start token, then its tokens) and predicts
# ids[ends[k]+1:ends[k+1]+1] (its tokens, then its end token). A batch is a
# few rows of items of similar length, padded at the end: an LSTM reads left
# to right, so the padding after an item cannot change what came before it,
# and its targets are IGNORE, so it adds nothing to the loss either.
# ---------------------------------------------------------------------------

IGNORE = -100
"""Target of a padded position: F.cross_entropy's default ignore_index."""
_BUCKET_BATCHES = 50
"""Items are sorted by length within groups of about this many batches:
wide enough that rows of one batch are nearly equal in length, narrow
enough that the order stays random."""


def item_ends(ids: np.ndarray, end_id: int, chunk: int = 1 << 24) -> np.ndarray:
    """Positions of the end tokens of a token file (int64), read in chunks so
    that a memory-mapped file is never resident at once."""
    found = [np.flatnonzero(np.asarray(ids[a:a + chunk]) == end_id) + a for a in range(0, len(ids), chunk)]
    return np.concatenate(found).astype(np.int64) if found else np.zeros(0, dtype=np.int64)


class ItemBatches:
    """One epoch of items, batched by length. A batch holds about
    ``tokens_per_batch`` tokens counting its padding (one row at least). The
    batches do not depend on the number of DDP processes: each process takes
    a share of every batch's rows (rank_rows).

    Yields (inputs (R, T), targets (R, T)), targets IGNORE where padded.
    """

    def __init__(self, ids: np.ndarray, ends: np.ndarray, tokens_per_batch: int, rng: np.random.Generator):
        self.ids, self.ends = ids, ends
        self.lengths = np.diff(ends)  # tokens read per item: its start token and its own tokens
        self.batches = _bucket(self.lengths, tokens_per_batch, rng)

    def __len__(self) -> int:
        return len(self.batches)

    @property
    def padding_share(self) -> float:
        """Padded positions over all positions, for the whole epoch."""
        real = sum(int(self.lengths[b].sum()) for b in self.batches)
        total = sum(len(b) * int(self.lengths[b].max()) for b in self.batches)
        return 1.0 - real / max(total, 1)

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        return item_rows(self.ids, self.ends, self.batches[step])

    def __iter__(self):
        for step in range(len(self)):
            yield self.batch(step)


def item_rows(ids: np.ndarray, ends: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``items``: inputs padded with the end token, targets with IGNORE."""
    starts, stops = ends[items], ends[items + 1]
    width = int((stops - starts).max())
    index = np.minimum(starts[:, None] + np.arange(width + 1), stops[:, None])  # (R, T+1), clipped at each end
    chunk = np.asarray(ids[index], dtype=np.int64)
    x, y = chunk[:, :-1], chunk[:, 1:].copy()
    y[np.arange(width)[None, :] >= (stops - starts)[:, None]] = IGNORE
    return x, y


def rank_rows(x: np.ndarray, y: np.ndarray, rank: int, world: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of an item batch that one of ``world`` processes trains on,
    as even a share as the count allows. A process left without a row gets
    one of padding, which adds nothing to the loss (DDP needs every process
    to run the model)."""
    bounds = np.linspace(0, len(x), world + 1).round().astype(int)
    x, y = x[bounds[rank]:bounds[rank + 1]], y[bounds[rank]:bounds[rank + 1]]
    if not len(x):
        return np.zeros((1, 1), dtype=np.int64), np.full((1, 1), IGNORE, dtype=np.int64)
    return x, y


def _bucket(lengths: np.ndarray, tokens_per_batch: int, rng: np.random.Generator) -> list:
    """Shuffle the items, sort each group of about _BUCKET_BATCHES batches by
    length, fill batches up to the token budget, and shuffle the batches."""
    order = rng.permutation(len(lengths))
    group = max(int(_BUCKET_BATCHES * tokens_per_batch / max(float(lengths.mean()), 1.0)), 1)
    batches = []
    for a in range(0, len(order), group):
        part = order[a:a + group]
        batches += _fill(part[np.argsort(lengths[part], kind="stable")], lengths, tokens_per_batch)
    rng.shuffle(batches)
    return batches


def _fill(part: np.ndarray, lengths: np.ndarray, tokens_per_batch: int) -> list:
    """Cut items sorted by length into batches of at most ``tokens_per_batch``
    padded tokens (one row at least, however long the item)."""
    batches, start = [], 0
    while start < len(part):
        rows = 1
        while start + rows < len(part) and (rows + 1) * int(lengths[part[start + rows]]) <= tokens_per_batch:
            rows += 1
        batches.append(part[start:start + rows])
        start += rows
    return batches
