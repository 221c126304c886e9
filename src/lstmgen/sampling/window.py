"""Generating from a window-trained model the way it was trained: each
token predicted from the last W tokens read from an empty state, as the
tutorial does by re-reading its 100-character pattern for every character.

Re-reading costs W steps per token. Here W windows are kept in progress
instead, one starting at each of the last W positions: every new token
steps all of them at once (one batched step of W rows), the window that
has now read W tokens gives the prediction, and its row starts afresh as
the newest window. The result is the tutorial's, at one batched step per
token. Until the text holds W tokens, the oldest window is the whole text.
The server's Batcher keeps the same windows for each of its sliding streams,
with the helpers at the end of this file.
"""

from __future__ import annotations

import torch

from ..errors import LstmgenError
from ..model import LSTMLanguageModel
from .config import SampleConfig
from .steps import StepWeights, step_precision, step_weights
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
        self.hs, self.cs = empty_windows(model, window * n)
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
        choice = step_precision(self.model, config.step_request, self.window * n)
        self.stepper = step_weights(self.model, choice.precision)
        self.history = self._history(config)

    def _read(self, tokens: torch.Tensor) -> torch.Tensor:
        """Step every window with ``tokens`` (N,); the logits (N, V) of each sample's oldest window."""
        logits, self.hs, self.cs = step_windows(self.stepper, self.hs, self.cs, tokens, self.position, self.window)
        self.position += 1
        return logits

    def _read_pending(self) -> None:
        """Read the last token handed out once the next one is wanted (a text that stops costs no step)."""
        if self.pending is not None:
            token, self.pending = self.pending, None
            self.logits = self._read(token.to(self.device))


def empty_windows(model: LSTMLanguageModel, rows: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The state of ``rows`` windows that have read nothing: h and c, L × (rows, H)."""
    cfg, device = model.config, model.head.weight.device
    return ([torch.zeros(rows, cfg.hidden_size, device=device) for _ in range(cfg.num_layers)],
            [torch.zeros(rows, cfg.hidden_size, device=device) for _ in range(cfg.num_layers)])


def window_slots(position: int, window: int) -> tuple[int, int]:
    """Once ``position`` tokens are read: the slot whose window starts afresh
    with the next token, and the slot whose window has then read the last
    ``window`` tokens (early on, all of them) and so gives the prediction."""
    return position % window, (position + 1) % window


def step_windows(stepper: StepWeights, hs: list[torch.Tensor], cs: list[torch.Tensor], tokens: torch.Tensor,
                 position: int, window: int) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """One token into every window of N texts: rows slot * N + text hold
    window ``slot`` of each text (h, c L × (window * N, H)). The fresh slot's
    rows are emptied in place, every row steps with its text's token from
    ``tokens`` (N,), and the logits (N, V) are each text's oldest window's."""
    n = tokens.size(0)
    fresh, oldest = window_slots(position, window)
    for state in hs + cs:
        state[fresh * n:(fresh + 1) * n].zero_()
    rows = torch.arange(oldest * n, (oldest + 1) * n, device=tokens.device)
    logits, hs, cs = stepper.step(tokens.repeat(window), hs, cs, head_rows=rows)
    return logits.float(), hs, cs
