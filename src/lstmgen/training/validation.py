"""The held-out loss during training, in nats and in bits per character."""

from __future__ import annotations

from pathlib import Path

import json

import numpy as np

from ..evaluate import EvalResult, evaluate_items, evaluate_stream, evaluate_windows
from ..model import LSTMLanguageModel
from ..text.batches import release_pages
from .config import TrainConfig


class HeldOut:
    """The validation split, capped at ``eval_max_tokens``."""

    def __init__(self, val_ids: np.ndarray, config: TrainConfig, tokenizer, data_dir: Path,
                 val_ends: np.ndarray | None = None):
        self.val_ids, self.config, self.tokenizer = val_ids, config, tokenizer
        self.eval_ids = val_ids[: config.eval_max_tokens]
        if config.items:  # whole items only, up to the cap
            self.eval_ends = val_ends[: max(int(np.searchsorted(val_ends, config.eval_max_tokens, "right")), 2)]
            self.eval_ids = val_ids[: int(self.eval_ends[-1]) + 1] if len(val_ends) else val_ids[:0]
        data_meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))
        # Word and BPE tokens cover several characters; a character model's tokens are characters.
        self.val_chars = data_meta.get("val_chars") if tokenizer.level != "char" else None
        # Tokens read but never predicted: a window's, or a stream's first; an item's start token is not in val_chars.
        self.unscored = config.seq_len if config.framing == "windows" else 0 if config.items else 1

    @property
    def exists(self) -> bool:
        return len(self.eval_ids) >= 2

    def evaluate(self, model: LSTMLanguageModel) -> EvalResult | None:
        """The held-out loss (None without held-out text); leaves the model in training mode."""
        if not self.exists:
            return None
        if self.config.items:
            result = evaluate_items(model, self.eval_ids, self.eval_ends)
        elif self.config.framing == "windows":
            result = evaluate_windows(model, self.eval_ids, self.config.seq_len)
        else:
            result = evaluate_stream(model, self.eval_ids)
        release_pages(self.val_ids)
        model.train()
        if self.val_chars:
            result = result.with_chars(max(self.scored_chars(result), 1))
        return result

    def scored_chars(self, result: EvalResult) -> int:
        """Bits per character over the characters the scored tokens stand for."""
        if len(self.eval_ids) == len(self.val_ids):
            return self.val_chars - len(self.tokenizer.decode(self.val_ids[:self.unscored]))
        return round(self.val_chars * result.tokens / len(self.val_ids))
