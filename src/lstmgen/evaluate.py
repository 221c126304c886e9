"""Held-out loss in nats, bits per character and perplexity."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import LstmgenError
from .model import LSTMLanguageModel
from .text.batches import IGNORE, item_rows


# Logits are (rows, time, vocab) floats; keep one chunk of them under ~64 MB
# even for a vocabulary of 100,000 characters.
_LOGIT_BUDGET = 16_000_000


@dataclass(frozen=True)
class EvalResult:
    loss_nats: float
    """Mean cross-entropy per predicted token, natural log."""
    bits_per_char: float
    """Total loss in bits divided by the characters predicted."""
    perplexity: float
    """exp(loss_nats), per token."""
    tokens: int
    """Tokens whose prediction was scored."""
    chars: int
    """Characters those tokens cover."""
    items: int | None = None
    """Item models: the items scored (each token, end token included, once)."""
    nats_per_item: float | None = None
    """Item models: the loss of a whole item, its end token included."""

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.items is None:
            del out["items"], out["nats_per_item"]
        return out

    def with_chars(self, chars: int) -> "EvalResult":
        """The same result with bits per character over ``chars`` characters
        (for word and BPE tokens, which cover several characters each)."""
        total_nats = self.loss_nats * self.tokens
        return EvalResult(self.loss_nats, total_nats / max(chars, 1) / math.log(2), self.perplexity, self.tokens,
                          chars, self.items, self.nats_per_item)

    def line(self) -> str:
        per_item = f" · {self.nats_per_item:.3f} nats/item over {self.items:,} items" if self.items else ""
        return (f"loss {self.loss_nats:.4f} nats/token · {self.bits_per_char:.4f} bits/char · "
                f"perplexity {self.perplexity:.3f} · {self.tokens:,} tokens" + per_item)


def make_result(total_nats: float, tokens: int, chars: int) -> EvalResult:
    if tokens == 0:
        raise LstmgenError("the evaluation text is too short to score; give at least two characters (more than the window for tutorial models)")
    loss = total_nats / tokens
    return EvalResult(loss_nats=loss, bits_per_char=total_nats / chars / math.log(2),
                      perplexity=math.exp(min(loss, 700.0)), tokens=tokens, chars=chars)


@torch.inference_mode()
def evaluate_stream(
    model: LSTMLanguageModel,
    ids: np.ndarray,
    columns: int = 32,
    seq_len: int = 256,
    burn_in: int = 256,
) -> EvalResult:
    """Score every token after the first, with state carried through the text.

    For speed the text is cut into ``columns`` segments run as one batch. So
    that a segment does not start from a cold, empty state, each one first
    reads the ``burn_in`` tokens before it without scoring them; the result
    then matches a single pass through the whole text closely (the state
    forgets what lies further back).
    """
    model.eval()
    device = model.head.weight.device
    n = len(ids)
    scored = n - 1
    if scored < 1:
        return make_result(0.0, 0, 0)
    columns = max(1, min(columns, scored // max(burn_in, 1)))
    bounds = np.linspace(1, n, columns + 1).astype(np.int64)  # target positions [s_k, e_k)
    starts = np.maximum(bounds[:-1] - 1 - burn_in, 0)  # first input position read
    lengths = bounds[1:] - starts  # tokens read per column (inputs + final target)
    width = int(lengths.max())
    grid = np.zeros((columns, width), dtype=np.int64)
    mask = np.zeros((columns, width - 1), dtype=bool)  # mask[k, j]: target grid[k, j+1] is scored
    for k in range(columns):
        grid[k, :lengths[k]] = ids[starts[k]:bounds[k + 1]]
        first_scored = bounds[k] - starts[k] - 1  # index j whose target is position s_k
        mask[k, first_scored:lengths[k] - 1] = True
    grid_t = torch.from_numpy(grid).to(device)
    mask_t = torch.from_numpy(mask).to(device)
    seq_len = max(1, min(seq_len, _LOGIT_BUDGET // (columns * model.config.vocab_size)))
    state = None
    total = 0.0
    for a in range(0, width - 1, seq_len):
        b = min(a + seq_len, width - 1)
        logits, _, state = model(grid_t[:, a:b], state)  # (K, T, V)
        # Rows of V contiguous logits: with the class axis strided (transpose(1, 2)), a
        # 100,000-token vocabulary took 10× longer on a CPU.
        nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), grid_t[:, a + 1:b + 1].reshape(-1),
                              reduction="none").view(logits.shape[:2])  # (K, T)
        total += float(nll[mask_t[:, a:b]].double().sum())
    count = int(mask.sum())
    assert count == scored
    return make_result(total, count, count)


@torch.inference_mode()
def evaluate_windows(model: LSTMLanguageModel, ids: np.ndarray, window: int, batch_size: int = 256) -> EvalResult:
    """The tutorial's framing: predict each token from the ``window`` tokens
    before it, starting from an empty state every time."""
    model.eval()
    device = model.head.weight.device
    count = len(ids) - window
    if count < 1:
        return make_result(0.0, 0, 0)
    batch_size = max(1, min(batch_size, _LOGIT_BUDGET // model.config.vocab_size))
    total = 0.0
    for a in range(0, count, batch_size):
        starts = np.arange(a, min(a + batch_size, count))
        chunk = torch.from_numpy(np.asarray(ids[starts[:, None] + np.arange(window + 1)], dtype=np.int64)).to(device)
        logits, _, _ = model(chunk[:, :-1], None, last_only=True)  # (B, V)
        total += float(F.cross_entropy(logits.float(), chunk[:, -1], reduction="sum"))
    return make_result(total, count, count)


@torch.inference_mode()
def evaluate_items(model: LSTMLanguageModel, ids: np.ndarray, ends: np.ndarray, tokens_per_batch: int = 65_536
                   ) -> EvalResult:
    """Item models: every item from a fresh state, each of its tokens and its
    end token scored once. Items are read in batches of similar lengths (see
    text.batches.item_rows); padding is not scored."""
    model.eval()
    device = model.head.weight.device
    count = len(ends) - 1
    if count < 1:
        return make_result(0.0, 0, 0)
    lengths = np.diff(ends)
    order = np.argsort(lengths, kind="stable")  # shortest first: a batch's last item is its widest
    budget = max(1, min(tokens_per_batch, _LOGIT_BUDGET // model.config.vocab_size))
    total, tokens, a = 0.0, 0, 0
    while a < count:
        rows = 1
        while a + rows < count and (rows + 1) * int(lengths[order[a + rows]]) <= budget:
            rows += 1
        x, y = item_rows(ids, ends, order[a:a + rows])
        logits, _, _ = model(torch.from_numpy(x).to(device), None)
        total += float(F.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                       torch.from_numpy(y).to(device).reshape(-1), reduction="sum",
                                       ignore_index=IGNORE))
        tokens += int((y != IGNORE).sum())
        a += rows
    result = make_result(total, tokens, tokens)
    return EvalResult(result.loss_nats, result.bits_per_char, result.perplexity, tokens, tokens, count, total / count)
