"""Generation: prime the state on the prompt once, then one step per token
for every sample at once. A TokenStream keeps its LSTM state between calls,
so a text can go on later (chat's /continue) without reading it again."""

from __future__ import annotations

from typing import Iterator

import torch

from ..errors import LstmgenError
from ..model import LSTMLanguageModel
from .config import SampleConfig
from .processors import History, next_tokens
from .steps import _GraphedStep, prompt_precision, read_prompt, step_precision, step_weights


class TokenStream:
    """``num_samples`` texts in progress: their LSTM state, the logits for
    their next token, their penalty history and random generator."""

    @torch.inference_mode()
    def __init__(self, model: LSTMLanguageModel, prompt_ids: list[int], config: SampleConfig, seed: int,
                 breakers: torch.Tensor | None = None):
        """``breakers`` (V,) bool marks the tokens that end a DRY repeat."""
        if not prompt_ids:
            raise LstmgenError("the prompt is empty after removing unknown characters; give a prompt the model knows")
        model.eval()
        self.model, self.breakers = model, breakers
        self.device = model.head.weight.device
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        n = config.num_samples
        ids = torch.tensor(prompt_ids, dtype=torch.long, device=self.device).unsqueeze(0)  # (1, P)
        # Read the whole prompt in one call (nn.LSTM's kernel is fastest for
        # long sequences), in the precision that goes with the steps; samples
        # share its state, so copy it N times.
        steps = step_precision(model, config.step_request, n).precision
        logits, (h, c) = read_prompt(model, ids, None, prompt_precision(model, steps))  # (1, V); (L, 1, H)
        self.hs = [h[layer].repeat(n, 1) for layer in range(h.size(0))]  # L × (N, H)
        self.cs = [c[layer].repeat(n, 1) for layer in range(c.size(0))]
        self.logits = logits.repeat(n, 1)  # (N, V)
        self.recent = [list(prompt_ids[-config.penalty_window:]) for _ in range(n)]
        self.pending: torch.Tensor | None = None  # drawn and handed out, not yet read by the model
        self.config, self.graphed = None, None
        self.reconfigure(config, steps)

    @torch.inference_mode()
    def reconfigure(self, config: SampleConfig, precision: str | None = None) -> None:
        """Sample from now on with ``config`` (same number of samples); the
        penalty history is rebuilt from the recent tokens. ``precision``: the
        step precision already chosen for ``config`` (chosen here when None)."""
        if self.config is not None and config.num_samples != self.config.num_samples:
            raise LstmgenError("a text in progress keeps its number of samples; start a new one to change it")
        n = config.num_samples
        if self.config is not None:
            self._read_pending()
            if self.graphed is not None:  # the state lived in the graph's buffers
                self.hs, self.cs = [h.clone() for h in self.graphed.h], [c.clone() for c in self.graphed.c]
        self.config = config
        precision = precision or step_precision(self.model, config.step_request, n).precision
        self.stepper = step_weights(self.model, precision)
        self.history = self._history(config)
        self.graphed = None
        if self.device.type == "cuda" and config.max_new_tokens > 1:
            self.graphed = _GraphedStep(self.stepper, self.hs, self.cs)

    def _history(self, config: SampleConfig) -> History:
        """The penalty history of every sample, rebuilt from its recent tokens."""
        n, vocab_size = config.num_samples, self.model.config.vocab_size
        history = History(config, vocab_size, n, self.recent[0], self.breakers)
        if any(r != self.recent[0] for r in self.recent[1:]):  # samples that went apart: one row each
            for row, recent in enumerate(self.recent):
                history.set_row(row, History(config, vocab_size, 1, recent, self.breakers, layout_for=n))
        return history

    @torch.inference_mode()
    def tokens(self, count: int | None = None) -> Iterator[torch.Tensor]:
        """Yield (num_samples,) token ids, one step at a time, ``count``
        (default: the config's max_new_tokens) times."""
        count = self.config.max_new_tokens if count is None else count
        window = self.config.penalty_window
        for _ in range(count):
            self._read_pending()
            with self.stepper.between_steps():
                token = next_tokens(self.logits.cpu(), self.config, self.generator, self.history)  # (N,)
                self.history.push(token)
            for recent, t in zip(self.recent, token.tolist()):
                recent.append(t)
                if len(recent) > 2 * window:  # trimmed now and then, not at every token
                    del recent[:-window]
            self.pending = token
            yield token

    def _read_pending(self) -> None:
        """Step the model on the last token handed out. It waits until the
        next token is wanted, so a text that stops costs no extra step."""
        if self.pending is None:
            return
        token, self.pending = self.pending, None
        if self.graphed is not None:
            self.logits = self.graphed.step(token)
        else:
            self.logits, self.hs, self.cs = self.stepper.step(token.to(self.device), self.hs, self.cs)


def stream_tokens(
    model: LSTMLanguageModel,
    prompt_ids: list[int],
    config: SampleConfig,
    seed: int,
    breakers: torch.Tensor | None = None,
) -> Iterator[torch.Tensor]:
    """Yield (num_samples,) token ids, one step at a time, for every sample at once."""
    yield from TokenStream(model, prompt_ids, config, seed, breakers).tokens()
