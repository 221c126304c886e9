"""Generating from a window-trained model the way it was trained: each
token predicted from the last W tokens read from an empty state, as the
tutorial does by re-reading its 100-character pattern for every character.

Re-reading costs W steps per token. Here W windows are kept in progress
instead, one starting at each of the last W positions: every new token
steps all of them at once (one batched step of W rows), the window that
has now read W tokens gives the prediction, and its row starts afresh as
the newest window. The result is the tutorial's, at one batched step per
token. Until the text holds W tokens, the oldest window is the whole text.
"""

from __future__ import annotations

import torch

from ..errors import LstmgenError
from ..model import LSTMLanguageModel
from .config import SampleConfig
from .steps import step_precision, step_weights
from .stream import TokenStream


class WindowStream(TokenStream):
    """``num_samples`` texts from a window-trained model: a TokenStream
    whose model reads rolling windows instead of one state, so that
    Generation, generate and chat use it alike."""

    @torch.inference_mode()
    def __init__(self, model: LSTMLanguageModel, prompt_ids: list[int], config: SampleConfig, seed: int,
                 window: int, breakers: torch.Tensor | None = None):
        if not prompt_ids:
            raise LstmgenError("the prompt is empty after removing unknown characters; give a prompt the model knows")
        model.eval()
        self.model, self.window, self.breakers = model, window, breakers
        self.device = model.head.weight.device
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        n = config.num_samples
        cfg = model.config
        # Row slot * n + sample holds window `slot` of each sample.
        rows = window * n
        self.hs = [torch.zeros(rows, cfg.hidden_size, device=self.device) for _ in range(cfg.num_layers)]
        self.cs = [torch.zeros(rows, cfg.hidden_size, device=self.device) for _ in range(cfg.num_layers)]
        self.position = 0  # tokens read so far (only the last `window` of the prompt matter)
        self.pending: torch.Tensor | None = None
        self.recent = [list(prompt_ids[-config.penalty_window:]) for _ in range(n)]
        self.config = None
        self.reconfigure(config)
        for token in prompt_ids[-window:]:
            self.logits = self._read(torch.full((n,), token, dtype=torch.long, device=self.device))

    @torch.inference_mode()
    def reconfigure(self, config: SampleConfig) -> None:
        if self.config is not None and config.num_samples != self.config.num_samples:
            raise LstmgenError("a text in progress keeps its number of samples; start a new one to change it")
        if self.config is not None:
            self._read_pending()
        n = config.num_samples
        self.config = config
        choice = step_precision(self.model, config.precision, self.window * n)
        self.stepper = step_weights(self.model, choice.precision)
        self.history = self._history(config)

    def _read(self, tokens: torch.Tensor) -> torch.Tensor:
        """Start a fresh window at this position, step every window with
        ``tokens`` (N,), and return the logits (N, V) of the window that has
        now read the last W tokens (or, early on, all of them)."""
        n = tokens.size(0)
        fresh = (self.position % self.window) * n
        for state in self.hs + self.cs:
            state[fresh:fresh + n].zero_()
        oldest = ((self.position + 1) % self.window) * n
        rows = torch.arange(oldest, oldest + n, device=self.device)
        logits, self.hs, self.cs = self.stepper.step(tokens.repeat(self.window), self.hs, self.cs, head_rows=rows)
        self.position += 1
        return logits.float()

    def _read_pending(self) -> None:
        """Read the last token handed out once the next one is wanted (a text that stops costs no step)."""
        if self.pending is not None:
            token, self.pending = self.pending, None
            self.logits = self._read(token.to(self.device))
